"""TrainTestExporter: a Keras callback that pushes fit and evaluate metrics."""

from __future__ import annotations

import atexit
import logging
import numbers
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import keras
import numpy as np
from prometheus_client.core import GaugeMetricFamily, Metric

from . import metric_schema
from .metrics import ConfusionMatrix
from .naming import unique_names
from .process_rank import ProcessRank, current_process
from .transport import Publisher, PushSettings
from .weights import WeightHistogram

logger = logging.getLogger("gangplank")


def _reserved_suffixes() -> tuple[str, ...]:
    """The built-in family names (and a histogram's sample names) that no log key may take."""
    suffixes = []
    for suffix in metric_schema.TRAIN_TEST_BUILTINS:
        suffixes.append(suffix)
        if _spec(suffix).type == "histogram":
            suffixes += [suffix + "_bucket", suffix + "_count", suffix + "_sum"]
    return tuple(suffixes)


def _spec(suffix: str, phase: str = "train") -> metric_schema.MetricSpec:
    return metric_schema.spec(f"gangplank_{phase}_{suffix}")


_BUILTIN_SUFFIXES = _reserved_suffixes()


class TrainTestExporter(keras.callbacks.Callback):
    """Push loss, metrics, progress and weight histograms to a Prometheus Pushgateway.

    Works with ``model.fit`` (metrics ``gangplank_train_*``, pushed after every
    epoch) and ``model.evaluate`` (``gangplank_test_*``, pushed at the end).
    Pushes are HTTP POSTs into the group ``job`` (+ ``grouping_key``), so the
    train and test sets live side by side, and they happen on a background
    thread: a slow or dead gateway never holds training up. One instance may
    serve any number of ``fit`` and ``evaluate`` calls.

    The exporter is also a prometheus_client collector:
    ``registry.register(exporter)`` serves the families it pushes (with
    ``pgw_addr=None`` it only does that).

    Log values: a number is one gauge (``gangplank_test_loss``); a vector,
    such as ``keras.metrics.F1Score(average=None)``'s one value per class, is
    one gauge with a ``class`` label (``gangplank_test_f1_score{class="3"}``);
    the matrix of a :class:`gangplank.metrics.ConfusionMatrix` is one gauge
    with ``true_class`` and ``predicted_class`` labels (counts); any other
    matrix gets ``row`` and ``column`` labels. Results of three or more
    dimensions are not exported (a warning names them once).

    Args:
        pgw_addr: the Pushgateway, ``host:port``, ``http://…`` or ``https://…``;
            credentials in it (``http://user:pw@host:9091``) are sent as HTTP
            Basic auth and never shown in warnings or exceptions. ``None``:
            no push (register the exporter with a registry to be scraped).
            A :class:`gangplank.transport.PushSettings` holds the address and
            the transport keywords below in one object.
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
        timeout: seconds one push may take (``None``: the default, 5 s).
        basic_auth: ``(user, password)`` for a gateway behind HTTP Basic auth
            (or write them in the address: ``https://user:pw@host:9091``).
        ca_file: CA bundle that signed an ``https://`` gateway's certificate.
        every_process: in a multi-process run (``RANK``/``WORLD_SIZE`` set by
            ``torchrun``, or ``jax.process_count() > 1``) only rank 0 exports
            by default; ``True`` makes every process push, each into its own
            group ``instance="rank-<rank>"`` (unless ``grouping_key`` gives an
            ``instance``). Create the exporter after
            ``jax.distributed.initialize``.

    Example:
        >>> exporter = TrainTestExporter("127.0.0.1:9091", "mnist")
        >>> model.fit(x, y, validation_split=0.1, callbacks=[exporter])  # doctest: +SKIP
        >>> model.evaluate(x_test, y_test, callbacks=[exporter])  # doctest: +SKIP
        >>> from prometheus_client import CollectorRegistry
        >>> CollectorRegistry().register(TrainTestExporter(None, "mnist"))  # scraped, not pushed
    """

    def __init__(
        self,
        pgw_addr: str | PushSettings | None,
        job: str,
        metrics: Sequence[str] | None = None,
        histogram_buckets: Sequence[float] | None = None,
        handler: Callable | None = None,
        ignore_exceptions: bool = True,
        *,
        grouping_key: Mapping[str, str] | None = None,
        timeout: float | None = None,
        basic_auth: tuple[str, str] | None = None,
        ca_file: str | os.PathLike | None = None,
        every_process: bool = False,
    ):
        super().__init__()
        if isinstance(metrics, str):
            raise TypeError("metrics must be a list of log keys, not a single string")
        self.metrics = None if metrics is None else list(metrics)
        self.histogram_buckets = None if histogram_buckets is None else tuple(histogram_buckets)
        self.ignore_exceptions = ignore_exceptions
        self.every_process = bool(every_process)
        self.process: ProcessRank | None = current_process()
        process = self.process
        self.exports = self.every_process or process is None or process.rank == 0
        group = dict(grouping_key or {})
        if self.every_process and process is not None:
            group.setdefault("instance", f"rank-{process.rank}")
        push = PushSettings.of(pgw_addr, handler=handler, timeout=timeout, basic_auth=basic_auth, ca_file=ca_file)
        self.publisher = Publisher(push, job, group)
        if process is not None and not self.exports:
            logger.info("gangplank: process %d of %d exports nothing (rank 0 does)", process.rank, process.world_size)
        self._warned: set[str] = set()
        self._phase: str | None = None
        self._started = 0.0
        self._elapsed = 0.0
        self._epochs_done = 0
        self._last_logs: Mapping = {}

    def set_params(self, params):
        # Keras makes a new CallbackList, and so calls set_params, at the start
        # of every fit / evaluate / predict; validation inside fit reuses fit's
        # list. A fit that raised is ended here, so that the next evaluate is
        # not taken for its validation.
        super().set_params(params)
        self._end_interrupted_fit()
        self._phase = None

    def close(self, timeout: float | None = None) -> bool:
        """Deliver what is pending, waiting at most ``timeout`` seconds (default: the push timeout). Final.

        Optional: at interpreter exit gangplank flushes anyway. A ``fit`` that
        raised is published as not running first. Returns whether everything
        reached the gateway. A closed exporter refuses work: a later ``fit``
        or ``evaluate`` with it raises ``RuntimeError`` (a scrape still serves
        the last families); a second ``close`` only waits again.
        """
        self._end_interrupted_fit()
        return self.publisher.close(self.publisher.timeout if timeout is None else timeout)

    def _refuse_if_closed(self) -> None:
        if self.publisher.closed:
            raise RuntimeError("this TrainTestExporter is closed: close() is final; make a new one")

    # -- scrape -------------------------------------------------------------
    def collect(self) -> list[Metric]:
        """The families last published (what a push sends), for a prometheus_client registry."""
        return self.publisher.collect()

    def describe(self) -> list[Metric]:
        return []

    # -- fit --------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._refuse_if_closed()
        self._begin("train")
        _open_fits.add(self)
        self._publish("train", {}, epochs=0, running=True)

    def on_epoch_end(self, epoch, logs=None):
        self._raise_known_failure()
        self._publish("train", logs or {}, epochs=epoch + 1, running=True)

    def on_train_end(self, logs=None):
        self._phase = None
        _open_fits.discard(self)
        self._publish("train", self._last_logs, epochs=self._epochs_done, running=False, final=True)

    # -- evaluate (validation inside fit calls these too: ignored) --------
    def on_test_begin(self, logs=None):
        if self._phase != "train":
            self._refuse_if_closed()
            self._begin("test")

    def on_test_end(self, logs=None):
        if self._phase == "test":
            self._phase = None
            self._publish("test", logs or {}, final=True)

    # -- a fit that raised ---------------------------------------------------
    def _end_interrupted_fit(self) -> None:
        """Publish a fit that never reached ``on_train_end`` (it raised) as over: ``running`` 0.

        Keras has no callback for a ``fit`` that raises (a callback, the data,
        a :class:`PushError`, Ctrl-C). It is ended at the next ``fit`` /
        ``evaluate`` / ``predict`` with this exporter, at :meth:`close`, or at
        interpreter exit, whichever comes first.
        """
        if self._phase != "train":
            return
        self._phase = None
        _open_fits.discard(self)
        self._publish("train", self._last_logs, epochs=self._epochs_done, running=False, elapsed=self._elapsed)

    # -- the glue -----------------------------------------------------------
    def _begin(self, phase: str) -> None:
        self._phase = phase
        self._started = time.monotonic()
        self._epochs_done = 0
        self._last_logs = {}

    def _publish(self, phase, logs, epochs=None, running=None, final=False, elapsed=None):
        if not self.exports:
            return
        if elapsed is None:
            elapsed = time.monotonic() - self._started
        if phase == "train":
            self._last_logs = logs or self._last_logs
            self._elapsed = elapsed
            if epochs is not None:
                self._epochs_done = epochs
        families = self._families(phase, logs, epochs, running, final, elapsed)
        self.publisher.submit(phase, families)
        if final and not self.ignore_exceptions:
            self.publisher.push_now()

    def _families(self, phase, logs, epochs, running, final, elapsed):
        prefix = f"gangplank_{phase}_"
        values = self._log_values(logs)
        names = unique_names(values, reserved=_BUILTIN_SUFFIXES)
        matrices = self._confusion_matrix_names()
        when = "epoch" if phase == "train" else "evaluation"
        families: list[Metric] = [
            _log_family(prefix + names[key], key, value, when, _is_confusion_matrix(key, matrices))
            for key, value in values.items()
        ]

        def builtin(suffix, value):
            families.append(GaugeMetricFamily(prefix + suffix, _spec(suffix, phase).help, value=value))

        builtin("elapsed_time_seconds", elapsed)
        parameters = self._parameter_count()
        if parameters is not None:
            builtin("model_parameters_count", parameters)
        if phase == "train":
            builtin("epochs_count", epochs)
            builtin("running", 1 if running else 0)
        if final and self.histogram_buckets is not None and self.model is not None:
            histogram = WeightHistogram.from_model(self.model, self.histogram_buckets)
            families.append(histogram.to_metric(prefix + "model_weights", _spec("model_weights", phase).help))
        return families

    def _confusion_matrix_names(self) -> set[str]:
        """Names of the model's :class:`ConfusionMatrix` metrics (compiled ones sit inside a container)."""
        found: set[str] = set()
        stack = list(getattr(self.model, "metrics", None) or [])
        while stack:
            metric = stack.pop()
            if isinstance(metric, ConfusionMatrix):
                found.add(metric.name)
            stack.extend(getattr(metric, "metrics", None) or [])
        return found

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

    def _log_values(self, logs: Mapping) -> dict[str, np.ndarray]:
        """Every numeric log value as a float64 array of 0, 1 or 2 dimensions."""
        keys: Iterable = logs.keys() if self.metrics is None else [k for k in self.metrics if k in logs]
        values = {}
        for key in keys:
            array = _as_array(logs[key])
            if array is None:
                continue
            if array.ndim > 2:
                if key not in self._warned:
                    self._warned.add(key)
                    logger.warning(
                        "gangplank: log value %r has shape %s; only numbers, vectors and matrices are exported",
                        key,
                        array.shape,
                    )
                continue
            values[str(key)] = array
        return values

    def _raise_known_failure(self) -> None:
        if not self.ignore_exceptions and self.publisher.last_error is not None:
            raise self.publisher.last_error


