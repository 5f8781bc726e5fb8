"""ProductionDriftExporter: the drift monitor as a Keras callback for ``model.predict``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from ._drift import model_inputs
from .drift_monitor import DriftMonitor
from .layer_output import LayerFeatures, layer_features
from .transport import PushSettings, logger


class ProductionDriftExporter(DriftMonitor, keras.callbacks.Callback):
    """Watch a deployed classifier's inputs, probabilities and labels; push drift per window.

    A :class:`DriftMonitor` that is also a Keras callback: the same
    constructor (everything after ``job`` keyword-only) plus the callback's
    ``feature_layer``, and the same API
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

    ``feature_layer``, the name of one of the model's layers, monitors that
    layer's output (an embedding) instead of the raw inputs given by
    :meth:`with_inputs`: the callback builds, on the first batch, the
    sub-model of :func:`~gangplank.layer_features` from the model it is
    attached to (again for another model) and observes its output. Fit the
    reference on the same layer's output. A name the model does not have is
    logged when Keras attaches the callback; its batches are then counted as
    callback failures and observed without inputs (the outputs' signals go on).

    Example:
        >>> reference = DriftReference.load("model.drift.npz")  # doctest: +SKIP
        >>> drift = ProductionDriftExporter("127.0.0.1:9091", "mnist", reference=reference)  # doctest: +SKIP
        >>> with drift:  # doctest: +SKIP
        ...     probabilities = model.predict(drift.with_inputs(images), callbacks=[drift])
        ...     drift.feedback(true_labels, probabilities)  # when labels arrive later

        With an embedding: the reference fitted on the layer's output, the raw images given to ``with_inputs``:

        >>> embed = layer_features(model, "embedding")  # doctest: +SKIP
        >>> reference = DriftReference.fit(embed(x_valid), model.predict(x_valid))  # doctest: +SKIP
        >>> drift = ProductionDriftExporter(  # doctest: +SKIP
        ...     "127.0.0.1:9091", "mnist", reference=reference, feature_layer="embedding"
        ... )
        >>> probabilities = model.predict(drift.with_inputs(images), callbacks=[drift])  # doctest: +SKIP
    """

    _next_inputs = None  # what with_inputs() handed over for the next predict
    _next_features = None
    _predict_inputs = None  # the running predict's inputs
    _predict_features = None
    _predict_offset = 0
    _told_no_inputs = False
    _layer_model = None  # the model the feature layer's sub-model was built for
    _told_no_layer_of = None  # the last model whose missing feature layer was logged
    _layer_features: LayerFeatures | Exception | None = None  # that sub-model, or why it cannot be built

    def __init__(
        self, pgw_addr: str | PushSettings | None, job: str, *, feature_layer: str | None = None, **monitor: Any
    ):
        # Its signature (inspect, help()) is DriftMonitor's and then feature_layer: see the end of this module.
        if feature_layer is not None and (not isinstance(feature_layer, str) or not feature_layer):
            raise ValueError(f"feature_layer must be a layer's name (a non-empty str) or None, got {feature_layer!r}")
        self._feature_layer = feature_layer
        super().__init__(pgw_addr, job, **monitor)

    @property
    def feature_layer(self) -> str | None:
        """The name of the layer whose output is monitored instead of the raw inputs, or ``None``."""
        return self._feature_layer

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
        An exporter with a ``feature_layer`` chooses its features already:
        ``features`` too is a ``ValueError``.
        """
        if features is not None and self._feature_layer is not None:
            raise ValueError(
                f"with_inputs(features=...) and feature_layer={self._feature_layer!r} both choose the features to "
                "monitor: give one of them"
            )
        model_inputs.check_sliceable(inputs)
        self._next_inputs = inputs
        self._next_features = features
        return inputs

    def set_model(self, model) -> None:
        """Keras attaches the callback to ``model`` (every ``predict``): a ``feature_layer`` it does not have is
        logged at once, once per model."""
        super().set_model(model)
        if self._feature_layer is None or model is self._told_no_layer_of:
            return
        names = [getattr(layer, "name", None) for layer in getattr(model, "layers", None) or ()]
        if names and self._feature_layer not in names:
            self._told_no_layer_of = model
            logger.error(
                "gangplank: ProductionDriftExporter(feature_layer=%r) of agent %r: model %r has no layer named %r "
                "(its layers are %s); its batches are counted as callback failures and observed without inputs",
                self._feature_layer,
                self.agent,
                getattr(model, "name", None),
                self._feature_layer,
                names,
            )

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
                    self._sync_jax_variables()
                    inputs = self._predict_features(inputs)
                elif self._feature_layer is not None:
                    inputs = self._layer_output(inputs, self._feature_layer)
            self.observe(inputs, outputs)
        except Exception as error:  # monitoring never breaks the predict it watches
            self.worker.count_error("callback", error)

    def on_predict_end(self, logs=None):
        self._predict_inputs = self._predict_features = None

    def _sync_jax_variables(self) -> None:
        """On JAX, ``predict`` keeps the model's variables aside (the model's own are emptied): put them back for a
        ``features`` function that runs the model's layers, e.g. :func:`~gangplank.layer_features`."""
        sync = getattr(self._model, "jax_state_sync", None)
        if callable(sync):
            sync()

    def _layer_output(self, inputs, name: str) -> np.ndarray | None:
        """Layer ``name``'s output for a batch of the model's inputs; ``None``, counted, when it cannot be had."""
        try:
            layer = self._layer_of(self.model, name)
            if not isinstance(layer, Exception):
                return layer(inputs)
            error = layer
        except Exception as caught:
            error = caught
        self.worker.count_error("callback", error)
        return None

    def _layer_of(self, model, name: str) -> LayerFeatures | Exception:
        """The sub-model of ``model`` to its layer ``name``, built once per model, or why it cannot be built."""
        if model is not self._layer_model or self._layer_features is None:
            self._layer_model = model
            try:
                self._layer_features = layer_features(model, name)
            except Exception as error:  # a bad name or an unreadable model: remembered, not retried per batch
                self._layer_features = error
        return self._layer_features


def _signature_with_the_callbacks_parameters() -> inspect.Signature:
    """DriftMonitor's parameters, then the callback's own: one list of the monitor's, never copied by hand."""
    monitor = inspect.signature(DriftMonitor.__init__)
    own = inspect.signature(ProductionDriftExporter.__init__).parameters
    return monitor.replace(parameters=[*monitor.parameters.values(), own["feature_layer"]])


ProductionDriftExporter.__init__.__signature__ = _signature_with_the_callbacks_parameters()  # type: ignore[attr-defined]


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
