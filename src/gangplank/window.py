"""The running totals of one drift window: bounded by features × bins, never by samples.

A :class:`Window` adds batches (already validated) into counts: input bin
counts per feature, input sum and sum of squares, predicted-class counts, a
confidence histogram, entropy, and with labels the correct counts per class.
Nothing per sample is kept.

Example:
    >>> import numpy as np
    >>> window = Window(n_features=0, n_columns=1, n_classes=2, confidence_bins=1)
    >>> window.add_predictions(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 0]))
    >>> window.samples, window.class_counts.tolist()
    (2, [1, 1])
"""

from __future__ import annotations

import time

import numpy as np

from .drift_statistics import entropy


class Window:
    """Running totals of one window; :meth:`reset` starts the next one."""

    def __init__(self, n_features: int, n_columns: int, n_classes: int, confidence_bins: int):
        self.shape = (n_features, n_columns, n_classes, confidence_bins)
        self.reset()

    def reset(self) -> None:
        n_features, n_columns, n_classes, confidence_bins = self.shape
        self.started = time.time()
        self.samples = 0
        self.input_rows = 0
        self.input_counts = np.zeros((n_features, n_columns), dtype=np.int64)
        self.input_sum = 0.0
        self.input_sum_squares = 0.0
        self.input_finite_values = 0
        self.input_nonfinite_values = 0
        self.class_counts = np.zeros(n_classes, dtype=np.int64)
        self.confidence_counts = np.zeros(confidence_bins, dtype=np.int64)
        self.confidence_sum = 0.0
        self.entropy_sum = 0.0
        self.labelled = 0
        self.label_counts = np.zeros(n_classes, dtype=np.int64)
        self.correct_by_class = np.zeros(n_classes, dtype=np.int64)

    def add_inputs(self, counts: np.ndarray, x: np.ndarray) -> None:
        """Add a batch's bin ``counts`` and its summary; ``x`` is (rows, features) float32."""
        self.input_counts += counts
        self.input_rows += x.shape[0]
        with np.errstate(invalid="ignore", over="ignore"):
            total = float(x.sum(dtype=np.float64))
        # np.square, not np.dot: a BLAS call would wake OpenBLAS's threads for
        # a tiny product, and their spin-waiting costs more than the work.
        if np.isfinite(total):
            self.input_sum += total
            self.input_sum_squares += float(np.square(x, dtype=np.float64).sum())
            self.input_finite_values += x.size
        else:
            finite = np.isfinite(x)
            kept = x[finite].astype(np.float64)
            self.input_sum += float(kept.sum())
            self.input_sum_squares += float(np.square(kept).sum())
            self.input_finite_values += kept.size
            self.input_nonfinite_values += x.size - kept.size

    def add_predictions(self, probabilities: np.ndarray, confidence_bins: np.ndarray) -> None:
        """Add a batch of probability rows and the confidence bin of each row."""
        predicted = probabilities.argmax(axis=1)
        self.samples += probabilities.shape[0]
        self.class_counts += np.bincount(predicted, minlength=self.class_counts.size)
        self.confidence_counts += np.bincount(confidence_bins, minlength=self.confidence_counts.size)
        self.confidence_sum += float(probabilities.max(axis=1).sum())
        self.entropy_sum += float(entropy(probabilities).sum())

    def add_feedback(self, labels: np.ndarray, predicted: np.ndarray) -> None:
        """Add true ``labels`` for rows whose predicted classes were ``predicted``."""
        size = self.label_counts.size
        self.labelled += labels.size
        self.label_counts += np.bincount(labels, minlength=size)
        self.correct_by_class += np.bincount(labels[labels == predicted], minlength=size)

    @property
    def correct(self) -> int:
        return int(self.correct_by_class.sum())
