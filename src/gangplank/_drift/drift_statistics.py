"""Drift statistics on binned counts, vectorised over features. Pure numpy/scipy.

Every function takes count matrices of shape (features, bins) — the window's
and the reference's — and returns one value per feature. Bins a feature does
not have are masked out with ``valid``.

* PSI (population stability index) smooths the shares so empty bins stay
  finite, the same way on both sides so identical shares give exactly 0:
  ``p = (share + ε) / (1 + B·ε)``, ``q`` likewise, ``PSI = Σ (p − q) ln(p / q)``
  with ``ε = 1e-4`` (Evidently's floor) and ``B`` the feature's bin count.
* Jensen–Shannon *distance* (base 2, in [0, 1]) on the raw shares, as
  ``scipy.spatial.distance.jensenshannon`` computes it.
* The binned Kolmogorov–Smirnov statistic: the largest gap between the two
  cumulative shares, equal to ``scipy.stats.ks_2samp`` on the bin indices.

Example:
    >>> import numpy as np
    >>> window, reference = np.array([[5, 5]]), np.array([[50, 50]])
    >>> psi(window, reference).tolist(), js_distance(window, reference).tolist()
    ([0.0], [0.0])
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from scipy import special, stats

SMOOTHING = 1e-4
MAX_TABLES = 8  # per PsiAgainst: how many window totals' share tables it keeps


@dataclass(frozen=True)
class CellLayout:
    """Where the valid cells of a (features, bins) count matrix are, flattened feature by feature.

    The statistics run on those cells only, one array pass each, with
    per-feature sums by ``np.add.reduceat``; made once per reference.
    """

    shape: tuple[int, int]
    index: np.ndarray  # flat positions of the valid cells
    starts: np.ndarray  # first cell of each feature
    feature: np.ndarray  # the feature of each cell
    bins: np.ndarray  # valid cells per feature

    @classmethod
    def of(cls, valid: np.ndarray) -> CellLayout:
        valid = np.atleast_2d(np.asarray(valid, dtype=bool))
        bins = valid.sum(axis=1)
        if np.any(bins == 0):
            raise ValueError("every feature needs at least one valid bin")
        return cls(
            valid.shape,
            np.flatnonzero(valid),
            np.concatenate([[0], np.cumsum(bins)[:-1]]),
            np.repeat(np.arange(valid.shape[0]), bins),
            bins,
        )

    @classmethod
    def full(cls, shape: tuple[int, int]) -> CellLayout:
        return cls.of(np.ones(shape, dtype=bool))

    def cells(self, counts: np.ndarray) -> np.ndarray:
        """The valid cells of a count matrix of this layout's shape, flat (their dtype kept)."""
        return np.asarray(counts).reshape(-1)[self.index]

    def shares(self, counts: np.ndarray, smoothing: float = SMOOTHING) -> Shares:
        """The shares of a count matrix of this layout's shape (or a 1-D histogram for one feature)."""
        return self.shares_of_cells(self.cells(counts), smoothing)

    def shares_of_cells(self, cells: np.ndarray, smoothing: float = SMOOTHING) -> Shares:
        """The shares of a count matrix given its :meth:`cells`."""
        cells = np.asarray(cells, dtype=np.float64)
        totals = np.add.reduceat(cells, self.starts)
        per_cell = totals[self.feature]
        raw = np.divide(
            cells, per_cell, out=np.zeros_like(cells), where=per_cell > 0
        )  # a division: scaled counts, same shares
        smoothed = (raw + smoothing) * (1.0 / (1 + self.bins * smoothing))[self.feature]
        return Shares(self, raw, smoothed, np.log(smoothed))


