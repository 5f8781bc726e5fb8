"""Keras metrics that gangplank exports: a confusion matrix that works on every backend.

:class:`ConfusionMatrix` is a stateful Keras metric written with ``keras.ops``
only, so it runs compiled under TensorFlow, PyTorch and JAX, in ``fit``
(training and validation) and in ``evaluate``. Its result is the
``(num_classes, num_classes)`` matrix of counts, rows the true class and columns
the predicted one. :class:`~gangplank.TrainTestExporter` exports it as
``gangplank_{train,train_val,test}_confusion_matrix{true_class, predicted_class}``.

Example:
    >>> import numpy as np
    >>> cm = ConfusionMatrix(3)
    >>> cm.update_state(np.array([0, 1, 2, 2]), np.array([[.9, .1, 0], [.2, .7, .1], [.1, .8, .1], [0, 0, 1]]))
    >>> np.asarray(cm.result()).astype(int).tolist()
    [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="gangplank")
class ConfusionMatrix(keras.metrics.Metric):
    """Counts of (true class, predicted class) pairs over every batch seen since the last reset.

    Args:
        num_classes: the number of classes ``n`` (at least 2); the result is an
            ``n x n`` matrix, ``result()[i, j]`` the (weighted) number of
            samples of true class ``i`` predicted as class ``j``.
        name: the metric's name, and so its log key (``confusion_matrix``,
            ``val_confusion_matrix``) and exported name.
        threshold: for a binary model with one output (a sigmoid probability
            of shape ``(batch,)`` or ``(batch, 1)``), the probability from
            which class 1 is predicted.
        dtype: dtype of the counts (``float32`` by default, as Keras's own
            metrics; counts are exact up to 2**24 per cell).

    ``y_pred`` is probabilities or logits of shape ``(batch, n)`` (the
    predicted class is their argmax); ``y_true`` is class indices, of shape
    ``(batch,)`` or ``(batch, 1)``, or one-hot of shape ``(batch, n)``. A
    ``sample_weight`` of shape ``(batch,)`` weighs each sample's count. True
    labels outside ``[0, n)`` are not counted.

    Example:
        >>> model.compile("adam", "sparse_categorical_crossentropy", metrics=[ConfusionMatrix(10)])  # doctest: +SKIP
    """

    def __init__(self, num_classes: int, name: str = "confusion_matrix", threshold: float = 0.5, dtype=None):
        super().__init__(name=name, dtype=dtype)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer of at least 2, got {num_classes!r}")
        self.num_classes = num_classes
        self.threshold = float(threshold)
        self.matrix = self.add_variable(
            shape=(num_classes, num_classes),
            initializer="zeros",
            dtype=self.dtype,
            name="matrix",
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        n = self.num_classes
        predicted = self._predicted_classes(ops.convert_to_tensor(y_pred))
        true = self._true_classes(ops.convert_to_tensor(y_true))
        weights = ops.ones_like(true, dtype=self.dtype)
        if sample_weight is not None:
            weights = weights * ops.reshape(ops.cast(sample_weight, self.dtype), (-1,))
        # Labels outside [0, n) would index another cell (or none): weigh them 0.
        inside = ops.logical_and(ops.greater_equal(true, 0), ops.less(true, n))
        weights = ops.where(inside, weights, ops.zeros_like(weights))
        cells = ops.clip(true, 0, n - 1) * n + predicted
        counts = ops.segment_sum(weights, cells, num_segments=n * n)
        self.matrix.assign_add(ops.reshape(counts, (n, n)))

    def result(self):
        # A copy: on torch the variable is updated in place, and the logs of
        # an epoch must not change when validation resets the metric.
        return ops.copy(ops.convert_to_tensor(self.matrix))

    def get_config(self):
        return {"num_classes": self.num_classes, "name": self.name, "threshold": self.threshold, "dtype": self.dtype}

    def _predicted_classes(self, y_pred):
        if len(y_pred.shape) >= 2 and y_pred.shape[-1] == self.num_classes:
            return ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        if self.num_classes == 2 and (len(y_pred.shape) == 1 or y_pred.shape[-1] == 1):
            return ops.cast(ops.greater_equal(ops.reshape(y_pred, (-1,)), self.threshold), "int32")
        raise ValueError(f"{self.name}: y_pred of shape {tuple(y_pred.shape)} does not give {self.num_classes} classes")

    def _true_classes(self, y_true):
        if len(y_true.shape) >= 2 and y_true.shape[-1] == self.num_classes:
            return ops.cast(ops.argmax(y_true, axis=-1), "int32")  # one-hot
        if len(y_true.shape) >= 2 and y_true.shape[-1] != 1:
            raise ValueError(f"{self.name}: y_true of shape {tuple(y_true.shape)} is neither class indices nor one-hot")
        return ops.cast(ops.reshape(y_true, (-1,)), "int32")
