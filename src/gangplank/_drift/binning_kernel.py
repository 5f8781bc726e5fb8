"""A compiled kernel that bins a batch of inputs and sums it in one pass.

:meth:`FeatureBinner.count <gangplank._drift.binning.FeatureBinner.count>`
and the two float64 sums of a window take about nine numpy passes over a
batch; :func:`count_and_sum` does the same work in one loop compiled by
numba, with the same cell rule: ``(x - low) * scale`` in float32, clipped to
``[0, grid - 1]`` and truncated; NaN counts in the missing column. The kernel
releases the GIL (``nogil``), so a request thread is not held up while a
worker thread bins. numba is imported at the first binned window, not with
gangplank; where it is missing or the kernel does not compile,
:func:`count_and_sum` logs one warning and returns ``None``, and the caller
takes the numpy path.

Example:
    >>> import numpy as np
    >>> from gangplank._drift.binning import FeatureBinner
    >>> binner = FeatureBinner.fit(np.arange(100.0).reshape(50, 2))
    >>> counts = np.zeros((2, binner.n_columns), dtype=np.int64)
    >>> count_and_sum(binner, np.array([[1.0, np.nan], [2.0, 3.0]], dtype=np.float32), counts)
    (6.0, 14.0, 3, 1)
    >>> counts.sum(axis=1).tolist(), int(counts[1, binner.missing_column])
    ([2, 2], 1)
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable

import numpy as np

from .binning import FeatureBinner

logger = logging.getLogger("gangplank")

_lock = threading.Lock()
_kernel: Callable | None = None
_loaded = False  # numba was tried: _kernel is the compiled kernel, or None


ROWS_AT_ONCE = 32  # rows whose cells are computed (vectorised) before they are counted (feature by feature)


def _bin_and_sum(x, low, scale, lookup, counts):  # pragma: no cover - runs compiled
    """Add each value's bin to ``counts``; return (sum, sum of squares, finite values, non-finite values)."""
    rows, features = x.shape
    grid = lookup.shape[1]
    top = np.float32(grid - 1)
    zero = np.float32(0)
    missing = counts.shape[1] - 1
    cells = np.empty((min(rows, ROWS_AT_ONCE), features), dtype=np.int16)
    for first in range(0, rows, ROWS_AT_ONCE):
        n = min(ROWS_AT_ONCE, rows - first)
        for i in range(n):  # row by row: the compiler vectorises this loop
            for j in range(features):
                t = (np.float32(x[first + i, j]) - low[j]) * scale[j]  # in float32, as FeatureBinner.cells
                cells[i, j] = grid if t != t else int(min(max(t, zero), top))  # NaN: grid, the missing cell
        for j in range(features):  # feature by feature: its lookup row and its counts stay in the L1 cache
            for i in range(n):
                cell = cells[i, j]
                counts[j, missing if cell == grid else lookup[j, cell]] += 1
    total, squares = _sums(x)
    if math.isfinite(total) and math.isfinite(squares):  # no NaN, no ±Inf among the values
        return total, squares, rows * features, 0
    return _finite_sums(x)


def _sums(x):  # pragma: no cover - runs compiled
    """Sum and sum of squares in float64, in any order (the compiler vectorises it)."""
    total = 0.0
    squares = 0.0
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            value = np.float64(x[i, j])
            total += value
            squares += value * value
    return total, squares


def _finite_sums(x):  # pragma: no cover - runs compiled
    """Sum and sum of squares of the finite values, their number and the number of others."""
    total = 0.0
    squares = 0.0
    nonfinite = 0
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            value = np.float64(x[i, j])
            if math.isfinite(value):
                total += value
                squares += value * value
            else:
                nonfinite += 1
    return total, squares, x.size - nonfinite, nonfinite


def kernel() -> Callable | None:
    """The compiled kernel (compiled, or loaded from numba's cache, for float32 rows on first call), or None."""
    global _kernel, _loaded
    if _loaded:
        return _kernel
    with _lock:
        if not _loaded:
            _kernel = _compile()
            _loaded = True
    return _kernel


def _compile() -> Callable | None:
    try:
        import numba
    except ImportError as error:
        logger.warning("gangplank: numba is not available (%s); drift inputs are binned with numpy, slower", error)
        return None
    try:
        try:
            compiled = _jit(numba, cache=True)
        except RuntimeError:  # no writable cache directory: compile in memory, in every process
            compiled = _jit(numba, cache=False)
        _warm(compiled)
    except Exception as error:  # never let monitoring fail over its accelerator
        logger.warning("gangplank: the binning kernel did not compile (%r); drift inputs are binned with numpy", error)
        return None
    return compiled


def _jit(numba, cache: bool) -> Callable:
    """The kernel and its helpers compiled by numba; sums in any order (``reassoc``), the rest exact."""
    global _sums, _finite_sums
    options = {"nogil": True, "cache": cache}
    # The kernel calls its helpers by their global names: bind the compiled ones (py_func: already compiled).
    _sums = numba.njit(fastmath={"reassoc"}, **options)(getattr(_sums, "py_func", _sums))
    _finite_sums = numba.njit(**options)(getattr(_finite_sums, "py_func", _finite_sums))
    return numba.njit(**options)(_bin_and_sum)


def _warm(compiled: Callable) -> None:
    """Compile for the layouts a window sees: float32 rows, contiguous or every n-th row."""
    binner = FeatureBinner.fit(np.zeros((2, 1), dtype=np.float32))
    counts = np.zeros((1, binner.n_columns), dtype=np.int64)
    x = np.zeros((4, 1), dtype=np.float32)
    for rows in (x, x[::2]):
        compiled(rows, *binner.kernel_tables, counts)


def count_and_sum(binner: FeatureBinner, x: np.ndarray, counts: np.ndarray) -> tuple[float, float, int, int] | None:
    """Add ``x``'s bin counts to ``counts`` ((features, n_columns) int64, in place) and return the sum and
    sum of squares (float64) of its finite values, their number and the number of NaN/±Inf values.

    ``None`` (and ``counts`` untouched) where the kernel is not available: use the numpy path.
    """
    if x.ndim != 2 or x.shape[1] != binner.n_features:
        raise ValueError(f"expected (rows, {binner.n_features}) inputs, got shape {x.shape}")
    if counts.shape != (binner.n_features, binner.n_columns) or counts.dtype != np.int64:
        raise ValueError(f"counts must be ({binner.n_features}, {binner.n_columns}) int64, got {counts.dtype}")
    if x.dtype.kind not in "biuf":
        raise ValueError(f"inputs must be numeric, got dtype {x.dtype}")
    compiled = kernel()
    if compiled is None:
        return None
    if x.dtype == np.bool_:
        x = x.view(np.uint8)
    low, scale, lookup = binner.kernel_tables
    try:  # another dtype or layout than float32 rows compiles here (typing happens before any count is added)
        total, squares, finite, nonfinite = compiled(x, low, scale, lookup, counts)
    except Exception as error:
        _warn_once(f"gangplank: the binning kernel failed on {x.dtype} inputs ({error!r}); binned with numpy")
        return None
    return float(total), float(squares), int(finite), int(nonfinite)


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)
