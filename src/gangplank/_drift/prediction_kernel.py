"""A compiled kernel for a window's prediction totals: one pass over the probabilities instead of eight numpy calls.

For each row of a (rows, classes) batch of probabilities it finds the
predicted class (the first largest, as ``argmax``), the confidence (that
largest value) and its bin among the window's confidence edges (as
``searchsorted(..., side="right")``), the row's Shannon entropy in nats
(as ``scipy.special.entr``), and adds them to the window's counts and sums.

:data:`compiled_kernel` gives the compiled kernel, or ``None`` where numba
is not available (:class:`~gangplank._drift.window.Window` then uses numpy).
:data:`probability_check` does the same for the check that rows already are
probabilities (:func:`~gangplank._drift.validation.normalised`'s common case).

Example:
    >>> import numpy as np
    >>> class_counts, confidence_counts = np.zeros(2, np.int64), np.zeros(2, np.int64)
    >>> predicted, bins = np.empty(2, np.intp), np.empty(2, np.intp)
    >>> sum_predictions = compiled_kernel() or _sum_predictions
    >>> totals = sum_predictions(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0.85]), class_counts,
    ...                          confidence_counts, predicted, bins)
    >>> predicted.tolist(), class_counts.tolist(), confidence_counts.tolist(), round(totals[0], 6)
    ([0, 1], [1, 1], [1, 1], 1.7)
"""

from __future__ import annotations

import math

import numpy as np

from .compiled import lazy_kernel


def _sum_predictions(p, edges, class_counts, confidence_counts, predicted, bins):  # pragma: no cover - compiled
    """Fill ``predicted`` and ``bins``, add to the two counts; return (sum of confidences, sum of entropies)."""
    rows, classes = p.shape
    confidence_total = 0.0
    entropy_total = 0.0
    for i in range(rows):
        best = 0
        top = p[i, 0]
        entropy = 0.0
        for k in range(classes):
            value = p[i, k]
            if value > top:
                top = value
                best = k
            if value > 0:
                entropy -= value * math.log(value)
        cell = np.searchsorted(edges, top, side="right")
        predicted[i] = best
        bins[i] = cell
        class_counts[best] += 1
        confidence_counts[cell] += 1
        confidence_total += top
        entropy_total += entropy
    return confidence_total, entropy_total


def _warm(kernel) -> None:
    edges = np.array([0.5])
    counts = np.zeros(2, np.int64)
    out = np.empty(1, np.intp)
    for dtype in (np.float64, np.float32):
        kernel(np.full((1, 2), 0.5, dtype), edges, counts, counts.copy(), out, out.copy())


compiled_kernel = lazy_kernel(_sum_predictions, "prediction totals", warm=_warm)


def _are_probabilities(p, tolerance):  # pragma: no cover - compiled
    """Whether every value is in [0, 1] and every row sums to 1 within ``tolerance`` (stops at the first miss)."""
    rows, classes = p.shape
    for i in range(rows):
        total = 0.0
        for k in range(classes):
            value = p[i, k]
            if not 0 <= value <= 1:
                return False
            total += value
        if abs(total - 1.0) > tolerance:
            return False
    return True


def _warm_check(kernel) -> None:
    for dtype in (np.float64, np.float32):
        kernel(np.full((1, 2), 0.5, dtype), 1e-3)


probability_check = lazy_kernel(_are_probabilities, "probability check", warm=_warm_check)
