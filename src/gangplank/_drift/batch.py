"""A validated batch of a classifier's traffic: what every drift window is built from.

:meth:`Batch.of` checks and shapes what a caller hands over (inputs,
probabilities, labels, scoring ids) and raises ``ValueError`` before anything
is recorded; the arrays it keeps are the batch's own copies, so the caller may
reuse its buffers at once. Binning and counting happen later, in
:meth:`gangplank._drift.window.Window.add`.

Example:
    >>> import numpy as np
    >>> batch = Batch.of(np.zeros((2, 3)), np.array([[0.9, 0.1], [0.3, 0.7]]), n_features=3, n_classes=2)
    >>> batch.rows, batch.inputs.dtype.name, batch[1:].rows
    (2, 'float32', 1)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .regression import as_values, one_hot
from .validation import as_inputs, as_labels, as_predicted_classes, as_probabilities, normalised

_OPTIONAL = ("inputs", "labels", "shadow", "predictions", "targets")  # joined batches all have each, or none


@dataclass(frozen=True)
class Batch:
    """Rows of probabilities, and optionally their inputs, true labels, scoring ids and a shadow model's output."""

    probabilities: np.ndarray  # (rows, classes) float64, rows sum to 1
    inputs: np.ndarray | None = None  # (rows, features) float32
    labels: np.ndarray | None = None  # (rows,) int64
    ids: Sequence | None = None  # one scoring id per row
    normalised: int = 0  # rows that were logits or off 1 and were normalised

    normalised_rows: bool = True  # False: checked only; call normalise() before counting
    shadow: np.ndarray | None = None  # (rows,) int64: the class a second, independent model predicts
    # A regression model's rows: its prediction (probabilities then one-hot over the prediction bins) and targets.
    predictions: np.ndarray | None = None  # (rows,) float64
    targets: np.ndarray | None = None  # (rows,) float64

    @classmethod
    def of(
        cls,
        inputs,
        probabilities,
        labels=None,
        ids=None,
        *,
        shadow=None,
        n_features=None,
        n_classes=None,
        normalise: bool = True,
        threshold: float | None = None,
    ) -> Batch:
        """Validate one call's arguments (see :mod:`gangplank._drift.validation`).

        ``shadow`` is a second model's output for the same rows (probabilities,
        logits or predicted classes); only its predicted class is kept.
        ``normalise=False`` leaves making the rows sum to 1 to :meth:`normalise`
        (the drift worker does it, off the caller's thread). ``threshold``: the
        probabilities are a binary classifier's single output (see
        :func:`~gangplank._drift.validation.binary_columns`).
        """
        p, changed = as_probabilities(probabilities, n_classes, normalise, threshold)
        rows = p.shape[0]
        x = None if inputs is None else _own_inputs(inputs, n_features, rows, "probabilities")
        y = None if labels is None else as_labels(labels, p.shape[1], rows)
        s = None if shadow is None else as_predicted_classes(shadow, p.shape[1], rows, threshold)
        return cls(p, x, y, as_ids(ids, rows), changed, normalise, s)

    @classmethod
    def of_regression(cls, inputs, predictions, targets=None, ids=None, *, edges, n_features=None) -> Batch:
        """Validate a regression model's rows: one prediction (and target) per row, binned at ``edges``
        (see :mod:`gangplank._drift.regression`)."""
        values = as_values(predictions, "predictions")
        rows = values.shape[0]
        x = None if inputs is None else _own_inputs(inputs, n_features, rows, "predictions")
        y = None if targets is None else as_values(targets, "targets", rows)
        return cls(one_hot(values, edges), x, None, as_ids(ids, rows), predictions=values, targets=y)

    def normalise(self) -> Batch:
        """This batch with rows summing to 1 (the same batch if they already do)."""
        if self.normalised_rows:
            return self
        p, changed = normalised(self.probabilities)
        return dataclasses.replace(self, probabilities=p, normalised=self.normalised + changed, normalised_rows=True)

    @staticmethod
    def joined(batches: Sequence[Batch]) -> Batch:
        """One batch of several consecutive ones that all have inputs, or all have none (ids dropped)."""
        if len(batches) == 1:
            return batches[0]

        def stack(arrays):
            return None if arrays[0] is None else np.concatenate(arrays)

        if not all(batches[0].joins(b) for b in batches[1:]):
            raise ValueError("joined batches must all have inputs, labels, shadow predictions and targets, or none")
        return Batch(
            np.concatenate([b.probabilities for b in batches]),
            stack([b.inputs for b in batches]),
            stack([b.labels for b in batches]),
            None,
            sum(b.normalised for b in batches),
            all(b.normalised_rows for b in batches),
            stack([b.shadow for b in batches]),
            stack([b.predictions for b in batches]),
            stack([b.targets for b in batches]),
        )

    def joins(self, other: Batch) -> bool:
        """Whether :meth:`joined` can put ``other`` after this batch."""
        return all((getattr(self, a) is None) == (getattr(other, a) is None) for a in _OPTIONAL)

    @property
    def errors(self) -> np.ndarray | None:
        """A regression model's errors, target − prediction, for a batch with targets (else ``None``)."""
        if self.targets is None or self.predictions is None:
            return None
        return self.targets - self.predictions

    @property
    def rows(self) -> int:
        return self.probabilities.shape[0]

    def __getitem__(self, rows: slice) -> Batch:
        return Batch(
            self.probabilities[rows],
            None if self.inputs is None else self.inputs[rows],
            None if self.labels is None else self.labels[rows],
            None if self.ids is None else self.ids[rows],
            0,
            self.normalised_rows,
            None if self.shadow is None else self.shadow[rows],
            None if self.predictions is None else self.predictions[rows],
            None if self.targets is None else self.targets[rows],
        )


def as_ids(ids, rows: int) -> list | None:
    """Scoring ids as a list of ``rows`` hashable values (str or int), or ``None``."""
    if ids is None:
        return None
    if isinstance(ids, (str, bytes, int)):
        ids = [ids]
    ids = np.asarray(ids, dtype=object).reshape(-1).tolist() if isinstance(ids, np.ndarray) else list(ids)
    if len(ids) != rows:
        raise ValueError(f"ids must give one scoring id per row: {rows} rows, {len(ids)} ids")
    for value in ids:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError(f"scoring ids must be strings or integers, got {type(value).__name__} {value!r}")
    return ids


def _own_inputs(inputs, n_features: int | None, rows: int, outputs: str) -> np.ndarray:
    """The inputs as validated (rows, features), in an array of their own: the caller's buffer may be
    reused once ``observe`` returns."""
    x = as_inputs(inputs, n_features)
    if x.shape[0] != rows:
        raise ValueError(f"inputs and {outputs} must have the same rows, got {x.shape[0]} and {rows}")
    return x.copy() if x.base is not None or x is inputs else x
