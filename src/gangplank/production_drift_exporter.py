"""ProductionDriftExporter: the drift monitor as a Keras callback for ``model.predict``."""

from __future__ import annotations

import keras

from .drift_monitor import DriftMonitor


class ProductionDriftExporter(keras.callbacks.Callback):
    """Watch a deployed classifier's inputs, probabilities and labels; push drift per window.

    A Keras callback that holds a :class:`DriftMonitor` (``self.monitor``,
    made with the same arguments: ``pgw_addr, job, reference, agent,
    window_size, window_seconds, grouping_key, handler, ignore_exceptions``,
    …) and offers all of it (``observe``, ``feedback``, ``flush``, ``close``,
    ``retire``, ``last_report``, and ``registry.register(exporter)`` for a
    scrape), plus the Keras path: as a callback of ``model.predict`` it
    observes every batch of outputs, and with :meth:`with_inputs` the
    matching inputs too.

    Example:
        >>> reference = DriftReference.load("model.drift.npz")  # doctest: +SKIP
        >>> with ProductionDriftExporter("127.0.0.1:9091", "mnist", reference, agent="web") as drift:  # doctest: +SKIP
        ...     probabilities = model.predict(drift.with_inputs(images), callbacks=[drift])
        ...     drift.feedback(true_labels, probabilities)  # when labels arrive later
    """

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.monitor = DriftMonitor(*args, **kwargs)
        self._predict_inputs = None  # what with_inputs() handed over for the next predict
        self._predict_offset = 0

    def __getattr__(self, name):
        # Everything else is the monitor's: observe, feedback, flush, close, reference, ...
        if name == "monitor":
            raise AttributeError(name)
        return getattr(self.monitor, name)

    @property
    def on_window(self):
        return self.monitor.on_window

    @on_window.setter
    def on_window(self, callback):
        self.monitor.on_window = callback

    def collect(self):
        return self.monitor.collect()

    def describe(self):
        return []

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.monitor.close()

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
        self.monitor.observe(inputs, probabilities)

    def on_predict_end(self, logs=None):
        self._predict_inputs = None
