"""A compiled kernel for a closed window's PSI: one pass over its counts instead of about ten numpy calls.

:meth:`PsiAgainst.__call__ <gangplank._drift.drift_statistics.PsiAgainst.__call__>`
gathers a window's valid cells, sums them per feature, looks their smoothed
shares and logs up in the per-total tables, subtracts the reference's,
multiplies and sums per feature, and the comparison then scales the cuts
and counts the features over them: each a numpy call over the cells (15-20 us
each with the caches cold, as in the drift worker beside TensorFlow).
:func:`psi_and_over` does all of it in one compiled pass (``nogil``), with
the same per-cell arithmetic (the same tables; where a feature's total is
not the window's, the same division and smoothing, and a log that may differ
from numpy's in the last bit) and each feature's cells summed in the order
``np.add.reduceat`` sums them (numpy's pairwise summation), so its PSI
equals the numpy path's (to the last bit where the tables apply) and so do
the decisions. Where numba is missing or the kernel does not compile it
returns ``None`` and the caller takes the numpy path.

Example:
    >>> import numpy as np
    >>> from gangplank._drift.drift_statistics import PsiAgainst, Shares, psi
    >>> reference, window = np.array([[50, 30, 20]]), np.array([[5, 0, 5]])
    >>> against = PsiAgainst.of(Shares.of(reference))
    >>> cells, values, over, confidence_psi = psi_and_over(against, window, 10, np.array([0.5]), 1.0,
    ...                                                   against, window[0], 10)
    >>> cells.tolist(), bool(values[0] == psi(window, reference)[0]), over, bool(confidence_psi == values[0])
    ([5, 0, 5], True, 1, True)
"""

from __future__ import annotations

import math

import numpy as np

from .compiled import lazy_kernel, warn_once
from .drift_statistics import PsiAgainst

PAIRWISE_BLOCK = 128  # numpy's PW_BLOCKSIZE: sums up to this long are summed in 8 lanes, then in order


def _psi_and_over(
    counts,
    index,
    starts,
    bins,
    offsets,
    p_table,
    log_table,
    total,
    factor,
    smoothing,
    q,
    log_q,
    cut,
    scale,
    counts_2,
    index_2,
    starts_2,
    bins_2,
    offsets_2,
    p_table_2,
    log_table_2,
    total_2,
    factor_2,
    smoothing_2,
    q_2,
    log_q_2,
):  # pragma: no cover - runs compiled
    """Each feature's PSI and the number of features over ``cut * scale``, the gathered cells too, for the
    first layout (a window's inputs), and the PSI of the second (its confidence histogram, no cut).

    ``counts`` is the window's flat count matrix, ``index`` / ``starts`` /
    ``bins`` the layout, ``offsets`` / ``p_table`` / ``log_table`` the
    tables for windows whose features all total ``total``.
    """

    def one(counts, index, starts, bins, offsets, p_table, log_table, total, factor, smoothing, q, log_q, cut, scale):
        features = starts.size
        cells = np.empty(index.size, dtype=np.int64)
        psi = np.empty(features)
        terms = np.empty(max(bins.max(), 1))
        over = 0
        for f in range(features):
            first = starts[f]
            n = bins[f]
            if n - 1 > PAIRWISE_BLOCK:  # numpy would split the sum in halves: leave such layouts to numpy
                return cells, psi, -1
            feature_total = 0
            for k in range(first, first + n):
                c = counts[index[k]]
                cells[k] = c
                feature_total += c
            feature_total = max(feature_total, 1)  # no counts: shares 0, as the numpy path
            if feature_total == total:
                for k in range(first, first + n):
                    i = cells[k] + offsets[k]
                    terms[k - first] = (p_table[i] - q[k]) * (log_table[i] - log_q[k])
            else:
                for k in range(first, first + n):
                    p = (cells[k] / feature_total + smoothing) * factor[k]
                    terms[k - first] = (p - q[k]) * (math.log(p) - log_q[k])
            # np.add.reduceat: the first cell plus the others summed as numpy's DOUBLE_pairwise_sum (up to 128)
            m = n - 1
            rest = 0.0
            if m < 8:
                for i in range(1, n):
                    rest += terms[i]
            else:
                r0, r1, r2, r3 = terms[1], terms[2], terms[3], terms[4]
                r4, r5, r6, r7 = terms[5], terms[6], terms[7], terms[8]
                i = 8
                while i < m - (m % 8):
                    r0 += terms[1 + i]
                    r1 += terms[2 + i]
                    r2 += terms[3 + i]
                    r3 += terms[4 + i]
                    r4 += terms[5 + i]
                    r5 += terms[6 + i]
                    r6 += terms[7 + i]
                    r7 += terms[8 + i]
                    i += 8
                rest = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
                for j in range(i, m):
                    rest += terms[1 + j]
            value = terms[0] + rest
            psi[f] = value
            if value > cut[f] * scale:
                over += 1
        return cells, psi, over

    cells, psi, over = one(
        counts, index, starts, bins, offsets, p_table, log_table, total, factor, smoothing, q, log_q, cut, scale
    )
    no_cut = np.full(starts_2.size, np.inf)
    _, psi_2, over_2 = one(
        counts_2,
        index_2,
        starts_2,
        bins_2,
        offsets_2,
        p_table_2,
        log_table_2,
        total_2,
        factor_2,
        smoothing_2,
        q_2,
        log_q_2,
        no_cut,
        1.0,
    )
    return cells, psi, over if over_2 >= 0 else -1, psi_2


def _warm(compiled) -> None:
    """Compile for what :func:`psi_and_over` hands over."""
    ints, floats = np.zeros(1, np.int64), np.zeros(1)
    layout = (ints, ints, ints, np.ones(1, np.int64), ints, floats, floats, 1, floats, 1e-4, floats, floats)
    compiled(*layout, floats, 1.0, *layout)


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
    counts are not int64: use the numpy path.
    """
    if counts.size != inputs.reference.layout.shape[0] * inputs.reference.layout.shape[1]:
        raise ValueError(f"expected counts of shape {inputs.reference.layout.shape}, got {counts.shape}")
    if counts.dtype != np.int64 or confidence_counts.dtype != np.int64:
        return None
    compiled = kernel()
    if compiled is None:
        return None
    try:
        cells, psi, over, confidence_psi = compiled(
            *_arguments(inputs, counts, rows), cut, float(scale), *_arguments(confidence, confidence_counts, samples)
        )
    except Exception as error:
        warn_once(f"gangplank: the PSI kernel failed ({error!r}); PSI computed with numpy")
        return None
    return None if over < 0 else (cells, psi, over, float(confidence_psi[0]))


def _arguments(psi_against: PsiAgainst, counts: np.ndarray, total: int) -> tuple:
    """What the kernel reads of one layout: the counts, the layout, the tables for ``total``, the reference."""
    layout, q = psi_against.reference.layout, psi_against.reference
    total = max(total, 1)
    p_table, log_table, offsets = psi_against._tables_for(total)
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
