"""A regression model's output and targets: checked, binned, and what its errors in control look like.

A regression reference watches the model's prediction through its bins:
inner edges at the reference predictions' quantiles, so each bin holds about
the same share of reference rows. A prediction becomes a one-hot row over
those bins, and the bin plays the part a classifier's predicted class plays:
the ``prediction`` signal tests the bin counts (chi-square, cut calibrated on
the exact no-drift distribution of :mod:`gangplank._drift.count_null`).

Targets give errors (target − prediction): summed per window for MAE and
RMSE, and turned into outcomes for the sequential charts
(:mod:`gangplank._drift.accuracy_charts`, evidence ``error``): an outcome is a
success when the absolute error is at most the reference's 90th percentile
``q``, so in control about 90 % succeed, and a model whose errors grow fails
more often.

Example:
    >>> import numpy as np
    >>> predictions = as_values(np.arange(11.0).reshape(11, 1), "predictions")
    >>> edges = prediction_edges(predictions, bins=5)
    >>> edges.tolist(), one_hot(np.array([0.5, 10.0]), edges).argmax(axis=1).tolist()
    ([2.0, 4.0, 6.0, 8.0], [0, 4])
    >>> errors = ErrorProfile.of(np.array([0.0, 1.0, -1.0, 2.0, -4.0]))
    >>> errors.mae, round(errors.rmse, 3), errors.rows
    (1.6, 2.098, 5)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .validation import _numeric_array

TASKS = ("classification", "regression")
ERROR_QUANTILE = 0.90  # an error above the reference's 90th percentile counts as a failure on the charts


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    return task


def as_values(values, what: str, rows: int | None = None) -> np.ndarray:
    """One finite float per row, from (rows,) or (rows, 1); ``ValueError`` for several outputs, NaN or ±Inf."""
    array = _numeric_array(values, what)
    if array.ndim == 0 and rows in (1, None):
        array = array.reshape(1)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            f"a regression model's {what} must be one value per row, (rows,) or (rows, 1), got shape {array.shape}; "
            "monitor each output of a multi-output model with its own reference"
        )
    if rows is not None and array.shape[0] != rows:
        raise ValueError(f"{what} must have {rows} rows, got {array.shape[0]}")
    array = np.array(array, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contain NaN or infinity; the batch was not recorded")
    return array


def prediction_edges(predictions: np.ndarray, bins: int) -> np.ndarray:
    """Inner edges at the ``1/bins, 2/bins, …`` quantiles of the reference predictions (ties merged)."""
    if bins < 2:
        raise ValueError(f"a regression reference needs at least 2 prediction bins, got {bins}")
    edges = np.unique(np.quantile(predictions, np.arange(1, bins) / bins))
    edges = edges[edges > predictions.min()]  # a bin below the smallest prediction would stay empty
    if not edges.size:
        raise ValueError("the reference predictions are all equal: there is no distribution to watch")
    return edges


def one_hot(predictions: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Each prediction's bin as a one-hot (rows, edges + 1) row: its "predicted class"."""
    bins = np.searchsorted(edges, predictions, side="right")
    rows = np.zeros((predictions.size, edges.size + 1))
    rows[np.arange(predictions.size), bins] = 1.0
    return rows


@dataclass(frozen=True)
class ErrorProfile:
    """The reference's errors: MAE, RMSE, the chart's cut ``quantile`` and the share of rows within it."""

    mae: float
    rmse: float
    quantile: float  # |error| above this is a failure on the charts
    within: float  # share of reference rows with |error| <= quantile (about 0.90)
    rows: int

    @classmethod
    def of(cls, errors: np.ndarray) -> ErrorProfile:
        absolute = np.abs(errors)
        quantile = float(np.quantile(absolute, ERROR_QUANTILE))
        return cls(
            mae=float(absolute.mean()),
            rmse=float(np.sqrt(np.mean(np.square(errors)))),
            quantile=quantile,
            within=float(np.mean(absolute <= quantile)),
            rows=int(errors.size),
        )

    @classmethod
    def none(cls) -> ErrorProfile:
        """No targets at fit time: no error charts, NaN reference figures."""
        nan = float("nan")
        return cls(nan, nan, nan, nan, 0)

    def within_cut(self, errors: np.ndarray) -> np.ndarray:
        """The charts' outcomes: True where the absolute error is at most the reference's cut."""
        return np.abs(errors) <= self.quantile

    def as_header(self) -> dict:
        return {"mae": self.mae, "rmse": self.rmse, "quantile": self.quantile, "within": self.within, "rows": self.rows}

    @classmethod
    def from_header(cls, header: dict | None) -> ErrorProfile:
        if not header:
            return cls.none()
        mae, rmse, quantile, within = (float(header[key]) for key in ("mae", "rmse", "quantile", "within"))
        return cls(mae, rmse, quantile, within, int(header["rows"]))
