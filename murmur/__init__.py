"""murmur: a social network's own language model, from raw posts to a served assistant."""

import os as _os

__version__ = "0.1.0"

# OpenMP threads that spin while waiting made CPU training 2-7x slower whenever other processes shared
# the cores (docs/benchmarks.md), for a few percent on an idle machine; sleeping waits are the better
# default. Set here so it is in place before any murmur module imports torch; an explicit value wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
