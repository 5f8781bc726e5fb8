"""A compiled kernel for a closed window's PSI: one pass over its counts instead of about ten numpy calls.

:meth:`PsiAgainst.__call__ <gangplank._drift.drift_statistics.PsiAgainst.__call__>`
gathers a window's valid cells, sums them per feature, looks their smoothed
shares and logs up in the per-total tables, subtracts the reference's,
multiplies and sums per feature, and the comparison then scales the cuts
and counts the features over them: each a numpy call over the cells (15-20 us
each with the caches cold, as in the drift worker beside TensorFlow).
:func:`psi_and_over` does all of it in one compiled pass per histogram
(``nogil``), with the same per-cell arithmetic (the same tables; where a
feature's total is not the window's, the same division and smoothing), each
feature's terms summed in order where numpy sums them pairwise: its PSI is
within 1e-12 (relative) of the numpy path's. Where numba is missing or the
kernel does not compile it returns ``None`` and the caller takes the numpy
path.

Example:
    >>> import numpy as np
    >>> from gangplank._drift.drift_statistics import PsiAgainst, Shares, psi
    >>> reference, window = np.array([[50, 30, 20]]), np.array([[5, 0, 5]])
    >>> against = PsiAgainst.of(Shares.of(reference))
    >>> cells, values, over, confidence_psi = psi_and_over(against, window, 10, np.array([0.5]), 1.0,
    ...                                                   against, window[0], 10)
    >>> cells.tolist(), over, bool(np.isclose(values[0], psi(window, reference)[0], rtol=1e-12, atol=0))
    ([5, 0, 5], 1, True)
    >>> bool(np.isclose(confidence_psi, values[0], rtol=1e-12, atol=0))
    True
"""

from __future__ import annotations

import math

import numpy as np

from .compiled import lazy_kernel, warn_once
from .drift_statistics import PsiAgainst


def _psi_and_over(
    counts, index, starts, bins, offsets, p_table, log_table, total, factor, smoothing, q, log_q, cut, scale
):  # pragma: no cover - runs compiled
    """The gathered cells, each feature's PSI, and the number of features over ``cut * scale``.

    ``counts`` is the window's flat count matrix, ``index`` / ``starts`` /
    ``bins`` the layout, ``offsets`` / ``p_table`` / ``log_table`` the
    tables for windows whose features all total ``total``.
    """
    features = starts.size
    cells = np.empty(index.size, dtype=np.int64)
    psi = np.empty(features)
    over = 0
    for f in range(features):
        first, last = starts[f], starts[f] + bins[f]
        feature_total = 0
        for k in range(first, last):
            cells[k] = counts[index[k]]
            feature_total += cells[k]
        feature_total = max(feature_total, 1)  # no counts: shares 0, as the numpy path
        value = 0.0
        for k in range(first, last):
            if feature_total == total:
                i = cells[k] + offsets[k]
                value += (p_table[i] - q[k]) * (log_table[i] - log_q[k])
            else:
                p = (cells[k] / feature_total + smoothing) * factor[k]
                value += (p - q[k]) * (math.log(p) - log_q[k])
        psi[f] = value
        if value > cut[f] * scale:
            over += 1
    return cells, psi, over


def _warm(compiled) -> None:
    """Compile for what :func:`psi_and_over` hands over."""
    ints, floats = np.zeros(1, np.int64), np.zeros(1)
    compiled(ints, ints, ints, np.ones(1, np.int64), ints, floats, floats, 1, floats, 1e-4, floats, floats, floats, 1.0)


kernel = lazy_kernel(_psi_and_over, "PSI", _warm)


def psi_and_over(
    inputs: PsiAgainst,
    counts: np.ndarray,
    rows: int,
    cut: np.ndarray,
    scale: float,
    confidence: PsiAgainst,
    confidence_counts: np.ndarray,
    samples: int,
) -> tuple[np.ndarray, np.ndarray, int, float] | None:
    """A window's valid input cells, each feature's PSI against ``inputs``' reference, how many features
    have a PSI over ``cut * scale``, and the PSI of its confidence histogram against ``confidence``'s.

    ``counts`` is the window's (features, columns) int64 input counts, of
    ``rows`` binned rows; ``confidence_counts`` its int64 histogram of
    ``samples`` rows. ``None`` where the kernel is not available or the
    counts are not int64: use the numpy path. Each PSI is within 1e-12
    (relative) of the numpy path's: the same terms, summed in another order.
    """
    if counts.size != inputs.reference.layout.shape[0] * inputs.reference.layout.shape[1]:
        raise ValueError(f"expected counts of shape {inputs.reference.layout.shape}, got {counts.shape}")
    if counts.dtype != np.int64 or confidence_counts.dtype != np.int64:
        return None
    compiled = kernel()
    if compiled is None:
        return None
    try:
        cells, psi, over = compiled(*_arguments(inputs, counts, rows), cut, float(scale))
        no_cut = np.full(confidence.reference.layout.starts.size, np.inf)
        _, confidence_psi, _ = compiled(*_arguments(confidence, confidence_counts, samples), no_cut, 1.0)
    except Exception as error:
        warn_once(f"gangplank: the PSI kernel failed ({error!r}); PSI computed with numpy")
        return None
    return cells, psi, over, float(confidence_psi[0])


def _arguments(psi_against: PsiAgainst, counts: np.ndarray, total: int) -> tuple:
    """What the kernel reads of one layout: the counts, the layout, the tables for ``total``, the reference."""
    layout, q = psi_against.reference.layout, psi_against.reference
    total = max(total, 1)
    p_table, log_table, offsets = psi_against.tables_for(total)
    return (
        np.ascontiguousarray(counts).reshape(-1),
        layout.index,
        layout.starts,
        layout.bins,
        offsets,
        p_table,
        log_table,
        total,
        psi_against.factor,
        psi_against.smoothing,
        q.smoothed,
        q.log_smoothed,
    )
