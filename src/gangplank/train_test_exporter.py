"""TrainTestExporter: a Keras callback that pushes fit and evaluate metrics."""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import keras
import numpy as np
from prometheus_client.core import GaugeMetricFamily

from .naming import unique_names
from .transport import DEFAULT_TIMEOUT, PushgatewaySender
from .weights import WeightHistogram

_BUILTIN_SUFFIXES = (
    "epochs_count", "elapsed_time_seconds", "model_parameters_count", "running",
    "model_weights", "model_weights_bucket", "model_weights_count", "model_weights_sum",
)


class TrainTestExporter(keras.callbacks.Callback):
    """Push loss, metrics, progress and weight histograms to a Prometheus Pushgateway.

    Works with ``model.fit`` (metrics ``gangplank_train_*``, pushed after every
    epoch) and ``model.evaluate`` (``gangplank_test_*``, pushed at the end).
    Pushes are HTTP POSTs into the group ``job`` (+ ``grouping_key``), so the
    train and test sets live side by side, and they happen on a background
    thread: a slow or dead gateway never holds training up. One instance may
    serve any number of ``fit`` and ``evaluate`` calls.

    Args:
        pgw_addr: the Pushgateway, ``host:port``, ``http://…`` or ``https://…``;
            credentials in it (``http://user:pw@host:9091``) are sent as HTTP
            Basic auth and never shown in warnings or exceptions.
        job: the ``job`` label of the pushed metrics.
        metrics: log keys to export (e.g. ``["loss", "val_loss"]``); default
            every numeric key Keras logs.
        histogram_buckets: bucket upper bounds of a weight histogram pushed at
            the end of ``fit`` / ``evaluate``, e.g.
            ``HISTOGRAM_WEIGHT_BUCKETS_0_3``; ``None`` for no histogram.
        handler: a prometheus_client push handler (authentication, TLS).
        ignore_exceptions: if ``False``, a failed push aborts the run with
            :class:`gangplank.PushError`: ``evaluate`` and the end of ``fit``
            push synchronously, and during ``fit`` a known failure raises at
            the next epoch.
        grouping_key: extra labels of the group, e.g. ``{"instance": "w0"}``;
            give each concurrent run its own to keep them apart.
        timeout: seconds one push may take.
        basic_auth: ``(user, password)`` for a gateway behind HTTP Basic auth
            (or write them in the address: ``https://user:pw@host:9091``).
        ca_file: CA bundle that signed an ``https://`` gateway's certificate.

    Example:
        >>> exporter = TrainTestExporter("127.0.0.1:9091", "mnist")
        >>> model.fit(x, y, validation_split=0.1, callbacks=[exporter])  # doctest: +SKIP
        >>> model.evaluate(x_test, y_test, callbacks=[exporter])  # doctest: +SKIP
    """

    def __init__(
        self,
        pgw_addr: str,
        job: str,
        metrics: Sequence[str] | None = None,
        histogram_buckets: Sequence[float] | None = None,
        handler: Callable | None = None,
        ignore_exceptions: bool = True,
        *,
        grouping_key: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        basic_auth: tuple[str, str] | None = None,
        ca_file: str | None = None,
    ):
        super().__init__()
        if isinstance(metrics, str):
            raise TypeError("metrics must be a list of log keys, not a single string")
        self.metrics = None if metrics is None else list(metrics)
        self.histogram_buckets = None if histogram_buckets is None else tuple(histogram_buckets)
        self.ignore_exceptions = ignore_exceptions
        self.sender = PushgatewaySender(pgw_addr, job, grouping_key, handler, timeout, basic_auth=basic_auth, ca_file=ca_file)
        self._phase: str | None = None
        self._started = 0.0
        self._elapsed = 0.0
        self._epochs_done = 0
        self._last_logs: Mapping = {}

    def set_params(self, params):
        # Keras makes a new CallbackList, and so calls set_params, at the start
        # of every fit / evaluate / predict; validation inside fit reuses fit's
        # list. A fit that ended in an exception (an aborted run, a PushError,
        # Ctrl-C) never calls on_train_end: close it here, so that it does not
        # read as running and the next evaluate is not taken for validation.
        super().set_params(params)
        if self._phase == "train":
            self._phase = None
            self._publish("train", self._last_logs, epochs=self._epochs_done, running=False, elapsed=self._elapsed)
        self._phase = None

    def close(self, timeout: float | None = None) -> bool:
        """Deliver what is pending, waiting at most ``timeout`` seconds (default: the push timeout).

        Optional: at interpreter exit gangplank flushes anyway. Returns whether
        everything reached the gateway; the exporter can still be used after.
        """
        return self.sender.close(self.sender.timeout if timeout is None else timeout)

    # -- fit --------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._begin("train")
        self._publish("train", {}, epochs=0, running=True)

    def on_epoch_end(self, epoch, logs=None):
        self._raise_known_failure()
        self._publish("train", logs or {}, epochs=epoch + 1, running=True)

    def on_train_end(self, logs=None):
        self._phase = None
        self._publish("train", self._last_logs, epochs=self._epochs_done, running=False, final=True)

    # -- evaluate (validation inside fit calls these too: ignored) --------
    def on_test_begin(self, logs=None):
        if self._phase != "train":
            self._begin("test")

    def on_test_end(self, logs=None):
        if self._phase == "test":
            self._phase = None
            self._publish("test", logs or {}, final=True)

    # -- the glue -----------------------------------------------------------
    def _begin(self, phase: str) -> None:
        self._phase = phase
        self._started = time.monotonic()
        self._epochs_done = 0
        self._last_logs = {}

    def _publish(self, phase, logs, epochs=None, running=None, final=False, elapsed=None):
        if elapsed is None:
            elapsed = time.monotonic() - self._started
        if phase == "train":
            self._last_logs = logs or self._last_logs
            self._elapsed = elapsed
            if epochs is not None:
                self._epochs_done = epochs
        families = self._families(phase, logs, epochs, running, final, elapsed)
        self.sender.submit(phase, families)
        if final and not self.ignore_exceptions:
            self.sender.push_now()

    def _families(self, phase, logs, epochs, running, final, elapsed):
        prefix = f"gangplank_{phase}_"
        values = self._numeric_logs(logs)
        names = unique_names(values, reserved=_BUILTIN_SUFFIXES)
        families = [
            GaugeMetricFamily(prefix + names[key], f"Keras log value {key!r} at the end of the last {'epoch' if phase == 'train' else 'evaluation'}", value=value)
            for key, value in values.items()
        ]
        families.append(GaugeMetricFamily(prefix + "elapsed_time_seconds", f"Seconds since {phase} began", value=elapsed))
        parameters = self._parameter_count()
        if parameters is not None:
            families.append(GaugeMetricFamily(prefix + "model_parameters_count", "Number of model parameters (Keras count_params)", value=parameters))
        if phase == "train":
            families.append(GaugeMetricFamily(prefix + "epochs_count", "Epochs completed in the current fit", value=epochs))
            families.append(GaugeMetricFamily(prefix + "running", "1 while fit is running, 0 after it ended", value=1 if running else 0))
        if final and self.histogram_buckets is not None and self.model is not None:
            histogram = WeightHistogram.from_model(self.model, self.histogram_buckets)
            families.append(histogram.to_metric(prefix + "model_weights", "Model parameters (kernels, biases) by value"))
        return families

    def _parameter_count(self) -> int | None:
        """``model.count_params()``, or ``None`` while the model is not built yet.

        A ``Sequential`` without an ``Input`` is built by its first batch,
        after ``on_train_begin``; the count is pushed from the first epoch on.
        """
        if self.model is None:
            return None
        try:
            return int(self.model.count_params())
        except ValueError:
            return None

    def _numeric_logs(self, logs: Mapping) -> dict[str, float]:
        keys: Iterable = logs.keys() if self.metrics is None else [k for k in self.metrics if k in logs]
        values = {}
        for key in keys:
            value = _as_float(logs[key])
            if value is not None:
                values[str(key)] = value
        return values

    def _raise_known_failure(self) -> None:
        if not self.ignore_exceptions and self.sender.last_error is not None:
            raise self.sender.last_error


def _as_float(value) -> float | None:
    """A log value as a float (NaN and ±Inf kept), or ``None`` if it is not one number."""
    if isinstance(value, numbers.Real):  # bool, int, float, numpy scalars
        return float(value)
    try:
        array = np.asarray(value)
    except Exception:
        return None
    if array.size != 1 or array.dtype.kind not in "biuf":
        return None
    return float(array.reshape(()))


