"""Compiled loops for the data stages' hot kernels (numba), compiled the first time they run.

A few kernels of ``murmur data clean`` are loops over every byte or shingle of a batch (the language
identifier's automaton, MinHash over character shingles). numpy runs them as a sequence of whole-array
operations, each a pass over memory; numba compiles the loop itself to machine code, which keeps the
per-element work in registers. The kernels are plain Python functions of numpy arrays that use only
integer arithmetic or float sums in a fixed order, so the compiled code gives the same bits as the
numpy code it replaced (tests check both against the reference libraries, datasketch and py3langid).

``jit(fn)`` returns ``fn`` compiled on its first call: numba is imported only by a process that runs
such a kernel (a clean worker, not every ``murmur`` command), and the machine code is cached on disk
(numba's ``cache=True``: beside the module in ``__pycache__``, or numba's user cache directory when
that is not writable, or ``$NUMBA_CACHE_DIR``), so a fresh worker loads it instead of compiling again
(~0.3 s against ~2 s); with no writable place at all, each process compiles in memory.

numba's array functions, loaded with the first kernel, look for SciPy's BLAS (for ``np.dot`` and
``np.linalg`` in compiled code, which no kernel here uses); importing ``scipy.linalg`` costs each
process ~0.25 s of CPU. ``_numba()`` imports numba with SciPy hidden for that moment, so numba records
"no BLAS" instead (a kernel that used ``np.dot`` would fail to compile, loudly); where SciPy is
already imported nothing is hidden.
"""

from __future__ import annotations

import functools
import importlib.abc
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np


class _Lazy:
    def __init__(self, fn: Callable[..., Any]):
        self.fn, self.compiled, self.lock = fn, None, threading.Lock()
        self.__doc__, self.__name__ = fn.__doc__, fn.__name__

    def __call__(self, *args: Any) -> Any:
        if self.compiled is None:
            with self.lock:
                if self.compiled is None:
                    numba = _numba()
                    try:
                        self.compiled = numba.njit(cache=True, nogil=True)(self.fn)
                    except RuntimeError:  # no writable place for numba's cache: compile in memory
                        self.compiled = numba.njit(nogil=True)(self.fn)
        return self.compiled(*args)


class _HideSciPy(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "scipy" or name.startswith("scipy."):
            raise ImportError("SciPy is not looked for while numba loads (murmur.data.jit)")
        return None


_NUMBA_LOCK = threading.Lock()


@functools.cache
def _numba() -> Any:
    """numba, its array functions loaded without SciPy's BLAS (see the module doc)."""
    with _NUMBA_LOCK:
        if "scipy" in sys.modules:
            import numba
            import numba.np.arraymath  # noqa: F401
            return numba
        hide = _HideSciPy()
        sys.meta_path.insert(0, hide)
        try:
            import numba
            import numba.np.arraymath  # noqa: F401 - where numba decides whether BLAS is there
        finally:
            sys.meta_path.remove(hide)
        return numba


def jit(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` compiled by numba (no Python objects, cached on disk) the first time it is called."""
    return _Lazy(fn)


@jit
def radix_sort(keys, spare):  # pragma: no cover - compiled by numba
    """``keys`` (non-negative integers) sorted ascending, by 16 bits at a time (least significant
    first; ``spare``: an array like ``keys`` to move them through). Returns whichever of the two holds
    the result. ~7x faster than ``np.sort`` on this machine for the 10^5-10^6 keys of a batch."""
    n = len(keys)
    if n == 0:
        return keys
    top = keys.max()
    shift = 0
    while True:
        count = np.zeros(65537, dtype=np.int64)
        for i in range(n):
            count[((keys[i] >> shift) & 0xFFFF) + 1] += 1
        for d in range(65536):
            count[d + 1] += count[d]
        for i in range(n):
            d = (keys[i] >> shift) & 0xFFFF
            spare[count[d]] = keys[i]
            count[d] += 1
        keys, spare = spare, keys
        shift += 16
        if (top >> shift) == 0:
            return keys
