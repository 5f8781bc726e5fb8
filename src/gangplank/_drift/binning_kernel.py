"""A compiled kernel that bins a batch of inputs and sums it in one pass.

:meth:`FeatureBinner.count <gangplank._drift.binning.FeatureBinner.count>`
and the two float64 sums of a window take about nine numpy passes over a
batch; :func:`count_and_sum` does the same work in one pass compiled by
numba (32 rows at a time: their cells and sums, vectorised, then their
counts feature by feature), with the same cell rule: ``(x - low) * scale``
in float32, clipped to ``[0, grid - 1]`` and truncated; NaN counts in the
missing column. The kernel releases the GIL, so a request thread is not held
up while a worker thread bins. It is compiled at the first window with
inputs (:func:`~gangplank._drift.compiled.lazy_kernel`); where numba is
missing or the kernel does not compile, :func:`count_and_sum` returns
``None`` and the caller takes the numpy path.

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

import math

import numpy as np

from .binning import FeatureBinner
from .compiled import lazy_kernel, warn_once

ROWS_AT_ONCE = 32  # rows whose cells are computed (vectorised) before they are counted (feature by feature)


def _bin_and_sum(x, low, scale, lookup, counts):  # pragma: no cover - runs compiled
    """Add each value's bin to ``counts``; return (sum, sum of squares, finite values, non-finite values)."""
    rows, features = x.shape
    grid = lookup.shape[1]
    top = np.float32(grid - 1)
    zero = np.float32(0)
    missing = counts.shape[1] - 1
    cells = np.empty((min(rows, ROWS_AT_ONCE), features), dtype=np.int16)
    sums = np.zeros(features)  # per feature: adding to an array, not to one number, lets the loop vectorise
    squares = np.zeros(features)
    for first in range(0, rows, ROWS_AT_ONCE):
        n = min(ROWS_AT_ONCE, rows - first)
        for i in range(n):  # row by row, vectorised
            for j in range(features):
                value = x[first + i, j]
                wide = np.float64(value)
                sums[j] += wide
                squares[j] += wide * wide
                t = (np.float32(value) - low[j]) * scale[j]  # in float32, as FeatureBinner.cells
                cells[i, j] = grid if t != t else int(min(max(t, zero), top))  # NaN: grid, the missing cell
        for j in range(features):  # feature by feature: its lookup row and its counts stay in the L1 cache
            for i in range(n):
                cell = cells[i, j]
                counts[j, missing if cell == grid else lookup[j, cell]] += 1
    total = 0.0
    total_squares = 0.0
    for j in range(features):
        total += sums[j]
        total_squares += squares[j]
    if math.isfinite(total) and math.isfinite(total_squares):  # no NaN, no ±Inf among the values
        return total, total_squares, rows * features, 0
    total = 0.0
    total_squares = 0.0
    nonfinite = 0
    for i in range(rows):
        for j in range(features):
            wide = np.float64(x[i, j])
            if math.isfinite(wide):
                total += wide
                total_squares += wide * wide
            else:
                nonfinite += 1
    return total, total_squares, rows * features - nonfinite, nonfinite


def _warm(compiled) -> None:
    """Compile for what a window hands over: float32 rows in a C array."""
    binner = FeatureBinner.fit(np.zeros((2, 1), dtype=np.float32))
    compiled(np.zeros((4, 1), dtype=np.float32), *binner.kernel_tables, np.zeros((1, binner.n_columns), np.int64))


kernel = lazy_kernel(_bin_and_sum, "input binning", _warm)


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
    # Every n-th row (a window's input_stride): copied, the compiled loop over a row vectorises only where
    # the values are contiguous (a copy of 50 MNIST rows costs a tenth of what it saves).
    x = np.ascontiguousarray(x)
    try:  # another dtype or layout than float32 rows compiles here (typing happens before any count is added)
        total, squares, finite, nonfinite = compiled(x, *binner.kernel_tables, counts)
    except Exception as error:
        warn_once(f"gangplank: the binning kernel failed on {x.dtype} inputs ({error!r}); binned with numpy")
        return None
    return float(total), float(squares), int(finite), int(nonfinite)
