"""DriftMonitor: windows of a deployed classifier's traffic, compared, pushed and/or scraped. No Keras needed.

The monitor is glue: its settings are a
:class:`~gangplank._drift.settings.MonitorSettings`, its windows a
:class:`~gangplank._drift.tracker.WindowTracker`, its queue and thread a
:class:`~gangplank._drift.worker.DriftWorker`, its transport a
:class:`~gangplank.transport.Publisher`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from prometheus_client.metrics_core import Metric

from ._drift.accuracy_charts import AccuracyCharts
from ._drift.batch import as_ids
from ._drift.comparison import WindowReport
from ._drift.families import Totals
from ._drift.intake import plain_rows
from ._drift.process_worker import ProcessWorker
from ._drift.recent_windows import WINDOWS_PER_MONTH, RecentWindows
from ._drift.regression import as_values
from ._drift.ring import NOT_FINITE, SampleRing
from ._drift.scoring_ids import DROPPED, ScoringIds, is_dropped
from ._drift.settings import MonitorSettings
from ._drift.tracker import WindowTracker
from ._drift.validation import as_labels, as_predicted_classes
from ._drift.window import Window
from ._drift.worker import PUSH_SECONDS, DriftWorker, Feedback
from .reference import DriftReference
from .transport import DEFAULT_TIMEOUT, Publisher, PushSettings, logger


class DriftMonitor:
    """Watch a deployed classifier's inputs, probabilities and labels (or a regression model's inputs,
    predictions and targets); export drift per window.

    :meth:`observe` only validates a batch and hands it to a worker thread (or,
    with ``worker="process"``, copies it into memory shared with a worker
    process), so the request path pays for a few checks and a copy; the worker takes what
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

    :meth:`close` is final: it closes the last window, delivers everything
    and stops the threads; a closed monitor refuses ``observe`` and
    ``feedback`` with ``RuntimeError``.

    The parts, one file each: the settings (:class:`~gangplank._drift.settings.MonitorSettings`,
    :attr:`settings`), the windows (:class:`~gangplank._drift.tracker.WindowTracker`,
    :attr:`tracker`, single-threaded), the queue and thread
    (:class:`~gangplank._drift.worker.DriftWorker`) and the transport
    (:class:`~gangplank.transport.Publisher`, :attr:`publisher`).

    The worker survives any exception (in ``on_window``, a comparison,
    building or handing over the families): it logs the first of each kind,
    counts it in ``gangplank_predict_worker_errors_total{stage=...}``, keeps
    it in :attr:`last_error` and goes on with the next window. Rows it could
    not add to a window are counted as dropped. Should the worker thread end
    anyway (a ``BaseException`` such as ``SystemExit`` in a callback),
    ``observe`` drops and counts at once, :meth:`flush` returns ``False`` and
    :meth:`close` says so.

    Every argument after ``job`` is keyword-only.

    Args:
        pgw_addr: the Pushgateway, ``host:port``, ``http://…`` or
            ``https://…``; ``None`` to only serve a scrape; or a
            :class:`~gangplank.PushSettings` holding it with the transport options.
        job: the ``job`` label.
        reference: a :class:`DriftReference` or the path of a saved one.
        agent: names the monitored deployment (the ``agent`` label).
        window_size: samples per window; default the reference's calibrated size.
        window_seconds: also close a non-empty window after this many seconds (the first one closed
            under half the calibrated size is warned about: fit the reference for the size it collects).
        grouping_key: further labels, e.g. ``{"instance": "replica-1"}``.
        handler: a prometheus_client push handler (authentication, TLS).
        ignore_exceptions: if ``False``, a known push failure raises
            :class:`gangplank.PushError` from the next ``observe`` and from
            ``close``.
        timeout: seconds one push may take (``None``: the default, 5 s).
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
        worker: ``"thread"`` (default) runs the windows on a thread of this
            process; ``"process"`` forks a worker process at idle priority
            (:class:`~gangplank._drift.process_worker.ProcessWorker`): ``observe``
            then only validates and copies the rows into a shared ring of
            ``max_pending_samples`` rows, the child pushes, and a scrape of
            this process serves the child's families. Prefer ``"process"``
            next to a model that serves requests; ``"thread"`` where a fork
            is not allowed or not wanted, for light traffic, for
            ``on_window`` (it runs with this process's objects: refused with
            ``"process"``), and to read :attr:`tracker`, :attr:`window`,
            :attr:`charts` or :attr:`recent` (in the child with ``"process"``;
            :attr:`last_report` and :attr:`totals` come back as published).

    Example:
        >>> reference = DriftReference.load("model.drift.npz")  # doctest: +SKIP
        >>> with DriftMonitor("127.0.0.1:9091", "mnist", reference=reference, agent="web") as drift:  # doctest: +SKIP
        ...     drift.observe(images, probabilities, ids=request_ids)
        ...     drift.feedback(true_labels, ids=request_ids)  # when labels arrive later
    """

    def __init__(
        self,
        pgw_addr: str | PushSettings | None,
        job: str,
        *,
        reference: DriftReference | str | Path,
        agent: str = "default",
        window_size: int | None = None,
        window_seconds: float | None = None,
        grouping_key: Mapping[str, str] | None = None,
        handler: Callable | None = None,
        ignore_exceptions: bool = True,
        timeout: float | None = None,
        basic_auth: tuple[str, str] | None = None,
        ca_file: str | os.PathLike | None = None,
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
        worker: str = "thread",
    ):
        super().__init__()  # a ProductionDriftExporter's keras Callback
        if not isinstance(reference, DriftReference):
            reference = DriftReference.load(reference)
        settings = MonitorSettings(
            window_size=reference.window_size if window_size is None else window_size,
            window_seconds=window_seconds,
            agent=agent,
            accuracy_tolerance=accuracy_tolerance,
            min_feedback=min_feedback,
            quality_floor=quality_floor,
            recent_windows=recent_windows,
            sustained_windows=sustained_windows,
            feedback_max_ids=feedback_max_ids,
            feedback_max_age_seconds=feedback_max_age_seconds,
            max_pending_samples=max_pending_samples,
            max_wait_seconds=max_wait_seconds,
            labels_per_window=labels_per_window,
            windows_per_month=windows_per_month,
        )
        if not 0.5 <= settings.window_size / reference.window_size <= 2:
            logger.warning(
                "gangplank: windows of %d samples, but the reference was calibrated for %d: its thresholds "
                "hold only near that size; fit the reference with window_size=%d",
                settings.window_size,
                reference.window_size,
                settings.window_size,
            )
        if settings.accuracy_tolerance is not None:
            reference = reference.with_thresholds(accuracy_tolerance=settings.accuracy_tolerance)
        reference = reference.with_thresholds(quality_floor=settings.quality_floor)
        if worker not in ("thread", "process"):
            raise ValueError(f"worker must be 'thread' or 'process', got {worker!r}")
        if worker == "process" and reference.is_regression:
            raise ValueError("a regression reference (task='regression') needs worker='thread'")
        if worker == "process" and on_window is not None:
            raise ValueError("on_window runs with this process's objects: it needs worker='thread'")
        self.settings = settings
        self.ignore_exceptions = ignore_exceptions
        self.worker_kind = worker
        push = PushSettings.of(pgw_addr, handler=handler, timeout=timeout, basic_auth=basic_auth, ca_file=ca_file)
        group = {**(grouping_key or {}), "agent": settings.agent}
        self._push = push
        self.scoring_ids = ScoringIds(settings.feedback_max_ids, settings.feedback_max_age_seconds)
        self._tracker = WindowTracker(reference, settings)
        self._worker: DriftWorker | ProcessWorker
        if worker == "process":  # the child pushes; this process serves its families to scrapes
            self.publisher = Publisher(PushSettings(None, timeout=push.timeout), job, group)
            self._worker = ProcessWorker(
                self._tracker,
                push,
                job,
                group,
                scrape=self.publisher,
                max_pending_samples=self.max_pending_samples,
                max_wait_seconds=settings.max_wait_seconds,
            )
            self._ring_writer: ProcessWorker | None = self._worker
            # The common batch's one call, for a reference without a reduction (its inputs are copied as given).
            self._ring: SampleRing | None = self._worker.ring if reference.reduction is None else None
        else:
            self._ring_writer = self._ring = None
            self.publisher = Publisher(push, job, group, min_push_interval=PUSH_SECONDS)
            self._worker = DriftWorker(
                self._tracker,
                self.publisher,
                max_pending_samples=self.max_pending_samples,
                max_wait_seconds=settings.max_wait_seconds,
                on_window=on_window,
            )

    # -- settings, read-only ---------------------------------------------------
    @property
    def reference(self) -> DriftReference:
        """The reference as the monitor applies it (its ``accuracy_tolerance`` and ``quality_floor``)."""
        return self._tracker.reference

    @property
    def agent(self) -> str:
        return self.settings.agent

    @property
    def window_size(self) -> int:
        return self.settings.window_size

    @property
    def window_seconds(self) -> float | None:
        return self.settings.window_seconds

    @property
    def quality_floor(self) -> float:
        return self.settings.quality_floor

    @property
    def min_feedback(self) -> int:
        return self.settings.min_feedback

    @property
    def max_pending_samples(self) -> int:
        return self.settings.max_pending_samples or 0

    @property
    def max_wait_seconds(self) -> float:
        return self.settings.max_wait_seconds

    def get_params(self) -> dict:
        """The monitor's settings by name (transport and callback aside)."""
        return self.settings.get_params()

    @property
    def on_window(self) -> Callable[[WindowReport], None] | None:
        """Called (on the worker thread) with each closed window's :class:`WindowReport`; may be replaced."""
        return self._worker.on_window

    @on_window.setter
    def on_window(self, callback: Callable[[WindowReport], None] | None) -> None:
        if callback is not None and self.worker_kind == "process":
            raise ValueError("on_window runs with this process's objects: it needs worker='thread'")
        self._worker.on_window = callback

    # -- state, read-only (the worker thread changes it: read after flush() or close()) --
    @property
    def last_report(self) -> WindowReport | None:
        """The report of the last closed window, ``None`` before the first (with ``worker="process"``: as last
        published by the worker process)."""
        if isinstance(self._worker, ProcessWorker):
            return self._worker.last_report(self.publisher.timeout)
        return self._tracker.last_report

    @property
    def last_error(self) -> BaseException | None:
        """The latest exception the worker caught (or ended on), ``None`` if none."""
        return self._worker.last_error

    @property
    def tracker(self) -> WindowTracker:
        """The windows: :attr:`~WindowTracker.window`, :attr:`~WindowTracker.totals`, charts, recent windows.

        With ``worker="process"`` they live in the worker process: ``RuntimeError``.
        """
        if self.worker_kind == "process":
            raise RuntimeError(
                "with worker='process' the windows live in the worker process: read last_report, totals or a scrape"
            )
        return self._tracker

    @property
    def window(self) -> Window:
        """The open window."""
        return self.tracker.window

    @property
    def totals(self) -> Totals:
        """Cumulative counts of the closed windows (samples, windows, labels, confusion); with
        ``worker="process"`` as last published (after :meth:`flush`: current)."""
        if isinstance(self._worker, ProcessWorker):
            return self._worker.totals or Totals(self.reference.n_classes)
        return self._tracker.totals

    @property
    def charts(self) -> AccuracyCharts:
        """The sequential accuracy charts (``charts.states()``)."""
        return self.tracker.charts

    @property
    def recent(self) -> RecentWindows:
        """The recent windows' signal counts and pooled labels."""
        return self.tracker.recent

    @property
    def dropped(self) -> int:
        """Samples left out of every window so far (``gangplank_predict_samples_dropped_total``)."""
        return self._worker.dropped

    @property
    def worker(self) -> DriftWorker | ProcessWorker:
        """The queue and thread (``worker.thread``, ``worker.alive``, ``worker.errors``), or with
        ``worker="process"`` the ring and child (``worker.pid``, ``worker.threads``, ``worker.alive``)."""
        return self._worker

    # -- what callers use ---------------------------------------------------
    def observe(self, inputs, probabilities, labels=None, ids=None, *, shadow=None) -> None:
        """Add a batch: ``inputs`` (rows, features) or ``None``, ``probabilities``
        (rows, classes), optionally the true ``labels`` (rows,), scoring ``ids``
        and ``shadow``, a second, independently trained model's output for the
        same rows (probabilities or classes; ``None`` skips it for this batch,
        so a shadow model may see a sample of the traffic).

        Bad input raises ``ValueError`` before anything of the batch is
        recorded. Rows that are logits or do not sum to 1 are normalised and
        counted. NaN inputs fall into a feature's *missing* bin, ±Inf into its
        outermost bins (below the first edge, above the last); both are counted
        in ``gangplank_predict_input_nonfinite_total``. Raw inputs of a reference
        fitted with a ``reduction`` are reduced here, on the caller's thread.
        ``ids`` (one str or int per row) are remembered with the predicted
        class, so that :meth:`feedback` can join labels to them later.
        For a regression reference (``task="regression"``) ``probabilities`` are
        the model's predictions, (rows,) or (rows, 1), and ``labels`` the
        continuous targets; ids remember the prediction.
        A closed monitor raises ``RuntimeError``.
        """
        self._raise_known_failure()
        ring = self._ring
        if ring is not None and labels is None and ids is None and shadow is None:
            if ring.write_plain(inputs, probabilities) >= 0:  # the common batch, in one call
                return
        inputs = self.reference.reduce(inputs)  # a reduction runs here, so only its few features are copied
        writer, plain = self._ring_writer, None
        if writer is not None and labels is None and shadow is None:  # worker="process": one copy
            reference = self.reference
            plain = plain_rows(inputs, probabilities, n_features=reference.n_features, n_classes=reference.n_classes)
        first_row: int | None = NOT_FINITE
        if writer is not None and plain is not None:
            ids = as_ids(ids, plain[1].shape[0])
            first_row = writer.write(plain[0], plain[1], None, None, check_finite=True)
            probabilities = plain[1]
        if first_row == NOT_FINITE:  # not the plain kind, or not finite: the full path says what is wrong
            batch = self.reference.prepare(
                inputs, probabilities, labels, ids, normalise=False, shadow=shadow, reduced=True
            )
            first_row = self._worker.enqueue(batch, batch.rows)
            probabilities, ids = batch.probabilities, batch.ids
            if batch.predictions is not None:  # a regression model's: remembered as floats
                probabilities = batch.predictions
        if ids is not None:
            # Ids of a dropped batch are remembered as such: their labels are counted apart.
            accepted = first_row is not None
            if not accepted:
                predicted = [DROPPED] * len(ids)
            elif probabilities.ndim == 1:
                predicted = probabilities.tolist()
            else:
                predicted = probabilities.argmax(axis=1)
            self.scoring_ids.remember(ids, predicted, first_row if first_row is not None else -1)

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
        For a regression reference ``labels`` are continuous targets and
        ``predictions`` the model's predictions: they give MAE and RMSE and
        feed the error charts.
        A closed monitor raises ``RuntimeError``.
        """
        self._raise_known_failure()
        k = self.reference.n_classes
        if (ids is None) == (predictions is None):
            raise ValueError("feedback needs either predictions or ids (not both)")
        rows = None
        unmatched = of_dropped = 0
        regression = self.reference.is_regression
        if ids is not None:
            ids = as_ids(ids, len(ids) if not isinstance(ids, (str, int)) else 1)
            y = as_values(labels, "targets", len(ids)) if regression else as_labels(labels, k, len(ids))
            found, found_rows, unmatched = self.scoring_ids.join_rows(ids)
            keep = np.array([cls is not None and not is_dropped(cls) for cls in found], dtype=bool)
            predicted = np.array(
                [cls for cls, kept in zip(found, keep, strict=True) if kept],
                dtype=np.float64 if regression else np.int64,
            )
            rows = np.array([row for row, kept in zip(found_rows, keep, strict=True) if kept], dtype=np.int64)
            of_dropped = sum(is_dropped(cls) for cls in found)
            y = y[keep]
        elif regression:
            predicted = as_values(predictions, "predictions")
            y = as_values(labels, "targets", predicted.shape[0])
        else:
            predicted = as_predicted_classes(predictions, k, threshold=self.reference.threshold)
            y = as_labels(labels, k, predicted.shape[0])
        self._worker.count_feedback(unmatched, of_dropped)
        if y.size or unmatched or of_dropped:
            self._worker.enqueue(Feedback(y, predicted, rows), 0)
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
        if not self._worker.flush(timeout):
            return False
        return self.publisher.flush(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Close the last window (if it holds anything), deliver everything, stop the threads. Final.

        A closed monitor takes no more work: ``observe`` and ``feedback`` raise
        ``RuntimeError``; a second ``close`` does nothing more. Batches still
        waiting for room in the queue are dropped and counted.

        Waits for the gateway at most the push ``timeout`` (given to the
        constructor); with ``ignore_exceptions=False`` it pushes once more
        synchronously and a failed delivery raises :class:`PushError`.
        If the worker thread had died, the counters are published as they
        stand and the death is logged (``ignore_exceptions=True``) or raised
        as ``RuntimeError``.
        """
        if isinstance(self._worker, ProcessWorker):
            died, push_error = self._worker.stop(self.ignore_exceptions)
            self.publisher.close(0)
            if push_error is not None and not self.ignore_exceptions:
                raise push_error
        else:
            died = self._worker.stop()
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
        if self.worker_kind == "process":  # the child pushed; a publisher of the same group deletes it
            Publisher(self._push, self.publisher.job, self.publisher.grouping_key).delete()
        else:
            self.publisher.delete()

    def collect(self) -> list[Metric]:
        """The families a scrape serves (``registry.register(monitor)``): those a push sends."""
        if isinstance(self._worker, ProcessWorker) and self._worker.alive:
            self._worker.want_families(self.publisher.timeout)
        return self.publisher.collect()

    def describe(self) -> list[Metric]:
        return []

    def __enter__(self) -> DriftMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _raise_known_failure(self) -> None:
        if self.ignore_exceptions:
            return
        error = self._worker.push_error if isinstance(self._worker, ProcessWorker) else self.publisher.last_error
        if error is not None:
            raise error
