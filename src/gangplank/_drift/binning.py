"""Per-feature binning that costs a few array passes per batch, whatever the bins.

Each feature's reference range is cut into ``grid`` equal cells. Coarse bins
are unions of cells: ``width_bins`` equal-width bins over the range, merged
with ``quantile_bins`` reference-quantile bins (equal-width bins keep
zero-inflated features such as MNIST pixels informative where quantile edges
collapse; quantile bins resolve where the mass is). A lookup table maps every
(feature, cell) to a bin, so counting a batch is: shift, scale, clip, cast,
look up, one ``bincount`` — no loop over features or samples.

Values outside the reference range fall into the outermost bins; NaN goes to
a separate *missing* bin (the last column), which the reference never fills.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> binner = FeatureBinner.fit(rng.normal(size=(1000, 3)))
    >>> binner.count(rng.normal(size=(10, 3))).sum(axis=1).tolist()
    [10, 10, 10]
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

DEFAULT_GRID = 256
CHUNK_ROWS = 4096  # rows binned at once: bounds the temporary cell arrays of a large batch
CHUNK_VALUES = 1 << 22  # ... and at most this many values (fewer rows of wide inputs)


def chunk_rows(n_features: int) -> int:
    """Rows binned at once for ``n_features`` features (4,096 up to 1,024 features, fewer for wider rows)."""
    return max(1, min(CHUNK_ROWS, CHUNK_VALUES // max(n_features, 1)))


@dataclass(frozen=True)
class FeatureBinner:
    """Maps values of ``d`` features to per-feature bins; see the module docstring."""

    low: np.ndarray  # (d,) float32: start of each feature's grid
    scale: np.ndarray  # (d,) float32: grid cells per unit
    lookup: np.ndarray  # (d, grid) uint8: bin of each cell
    n_bins: np.ndarray  # (d,) int: bins in use per feature (the missing bin not included)
    n_columns: int  # columns of a count matrix: most bins any feature may have, + missing

    @property
    def n_features(self) -> int:
        return self.low.shape[0]

    @property
    def grid(self) -> int:
        return self.lookup.shape[1]

    @property
    def missing_column(self) -> int:
        return self.n_columns - 1

    @classmethod
    def fit(
        cls, x: np.ndarray, width_bins: int = 10, quantile_bins: int = 10, grid: int = DEFAULT_GRID
    ) -> FeatureBinner:
        """Choose bins from reference data ``x`` of shape (samples, features)."""
        if not (1 <= width_bins <= grid and 1 <= quantile_bins <= grid):
            raise ValueError(f"width_bins and quantile_bins must be between 1 and grid={grid}")
        if width_bins + quantile_bins > 255:
            raise ValueError("width_bins + quantile_bins must be at most 255")
        x = np.asarray(x, dtype=np.float32)
        low, high = _finite_range(x)
        empty = np.isnan(low)
        low[empty], high[empty] = 0.0, 0.0
        constant = high <= low
        # A constant feature gets a unit range centred on its value, so any change shows.
        low = np.where(constant, low - 0.5, low).astype(np.float32)
        high = np.where(constant, low + 1.0, high).astype(np.float32)
        scale = (grid / (high - low)).astype(np.float32)
        n_features = x.shape[1]

        boundary = np.zeros((n_features, grid), dtype=bool)
        boundary[:, (np.arange(1, width_bins) * grid) // width_bins] = True
        cell_counts = _cell_counts(x, low, scale, grid)
        cumulative = np.cumsum(cell_counts, axis=1)
        total = cumulative[:, -1:].astype(np.float64)
        for q in np.arange(1, quantile_bins) / quantile_bins:
            first_cell_past_q = (cumulative < q * total).sum(axis=1)  # cell holding the q-quantile
            edge = first_cell_past_q + 1
            inside = edge < grid
            boundary[np.nonzero(inside)[0], edge[inside]] = True
        boundary[:, 0] = False
        lookup = np.cumsum(boundary, axis=1).astype(np.uint8)
        n_bins = lookup[:, -1].astype(np.int64) + 1
        return cls(low, scale, lookup, n_bins, width_bins + quantile_bins)

    def cells(self, x: np.ndarray, finite: bool = False) -> np.ndarray:
        """Grid cell of every value, (samples, features) int32; NaN gets ``grid`` (missing).

        ``finite=True`` says that ``x`` holds no NaN and no ±Inf (the caller knows it from its sum): one pass less.
        """
        with np.errstate(over="ignore", invalid="ignore"):  # ±Inf and NaN are handled below
            t = np.subtract(x, self.low, dtype=np.float32)
            t *= self.scale
        np.clip(t, 0, self.grid - 1, out=t)
        if finite:
            return t.astype(np.int32)
        nan = np.isnan(t)
        has_nan = nan.any()
        if has_nan:
            t[nan] = 0
        cells = t.astype(np.int32)
        if has_nan:
            cells[nan] = self.grid
        return cells

    def count(self, x: np.ndarray, finite: bool = False) -> np.ndarray:
        """Bin counts of a batch: (features, n_columns) int64, the missing bin last (``finite``: see :meth:`cells`)."""
        cells = self.cells(x, finite)
        cells += self._cell_offsets  # our own array: offset in place
        return self._count_offset_cells(cells)

    def count_cells(self, cells: np.ndarray) -> np.ndarray:
        """Bin counts of a batch given its grid :meth:`cells`."""
        return self._count_offset_cells(cells + self._cell_offsets)

    def _count_offset_cells(self, offset_cells: np.ndarray) -> np.ndarray:
        ids = np.take(self._global_table, offset_cells)
        counts = np.bincount(ids.ravel(), minlength=self.n_features * self.n_columns)
        return counts.reshape(self.n_features, self.n_columns)

    @functools.cached_property
    def kernel_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``low``, ``scale`` (float32) and ``lookup`` (uint8) as writable C arrays: the types the compiled
        kernel (:mod:`gangplank._drift.binning_kernel`) is compiled for, whatever a reference file loaded."""
        low = np.array(self.low, dtype=np.float32, order="C")
        scale = np.array(self.scale, dtype=np.float32, order="C")
        return low, scale, np.array(self.lookup, dtype=np.uint8, order="C")

    @functools.cached_property
    def _cell_offsets(self) -> np.ndarray:
        return np.arange(self.n_features, dtype=np.int32) * (self.grid + 1)

    @property
    def _global_table(self) -> np.ndarray:
        """Flat table: (feature, cell incl. missing) → feature * n_columns + bin.

        uint16 where every id fits (up to 3,276 features of 20 bins): half the
        bytes of int32, and the table is read from cold caches once per batch.
        """
        cached = self.__dict__.get("_table")
        if cached is None:
            d = self.n_features
            local = np.empty((d, self.grid + 1), dtype=np.int32)
            local[:, : self.grid] = self.lookup
            local[:, self.grid] = self.missing_column
            cached = (local + (np.arange(d, dtype=np.int32) * self.n_columns)[:, None]).ravel()
            if d * self.n_columns <= np.iinfo(np.uint16).max + 1:
                cached = cached.astype(np.uint16)
            object.__setattr__(self, "_table", cached)
        return cached

    def valid_columns(self) -> np.ndarray:
        """(features, n_columns) bool: the bins each feature really has, plus missing."""
        columns = np.arange(self.n_columns)
        valid = columns[None, :] < self.n_bins[:, None]
        valid[:, self.missing_column] = True
        return valid


