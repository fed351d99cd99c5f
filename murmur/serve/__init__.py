"""Serving: the inference engine (continuous batching), the OpenAI-compatible HTTP API and the web chat."""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting for work slow torch down several times when other processes
# share the cores (see murmur.train); sleeping waits cost a few percent on an idle machine. Takes effect
# when torch is imported after this package (as in `murmur serve`); an explicit OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