@dataclass(frozen=True)
class Shares:
    """Bin shares of one count matrix on a :class:`CellLayout`, in the forms the statistics use."""

    layout: CellLayout
    raw: np.ndarray  # counts / feature total
    smoothed: np.ndarray  # (raw + ε) / (1 + B·ε), for PSI
    log_smoothed: np.ndarray

    @functools.cached_property
    def cumulative(self) -> np.ndarray:
        """Running sum of ``raw`` within each feature, for KS."""
        cumulative = np.cumsum(self.raw)
        cumulative -= np.concatenate([[0.0], cumulative[self.layout.starts[1:] - 1]])[self.layout.feature]
        return cumulative

    @classmethod
    def of(cls, counts: np.ndarray, valid: np.ndarray | None = None, smoothing: float = SMOOTHING) -> Shares:
        counts = np.atleast_2d(np.asarray(counts))
        layout = CellLayout.full(counts.shape) if valid is None else CellLayout.of(valid)
        return layout.shares(counts, smoothing)


@dataclass(frozen=True)
class PsiAgainst:
    """PSI of windows against fixed reference shares, with what depends on the reference alone computed once.

    The same arithmetic as ``psi_of(layout.shares(window), reference)``, in
    the same order (equal to the last bit), without the window's
    :class:`Shares` (built only if something else asks for them) and
    without recomputing each cell's smoothing factor per window.

    When every feature has the same total ``T`` (binned rows fill one cell
    per feature: the usual case), a cell's smoothed share and its log depend
    only on its count (0 … ``T``) and its feature's bin count, so both come
    from a small table made once per ``T`` (the same operations on the same
    values: equal to the last bit) instead of a division and a log per cell.

    Example:
        >>> import numpy as np
        >>> reference, window = np.array([[50, 30, 20]]), np.array([[5, 0, 5]])
        >>> psi_against = PsiAgainst.of(Shares.of(reference))
        >>> bool(psi_against(psi_against.reference.layout.cells(window)) == psi(window, reference))
        True
    """

    reference: Shares
    smoothing: float
    factor: np.ndarray  # per cell: 1 / (1 + B·ε) of its feature
    group: np.ndarray  # per cell: which of ``group_factor`` its feature has (features with equal B share one)
    group_factor: np.ndarray  # 1 / (1 + B·ε) of each distinct bin count B
    _tables: dict = field(default_factory=dict, repr=False, compare=False)  # T -> (p table, log p table, offsets)

    @classmethod
    def of(cls, reference: Shares, smoothing: float = SMOOTHING) -> PsiAgainst:
        layout = reference.layout
        bins, feature_group = np.unique(layout.bins, return_inverse=True)
        group_factor = 1.0 / (1 + bins * smoothing)
        group = feature_group.reshape(-1)[layout.feature]
        return cls(reference, smoothing, group_factor[group], group, group_factor)

    def __call__(self, cells: np.ndarray) -> np.ndarray:
        """PSI of each feature of a window given its :meth:`CellLayout.cells` (non-negative counts)."""
        layout, q = self.reference.layout, self.reference
        totals = np.maximum(np.add.reduceat(cells, layout.starts), 1)  # no counts: shares 0, as in shares()
        total = int(totals[0])
        if totals.min() == totals.max() and cells.dtype.kind in "iu":
            p_table, log_table, offsets = self.tables_for(total)
            index = cells + offsets
            p, log_p = p_table.take(index), log_table.take(index)
        else:
            p = np.divide(cells, totals[layout.feature], dtype=np.float64)
            p += self.smoothing
            p *= self.factor
            log_p = np.log(p)
        p -= q.smoothed
        log_p -= q.log_smoothed
        p *= log_p
        return np.add.reduceat(p, layout.starts)

    def tables_for(self, total: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Smoothed shares and their logs of counts 0 … ``total`` for each bin count, flat, and each cell's row."""
        tables = self._tables.get(total)
        if tables is None:
            p = np.divide(np.arange(total + 1), total, dtype=np.float64)  # the cells' arithmetic, in the same order
            p += self.smoothing
            p = p * self.group_factor[:, None]
            tables = (p.reshape(-1), np.log(p).reshape(-1), self.group * (total + 1))
            if len(self._tables) >= MAX_TABLES:  # windows of many sizes: start over (one atomic step)
                self._tables.clear()
            self._tables[total] = tables
        return tables


def psi_of(p: Shares, q: Shares) -> np.ndarray:
    return np.add.reduceat((p.smoothed - q.smoothed) * (p.log_smoothed - q.log_smoothed), p.layout.starts)


def js_distance_of(p: Shares, q: Shares) -> np.ndarray:
    m = 0.5 * (p.raw + q.raw)
    divergence = np.add.reduceat(_relative_entropy(p.raw, m) + _relative_entropy(q.raw, m), p.layout.starts)
    return np.sqrt(np.clip(0.5 * divergence / np.log(2), 0.0, 1.0))


def _relative_entropy(p: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``scipy.special.rel_entr(p, m)`` for m ≥ p/2 ≥ 0 (so m > 0 wherever p > 0), in plain numpy: faster."""
    ratio = np.divide(p, m, out=np.ones_like(p), where=p > 0)
    return p * np.log(ratio)


def binned_ks_of(p: Shares, q: Shares) -> np.ndarray:
    return np.maximum.reduceat(np.abs(p.cumulative - q.cumulative), p.layout.starts)


def psi(
    window: np.ndarray, reference: np.ndarray, valid: np.ndarray | None = None, smoothing: float = SMOOTHING
) -> np.ndarray:
    """Population stability index per feature (0 for identical shares)."""
    return psi_of(Shares.of(window, valid, smoothing), Shares.of(reference, valid, smoothing))


def js_distance(window: np.ndarray, reference: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Jensen–Shannon distance per feature, base 2 (0 identical, 1 disjoint)."""
    return js_distance_of(Shares.of(window, valid), Shares.of(reference, valid))


def binned_ks(window: np.ndarray, reference: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Largest gap between the cumulative shares of the bins, per feature."""
    return binned_ks_of(Shares.of(window, valid), Shares.of(reference, valid))


def chi_square_p_value(observed: np.ndarray, expected_shares: np.ndarray) -> float:
    """p-value of Pearson's chi-square goodness of fit of ``observed`` counts to shares.

    Matches ``scipy.stats.chisquare(observed, expected_shares * observed.sum())``.
    Returns NaN for an empty window.
    """
    observed = np.asarray(observed, dtype=np.float64)
    n = observed.sum()
    if n <= 0:
        return float("nan")
    expected = np.asarray(expected_shares, dtype=np.float64) * n
    return chi_square_p_of(np.sum((observed - expected) ** 2 / expected), n, observed.size)


def chi_square_p_of(statistic: float, n: float, classes: int) -> float:
    """p-value of a chi-square ``statistic`` of ``n`` rows in ``classes`` classes (NaN without rows)."""
    if n <= 0:
        return float("nan")
    return float(special.chdtrc(classes - 1, statistic))  # = stats.chi2.sf, without its overhead


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy of each row, in nats."""
    return special.entr(probabilities).sum(axis=-1)


def moment_matched_threshold(samples: np.ndarray, false_alarm_rate: float, floor: float = 0.0) -> float:
    """Upper ``1 − false_alarm_rate`` quantile of a scaled chi-square matched to ``samples``.

    Drift scores under no drift are positive and right-skewed; matching the
    first two moments with ``g·χ²_h`` (Satterthwaite) extrapolates the tail
    from a few hundred simulated windows more steadily than an empirical
    quantile could.
    """
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    mean, var = samples.mean(), samples.var(ddof=1)
    if mean <= 0 or var <= 0:
        return max(float(samples.max(initial=0.0)), floor)
    g, h = var / (2 * mean), 2 * mean**2 / var
    return max(float(g * stats.chi2.isf(false_alarm_rate, h)), floor)