def _finite_range(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each feature's smallest and largest finite value (NaN for a feature without any), in row chunks."""
    low = np.full(x.shape[1], np.nan, dtype=np.float32)
    high = low.copy()
    step = chunk_rows(x.shape[1])
    for start in range(0, x.shape[0], step):  # an all-NaN column warns (RuntimeWarning) and stays NaN
        chunk = x[start : start + step]
        finite = np.where(np.isfinite(chunk), chunk, np.nan)
        low = np.fmin(low, np.nanmin(finite, axis=0))
        high = np.fmax(high, np.nanmax(finite, axis=0))
    return low, high


def _cell_counts(x: np.ndarray, low: np.ndarray, scale: np.ndarray, grid: int) -> np.ndarray:
    """(features, grid) counts of finite values per grid cell, in row chunks to bound memory."""
    n_features = x.shape[1]
    counts = np.zeros(n_features * grid, dtype=np.int64)
    offsets = np.arange(n_features, dtype=np.int64) * grid
    step = chunk_rows(n_features)
    for start in range(0, x.shape[0], step):
        chunk = x[start : start + step]
        t = (chunk - low) * scale
        finite = np.isfinite(t)
        np.clip(t, 0, grid - 1, out=t, where=finite)
        cells = t.astype(np.int64, copy=False) if finite.all() else np.where(finite, t, 0).astype(np.int64)
        ids = (cells + offsets)[finite]
        counts += np.bincount(ids, minlength=n_features * grid)
    return counts.reshape(n_features, grid)
