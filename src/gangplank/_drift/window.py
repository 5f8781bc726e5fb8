"""The running totals of one drift window: bounded by features × bins, never by samples.

A :class:`Window` is filled through one path: :meth:`Window.add` takes a
:class:`~gangplank._drift.batch.Batch` (already validated) and adds its input bin
counts, summary sums, predicted-class counts, confidence histogram, entropy
and agreement with a shadow model;
:meth:`Window.add_feedback` adds labels joined to predictions. The reference
profile, the calibration and the live monitor all build windows this way.

Example:
    >>> import numpy as np
    >>> from gangplank._drift.batch import Batch
    >>> window = Window(binner=None, confidence_edges=np.array([0.5]), n_classes=2)
    >>> window.add(Batch.of(None, np.array([[0.9, 0.1], [0.2, 0.8]])))
    >>> window.samples, window.class_counts.tolist(), window.confidence_counts.tolist()
    (2, [1, 1], [0, 2])
"""

from __future__ import annotations

import math

import numpy as np

from . import binning_kernel
from .batch import Batch
from .binning import FeatureBinner, chunk_rows
from .drift_statistics import entropy
from .prediction_kernel import compiled_kernel


class Window:
    """Running totals of one window; :meth:`reset` starts the next one."""

    # The counts (made by _allocate): views of one int64 buffer, zeroed together.
    input_counts: np.ndarray  # (features, columns)
    class_counts: np.ndarray  # (classes,) predicted classes
    confidence_counts: np.ndarray  # (confidence bins,)
    confusion: np.ndarray  # (classes, classes): rows the true class, columns the predicted one
    confidence_labelled: np.ndarray  # (confidence bins,) labelled rows of batches that came with labels
    confidence_correct: np.ndarray  # ... of which predicted right

    def __init__(
        self, binner: FeatureBinner | None, confidence_edges: np.ndarray, n_classes: int, input_stride: int = 1
    ):
        self.binner = binner
        self.confidence_edges = confidence_edges
        self.n_classes = n_classes
        self.input_stride = int(input_stride)  # bin the inputs of every n-th row of the stream (see add)
        # Compile the kernels (or load them from numba's cache) now: the serving process makes its window before
        # it forks the worker process, which then inherits them instead of compiling them again.
        compiled_kernel()
        if binner is not None:
            binning_kernel.kernel()
        self._allocate()
        self.reset()

    def reset(self) -> None:
        """Empty the window: its counts are zeroed in place (a report holds copies, never these arrays)."""
        self._counts.fill(0)  # every count array is a view of this one buffer: one call zeroes them all
        self.samples = 0
        self.input_rows = 0  # rows whose inputs were binned
        self.input_sum = 0.0
        self.input_sum_squares = 0.0
        self.input_finite_values = 0
        self.input_nonfinite_values = 0
        self.confidence_sum = 0.0
        self.entropy_sum = 0.0
        self.labelled = 0  # rows of the confusion matrix's sum, counted as they come (a plain int)
        self.shadow_rows = 0  # rows a shadow model also predicted
        self.shadow_agreed = 0  # ... and predicted the same class
        self.error_rows = 0  # a regression model's rows with a target, and their errors' sums
        self.absolute_error_sum = 0.0
        self.squared_error_sum = 0.0

    def _allocate(self) -> None:
        n_features = 0 if self.binner is None else self.binner.n_features
        n_columns = 1 if self.binner is None else self.binner.n_columns
        k, bins = self.n_classes, self.confidence_edges.size + 1
        shapes = {
            "input_counts": (n_features, n_columns),
            "class_counts": (k,),
            "confidence_counts": (bins,),
            "confusion": (k, k),
            "confidence_labelled": (bins,),
            "confidence_correct": (bins,),
        }
        self._counts = np.zeros(sum(math.prod(shape) for shape in shapes.values()), dtype=np.int64)
        start = 0
        for name, shape in shapes.items():
            size = math.prod(shape)
            setattr(self, name, self._counts[start : start + size].reshape(shape))  # a view: contiguous, in place
            start += size

    # -- the one ingestion path --------------------------------------------
    def add(self, batch: Batch, first_row: int | None = None) -> None:
        """Add a validated batch: its predictions, its inputs (if any) and its labels (if any); ``first_row``:
        see :meth:`add_classified`."""
        self.add_classified(batch, first_row)

    def add_classified(self, batch: Batch, first_row: int | None = None) -> np.ndarray:
        """:meth:`add`, returning the batch's predicted classes (the tracker's charts need them too).

        ``first_row``: the stream number of the batch's first row (``None``: its position in this window). With an
        ``input_stride`` n the inputs of rows whose number is a multiple of n are binned, the others are not read
        (the ring of ``worker="process"`` copies only those); a window of ``window_size`` rows bins
        ``window_size / n`` of them (±1 when n does not divide ``window_size``), wherever it starts.
        """
        p = batch.probabilities
        if first_row is None:
            first_row = self.samples
        self.samples += batch.rows
        predicted, confidence_bins = self._add_predictions(p)
        if batch.inputs is not None and self.binner is not None:
            x = batch.inputs
            if self.input_stride > 1:  # rows first_row, first_row + 1, ...: keep multiples of the stride
                x = x[(-first_row) % self.input_stride :: self.input_stride]
            step = chunk_rows(self.binner.n_features)
            for start in range(0, x.shape[0], step):
                self._add_inputs(x[start : start + step])
        if batch.shadow is not None:
            self.shadow_rows += batch.rows
            self.shadow_agreed += int(np.count_nonzero(batch.shadow == predicted))
        if batch.labels is not None:
            self.add_feedback(batch.labels, predicted)
            size = self.confidence_counts.size
            self.confidence_labelled += np.bincount(confidence_bins, minlength=size)
            self.confidence_correct += np.bincount(confidence_bins[batch.labels == predicted], minlength=size)
        errors = batch.errors
        if errors is not None:
            self.add_errors(errors)
        return predicted

    def _add_predictions(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Add the predicted classes, confidences and entropies; return the predicted classes and confidence bins."""
        kernel = compiled_kernel()
        if kernel is not None:
            p = np.ascontiguousarray(p)  # the layout the kernel was compiled for
            predicted, bins = np.empty(p.shape[0], np.intp), np.empty(p.shape[0], np.intp)
            sums = kernel(p, self.confidence_edges, self.class_counts, self.confidence_counts, predicted, bins)
            self.confidence_sum += float(sums[0])
            self.entropy_sum += float(sums[1])
            return predicted, bins
        predicted = p.argmax(axis=1)
        confidence = p.max(axis=1)
        self.class_counts += np.bincount(predicted, minlength=self.n_classes)
        confidence_bins = np.searchsorted(self.confidence_edges, confidence, side="right")
        self.confidence_counts += np.bincount(confidence_bins, minlength=self.confidence_counts.size)
        self.confidence_sum += float(confidence.sum())
        self.entropy_sum += float(entropy(p).sum())
        return predicted, confidence_bins

    def add_errors(self, errors: np.ndarray) -> None:
        """Add a regression model's errors (target − prediction) for rows with a target."""
        self.error_rows += errors.size
        self.absolute_error_sum += float(np.abs(errors).sum())
        self.squared_error_sum += float(np.square(errors).sum())

    def add_feedback(self, labels: np.ndarray, predicted: np.ndarray) -> None:
        """Add true ``labels`` for rows whose predicted classes were ``predicted``."""
        k = self.n_classes
        self.confusion += np.bincount(labels * k + predicted, minlength=k * k).reshape(k, k)
        self.labelled += labels.size

    def _add_inputs(self, x: np.ndarray) -> None:
        assert self.binner is not None
        sums = binning_kernel.count_and_sum(self.binner, x, self.input_counts)  # one compiled pass, or None
        if sums is None:
            self._add_inputs_numpy(x)
            return
        total, squares, finite_values, nonfinite_values = sums
        self.input_rows += x.shape[0]
        self.input_sum += total
        self.input_sum_squares += squares
        self.input_finite_values += finite_values
        self.input_nonfinite_values += nonfinite_values

    def _add_inputs_numpy(self, x: np.ndarray) -> None:
        """:meth:`_add_inputs` without the compiled kernel: the fallback, and the reference in the tests."""
        assert self.binner is not None
        with np.errstate(invalid="ignore", over="ignore"):
            total = float(x.sum(dtype=np.float64))
        finite = bool(np.isfinite(total))  # a finite sum of float32 values in float64: no NaN, no ±Inf among them
        self.input_counts += self.binner.count(x, finite=finite)
        self.input_rows += x.shape[0]
        # np.square, not np.dot: a BLAS call would wake OpenBLAS's threads for
        # a tiny product, and their spin-waiting costs more than the work.
        if finite:
            self.input_sum += total
            self.input_sum_squares += float(np.square(x, dtype=np.float64).sum())
            self.input_finite_values += x.size
        else:
            kept = x[np.isfinite(x)].astype(np.float64)
            self.input_sum += float(kept.sum())
            self.input_sum_squares += float(np.square(kept).sum())
            self.input_finite_values += kept.size
            self.input_nonfinite_values += x.size - kept.size

    # -- what the comparison reads -------------------------------------------
    @property
    def shadow_agreement(self) -> float:
        """Share of shadowed rows on which both models predicted the same class (NaN without any)."""
        return self.shadow_agreed / self.shadow_rows if self.shadow_rows else float("nan")

    @property
    def mae(self) -> float:
        return self.absolute_error_sum / self.error_rows if self.error_rows else float("nan")

    @property
    def rmse(self) -> float:
        return float(np.sqrt(self.squared_error_sum / self.error_rows)) if self.error_rows else float("nan")

    @property
    def correct(self) -> int:
        return int(np.trace(self.confusion))

    @property
    def label_counts(self) -> np.ndarray:
        return self.confusion.sum(axis=1)

    @property
    def correct_by_class(self) -> np.ndarray:
        return np.diagonal(self.confusion).copy()
