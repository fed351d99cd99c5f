"""murmur: a social network's own language model, from raw posts to a served assistant."""

__version__ = "0.1.0"
