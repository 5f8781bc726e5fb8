"""Checking and shaping what users hand to the drift exporter and the reference.

Every check raises ``ValueError`` saying what was expected and what came.

Example:
    >>> import numpy as np
    >>> as_inputs(np.zeros((2, 28, 28)), n_features=784).shape
    (2, 784)
    >>> as_probabilities(np.array([[2.0, 0.0]]), n_classes=2)[1]  # logits: softmax, 1 row normalised
    1
    >>> as_probabilities(np.array([0.2, 0.9]), threshold=0.5)[0]  # a sigmoid output: P(class 1) per row
    array([[0.8, 0.2],
           [0.1, 0.9]])
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit, softmax

from . import model_inputs
from .prediction_kernel import probability_check

SUM_TOLERANCE = 1e-3


def as_inputs(x, n_features: int | None = None) -> np.ndarray:
    """Inputs as a (rows, features) float32 array; images are flattened per row, several inputs
    (a dict or a list of arrays) put side by side (:func:`~gangplank._drift.model_inputs.flatten`)."""
    array = _numeric_array(model_inputs.flatten(x), "inputs")
    if array.ndim == 0:
        raise ValueError(f"inputs must have one row per sample, got a scalar {array!r}")
    if array.ndim == 1:
        if n_features is not None and array.size == n_features:
            array = array.reshape(1, -1)
        else:
            raise ValueError(f"inputs must be 2-D (rows, {n_features or 'features'}), got shape {array.shape}")
    array = array.reshape(array.shape[0], math.prod(array.shape[1:]))  # -1 fails on a batch of 0 rows
    if n_features is not None and array.shape[1] != n_features:
        raise ValueError(f"inputs must have {n_features} features per row, got {array.shape[1]} (shape {array.shape})")
    if array.dtype == np.float32:
        return np.ascontiguousarray(array)
    with np.errstate(over="ignore"):  # values beyond float32 become ±Inf: the outermost bins
        return np.ascontiguousarray(array, dtype=np.float32)


def as_probabilities(
    p, n_classes: int | None = None, normalise: bool = True, threshold: float | None = None
) -> tuple[np.ndarray, int]:
    """Probabilities as (rows, classes) float64 (a copy), and how many rows had to be normalised.

    NaN or ±Inf is rejected. With ``normalise`` (see :func:`normalised`) rows
    are made to sum to 1; without it they are only checked, for a caller that
    normalises later, off the request path.

    A binary classifier's single output (a (rows, 1) sigmoid column or a flat
    vector of P(class 1)) becomes two columns (see :func:`binary_columns`)
    when ``threshold`` is given, or when ``n_classes`` is not known yet (at
    fit time) and the output has one column.
    """
    array = _numeric_array(p, "probabilities")
    single = array.ndim == 2 and array.shape[1] == 1 or array.ndim < 2
    if single and (threshold is not None or n_classes is None and array.ndim != 0):
        return binary_columns(array, 0.5 if threshold is None else threshold)
    if array.ndim == 1:
        array = array.reshape(1, -1) if n_classes is not None and array.size == n_classes else array
    if array.ndim != 2:
        raise ValueError(f"probabilities must be 2-D (rows, {n_classes or 'classes'}), got shape {array.shape}")
    if n_classes is not None and array.shape[1] != n_classes:
        raise ValueError(
            f"probabilities must have {n_classes} classes per row, got {array.shape[1]} (shape {array.shape})"
        )
    if array.shape[1] < 2:
        raise ValueError(f"probabilities need at least 2 classes, got shape {array.shape}")
    array = np.array(array, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError("probabilities contain NaN or infinity; the batch was not recorded")
    return normalised(array) if normalise else (array, 0)


def is_single_output(p) -> bool:
    """Whether ``p`` is a binary classifier's single output: a flat vector or one column."""
    array = _numeric_array(p, "probabilities")
    return array.ndim == 1 or array.ndim == 2 and array.shape[1] == 1


