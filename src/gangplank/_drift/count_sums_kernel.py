"""A compiled kernel for the two small sums of a closed window: one call instead of about twelve numpy calls.

:func:`~gangplank._drift.drift_statistics.chi_square_p_value` sums the
class counts and the chi-square terms, and
:meth:`Profile.estimated_accuracy <gangplank._drift.profile.Profile.estimated_accuracy>`
sums the confidence counts and the map's error terms: each a handful of
numpy calls on ten-odd values (15-20 us each with the caches cold).
:func:`count_sums` computes the four in one compiled call (``nogil``), each
term with the same operations as numpy, summed in order (numpy sums pairwise:
within 1e-12 relative). ``None`` where numba is missing or the kernel does
not compile: the callers take their numpy paths.

Example:
    >>> import numpy as np
    >>> sums = count_sums(np.array([30, 10]), np.array([0.5, 0.5]), np.array([3, 1]), np.ones(2), np.zeros(2),
    ...                   np.ones(2, np.int64))
    >>> sums[0], sums[1], sums[2], sums[3]
    (40.0, 10.0, 4, 0.0)
"""

from __future__ import annotations

import numpy as np

from .compiled import lazy_kernel, warn_once


def _count_sums(class_counts, class_shares, confidence_counts, accuracy, one_minus_a, labelled):  # pragma: no cover
    """(class rows, chi-square statistic, confidence rows, the map's error); a statistic is 0 without rows."""
    n = 0.0
    for count in class_counts:
        n += count
    statistic = 0.0
    if n > 0:
        for i in range(class_counts.size):
            expected = class_shares[i] * n
            difference = class_counts[i] - expected
            statistic += difference * difference / expected
    rows = 0
    for count in confidence_counts:
        rows += count
    error = 0.0
    if rows > 0:
        for i in range(confidence_counts.size):
            weight = confidence_counts[i] / rows
            error += weight * weight * accuracy[i] * one_minus_a[i] / labelled[i]
    return n, statistic, rows, error


def _warm(compiled) -> None:
    """Compile for what :func:`count_sums` hands over: int64 counts, float64 shares, int64 labelled rows."""
    ints, floats = np.ones(1, np.int64), np.ones(1)
    compiled(ints, floats, ints, floats, floats, ints)


kernel = lazy_kernel(_count_sums, "count sums", _warm)


def count_sums(
    class_counts: np.ndarray,
    class_shares: np.ndarray,
    confidence_counts: np.ndarray,
    accuracy: np.ndarray,
    one_minus_a: np.ndarray,
    labelled: np.ndarray,
) -> tuple[float, float, int, float] | None:
    """The class rows and their chi-square statistic against ``class_shares`` (as
    :func:`~gangplank._drift.drift_statistics.chi_square_p_value`), and the confidence rows and the
    label-free estimate's map error (as :meth:`~gangplank._drift.profile.Profile.estimated_accuracy`).

    A statistic is 0 where its counts are empty. ``None``: use the numpy paths.
    """
    compiled = kernel()
    if compiled is None:
        return None
    try:
        class_rows, statistic, confidence_rows, map_error = compiled(
            class_counts, class_shares, confidence_counts, accuracy, one_minus_a, labelled
        )
    except Exception as error:
        warn_once(f"gangplank: the count sums kernel failed ({error!r}); summed with numpy")
        return None
    return float(class_rows), float(statistic), int(confidence_rows), float(map_error)
