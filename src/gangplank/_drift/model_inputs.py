"""A model's inputs as the drift monitor sees them: one array, a dict of named inputs or a list of inputs.

Keras models take one array, a dict of named arrays (a functional model with
named inputs) or a list of arrays. :func:`flatten` turns any of them into one
(rows, features) array: each input flattened per row, the inputs side by
side (a dict's in sorted name order, a list's in its order), so that the
features are named ``<input>/<index>`` (:func:`feature_names`).
:func:`rows_of` slices the same rows out of every input, for the Keras
callback.

Example:
    >>> import numpy as np
    >>> x = {"price": np.ones((2, 1)), "words": np.zeros((2, 3))}
    >>> flatten(x).shape, feature_names(x)[:2]
    ((2, 4), ['price/0', 'words/0'])
    >>> rows_of(x, 1, 2)["words"].shape
    (1, 3)
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np


def is_structured(inputs) -> bool:
    """Whether ``inputs`` are several inputs: a dict, or a list or tuple of arrays (as Keras takes them)."""
    if isinstance(inputs, Mapping):
        return True
    return isinstance(inputs, (list, tuple)) and bool(inputs) and all(hasattr(a, "shape") for a in inputs)


def named_inputs(inputs) -> list[tuple[str, object]]:
    """``(name, array)`` per input: a dict's keys sorted, a list's positions."""
    if isinstance(inputs, Mapping):
        return [(str(name), inputs[name]) for name in sorted(inputs, key=str)]
    return [(str(i), array) for i, array in enumerate(inputs)]


def flatten(inputs) -> np.ndarray:
    """Several inputs as one (rows, features) array (an array is returned as it came)."""
    if not is_structured(inputs):
        return inputs
    arrays = []
    rows = set()
    for name, value in named_inputs(inputs):
        array = to_numpy(value)
        if array.ndim == 0:
            raise ValueError(f"input {name!r} must have one row per sample, got a scalar")
        if array.dtype.kind not in "biuf":
            raise ValueError(f"input {name!r} must be numeric, got dtype {array.dtype}")
        rows.add(array.shape[0])
        arrays.append(array.reshape(array.shape[0], math.prod(array.shape[1:])).astype(np.float32, copy=False))
    if len(rows) != 1:
        raise ValueError(f"every input must have the same rows, got {sorted(rows)}")
    return np.concatenate(arrays, axis=1)


def feature_names(inputs) -> list[str]:
    """``<input>/<index>`` for every feature :func:`flatten` makes (``<index>`` alone for one array)."""
    if not is_structured(inputs):
        return [str(i) for i in range(math.prod(to_numpy(inputs).shape[1:]))]
    named = named_inputs(inputs)
    return [f"{name}/{i}" for name, array in named for i in range(math.prod(to_numpy(array).shape[1:]))]


def check_sliceable(inputs) -> None:
    """``TypeError`` unless rows can be sliced out of ``inputs`` (arrays, tensors, dicts or lists of them)."""
    parts = [array for _, array in named_inputs(inputs)] if is_structured(inputs) else [inputs]
    for part in parts:
        if not (hasattr(part, "shape") and hasattr(part, "__getitem__")) or not len(getattr(part, "shape", ())):
            raise TypeError(
                f"with_inputs needs inputs whose rows can be sliced (arrays or tensors, or a dict or list of them), "
                f"got {type(part).__name__}: a tf.data.Dataset or a generator cannot be sliced; observe such "
                f"input batch by batch with observe(x, model.predict_on_batch(x)) instead"
            )


def rows_of(inputs, start: int, stop: int):
    """Rows ``start:stop`` of every input, in the same structure."""
    if isinstance(inputs, Mapping):
        return {name: array[start:stop] for name, array in inputs.items()}
    if is_structured(inputs):
        return [array[start:stop] for array in inputs]
    return inputs[start:stop]


def to_numpy(value) -> np.ndarray:
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        return np.asarray(value.numpy() if not hasattr(value, "detach") else value.detach().cpu().numpy())
    return np.asarray(value)
