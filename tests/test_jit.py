"""The compiled kernels' wrapper: compiled on first call, cached on disk, and still compiled (in
memory) where numba finds no writable place for its cache."""

import numba
import numpy as np
import pytest

from murmur.data.jit import jit, radix_sort


def _add_one(x):
    return x + 1


def test_radix_sort_equals_numpy():
    rng = np.random.default_rng(0)
    for dtype, top in ((np.uint32, 2**32 - 1), (np.int64, 2**40), (np.uint32, 7)):
        keys = rng.integers(0, top, 10_000, dtype=np.int64).astype(dtype)
        assert np.array_equal(radix_sort(keys.copy(), np.empty_like(keys)), np.sort(keys))
    empty = np.zeros(0, np.uint32)
    assert len(radix_sort(empty, empty.copy())) == 0


def test_no_writable_cache_still_compiles(monkeypatch):
    import numba.core.caching as caching

    for locator in caching.FunctionCache._impl_class._locator_classes:
        monkeypatch.setattr(locator, "from_function", classmethod(lambda cls, fn, source: None))
    with pytest.raises(RuntimeError, match="cannot cache"):  # what numba itself does then
        numba.njit(cache=True)(_add_one)
    assert jit(_add_one)(np.arange(3)).tolist() == [1, 2, 3]


def test_kernels_load_without_scipy():
    """A fresh process runs a kernel without importing SciPy (numba records no BLAS), and SciPy still
    imports afterwards."""
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from murmur.data.jit import radix_sort\n"
            "k = np.array([3, 1, 2], np.uint32)\n"
            "assert radix_sort(k, np.empty_like(k)).tolist() == [1, 2, 3]\n"
            "assert 'scipy' not in sys.modules, 'scipy imported'\n"
            "import numba.np.arraymath as a\n"
            "assert not a._HAVE_BLAS\n"
            "import scipy.linalg\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
