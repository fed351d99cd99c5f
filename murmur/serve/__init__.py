"""Serving: the OpenAI-compatible HTTP API over the engine (``murmur.engine``), and the web chat.

``app.create_app`` builds the app and mounts the routers other packages hand it; ``app.serve`` is
``murmur serve``. See docs/serving.md for the parts and the contract a mounted router follows.
(``import murmur`` already makes OpenMP waits passive before torch loads; see ``murmur/__init__.py``.)
"""
