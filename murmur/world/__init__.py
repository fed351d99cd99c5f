"""The demo social network: a deterministic synthetic world in real X formats, and its ground truth.

:mod:`murmur.world.generate` writes the world (archives, API pages, ground truth);
:mod:`murmur.world.text` holds the topic vocabularies and templates it writes from. Search, the
assistant and ads evaluate against the ground truth this package writes.
"""
