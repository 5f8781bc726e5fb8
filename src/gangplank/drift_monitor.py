"""DriftMonitor: windows of a deployed classifier's traffic, compared, pushed and/or scraped. No Keras needed."""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from . import drift_metrics
from .accuracy_charts import WINDOWS_PER_MONTH, AccuracyCharts, outcomes_per_month
from .batch import Batch, as_ids
from .comparison import WindowReport
from .recent_windows import RecentWindows, labels_for_floor
from .reference import DriftReference
from .scoring_ids import DROPPED, ScoringIds
from .transport import DEFAULT_TIMEOUT, Publisher, PushSettings, logger
from .validation import as_labels, as_predicted_classes

INTERVAL_SMOOTHING = 0.2  # weight of the newest interval in window_interval_seconds
WAKE_SAMPLES = 256  # the worker wakes when this many samples wait ...
WAKE_SECONDS = 0.05  # ... or when the oldest has waited this long: few wake-ups, few numpy calls per sample
COUNTS_SECONDS = 1.0  # counters that changed between windows are published at most this often (flush: at once)


class DriftMonitor:
    """Watch a deployed classifier's inputs, probabilities and labels; export drift per window.

    :meth:`observe` only validates a batch and hands it to a worker thread, so
    the request path pays for a few checks and a copy; the worker takes what
    has queued up (every 256 samples or 50 ms), joins it into one batch and fills
    windows of ``window_size`` samples (a batch that crosses the boundary is
    split) or of ``window_seconds``, whichever closes first, compares each with
    the reference (:class:`DriftReference`) and publishes the figures: pushed
    to the group ``job`` / ``agent`` (+ ``grouping_key``) when ``pgw_addr`` is
    given, and served to a scrape once registered
    (``registry.register(monitor)``). Metric names start with
    ``gangplank_predict_``. :class:`ProductionDriftExporter` wraps it as a
    Keras callback.

    The queue to the worker holds at most ``max_pending_samples`` samples. A
    caller that finds it full waits up to ``max_wait_seconds`` for room; after
    that the batch is dropped and counted in
    ``gangplank_predict_samples_dropped_total``. Memory stays bounded.

    The worker survives any exception (in ``on_window``, a comparison,
    building or handing over the families): it logs the first of each kind,
    counts it in ``gangplank_predict_worker_errors_total{stage=...}``, keeps
    it in :attr:`last_error` and goes on with the next window. Rows it could
    not add to a window are counted as dropped. Should the worker thread end
    anyway (a ``BaseException`` such as ``SystemExit`` in a callback),
    ``observe`` drops and counts at once, :meth:`flush` returns ``False`` and
    :meth:`close` says so.

    Args:
        pgw_addr: the Pushgateway, ``host:port``, ``http://…`` or
            ``https://…``; ``None`` to only serve a scrape; or a
            :class:`~gangplank.PushSettings` holding it with the transport options.
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
        basic_auth: ``(user, password)`` for a gateway behind HTTP Basic auth.
        ca_file: CA bundle that signed an ``https://`` gateway's certificate.
        on_window: called (on the worker thread) with each closed window's
            :class:`WindowReport`.
        accuracy_tolerance: accuracy loss below the reference that is
            acceptable; default the reference's (0.02). The sequential charts
            on labels and on a shadow model detect this drop (and a larger one).
        min_feedback: labels needed before the pooled accuracy on feedback is judged (10).
        quality_floor: absolute accuracy floor on labelled feedback and on the label-free estimate (0.80).
        recent_windows, sustained_windows: a signal is sustained when it fired
            in ``sustained_windows`` of the last ``recent_windows`` windows (3 of 5).
        feedback_max_ids, feedback_max_age_seconds: bounds of the scoring
            ids remembered for :meth:`feedback` (100,000 ids, 24 h).
        labels_per_window, windows_per_month: how many labels a window will
            get at most (default ``window_size``: every row) and how many
            windows a month brings (default 43,200, one a minute); the
            sequential accuracy charts set their thresholds so that a model at
            its reference accuracy pages less than once a month at that volume.
        max_pending_samples, max_wait_seconds: the worker queue's bound
            (default 2 windows, at least 1,024 samples) and how long a
            caller waits for room (1 s; a server that prefers dropping to
            waiting passes less).

    Example:
        >>> reference = DriftReference.load("model.drift.npz")  # doctest: +SKIP
        >>> with DriftMonitor("127.0.0.1:9091", "mnist", reference, agent="web") as drift:  # doctest: +SKIP
        ...     drift.observe(images, probabilities, ids=request_ids)
        ...     drift.feedback(true_labels, ids=request_ids)  # when labels arrive later
    """

    def __init__(
        self,
        pgw_addr: str | PushSettings | None,
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
        accuracy_tolerance: float | None = None,
        min_feedback: int = 10,
        quality_floor: float = 0.80,
        recent_windows: int = 5,
        sustained_windows: int = 3,
        feedback_max_ids: int = 100_000,
        feedback_max_age_seconds: float = 24 * 3600.0,
        max_pending_samples: int | None = None,
        max_wait_seconds: float = 1.0,
        labels_per_window: int | None = None,
        windows_per_month: float = WINDOWS_PER_MONTH,
    ):
        if not isinstance(reference, DriftReference):
            reference = DriftReference.load(reference)
        window_size = reference.window_size if window_size is None else window_size
        if isinstance(window_size, bool) or not isinstance(window_size, (int, np.integer)) or window_size < 1:
            raise ValueError(f"window_size must be a positive whole number, got {window_size!r}")
        if window_seconds is not None and not window_seconds > 0:
            raise ValueError(f"window_seconds must be a positive number or None, got {window_seconds!r}")
        if not agent:
            raise ValueError("agent must be a non-empty name")
        if not 1 <= sustained_windows <= recent_windows:
            raise ValueError(
                f"need 1 <= sustained_windows <= recent_windows, got {sustained_windows} and {recent_windows}"
            )
        if not 0 <= quality_floor <= 1 or int(min_feedback) < 1:
            raise ValueError("quality_floor must be in [0, 1] and min_feedback at least 1")
        if labels_per_window is not None and not labels_per_window > 0 or not windows_per_month > 0:
            raise ValueError("labels_per_window and windows_per_month must be positive")
        if not 0.5 <= window_size / reference.window_size <= 2:
            logger.warning(
                "gangplank: windows of %d samples, but the reference was calibrated for %d: its thresholds "
                "hold only near that size; fit the reference with window_size=%d",
                window_size,
                reference.window_size,
                window_size,
            )
        if accuracy_tolerance is not None:
            reference = reference.with_thresholds(accuracy_tolerance=float(accuracy_tolerance))
        reference = reference.with_thresholds(quality_floor=float(quality_floor))
        self.reference = reference
        self.agent = str(agent)
        self.window_size = int(window_size)
        self.window_seconds = window_seconds
        self.ignore_exceptions = ignore_exceptions
        self.on_window = on_window
        self.quality_floor = float(quality_floor)
        self.min_feedback = int(min_feedback)
        self.max_pending_samples = int(max_pending_samples or max(2 * self.window_size, 1024))
        self.max_wait_seconds = float(max_wait_seconds)
        settings = PushSettings.of(pgw_addr, handler, timeout, basic_auth, ca_file)
        self.publisher = Publisher(settings, job, {**(grouping_key or {}), "agent": self.agent})
        self.scoring_ids = ScoringIds(feedback_max_ids, feedback_max_age_seconds)
        self.last_report: WindowReport | None = None
        self.last_error: BaseException | None = None  # the latest exception the worker caught (or ended on)

        # Owned by the worker thread alone (no lock): the window and what it adds up.
        self._window = reference.new_window()
        self._window_started = 0.0
        self._window_first_row = 0  # the stream row (0, 1, … over the monitor's life) the open window starts at
        self._rows_seen = 0  # stream rows the worker has taken
        self._evidence = 0  # labels the charts took between windows (a change to publish)
        self._charts = AccuracyCharts.of(
            reference.accuracy,
            reference.profile.labelled_rows,
            tolerance=reference.thresholds.accuracy_tolerance,
            labels_per_month=outcomes_per_month(labels_per_window or self.window_size, windows_per_month),
            shadow_agreement=reference.shadow_agreement,
            shadow_rows=reference.profile.shadow_rows,
            shadow_per_month=outcomes_per_month(self.window_size, windows_per_month),
        )
        self._totals = drift_metrics.Totals(reference.n_classes)
        labels_needed = labels_for_floor(reference.accuracy, self.quality_floor, self.min_feedback)
        self._recent = RecentWindows(recent_windows, labels_needed)
        self._sustained = int(sustained_windows)
        self._last_closed = float("nan")  # monotonic
        self._closed_at = float("nan")  # Unix time, for the gauge
        self._interval = float("nan")
        self._status = self._make_status()
        self._published_counts: tuple = ()  # what _counts() was at the last publish
        self._published_at = 0.0  # monotonic
        self._unpublishable: WindowReport | None = None  # a report the families could not be built from
        self._finished = False  # the worker closed the last window and published it

        # Shared with callers, under _cond.
        self._queue: deque = deque()
        self._queued_samples = 0
        self._dropped = 0  # samples
        self._unmatched = 0
        self._feedback_dropped = 0  # labels of dropped samples
        self._errors = dict.fromkeys(drift_metrics.WORKER_STAGES, 0)
        self._error_kinds: set = set()  # (stage, exception type) already logged
        self._accepted_rows = 0  # rows of batches queued so far: the next batch's first stream row
        self._received = 0  # items queued so far
        self._processed = 0  # items the worker has finished
        self._flushes_asked = 0  # flush() calls so far; the worker answers each with a pass ...
        self._flushes_done = 0  # ... and says here which it answered
        self._waiting = 0  # callers waiting for room in the queue
        self._stopping = False
        self._worker_done = False  # the worker thread has ended (after close(), or it died)
        self._oldest_queued = 0.0
        self._cond = threading.Condition()
        self._publish()
        self._worker = threading.Thread(target=self._run, name=f"gangplank-drift-{self.agent}", daemon=True)
        self._worker.start()

    # -- what callers use ---------------------------------------------------
    def observe(self, inputs, probabilities, labels=None, ids=None, *, shadow=None) -> None:
        """Add a batch: ``inputs`` (rows, features) or ``None``, ``probabilities``
        (rows, classes), optionally the true ``labels`` (rows,), scoring ``ids``
        and ``shadow``, a second, independently trained model's output for the
        same rows (probabilities or classes; ``None`` skips it for this batch,
        so a shadow model may see a sample of the traffic).

        Bad input raises ``ValueError`` before anything of the batch is
        recorded. Rows that are logits or do not sum to 1 are normalised and
        counted; NaN/Inf inputs fall into a *missing* bin and are counted.
        ``ids`` (one str or int per row) are remembered with the predicted
        class, so that :meth:`feedback` can join labels to them later.
        """
        self._raise_known_failure()
        batch = self.reference.prepare(inputs, probabilities, labels, ids, normalise=False, shadow=shadow)
        first_row = self._enqueue(batch, batch.rows)
        if batch.ids is not None:
            # Ids of a dropped batch are remembered as such: their labels are counted apart.
            accepted = first_row is not None
            predicted = batch.probabilities.argmax(axis=1) if accepted else [DROPPED] * batch.rows
            self.scoring_ids.remember(batch.ids, predicted, first_row if accepted else -1)

    def feedback(self, labels, predictions=None, ids=None) -> int:
        """Add true labels that arrived later; returns how many were matched to a prediction.

        Give either ``ids`` (the scoring ids passed to :meth:`observe`: each
        label is joined to what was predicted for its id; unknown, expired or
        already-labelled ids are counted in
        ``gangplank_predict_feedback_unmatched_total`` and skipped; ids of
        samples that were dropped in ``gangplank_predict_feedback_dropped_total``)
        or ``predictions`` (the probability rows the model gave, or predicted
        class indices). Labels joined by id count towards the window their
        prediction was in (its accuracy and per-class figures while it is
        open, the pooled recent accuracy and the totals once it closed); labels
        with ``predictions`` towards the current window. Every label also feeds
        the sequential accuracy charts, in the order labels arrive.
        """
        self._raise_known_failure()
        k = self.reference.n_classes
        if (ids is None) == (predictions is None):
            raise ValueError("feedback needs either predictions or ids (not both)")
        if ids is not None:
            ids = as_ids(ids, len(ids) if not isinstance(ids, (str, int)) else 1)
            y = as_labels(labels, k, len(ids))
            found, rows, unmatched = self.scoring_ids.join_rows(ids)
            keep = np.array([cls is not None and cls != DROPPED for cls in found], dtype=bool)
            predicted = np.array([cls for cls in found if cls is not None and cls != DROPPED], dtype=np.int64)
            rows = np.array([row for row, kept in zip(rows, keep, strict=True) if kept], dtype=np.int64)
            of_dropped = sum(cls == DROPPED for cls in found)
            y = y[keep]
        else:
            predicted = as_predicted_classes(predictions, k)
            y = as_labels(labels, k, predicted.shape[0])
            rows = None
            unmatched = of_dropped = 0
        with self._cond:
            if self._stopping:
                raise RuntimeError("this DriftMonitor is closed")
            self._unmatched += unmatched
            self._feedback_dropped += of_dropped
        if y.size or unmatched or of_dropped:
            self._enqueue(("feedback", y, predicted, rows), 0)
        return int(y.size)

    def flush(self, timeout: float = DEFAULT_TIMEOUT) -> bool:
        """Wait until everything observed so far is in a window, every full window is
        compared and published, and the gateway (if any) has it. Returns whether all that
        happened within ``timeout`` seconds (``False`` at once if the worker
        thread has died). A partly filled window stays open; counters that
        changed since the last window (dropped samples, unmatched labels, …)
        are published.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._received
            self._flushes_asked += 1
            asked = self._flushes_asked
            self._cond.notify_all()
            while self._processed < target or (self._flushes_done < asked and not self._worker_done):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._worker_done:
                    return False
                self._cond.wait(remaining)
            if self._worker_done and not self._finished:
                return False
        return self.publisher.flush(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Close the last window (if it holds anything), deliver everything, stop the threads.

        A closed monitor takes no more batches: ``observe`` and ``feedback``
        raise ``RuntimeError``.

        Waits at most ``timeout`` seconds for the gateway; with
        ``ignore_exceptions=False`` a failed delivery raises :class:`PushError`.
        Batches still waiting for room in the queue are dropped and counted.
        If the worker thread had died, the counters are published as they
        stand and the death is logged (``ignore_exceptions=True``) or raised
        as ``RuntimeError``.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._worker.join()
        died = not self._finished
        if died:
            self._publish()  # the worker is gone: nothing else touches its state now
        if not self.ignore_exceptions:
            try:
                self.publisher.push_now()
            finally:
                self.publisher.close(0)
        else:
            self.publisher.close(self.publisher.timeout)
        if died:
            message = f"gangplank: the drift worker of agent {self.agent!r} had died ({self.last_error!r})"
            if not self.ignore_exceptions:
                raise RuntimeError(message) from self.last_error
            logger.error("%s; its last window was not closed", message)

    def retire(self) -> None:
        """Close, then delete this agent's group from the Pushgateway (a deployment that is gone).

        Its last values would otherwise stay on the gateway, and keep alerts
        firing, forever. Raises :class:`PushError` if the gateway refuses.
        """
        self.close()
        self.publisher.delete()

    def collect(self):
        """The families a scrape serves (``registry.register(monitor)``): those a push sends."""
        return self.publisher.collect()

    def describe(self):
        return []

    @property
    def sender(self) -> Publisher:
        """The :class:`~gangplank.transport.Publisher` (kept under its earlier name)."""
        return self.publisher

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the hand-over --------------------------------------------------------
    def _enqueue(self, item, samples: int) -> int | None:
        """Hand ``item`` to the worker: the stream row its first sample is (the worker numbers
        rows in the same order); ``None`` if it was dropped (and counted) instead."""
        with self._cond:
            if self._stopping:
                raise RuntimeError("this DriftMonitor is closed")
            if not self._room_for(samples):
                self._wait_for_room(samples)
            if self._stopping or self._worker_done or not self._room_for(samples):
                self._count_dropped(item)
                return None
            if not self._queue:
                self._oldest_queued = time.monotonic()
            self._queue.append(item)
            self._queued_samples += samples
            self._received += 1
            # Waking the worker for every request would cost the request path a thread
            # switch: it polls every WAKE_SECONDS, and is woken only for a full load.
            if not samples or self._queued_samples >= WAKE_SAMPLES:
                self._cond.notify_all()
            first_row = self._accepted_rows
            self._accepted_rows += samples
            return first_row

    def _room_for(self, samples: int) -> bool:
        """Whether the queue takes ``samples`` more (under ``_cond``); an empty queue takes any batch."""
        return not samples or not self._queued_samples or self._queued_samples + samples <= self.max_pending_samples

    def _wait_for_room(self, samples: int) -> None:
        """Wait (under ``_cond``) up to ``max_wait_seconds`` for room; ``close()`` and a dead worker end the wait."""
        deadline = time.monotonic() + self.max_wait_seconds
        self._waiting += 1
        try:
            while not (self._room_for(samples) or self._stopping or self._worker_done):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._cond.wait(remaining)
        finally:
            self._waiting -= 1
            if self._stopping:
                self._cond.notify_all()  # the worker's last pass waits for every waiter to count its drop

    def _count_dropped(self, item) -> None:
        """Count a batch (its samples and labels) or labels that never reach a window (under ``_cond``)."""
        if isinstance(item, Batch):
            self._dropped += item.rows
            self._feedback_dropped += 0 if item.labels is None else item.rows
        else:
            self._feedback_dropped += len(item[1])

    # -- the worker -------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._work()
        except BaseException as error:  # what no step may catch (SystemExit in a callback): the thread ends
            self.last_error = error
            raise
        finally:
            with self._cond:
                self._worker_done = True
                self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._ready():
                    self._cond.wait(self._seconds_to_wait())
                stopping = self._stopping
                while stopping and self._waiting:
                    self._cond.wait()  # callers that waited for room count their drops before the last publish
                items = list(self._queue)
                self._queue.clear()
                answering = self._flushes_asked
            try:
                for run in _runs(items):
                    self._process(run)
                if not items and self._window_expired():
                    self._close_window()
                if stopping:
                    self._finish()
            except Exception as error:  # each step guards itself; this keeps the thread whatever slips through
                self._caught("process", error)
            with self._cond:
                stale = self._counts_stale(hurry=stopping or answering > self._flushes_done)
            if stale:
                self._publish()  # counters that changed between windows, current at every scrape and push
            with self._cond:
                self._queued_samples -= sum(item.rows for item in items if isinstance(item, Batch))
                self._processed += len(items)
                self._flushes_done = answering
                self._cond.notify_all()
            if stopping:
                self._finished = True
                return

    def _ready(self) -> bool:
        """Whether the worker has something to do now (called under ``_cond``)."""
        if self._stopping or self._window_expired() or self._flushes_asked > self._flushes_done:
            return True
        if self._counts_stale(hurry=False):
            return True
        if not self._queue:
            return False
        return (
            self._queued_samples >= WAKE_SAMPLES
            or not isinstance(self._queue[-1], Batch)
            or time.monotonic() - self._oldest_queued >= WAKE_SECONDS
        )

    def _seconds_to_wait(self) -> float:
        waits = [self._oldest_queued + WAKE_SECONDS - time.monotonic() if self._queue else WAKE_SECONDS]
        if self.window_seconds is not None:
            started = self._window_started if self._window.samples else time.monotonic()
            waits.append(started + self.window_seconds - time.monotonic())
        return max(0.0, min(waits))

    def _process(self, item) -> None:
        if not isinstance(item, Batch):
            _, labels, predicted, rows = item
            try:
                self._add_feedback(labels, predicted, rows)
            except Exception as error:
                self._caught("process", error)
                self._lost(0, labels.size)
            return
        if self._window_expired():
            self._close_window()
        start, first_row = 0, self._rows_seen
        self._rows_seen += item.rows
        try:
            item = item.normalise()
            self._totals.probabilities_normalised += item.normalised
            while start < item.rows:
                if not self._window.samples:
                    self._window_started = time.monotonic()  # window_seconds count from a window's first sample
                    self._window_first_row = first_row + start
                stop = start + min(item.rows - start, self.window_size - self._window.samples)
                piece = item[start:stop]
                self._window.add(piece)
                self._add_outcomes(piece)
                _let_callers_in()
                if self._window.samples >= self.window_size:
                    self._close_window()
                    _let_callers_in()
                start = stop
        except Exception as error:
            self._caught("process", error)
            self._lost(item.rows - start, 0 if item.labels is None else item.rows - start)

    def _add_outcomes(self, batch: Batch) -> None:
        """Feed the sequential charts a batch's labels (right or wrong) and shadow predictions (agreed or not)."""
        if batch.labels is None and batch.shadow is None:
            return
        predicted = batch.probabilities.argmax(axis=1)
        if batch.labels is not None:
            self._charts.add("labels", batch.labels == predicted)
        if batch.shadow is not None:
            self._charts.add("shadow", batch.shadow == predicted)

    def _add_feedback(self, labels: np.ndarray, predicted: np.ndarray, rows: np.ndarray | None) -> None:
        """Labels that arrived later: to the window of their prediction, and to the charts."""
        self._charts.add("labels", labels == predicted)
        late = np.zeros(labels.size, dtype=bool) if rows is None else rows < self._window_first_row
        self._window.add_feedback(labels[~late], predicted[~late])
        if late.any():  # their windows closed: pooled recent accuracy and the totals
            self._recent.credit(rows[late], labels[late] == predicted[late])
            k = self.reference.n_classes
            late_confusion = np.bincount(labels[late] * k + predicted[late], minlength=k * k).reshape(k, k)
            self._totals.add_feedback(late_confusion)
        self._evidence += labels.size
        self._status = self._make_status()

    def _finish(self) -> None:
        if self._window.samples:
            self._close_window()
        elif self._window.labelled:
            # Labels after the last sample: counted, the last window's gauges kept (a
            # window of labels alone would report drift_detected=0 over the last real one).
            confusion = self._window.confusion.copy()
            self._totals.add_feedback(confusion)
            self._recent.add_feedback(int(confusion.sum()), int(np.trace(confusion)))
            self._window.reset()
            self._status = self._make_status()
            self._publish()
        # Otherwise the pass that called this publishes the final dropped/unmatched counts.

    def _close_window(self) -> None:
        samples, labelled = self._window.samples, self._window.labelled
        try:
            report = self.reference.compare(self._window)
            self._window.reset()
            self._record(report)
        except Exception as error:  # the window is lost, counted; the next one starts clean
            self._caught("compare", error)
            self._window.reset()
            self._lost(samples, labelled)
            return
        self._publish()
        if self.on_window is not None:
            try:
                self.on_window(report)
            except Exception as error:
                self._caught("on_window", error)

    def _record(self, report: WindowReport) -> None:
        """Add a closed window's report to the totals, the recent windows and the status."""
        now = time.monotonic()
        since = now - (self._last_closed if np.isfinite(self._last_closed) else self._window_started)
        self._interval = (
            since
            if not np.isfinite(self._interval)
            else (INTERVAL_SMOOTHING * since + (1 - INTERVAL_SMOOTHING) * self._interval)
        )
        self._last_closed = now
        self._totals.add_window(report)
        rows = (self._window_first_row, self._window_first_row + report.samples)
        self._recent.add(report.signals, report.labelled, report.correct, rows)
        self._window_first_row = rows[1]  # the next window starts there, whenever its first sample comes
        self._closed_at = time.time()
        self._status = self._make_status()
        self.last_report = report

    def _publish(self) -> None:
        # Built when a push or a scrape needs it: a state replaced before that costs nothing.
        totals = self._totals.copy()
        with self._cond:
            self._published_counts = self._counts()
            totals.dropped, totals.feedback_unmatched = self._dropped, self._unmatched
            totals.feedback_dropped, totals.worker_errors = self._feedback_dropped, dict(self._errors)
        self._published_at = time.monotonic()
        report = None if self.last_report is self._unpublishable else self.last_report
        try:
            self.publisher.submit("predict", functools.partial(self._families, totals, report, self._status))
        except Exception as error:
            self._caught("publish", error)

    def _families(self, totals: drift_metrics.Totals, report: WindowReport | None, status) -> list:
        """The families of one published state (built on a push or scrape thread).

        A report they cannot be built from is counted, and left out of this
        state and the next ones: the counters still go out.
        """
        try:
            return drift_metrics.families(totals, report, status)
        except Exception as error:
            if report is None:
                raise
            self._unpublishable = report
            self._caught("publish", error)
            return drift_metrics.families(totals, None, status)

    def _counts(self) -> tuple:
        """The counters that change between windows (under ``_cond``)."""
        errors = sum(self._errors.values())
        normalised = self._totals.probabilities_normalised
        return self._dropped, self._unmatched, self._feedback_dropped, errors, normalised, self._evidence

    def _counts_stale(self, hurry: bool) -> bool:
        """Whether the counters changed since the last publish and are due (under ``_cond``).

        Due at once when ``hurry`` (a flush, close), else ``COUNTS_SECONDS`` after the last publish.
        """
        if self._counts() == self._published_counts:
            return False
        return hurry or time.monotonic() - self._published_at >= COUNTS_SECONDS

    def _caught(self, stage: str, error: Exception) -> None:
        """Count an exception the worker goes on after; log the first of each kind (stage and type)."""
        with self._cond:
            self._errors[stage] += 1
            first = (stage, type(error)) not in self._error_kinds
            self._error_kinds.add((stage, type(error)))
        self.last_error = error
        if first:
            logger.error(
                "gangplank: %s in the drift worker's %s step (agent %r); counted in "
                "gangplank_predict_worker_errors_total, going on (logged once per kind)",
                type(error).__name__,
                stage,
                self.agent,
                exc_info=error,
            )

    def _lost(self, samples: int, labels: int) -> None:
        """Count samples and labels the worker took but could not add to a window."""
        with self._cond:
            self._dropped += samples
            self._feedback_dropped += labels

    def _make_status(self) -> drift_metrics.Status:
        t = self.reference.thresholds
        return drift_metrics.Status(
            closed_at=self._closed_at,
            interval=self._interval,
            recent_signals=self._recent.signal_counts(),
            recent_windows=self._recent.windows,
            sustained_windows=self._sustained,
            recent_feedback=self._recent.pooled_feedback(),
            accuracy_tolerance=t.accuracy_tolerance,
            quality_floor=self.quality_floor,
            min_feedback=self.min_feedback,
            input_sampling_rate=1.0 / self.reference.input_stride,
            charts=self._charts.states(),
        )

    def _window_expired(self) -> bool:
        return (
            self.window_seconds is not None
            and self._window.samples > 0
            and time.monotonic() - self._window_started >= self.window_seconds
        )

    def _raise_known_failure(self) -> None:
        if not self.ignore_exceptions and self.publisher.last_error is not None:
            raise self.publisher.last_error


def _let_callers_in() -> None:
    """Hand the GIL over between two pieces of work.

    A thread waiting for the GIL otherwise waits until the running one has
    run for ``sys.getswitchinterval()`` (5 ms): the worker's numpy calls are
    too small to release it, and a request would wait that long.
    """
    time.sleep(0)


JOIN_ROWS = 1024  # the largest batch the worker joins queued ones into: bounds the copy


def _runs(items: list) -> list:
    """Queued items with consecutive batches of the same kind joined into one (feedback items in between kept)."""
    runs: list = []
    pending: list[Batch] = []
    for item in items:
        fits = sum(b.rows for b in pending) + item.rows <= JOIN_ROWS if isinstance(item, Batch) else False
        if isinstance(item, Batch) and (not pending or (pending[-1].joins(item) and fits)):
            pending.append(item)
            continue
        if pending:
            runs.append(Batch.joined(pending))
            pending = []
        if isinstance(item, Batch):
            pending.append(item)
        else:
            runs.append(item)
    if pending:
        runs.append(Batch.joined(pending))
    return runs
