"""Serving: the inference engine (continuous batching), the OpenAI-compatible HTTP API and the web chat.

(``import murmur`` already makes OpenMP waits passive before torch loads; see ``murmur/__init__.py``.)
"""
