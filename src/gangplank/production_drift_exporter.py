"""ProductionDriftExporter: the drift monitor as a Keras callback for ``model.predict``."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from ._drift import model_inputs
from .drift_monitor import DriftMonitor
from .transport import logger


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

    As a callback it never raises out of ``model.predict``: a batch it cannot
    observe (an output it does not understand, inputs that do not match the
    reference, a closed monitor, a known push failure) is logged (once per
    kind), counted in ``gangplank_predict_worker_errors_total{stage="callback"}``
    and kept in :attr:`last_error`; the next batch and the next ``predict`` are
    observed as usual.

    Example:
        >>> reference = DriftReference.load("model.drift.npz")  # doctest: +SKIP
        >>> drift = ProductionDriftExporter("127.0.0.1:9091", "mnist", reference=reference)  # doctest: +SKIP
        >>> with drift:  # doctest: +SKIP
        ...     probabilities = model.predict(drift.with_inputs(images), callbacks=[drift])
        ...     drift.feedback(true_labels, probabilities)  # when labels arrive later
    """

    _next_inputs = None  # what with_inputs() handed over for the next predict
    _next_features = None
    _predict_inputs = None  # the running predict's inputs
    _predict_features = None
    _predict_offset = 0
    _told_no_inputs = False

    @property
    def monitor(self) -> DriftMonitor:
        """The monitor: the exporter itself (kept for code written against gangplank 0.x)."""
        return self

    # -- the Keras path ---------------------------------------------------------
    def with_inputs(self, inputs, *, features: Callable | None = None):
        """Return ``inputs`` unchanged and observe them along with the next ``predict``.

        ``model.predict(drift.with_inputs(x), callbacks=[drift])``: Keras gives
        predict callbacks the outputs only, so the exporter slices the same
        rows out of ``inputs`` batch by batch. ``inputs`` are what the model
        takes: an array or tensor, a dict of named inputs or a list of them
        (flattened side by side, features named ``<input>/<index>``, the
        reference fitted on the same structure). A ``tf.data.Dataset`` or a
        generator cannot be sliced: ``TypeError``.

        ``features``, optional, maps a batch of ``inputs`` (the same structure)
        to the (rows, features) array to monitor instead, e.g. a few columns
        or an embedding (``features=gangplank.layer_features(model, "embedding")``);
        fit the reference on its output. (Raw inputs of a reference fitted
        with a ``reduction`` need no ``features``: the reduction is applied.)
        """
        model_inputs.check_sliceable(inputs)
        self._next_inputs = inputs
        self._next_features = features
        return inputs

    def on_predict_begin(self, logs=None):
        # with_inputs() is for the next predict only: one that raised midway leaves nothing behind.
        self._predict_inputs, self._next_inputs = self._next_inputs, None
        self._predict_features, self._next_features = self._next_features, None
        self._predict_offset = 0
        if self._predict_inputs is None and self.reference.n_features and not self._told_no_inputs:
            self._told_no_inputs = True
            logger.warning(
                "gangplank: model.predict without with_inputs(): agent %r observes the outputs only, "
                "the input drift signal is off (model.predict(drift.with_inputs(x), callbacks=[drift]))",
                self.agent,
            )

    def on_predict_batch_end(self, batch, logs=None):
        start = self._predict_offset
        try:
            outputs = _one_output((logs or {}).get("outputs"))
            self._predict_offset += outputs.shape[0]
            inputs = None
            if self._predict_inputs is not None:
                inputs = model_inputs.rows_of(self._predict_inputs, start, start + outputs.shape[0])
                if self._predict_features is not None:
                    inputs = self._predict_features(inputs)
            self.observe(inputs, outputs)
        except Exception as error:  # monitoring never breaks the predict it watches
            self.worker.count_error("callback", error)

    def on_predict_end(self, logs=None):
        self._predict_inputs = self._predict_features = None


def _one_output(outputs) -> np.ndarray:
    """A model's single output as numpy (``ValueError`` for several outputs)."""
    if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
        outputs = outputs[0]
    if outputs is None or isinstance(outputs, (dict, list, tuple)):
        raise ValueError(
            "ProductionDriftExporter needs a model with one output ((rows, classes) or a binary (rows, 1)); "
            f"got {type(outputs).__name__}"
        )
    return np.asarray(keras.ops.convert_to_numpy(outputs))