# Exporters whose fit has begun and not ended. Held strongly: an exporter that
# goes away with the traceback of its fit must still end it at exit.
_open_fits: set[TrainTestExporter] = set()


def _end_interrupted_fits() -> None:
    for exporter in list(_open_fits):
        try:
            exporter._end_interrupted_fit()
        except Exception as error:  # noqa: BLE001 - at exit, the other exporters still get their turn
            logger.warning("gangplank: could not publish the end of an interrupted fit: %s", error)


# Registered after the transport's exit flush (imported above), so it runs before it and the flush delivers it.
atexit.register(_end_interrupted_fits)


def _as_array(value) -> np.ndarray | None:
    """A numeric log value as float64 (NaN and ±Inf kept; one element is a number), else ``None``.

    Keras hands matrix-valued results over as numpy arrays on every backend
    today; a backend tensor (a callback's own, or another Keras version's) is
    converted too.
    """
    if isinstance(value, numbers.Real):  # bool, int, float, numpy scalars
        return np.asarray(float(value))
    if value is None or isinstance(value, (str, bytes)):
        return None
    try:
        array = np.asarray(keras.ops.convert_to_numpy(value) if keras.ops.is_tensor(value) else value)
    except (TypeError, ValueError, RuntimeError):  # not array-like
        return None
    if array.size == 0 or array.dtype.kind not in "biuf":
        return None
    if array.size == 1:
        return np.asarray(float(array.reshape(())))
    return array.astype(np.float64)