def binary_columns(p: np.ndarray, threshold: float) -> tuple[np.ndarray, int]:
    """A binary classifier's P(class 1) per row as (rows, 2) probabilities; how many rows were logits.

    A batch with a value outside [0, 1] is logits, all of it, and goes
    through the sigmoid (a logit model's single rows near 0 are ambiguous:
    give it a sigmoid output, or ``keras.ops.sigmoid`` its logits). The
    probability is then rescaled piecewise linearly so that ``threshold``
    sits at 0.5: the predicted class (the larger column) is ``p >= threshold``
    everywhere downstream, and the confidence measures the distance from the
    threshold. With the default 0.5 the columns are ``1 - p`` and ``p``.
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold!r}")
    if p.ndim == 2 and p.shape[1] != 1 or p.ndim > 2:
        raise ValueError(f"a binary classifier's output must be (rows,) or (rows, 1), got shape {p.shape}")
    column = np.array(p, dtype=np.float64).reshape(-1)
    if not np.isfinite(column).all():
        raise ValueError("probabilities contain NaN or infinity; the batch was not recorded")
    logits = bool(((column < 0) | (column > 1)).any())
    if logits:
        column = expit(column)
    scaled = np.where(column < threshold, 0.5 * column / threshold, 0.5 + 0.5 * (column - threshold) / (1 - threshold))
    return np.stack([1.0 - scaled, scaled], axis=1), column.size if logits else 0


def normalised(array: np.ndarray) -> tuple[np.ndarray, int]:
    """Finite (rows, classes) float64 rows made to sum to 1, in place; how many rows changed.

    Rows with a negative value or a value above 1 are taken as logits and go
    through softmax; non-negative rows whose sum is off 1 by more than 1e-3
    are divided by their sum (an all-zero row becomes uniform).
    """
    check = probability_check()
    if check is not None and check(np.ascontiguousarray(array), SUM_TOLERANCE):
        return array, 0  # the common batch, a model's probabilities: one compiled pass
    with np.errstate(over="ignore"):  # huge logits: the sums may overflow, softmax still copes
        sums = array.sum(axis=1)
    if array.size and array.min() >= 0 and array.max() <= 1 and np.abs(sums - 1.0).max() <= SUM_TOLERANCE:
        return array, 0  # without numba: four passes instead of a dozen
    logits = (array < 0).any(axis=1) | (array > 1).any(axis=1)
    with np.errstate(over="ignore"):
        if logits.any():
            array[logits] = softmax(array[logits], axis=1)
    off = ~logits & (np.abs(sums - 1.0) > SUM_TOLERANCE)
    if off.any():
        rows = array[off]
        totals = rows.sum(axis=1, keepdims=True)
        array[off] = np.divide(rows, totals, out=np.full_like(rows, 1.0 / rows.shape[1]), where=totals > 0)
    return array, int(logits.sum() + off.sum())


def as_labels(y, n_classes: int, rows: int) -> np.ndarray:
    """Class labels as an int64 vector of ``rows`` values in ``[0, n_classes)``; one-hot rows are accepted."""
    array = _numeric_array(y, "labels")
    if array.ndim == 0 and rows == 1:  # one sample's label given as a plain number
        array = array.reshape(1)
    if array.ndim == 2 and array.shape == (rows, n_classes):
        array = array.argmax(axis=1)
    array = array.reshape(-1) if array.ndim == 2 and 1 in array.shape else array
    if array.ndim != 1 or array.shape[0] != rows:
        raise ValueError(f"labels must be {rows} class indices (one per row), got shape {array.shape}")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or (array != np.round(array)).any():
            raise ValueError("labels must be whole class indices; got non-integer values")
    labels = array.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must be in [0, {n_classes}), got values from {labels.min()} to {labels.max()}")
    return labels


def as_predicted_classes(
    predictions, n_classes: int, rows: int | None = None, threshold: float | None = None
) -> np.ndarray:
    """A model's predicted class per row, from probability (or logit) rows or from class indices.

    ``rows`` (when given) is how many rows there must be. With ``threshold``
    (a binary classifier's reference), float values that are not whole
    class indices are its P(class 1) output.
    """
    array = _numeric_array(predictions, "predictions")
    if threshold is not None and array.dtype.kind == "f" and (array.ndim < 2 or array.shape[1] == 1):
        if array.size and not np.all(np.isin(array, (0.0, 1.0))):
            p = binary_columns(array, threshold)[0]
            if rows is not None and p.shape[0] != rows:
                raise ValueError(f"predictions must have {rows} rows, got {p.shape[0]}")
            return p.argmax(axis=1)
    one_probability_row = array.ndim == 1 and array.dtype.kind == "f" and array.size == n_classes and rows in (1, None)
    if (array.ndim == 2 and array.shape[1] > 1) or one_probability_row and threshold is None:
        p = as_probabilities(array, n_classes, normalise=False)[0]
        if rows is not None and p.shape[0] != rows:
            raise ValueError(f"predictions must have {rows} rows, got {p.shape[0]}")
        return p.argmax(axis=1)
    return as_labels(array, n_classes, rows if rows is not None else (array.shape[0] if array.ndim else 1))


def _numeric_array(value, what: str) -> np.ndarray:
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy() if not hasattr(value, "detach") else value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what} must be a numeric array: {exc}") from None
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be numeric, got dtype {array.dtype}")
    return array
