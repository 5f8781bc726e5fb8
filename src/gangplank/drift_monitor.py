"""DriftMonitor: windows of a deployed classifier's traffic, compared and pushed. No Keras needed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from . import drift_metrics
from .reference import DriftReference, WindowReport
from .transport import DEFAULT_TIMEOUT, PushgatewaySender
from .validation import as_inputs, as_labels, as_probabilities


class DriftMonitor:
    """Watch a deployed classifier's inputs, probabilities and labels; push drift per window.

    Batches go in with :meth:`observe` (any size, from any thread). They fill a window of
    ``window_size`` samples (a batch that crosses the boundary is split) or of
    ``window_seconds``, whichever closes first. At each close the window is
    compared with the reference (see :class:`DriftReference`), the figures
    are handed to the background sender, and a new window starts. Metrics go
    to the group ``job`` / ``agent`` (+ ``grouping_key``) with prefix
    ``gangplank_predict_``. :class:`ProductionDriftExporter` is the same as a
    Keras callback; use this class where Keras is not loaded.

    Args:
        pgw_addr: the Pushgateway, ``host:port``, ``http://…`` or ``https://…``.
        job: the ``job`` label.
        reference: a :class:`DriftReference` or the path of a saved one.
        agent: names the monitored deployment (the ``agent`` label).
        window_size: samples per window; default the reference's calibrated size.
        window_seconds: also close a non-empty window after this many seconds.
        grouping_key: further labels, e.g. ``{"instance": "replica-1"}``.
        handler: a prometheus_client push handler (authentication, TLS).
        ignore_exceptions: if ``False``, a known push failure raises
            :class:`gangplank.PushError` from the next ``observe`` and from
            ``close``.
        timeout: seconds one push may take.
        basic_auth: ``(user, password)`` for a gateway behind HTTP Basic auth
            (or write them in the address: ``https://user:pw@host:9091``).
        ca_file: CA bundle that signed an ``https://`` gateway's certificate.
        on_window: called with each closed window's :class:`WindowReport`
            (outside the exporter's lock, so it may call ``observe``).

    Example:
        >>> reference = DriftReference.load("model.drift.npz")  # doctest: +SKIP
        >>> with DriftMonitor("127.0.0.1:9091", "mnist", reference, agent="web") as drift:  # doctest: +SKIP
        ...     drift.observe(images, probabilities)
        ...     drift.feedback(true_labels, probabilities)  # when labels arrive later
    """

    def __init__(
        self,
        pgw_addr: str,
        job: str,
        reference: DriftReference | str | Path,
        agent: str = "default",
        window_size: int | None = None,
        window_seconds: float | None = None,
        grouping_key: Mapping[str, str] | None = None,
        handler: Callable | None = None,
        ignore_exceptions: bool = True,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        basic_auth: tuple[str, str] | None = None,
        ca_file: str | None = None,
        on_window: Callable[[WindowReport], None] | None = None,
    ):
        super().__init__()  # keras.callbacks.Callback's, in ProductionDriftExporter
        if not isinstance(reference, DriftReference):
            reference = DriftReference.load(reference)
        window_size = reference.window_size if window_size is None else window_size
        if isinstance(window_size, bool) or not isinstance(window_size, (int, np.integer)) or window_size < 1:
            raise ValueError(f"window_size must be a positive whole number, got {window_size!r}")
        if window_seconds is not None and not window_seconds > 0:
            raise ValueError(f"window_seconds must be a positive number or None, got {window_seconds!r}")
        if not agent:
            raise ValueError("agent must be a non-empty name")
        self.reference = reference
        self.agent = str(agent)
        self.window_size = int(window_size)
        self.window_seconds = window_seconds
        self.ignore_exceptions = ignore_exceptions
        self.on_window = on_window
        key = {**(grouping_key or {}), "agent": self.agent}
        self.sender = PushgatewaySender(pgw_addr, job, key, handler, timeout, basic_auth=basic_auth, ca_file=ca_file)
        self.last_report: WindowReport | None = None
        self._last_closed_at = float("nan")
        self._totals = drift_metrics.Totals()
        self._window = reference.new_window()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.sender.submit("predict", drift_metrics.families(self._totals))
        if window_seconds is not None:
            threading.Thread(target=self._close_by_time, name=f"gangplank-window-{self.agent}", daemon=True).start()

    # -- observing --------------------------------------------------------
    def observe(self, inputs, probabilities, labels=None) -> None:
        """Add a batch: ``inputs`` (rows, features) or ``None``, ``probabilities``
        (rows, classes), optionally the true ``labels`` (rows,).

        Bad input raises ``ValueError`` before anything of the batch is
        recorded. Rows that are logits or do not sum to 1 are normalised and
        counted; NaN/Inf inputs fall into a *missing* bin and are counted.
        """
        self._raise_known_failure()
        ref = self.reference
        p, normalised = as_probabilities(probabilities, ref.n_classes)
        rows = p.shape[0]
        cells = x = None
        if inputs is not None:
            x = as_inputs(inputs, ref.n_features)
            if x.shape[0] != rows:
                raise ValueError(f"inputs and probabilities must have the same rows, got {x.shape[0]} and {rows}")
            cells = ref.binner.cells(x)
        y = None if labels is None else as_labels(labels, ref.n_classes, rows)
        confidence_bins = ref.confidence_bin(p)
        predicted = p.argmax(axis=1)
        closed = []
        with self._lock:
            self._totals.probabilities_normalised += normalised
            if self._window_expired():
                closed.append(self._close_window())
            start = 0
            while start < rows:
                if not self._window.samples:  # window_seconds count from a window's first sample
                    self._window.started = time.time()
                stop = start + min(rows - start, self.window_size - self._window.samples)
                rows_here = slice(start, stop)
                if x is not None:
                    self._window.add_inputs(ref.binner.count_cells(cells[rows_here]), x[rows_here])
                self._window.add_predictions(p[rows_here], confidence_bins[rows_here])
                if y is not None:
                    self._window.add_feedback(y[rows_here], predicted[rows_here])
                if self._window.samples >= self.window_size:
                    closed.append(self._close_window())
                start = stop
        self._report(closed)

    def feedback(self, labels, predictions) -> None:
        """Add true labels that arrived later, with what the model predicted for them.

        ``predictions`` are the probability rows the model gave (or predicted
        class indices). They count towards the current window's accuracy and
        recall, not towards its sample count.
        """
        self._raise_known_failure()
        predictions = np.asarray(predictions)
        one_probability_row = predictions.ndim == 1 and predictions.dtype.kind == "f" and predictions.size == self.reference.n_classes
        if predictions.ndim == 2 or one_probability_row:
            predicted = as_probabilities(predictions, self.reference.n_classes)[0].argmax(axis=1)
        else:
            predicted = as_labels(predictions, self.reference.n_classes, predictions.shape[0] if predictions.ndim else 1)
        y = as_labels(labels, self.reference.n_classes, predicted.shape[0])
        with self._lock:
            self._window.add_feedback(y, predicted)

    def close(self) -> None:
        """Close the last window (if it holds anything), deliver everything, stop the threads.

        Waits at most ``timeout`` seconds for the gateway; with
        ``ignore_exceptions=False`` a failed delivery raises :class:`PushError`.
        """
        with self._lock:
            if self._window.samples:
                closed = [self._close_window()]
            else:
                closed = []
                self._count_pending_feedback()
            self._closed.set()
        self._report(closed)
        if not self.ignore_exceptions:
            try:
                self.sender.push_now()
            finally:
                self.sender.close(0)
        else:
            self.sender.close(self.sender.timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- windows ----------------------------------------------------------------
    def _window_expired(self) -> bool:
        return (
            self.window_seconds is not None
            and self._window.samples
            and time.time() - self._window.started >= self.window_seconds
        )

    def _close_window(self) -> WindowReport:
        report = self.reference.compare(self._window)
        totals = self._totals
        totals.samples += report.samples
        totals.windows += 1
        totals.drifted_windows += int(report.drift_detected)
        totals.feedback_samples += report.labelled
        totals.feedback_correct += report.correct
        totals.input_nonfinite += report.input_nonfinite_values
        self._last_closed_at = time.time()
        self.sender.submit("predict", drift_metrics.families(totals, report, self.reference, self._last_closed_at))
        self.last_report = report
        self._window.reset()
        return report

    def _report(self, reports) -> None:
        if self.on_window is not None:
            for report in reports:
                self.on_window(report)

    def _count_pending_feedback(self) -> None:
        """Labels that arrived after the last sample: counted in the totals, the last window's gauges kept.

        A window of labels alone is no window: closing it would report
        ``drift_detected=0`` and NaN statistics over the last real window.
        """
        window = self._window
        if not window.labelled:
            return
        self._totals.feedback_samples += window.labelled
        self._totals.feedback_correct += window.correct
        window.reset()
        self.sender.submit("predict", drift_metrics.families(self._totals, self.last_report, self.reference, self._last_closed_at))

    def _close_by_time(self) -> None:
        while not self._closed.wait(min(self.window_seconds, 1.0)):
            with self._lock:
                closed = [self._close_window()] if self._window_expired() else []
            self._report(closed)

    def _raise_known_failure(self) -> None:
        if not self.ignore_exceptions and self.sender.last_error is not None:
            raise self.sender.last_error
