"""The server's own routers: ``openai`` (models, chat and text completions) and ``system`` (health,
metrics, the web chat). Other packages bring theirs to :func:`murmur.serve.app.create_app`."""
