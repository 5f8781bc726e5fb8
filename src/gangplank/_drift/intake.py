"""The request path's fast check: the common batch (numeric arrays of the right shapes).

With ``worker="process"`` a request costs what this check and one copy into
the shared ring cost. :func:`plain_rows` accepts only what
:meth:`~gangplank._drift.batch.Batch.of` surely accepts in the same way (a
numeric ``(rows, …)`` input array of the reference's features, float
``(rows, classes)`` probabilities), and returns views of the caller's arrays,
not copies. Anything else (lists, one row given as 1-D, tensors, labels or a
shadow model) returns ``None``: the caller then takes the full path, which
raises ``ValueError`` on bad input with the usual message. Whether the
probabilities are finite is checked on their copy in the ring, before it
counts (:meth:`~gangplank._drift.ring.SampleRing.write`), or here by
:func:`all_finite` when the ring has no room.

Example:
    >>> import numpy as np
    >>> x, p = plain_rows(np.zeros((2, 28, 28), np.uint8), np.full((2, 2), 0.5), n_features=784, n_classes=2)
    >>> x.shape, p.shape
    ((2, 784), (2, 2))
    >>> all_finite(p), all_finite(np.array([[np.nan, 1.0]]))
    (True, False)
"""

from __future__ import annotations

import math

import numpy as np

# Up to this many probabilities the finite check is a Python sum of their list: right after a model ran,
# numpy's code is cold and one ufunc call costs 15 us, the sum of 10 values 3 us (of 320 values 10 us).
LIST_CHECK_VALUES = 512


def plain_rows(inputs, probabilities, *, n_features: int, n_classes: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(inputs as (rows, n_features), probabilities)`` as views, if the batch is the plain kind; else ``None``."""
    if type(inputs) is not np.ndarray or type(probabilities) is not np.ndarray:
        return None
    if probabilities.ndim != 2 or probabilities.shape[1] != n_classes or probabilities.dtype.kind != "f":
        return None
    rows = probabilities.shape[0]
    if inputs.ndim < 2 or inputs.shape[0] != rows or inputs.dtype.kind not in "fiu" or not rows:
        return None
    if inputs.size != rows * n_features:
        return None
    if inputs.ndim == 2:  # (rows, n_features) already: the size check above says so
        return inputs, probabilities
    return inputs.reshape(rows, n_features), probabilities


def all_finite(values: np.ndarray) -> bool:
    """Whether every value is finite (``False`` also for finite float64 values whose sum overflows: the full path
    then takes the batch)."""
    if values.size <= LIST_CHECK_VALUES:
        return math.isfinite(sum(values.ravel().tolist()))  # NaN and ±Inf carry through a sum
    return bool(np.isfinite(values).all())
