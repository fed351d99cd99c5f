"""Serving: the inference engine (continuous batching), the OpenAI-compatible HTTP API and the web chat."""
