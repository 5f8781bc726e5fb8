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

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

SMOOTHING = 1e-4


@dataclass(frozen=True)
class Shares:
    """Bin shares of count matrices, in the three forms the statistics use.

    Made once per window, and once per reference (which never changes).
    """

    raw: np.ndarray  # counts / total, 0 outside ``valid``
    smoothed: np.ndarray  # (raw + ε) / (1 + B·ε) inside ``valid``, for PSI
    cumulative: np.ndarray  # running sum of ``raw`` along the bins, for KS

    @classmethod
    def of(cls, counts: np.ndarray, valid: np.ndarray | None = None, smoothing: float = SMOOTHING) -> "Shares":
        counts = np.asarray(counts, dtype=np.float64)
        if valid is None:
            valid = np.ones(counts.shape, dtype=bool)
        counts = np.where(valid, counts, 0.0)
        totals = counts.sum(axis=-1, keepdims=True)
        raw = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        bins = valid.sum(axis=-1, keepdims=True)
        smoothed = np.where(valid, (raw + smoothing) / (1 + bins * smoothing), 0.0)
        return cls(raw, smoothed, np.cumsum(raw, axis=-1))


def psi_of(p: Shares, q: Shares) -> np.ndarray:
    p, q = p.smoothed, q.smoothed
    ratio = np.divide(p, q, out=np.ones_like(p), where=(p > 0) & (q > 0))
    return np.sum((p - q) * np.log(ratio), axis=-1)


def js_distance_of(p: Shares, q: Shares) -> np.ndarray:
    p, q = p.raw, q.raw
    m = 0.5 * (p + q)
    divergence = 0.5 * (special.rel_entr(p, m).sum(axis=-1) + special.rel_entr(q, m).sum(axis=-1)) / np.log(2)
    return np.sqrt(np.clip(divergence, 0.0, 1.0))


def binned_ks_of(p: Shares, q: Shares) -> np.ndarray:
    return np.abs(p.cumulative - q.cumulative).max(axis=-1)


def psi(window: np.ndarray, reference: np.ndarray, valid: np.ndarray | None = None, smoothing: float = SMOOTHING) -> np.ndarray:
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
    statistic = np.sum((observed - expected) ** 2 / expected)
    return float(stats.chi2.sf(statistic, observed.size - 1))


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
