"""A compiled kernel for the two small sums of a closed window: one call instead of about twelve numpy calls.

:func:`~gangplank._drift.drift_statistics.chi_square_p_value` sums the
class counts and the chi-square terms, and
:meth:`Profile.estimated_accuracy <gangplank._drift.profile.Profile.estimated_accuracy>`
sums the confidence counts and the map's error terms: each a handful of
numpy calls on ten-odd values (15-20 us each with the caches cold).
:func:`count_sums` computes the four in one compiled call (``nogil``), each
term with the same operations in the same order as numpy and each sum as
``np.sum`` adds them (numpy's pairwise summation), so they are equal to the
last bit. ``None`` where numba is missing or the kernel does not compile:
the callers take their numpy paths.

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

PAIRWISE_BLOCK = 128  # numpy's PW_BLOCKSIZE: sums up to this long are summed in 8 lanes, then in order


def _count_sums(class_counts, class_shares, confidence_counts, accuracy, one_minus_a, labelled):  # pragma: no cover
    """(class rows, chi-square statistic, confidence rows, the map's error); -1 rows: too long for this kernel."""
    terms = np.empty(max(class_counts.size, confidence_counts.size, 8))
    results = np.zeros(4)
    for part in range(2):
        counts = class_counts if part == 0 else confidence_counts
        size = counts.size
        if size > PAIRWISE_BLOCK:
            results[2 * part] = -1.0
            continue
        for _ in range(2):  # first the total (np.sum of the counts as float64), then the terms (np.sum of them)
            if _ == 0:
                for i in range(size):
                    terms[i] = np.float64(counts[i])
            elif part == 0:
                n = results[0]
                for i in range(size):
                    expected = class_shares[i] * n
                    difference = np.float64(class_counts[i]) - expected
                    terms[i] = difference * difference / expected
            else:
                n = results[2]
                for i in range(size):
                    weight = confidence_counts[i] / n
                    terms[i] = weight * weight * accuracy[i] * one_minus_a[i] / labelled[i]
            if size < 8:
                total = 0.0
                for i in range(size):
                    total += terms[i]
            else:
                r0, r1, r2, r3 = terms[0], terms[1], terms[2], terms[3]
                r4, r5, r6, r7 = terms[4], terms[5], terms[6], terms[7]
                i = 8
                while i < size - (size % 8):
                    r0 += terms[i]
                    r1 += terms[i + 1]
                    r2 += terms[i + 2]
                    r3 += terms[i + 3]
                    r4 += terms[i + 4]
                    r5 += terms[i + 5]
                    r6 += terms[i + 6]
                    r7 += terms[i + 7]
                    i += 8
                total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
                for j in range(i, size):
                    total += terms[j]
            results[2 * part + _] = 0.0 + total
            if results[2 * part] <= 0:  # no rows: no terms
                break
    return results[0], results[1], results[2], results[3]


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
    if class_rows < 0 or confidence_rows < 0:
        return None
    return float(class_rows), float(statistic), int(confidence_rows), float(map_error)