def _is_confusion_matrix(key: str, names: set[str]) -> bool:
    # "confusion_matrix" in evaluate, "val_confusion_matrix" in fit, "out_confusion_matrix" for an output.
    return any(key == name or key.endswith("_" + name) for name in names)


def _log_family(name: str, key: str, value: np.ndarray, when: str, confusion: bool) -> GaugeMetricFamily:
    """One log value as a gauge: a number, a vector by ``class``, a matrix by two indices."""
    if value.ndim == 0:
        return GaugeMetricFamily(name, f"Keras log value {key!r} at the end of the last {when}", value=float(value))
    if value.ndim == 1:
        documentation = f"Keras log value {key!r} at the end of the last {when}, per class"
        family = GaugeMetricFamily(name, _documented(name, ["class"], documentation), labels=["class"])
        for index, element in enumerate(value.tolist()):
            family.add_metric([str(index)], element)
        return family
    if confusion:
        labels = ["true_class", "predicted_class"]
        documentation = f"Samples by true and predicted class ({key!r}) in the last {when}"
    else:
        labels = ["row", "column"]
        documentation = f"Keras log value {key!r} at the end of the last {when}, by row and column"
    family = GaugeMetricFamily(name, _documented(name, labels, documentation), labels=labels)
    for (row, column), element in np.ndenumerate(value):
        family.add_metric([str(row), str(column)], float(element))
    return family


def _documented(name: str, labels: list[str], documentation: str) -> str:
    """The schema's help for ``name`` when it lists the family with these labels, else ``documentation``."""
    try:
        entry = metric_schema.spec(name)
    except KeyError:
        return documentation
    return entry.help if list(entry.labels) == labels else documentation
