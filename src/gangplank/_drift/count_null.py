"""The exact no-drift distribution of statistics that read only bin counts (confidence bins, predicted classes).

A window of ``n`` rows from the reference distribution has multinomial bin
counts; the reference's own shares are known only from its counts. Both are
simulated exactly: true shares from a Dirichlet on the reference counts
(+ ½, Jeffreys), window counts from a multinomial of ``n`` rows on them. The
``1 − α`` quantile of a statistic over enough draws is its threshold at a
per-window false-alarm rate α — for rare classes and near-empty bins too,
where a chi-square or moment-matched approximation leaks.

Example:
    >>> import numpy as np
    >>> from scipy import stats
    >>> counts = np.array([500, 300, 200])
    >>> draws = np.concatenate(list(simulate_counts(counts, window_size=100, draws=200_000, seed=0)))
    >>> cut = upper_quantile(chi_square_statistic(draws, counts / counts.sum()), 0.01)
    >>> bool(abs(stats.chi2.sf(cut, df=2) - 0.01) < 0.004)  # many rows a bin: the chi-square holds
    True
"""

from __future__ import annotations

import math

import numpy as np

from .drift_statistics import SMOOTHING

CHUNK = 200_000  # draws simulated at once: bounds memory by CHUNK × bins
TAIL_DRAWS = 20  # draws beyond the quantile the default number of draws leaves in the tail
MAX_DRAWS = 4_000_000


def draws_for(alpha: float) -> int:
    """Draws whose empirical ``1 − alpha`` quantile rests on :data:`TAIL_DRAWS` draws beyond it (capped)."""
    return int(min(MAX_DRAWS, max(1_000, math.ceil(TAIL_DRAWS / alpha))))


def simulate_counts(reference_counts: np.ndarray, window_size: int, draws: int, seed: int = 0):
    """Yield chunks of simulated no-drift window counts, (rows, bins) int64, ``draws`` rows in all."""
    rng = np.random.default_rng(seed)
    alpha = np.asarray(reference_counts, dtype=np.float64) + 0.5
    left = int(draws)
    while left > 0:
        size = min(CHUNK, left)
        left -= size
        shares = rng.dirichlet(alpha, size=size)
        yield _multinomial(rng, window_size, shares)


def _multinomial(rng: np.random.Generator, n: int, shares: np.ndarray) -> np.ndarray:
    """One multinomial draw of ``n`` per row of ``shares``, by conditional binomials (one vectorised call a bin)."""
    counts = np.zeros(shares.shape, dtype=np.int64)
    remaining = np.full(shares.shape[0], n, dtype=np.int64)
    rest = np.ones(shares.shape[0])
    for j in range(shares.shape[1] - 1):
        p = np.clip(np.divide(shares[:, j], rest, out=np.zeros_like(rest), where=rest > 0), 0.0, 1.0)
        counts[:, j] = rng.binomial(remaining, p)
        remaining -= counts[:, j]
        rest -= shares[:, j]
    counts[:, -1] = remaining
    return counts


def psi_statistic(counts, reference_counts: np.ndarray) -> np.ndarray:
    """PSI of each row of window counts against the reference counts, smoothed as :mod:`drift_statistics` does."""
    return _psi_rows(np.atleast_2d(counts), np.asarray(reference_counts, dtype=np.float64))


def _psi_rows(counts: np.ndarray, reference_counts: np.ndarray) -> np.ndarray:
    bins = counts.shape[1]
    scale = 1.0 / (1 + bins * SMOOTHING)
    q = (reference_counts / max(reference_counts.sum(), 1) + SMOOTHING) * scale
    totals = np.maximum(counts.sum(axis=1, keepdims=True), 1)
    p = (counts / totals + SMOOTHING) * scale
    return np.sum((p - q) * (np.log(p) - np.log(q)), axis=1)


def chi_square_statistic(counts, expected_shares: np.ndarray) -> np.ndarray:
    """Pearson's chi-square of each row of counts against ``expected_shares`` × the row's total."""
    counts = np.atleast_2d(counts).astype(np.float64)
    expected = counts.sum(axis=1, keepdims=True) * np.asarray(expected_shares, dtype=np.float64)
    return np.sum((counts - expected) ** 2 / expected, axis=1)


def upper_quantile(values: np.ndarray, alpha: float) -> float:
    """The value exceeded by a share ``alpha`` of ``values`` at most (the empirical ``1 − alpha`` quantile)."""
    values = np.sort(np.asarray(values, dtype=np.float64))
    beyond = int(math.floor(alpha * values.size))  # draws allowed strictly above the cut
    return float(values[values.size - 1 - beyond]) if beyond < values.size else float(values[0])


def null_quantiles(reference_counts: np.ndarray, window_size: int, alpha: float, statistics: dict, seed: int = 0):
    """``{name: 1 − alpha quantile}`` of each ``statistics[name](counts)`` over :func:`draws_for` draws."""
    values: dict[str, list] = {name: [] for name in statistics}
    for chunk in simulate_counts(reference_counts, window_size, draws_for(alpha), seed):
        for name, statistic in statistics.items():
            values[name].append(statistic(chunk))
    return {name: upper_quantile(np.concatenate(parts), alpha) for name, parts in values.items()}
