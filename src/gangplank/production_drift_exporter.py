"""ProductionDriftExporter: the drift monitor as a Keras callback for ``model.predict``."""

from __future__ import annotations

import keras

from .drift_monitor import DriftMonitor


class ProductionDriftExporter(DriftMonitor, keras.callbacks.Callback):
    """Watch a deployed classifier's inputs, probabilities and labels; push drift per window.

    A :class:`DriftMonitor` that is also a Keras callback: the same
    constructor (everything after ``job`` keyword-only) and the same API
    (``observe``, ``feedback``, ``flush``, ``close``, which is final,
    ``retire``, ``last_report``, ``reference``, ``window_size``, …, and
    ``registry.register(exporter)`` for a scrape), all documented on
    :class:`DriftMonitor`; plus the Keras path: as a callback of ``model.predict`` it
    observes every batch of outputs, and with :meth:`with_inputs` the
    matching inputs too.

    Example:
        >>> reference = DriftReference.load("model.drift.npz")  # doctest: +SKIP
        >>> drift = ProductionDriftExporter("127.0.0.1:9091", "mnist", reference=reference)  # doctest: +SKIP
        >>> with drift:  # doctest: +SKIP
        ...     probabilities = model.predict(drift.with_inputs(images), callbacks=[drift])
        ...     drift.feedback(true_labels, probabilities)  # when labels arrive later
    """

    _predict_inputs = None  # what with_inputs() handed over for the next predict
    _predict_offset = 0

    @property
    def monitor(self) -> DriftMonitor:
        """The monitor: the exporter itself (kept for code written against gangplank 0.x)."""
        return self

    # -- the Keras path ---------------------------------------------------------
    def with_inputs(self, inputs):
        """Return ``inputs`` unchanged and observe them along with the next ``predict``.

        ``model.predict(drift.with_inputs(x), callbacks=[drift])``: Keras gives
        predict callbacks the outputs only, so the exporter slices the same
        rows out of ``inputs`` batch by batch (arrays and array-likes that
        support slicing, not generators or datasets).
        """
        self._predict_inputs = inputs
        self._predict_offset = 0
        return inputs

    def on_predict_begin(self, logs=None):
        self._predict_offset = 0

    def on_predict_batch_end(self, batch, logs=None):
        outputs = (logs or {}).get("outputs")
        if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
            outputs = outputs[0]
        if outputs is None or isinstance(outputs, (dict, list, tuple)):
            raise ValueError("ProductionDriftExporter needs a model with one (rows, classes) output")
        probabilities = keras.ops.convert_to_numpy(outputs)
        inputs = None
        if self._predict_inputs is not None:
            start = self._predict_offset
            inputs = self._predict_inputs[start : start + probabilities.shape[0]]
            self._predict_offset += probabilities.shape[0]
        self.observe(inputs, probabilities)

    def on_predict_end(self, logs=None):
        self._predict_inputs = None
