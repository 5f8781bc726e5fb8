"""The windows of one monitored stream, single-threaded: batches and labels in, closed windows out.

A :class:`WindowTracker` owns the open window, the cumulative totals, the
recent windows, the sequential charts and the status. It knows no threads,
queues or transport: :class:`~gangplank._drift.worker.DriftWorker` drives it
on its thread, and a test can drive it directly, with its own clock.

Example:
    >>> import numpy as np
    >>> from gangplank import DriftReference
    >>> from gangplank._drift.settings import MonitorSettings
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(400, 3)); p = rng.dirichlet([1, 1], size=400)
    >>> reference = DriftReference.fit(x, p, window_size=100, n_simulations=20)
    >>> closed = []
    >>> tracker = WindowTracker(reference, MonitorSettings(window_size=100), on_close=closed.append)
    >>> tracker.add(reference.prepare(x[:250], p[:250], normalise=False))
    >>> [report.samples for report in closed], tracker.window.samples, tracker.totals.samples
    ([100, 100], 50, 200)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from .accuracy_charts import AccuracyCharts, outcomes_per_month
from .batch import Batch
from .comparison import WindowReport
from .families import Status, Totals
from .recent_windows import RecentWindows, labels_for_floor
from .settings import MonitorSettings
from .window import Window

if TYPE_CHECKING:
    from ..reference import DriftReference

INTERVAL_SMOOTHING = 0.2  # weight of the newest interval in window_interval_seconds
SMALL_TIMED_WINDOW = 0.5  # a window closed by time under this share of the calibrated size is warned about (once)

logger = logging.getLogger("gangplank")


def _raise(stage: str, error: Exception) -> None:
    raise error


class WindowTracker:
    """Fills windows of ``settings.window_size`` samples (or ``window_seconds``), compares and records them.

    Args:
        reference: the :class:`~gangplank.DriftReference` (thresholds as the monitor uses them).
        settings: the monitor's :class:`~gangplank._drift.settings.MonitorSettings`.
        on_close: called with each closed window's report, after it is recorded.
        caught: called with ``(stage, error)`` for an exception the tracker goes on
            after (the rows it concerned are counted in :attr:`lost_samples` /
            :attr:`lost_labels`); by default the exception is raised.
        clock: monotonic seconds (window age, intervals); ``wall_clock``: Unix time (the close gauge).
    """

    def __init__(
        self,
        reference: DriftReference,
        settings: MonitorSettings,
        *,
        on_close: Callable[[WindowReport], None] | None = None,
        caught: Callable[[str, Exception], None] = _raise,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.reference = reference
        self.settings = settings
        self.on_close = on_close
        self.caught = caught
        self.clock = clock
        self.wall_clock = wall_clock
        size = settings.window_size
        self._window = reference.new_window()
        self._window_started = 0.0
        self._window_first_row = 0  # the stream row (0, 1, … over the monitor's life) the open window starts at
        self._rows_seen = 0
        self._charts = AccuracyCharts.of(
            reference.accuracy,
            reference.profile.labelled_rows,
            tolerance=reference.thresholds.accuracy_tolerance,
            labels_per_month=outcomes_per_month(settings.labels_per_window or size, settings.windows_per_month),
            shadow_agreement=reference.shadow_agreement,
            shadow_rows=reference.profile.shadow_rows,
            shadow_per_month=outcomes_per_month(size, settings.windows_per_month),
            error_within=reference.profile.errors.within,
            error_rows=reference.profile.errors.rows,
        )
        self._totals = Totals(reference.n_classes)
        labels_needed = labels_for_floor(reference.accuracy, settings.quality_floor, settings.min_feedback)
        self._recent = RecentWindows(settings.recent_windows, labels_needed)
        self._last_closed = math.nan  # clock
        self._closed_at = math.nan  # wall clock, for the gauge
        self._started_at = wall_clock()  # for the liveness of an agent that never closes a window
        self._interval = math.nan
        self.evidence = 0  # labels the charts took (a change to publish between windows)
        self.lost_samples = 0  # rows taken but not added to a window (an exception)
        self.lost_labels = 0
        self.last_report: WindowReport | None = None
        self._warned_small = False  # a window closed by time far under the calibrated size was warned about
        self.let_callers_in = _let_callers_in  # a tracker alone in its process (no callers) sets a no-op
        self._status: Status | None = None  # built when read (see status)

    # -- read-only views ------------------------------------------------------
    @property
    def window(self) -> Window:
        """The open window (read it, do not add to it)."""
        return self._window

    @property
    def totals(self) -> Totals:
        """The cumulative counts of closed windows and labels."""
        return self._totals

    @property
    def charts(self) -> AccuracyCharts:
        return self._charts

    @property
    def recent(self) -> RecentWindows:
        return self._recent

    @property
    def status(self) -> Status:
        """What the monitor knows besides the last window, as of the last window closed or labels taken
        (built on its first read after either: most windows and labels change it before it is read)."""
        if self._status is None:
            self._status = self._make_status()
        return self._status

    # -- input ------------------------------------------------------------------
    def add(self, batch: Batch) -> None:
        """Add a validated batch, closing every window it fills (a batch that crosses a boundary is split)."""
        self.close_if_expired()
        start, first_row = 0, self._rows_seen
        self._rows_seen += batch.rows
        try:
            batch = batch.normalise()
            self._totals.probabilities_normalised += batch.normalised
            while start < batch.rows:
                if not self._window.samples:
                    self._window_started = self.clock()  # window_seconds count from a window's first sample
                    self._window_first_row = first_row + start
                stop = start + min(batch.rows - start, self.settings.window_size - self._window.samples)
                piece = batch[start:stop]
                predicted = self._window.add_classified(piece, first_row + start)  # the ring's row numbers
                self._add_outcomes(piece, predicted)
                self.let_callers_in()
                if self._window.samples >= self.settings.window_size:
                    self.close_window()
                    self.let_callers_in()
                start = stop
        except Exception as error:
            self._lose(batch.rows - start, 0 if batch.labels is None else batch.rows - start)
            self.caught("process", error)

    def add_feedback(self, labels: np.ndarray, predicted: np.ndarray, rows: np.ndarray | None = None) -> None:
        """Labels that arrived later: to the window of their prediction (stream ``rows``), and to the charts.

        For a regression reference ``labels`` are targets and ``predicted`` the predictions.
        """
        if self.reference.is_regression:
            self._add_errors(labels, predicted)
            return
        try:
            self._charts.add("labels", labels == predicted)
            late = np.zeros(labels.size, dtype=bool) if rows is None else rows < self._window_first_row
            self._window.add_feedback(labels[~late], predicted[~late])
            if late.any():  # their windows closed: pooled recent accuracy and the totals
                assert rows is not None
                self._recent.credit(rows[late], labels[late] == predicted[late])
                k = self.reference.n_classes
                late_confusion = np.bincount(labels[late] * k + predicted[late], minlength=k * k).reshape(k, k)
                self._totals.add_feedback(late_confusion)
            self.evidence += labels.size
            self._status = None
        except Exception as error:
            self._lose(0, labels.size)
            self.caught("process", error)

    def _add_errors(self, targets: np.ndarray, predictions: np.ndarray) -> None:
        """A regression model's later targets: their errors to the open window (the MAE and RMSE of a window are
        those of the targets that arrived while it was open, whichever window their prediction was in), and to
        the charts."""
        try:
            errors = targets - predictions
            self._charts.add("error", self.reference.profile.errors.within_cut(errors))
            self._window.add_errors(errors)
            self.evidence += errors.size
            self._status = None
        except Exception as error:
            self._lose(0, targets.size)
            self.caught("process", error)

    # -- closing ----------------------------------------------------------------
    def expired(self) -> bool:
        """Whether the open window holds samples and is ``window_seconds`` old."""
        return self.seconds_to_expiry() == 0.0

    def seconds_to_expiry(self) -> float | None:
        """Seconds until the open window closes by time (``None``: never, or it is empty)."""
        if self.settings.window_seconds is None or not self._window.samples:
            return None
        return max(0.0, self._window_started + self.settings.window_seconds - self.clock())

    def close_if_expired(self) -> bool:
        """Close the open window if it expired; returns whether it did."""
        if not self.expired():
            return False
        self._warn_if_small(self._window.samples)
        self.close_window()
        return True

    def _warn_if_small(self, samples: int) -> None:
        """Say once that ``window_seconds`` closes windows far smaller than the reference was calibrated for."""
        calibrated = self.reference.window_size
        if self._warned_small or samples >= SMALL_TIMED_WINDOW * calibrated:
            return
        self._warned_small = True
        limit = self.reference.thresholds.min_window_samples
        logger.warning(
            "gangplank: window_seconds=%g closed a window of %d samples, but the reference was calibrated for "
            "%d: its thresholds hold only near that size%s; fit the reference with window_size near the samples "
            "window_seconds really collects (requests per second x window_seconds)",
            self.settings.window_seconds,
            samples,
            calibrated,
            f", and windows under min_window_samples={limit} never alarm" if samples < limit else "",
        )

    def close_window(self) -> None:
        """Compare the open window with the reference, record it, start an empty one, call ``on_close``."""
        samples, labelled = self._window.samples, self._window.labelled
        try:
            report = self.reference.compare(self._window)
            self._window.reset()
            self._record(report)
        except Exception as error:  # the window is lost, counted; the next one starts clean
            self._window.reset()
            self._lose(samples, labelled)
            self.caught("compare", error)
            return
        if self.on_close is not None:
            self.on_close(report)

    def finish(self) -> bool:
        """The last pass: close a non-empty window; returns whether labels-only state changed besides.

        Labels after the last sample are counted with the last window's gauges
        kept (a window of labels alone would report drift_detected=0 over the last real one).
        """
        if self._window.samples:
            self.close_window()
            return False
        window = self._window
        if window.error_rows:  # a regression model's targets after its last sample
            self._totals.add_error_sums(window.error_rows, window.absolute_error_sum, window.squared_error_sum)
            window.reset()
            self._status = None
            return True
        if not self._window.labelled:
            return False
        confusion = self._window.confusion.copy()
        self._totals.add_feedback(confusion)
        self._recent.add_feedback(int(confusion.sum()), int(np.trace(confusion)))
        self._window.reset()
        self._status = None
        return True

    # -- the figures --------------------------------------------------------------
    def _add_outcomes(self, batch: Batch, predicted: np.ndarray) -> None:
        """Feed the sequential charts a batch's labels (right or wrong) and shadow predictions (agreed or not),
        given its ``predicted`` classes."""
        errors = batch.errors
        if errors is not None:
            self._charts.add("error", self.reference.profile.errors.within_cut(errors))
        if batch.labels is None and batch.shadow is None:
            return
        if batch.labels is not None:
            self._charts.add("labels", batch.labels == predicted)
        if batch.shadow is not None:
            self._charts.add("shadow", batch.shadow == predicted)

    def _record(self, report: WindowReport) -> None:
        """Add a closed window's report to the totals, the recent windows and the status."""
        now = self.clock()
        since = now - (self._last_closed if math.isfinite(self._last_closed) else self._window_started)
        smoothed = INTERVAL_SMOOTHING * since + (1 - INTERVAL_SMOOTHING) * self._interval
        self._interval = since if not math.isfinite(self._interval) else smoothed
        self._last_closed = now
        self._totals.add_window(report)
        rows = (self._window_first_row, self._window_first_row + report.samples)
        self._recent.add(report.signals, report.labelled, report.correct, rows)
        self._window_first_row = rows[1]  # the next window starts there, whenever its first sample comes
        self._closed_at = self.wall_clock()
        self._status = None
        self.last_report = report

    def _lose(self, samples: int, labels: int) -> None:
        self.lost_samples += samples
        self.lost_labels += labels

    def _make_status(self) -> Status:
        return Status(
            started_at=self._started_at,
            window_seconds=self.settings.window_seconds,
            closed_at=self._closed_at,
            interval=self._interval,
            recent_signals=self._recent.signal_counts(),
            recent_windows=self._recent.windows,
            sustained_windows=self.settings.sustained_windows,
            recent_feedback=self._recent.pooled_feedback(),
            accuracy_tolerance=self.reference.thresholds.accuracy_tolerance,
            quality_floor=self.settings.quality_floor,
            min_feedback=self.settings.min_feedback,
            input_sampling_rate=1.0 / self.reference.input_stride,
            charts=self._charts.states(),
            regression=self.reference.is_regression,
            error_cut=self.reference.profile.errors.quantile,
        )


def _let_callers_in() -> None:
    """Hand the GIL over between two pieces of work.

    A thread waiting for the GIL otherwise waits until the running one has
    run for ``sys.getswitchinterval()`` (5 ms): the worker's numpy calls are
    too small to release it, and a request would wait that long.
    """
    time.sleep(0)
