"""The drift monitor's worker: the bounded queue, its wake-up rules, the thread, drops, errors, publishing.

Callers hand items over with :meth:`DriftWorker.enqueue` (a
:class:`~gangplank._drift.batch.Batch`, or a :class:`Feedback`); the thread
takes what has queued up (every ``WAKE_SAMPLES`` samples or ``WAKE_SECONDS``),
joins consecutive batches and feeds them to its
:class:`~gangplank._drift.tracker.WindowTracker`, and publishes: after every
closed window, and counters that changed between windows at most every
``COUNTS_SECONDS`` (at once for a flush or close).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ..transport import Publisher
from .batch import Batch
from .comparison import WindowReport
from .families import WORKER_STAGES, Totals, families
from .tracker import WindowTracker

logger = logging.getLogger("gangplank")

WAKE_SAMPLES = 256  # the worker wakes when this many samples wait ...
WAKE_SECONDS = 0.05  # ... or when the oldest has waited this long: few wake-ups, few numpy calls per sample
COUNTS_SECONDS = 1.0  # counters that changed between windows are published at most this often (flush: at once)
# The monitor pushes at most this often (flush and close: at once). Prometheus reads the gateway once per
# scrape interval anyway; counters are cumulative and the recent-window gauges count windows, so a push
# that carries several windows loses none of them.
PUSH_SECONDS = 1.0
JOIN_ROWS = 1024  # the largest batch the worker joins queued ones into: bounds the copy
OWN_RUN_ROWS = 128  # a batch this large is processed as it is: joining pays for small batches, not for a copy of these


class Feedback(NamedTuple):
    """Labels for the worker: true classes, the predicted ones, and their stream rows (``None``: current window)."""

    labels: np.ndarray
    predicted: np.ndarray
    rows: np.ndarray | None


class DriftWorker:
    """One thread that owns a :class:`WindowTracker`; callers only touch the queue (under ``_cond``).

    Args:
        tracker: the windows (its ``on_close`` and ``caught`` are set here).
        publisher: where the families go.
        max_pending_samples, max_wait_seconds: the queue's bound and how long
            :meth:`enqueue` waits for room before dropping.
        on_window: the user's callback, called on this thread after a window is published.
    """

    def __init__(
        self,
        tracker: WindowTracker,
        publisher: Publisher,
        *,
        max_pending_samples: int,
        max_wait_seconds: float,
        on_window: Callable[[WindowReport], None] | None = None,
    ):
        self.tracker = tracker
        self.publisher = publisher
        self.max_pending_samples = max_pending_samples
        self.max_wait_seconds = max_wait_seconds
        self.on_window = on_window
        self.on_publish: Callable[[Totals, WindowReport | None], None] | None = None  # before each hand-over
        self.last_error: BaseException | None = None  # the latest exception caught (or ended on)
        tracker.on_close = self._window_closed
        tracker.caught = self.count_error

        # The worker thread's alone.
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
        self._errors = dict.fromkeys(WORKER_STAGES, 0)
        self._error_kinds: set = set()  # (stage, exception type) already logged
        self._accepted_rows = 0  # rows of batches queued so far: the next batch's first stream row
        self._received = 0  # items queued so far
        self._processed = 0  # items the worker has finished
        self._flushes_asked = 0  # flush() calls so far; the worker answers each with a pass ...
        self._flushes_done = 0  # ... and says here which it answered
        self._waiting = 0  # callers waiting for room in the queue
        self._stopping = False
        self._done = False  # the thread has ended (after stop(), or it died)
        self._oldest_queued = 0.0
        self._cond = threading.Condition()
        self.publish()
        self._thread = threading.Thread(target=self._run, name=f"gangplank-drift-{tracker.settings.agent}", daemon=True)
        self._thread.start()

    # -- read-only views ------------------------------------------------------------
    @property
    def dropped(self) -> int:
        """Samples left out of every window (queue full, closing, or lost to an exception)."""
        with self._cond:
            return self._dropped + self.tracker.lost_samples

    @property
    def unmatched(self) -> int:
        with self._cond:
            return self._unmatched

    @property
    def errors(self) -> dict[str, int]:
        """Exceptions caught, by stage."""
        with self._cond:
            return dict(self._errors)

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    @property
    def alive(self) -> bool:
        with self._cond:
            return not self._done

    # -- what callers use -------------------------------------------------------------
    def enqueue(self, item: Batch | Feedback, samples: int) -> int | None:
        """Hand ``item`` to the worker: the stream row its first sample is (the worker numbers
        rows in the same order); ``None`` if it was dropped (and counted) instead.

        Raises ``RuntimeError`` once :meth:`stop` was called.
        """
        with self._cond:
            self._refuse_if_stopping()
            if not self._room_for(samples):
                self._wait_for_room(samples)
            if self._stopping or self._done or not self._room_for(samples):
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

    def count_dropped(self, samples: int, labels: int) -> None:
        """Count samples (and their labels) that were dropped before reaching this worker."""
        with self._cond:
            self._dropped += samples
            self._feedback_dropped += labels

    def count_feedback(self, unmatched: int, of_dropped: int) -> None:
        """Count labels that reach no window: unknown ids, and ids of dropped samples."""
        with self._cond:
            self._refuse_if_stopping()
            self._unmatched += unmatched
            self._feedback_dropped += of_dropped

    def flush(self, timeout: float) -> bool:
        """Wait until every item queued so far is processed and a pass published what changed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._received
            self._flushes_asked += 1
            asked = self._flushes_asked
            self._cond.notify_all()
            while self._processed < target or (self._flushes_done < asked and not self._done):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._done:
                    return False
                self._cond.wait(remaining)
            return not (self._done and not self._finished)

    def stop(self) -> bool:
        """Close the last window, publish, end the thread; returns whether the thread had died before."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join()
        died = not self._finished
        if died:
            self.publish()  # the worker is gone: nothing else touches its state now
        return died

    def publish(self) -> None:
        """Hand the current state to the publisher (its families are built when a push or scrape needs them)."""
        totals = self.tracker.totals.copy()
        with self._cond:
            self._published_counts = self._counts()
            totals.dropped = self._dropped + self.tracker.lost_samples
            totals.feedback_unmatched = self._unmatched
            totals.feedback_dropped = self._feedback_dropped + self.tracker.lost_labels
            totals.worker_errors = dict(self._errors)
        self._published_at = time.monotonic()
        report = self.tracker.last_report
        report = None if report is self._unpublishable else report
        try:
            if self.on_publish is not None:
                self.on_publish(totals, report)
            self.publisher.submit("predict", functools.partial(self._families, totals, report, self.tracker.status))
        except Exception as error:
            self.count_error("publish", error)

    # -- the hand-over ------------------------------------------------------------------
    def _refuse_if_stopping(self) -> None:
        if self._stopping:
            raise RuntimeError("this DriftMonitor is closed: close() is final; make a new one")

    def _room_for(self, samples: int) -> bool:
        """Whether the queue takes ``samples`` more (under ``_cond``); an empty queue takes any batch."""
        return not samples or not self._queued_samples or self._queued_samples + samples <= self.max_pending_samples

    def _wait_for_room(self, samples: int) -> None:
        """Wait (under ``_cond``) up to ``max_wait_seconds`` for room; ``stop()`` and a dead worker end the wait."""
        deadline = time.monotonic() + self.max_wait_seconds
        self._waiting += 1
        try:
            while not (self._room_for(samples) or self._stopping or self._done):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._cond.wait(remaining)
        finally:
            self._waiting -= 1
            if self._stopping:
                self._cond.notify_all()  # the worker's last pass waits for every waiter to count its drop

    def _count_dropped(self, item: Batch | Feedback) -> None:
        """Count a batch (its samples and labels) or labels that never reach a window (under ``_cond``)."""
        if isinstance(item, Batch):
            self._dropped += item.rows
            self._feedback_dropped += 0 if item.labels is None and item.targets is None else item.rows
        else:
            self._feedback_dropped += len(item.labels)

    # -- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._work()
        except BaseException as error:  # what no step may catch (SystemExit in a callback): the thread ends
            self.last_error = error
            raise
        finally:
            with self._cond:
                self._done = True
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
                    if isinstance(run, Batch):
                        self.tracker.add(run)
                    else:
                        self.tracker.add_feedback(*run)
                if not items:
                    self.tracker.close_if_expired()
                if stopping and self.tracker.finish():
                    self.publish()
            except Exception as error:  # each step guards itself; this keeps the thread whatever slips through
                self.count_error("process", error)
            with self._cond:
                stale = self._counts_stale(hurry=stopping or answering > self._flushes_done)
            if stale:
                self.publish()  # counters that changed between windows, current at every scrape and push
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
        if self._stopping or self.tracker.expired() or self._flushes_asked > self._flushes_done:
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
        expiry = self.tracker.seconds_to_expiry()
        if expiry is not None:
            waits.append(expiry)
        elif self.tracker.settings.window_seconds is not None:
            waits.append(self.tracker.settings.window_seconds)
        return max(0.0, min(waits))

    def _window_closed(self, report: WindowReport) -> None:
        self.publish()
        if self.on_window is not None:
            try:
                self.on_window(report)
            except Exception as error:
                self.count_error("on_window", error)

    def _families(self, totals: Totals, report: WindowReport | None, status) -> list:
        """The families of one published state (built on a push or scrape thread).

        A report they cannot be built from is counted, and left out of this
        state and the next ones: the counters still go out.
        """
        try:
            return families(totals, report, status)
        except Exception as error:
            if report is None:
                raise
            self._unpublishable = report
            self.count_error("publish", error)
            return families(totals, None, status)

    def _counts(self) -> tuple:
        """The counters that change between windows (under ``_cond``)."""
        tracker = self.tracker
        errors = sum(self._errors.values())
        dropped = self._dropped + tracker.lost_samples
        feedback_dropped = self._feedback_dropped + tracker.lost_labels
        normalised = tracker.totals.probabilities_normalised
        return dropped, self._unmatched, feedback_dropped, errors, normalised, tracker.evidence

    def _counts_stale(self, hurry: bool) -> bool:
        """Whether the counters changed since the last publish and are due (under ``_cond``).

        Due at once when ``hurry`` (a flush, close), else ``COUNTS_SECONDS`` after the last publish.
        """
        if self._counts() == self._published_counts:
            return False
        return hurry or time.monotonic() - self._published_at >= COUNTS_SECONDS

    def count_error(self, stage: str, error: Exception) -> None:
        """Count an exception the worker, or a caller such as the Keras callback, went on after; log the first
        of each kind (stage and type)."""
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
                self.tracker.settings.agent,
                exc_info=error,
            )


def _runs(items: list) -> list:
    """Queued items with consecutive small batches of the same kind joined into one (feedback items and large
    batches kept as they are)."""
    runs: list = []
    pending: list[Batch] = []
    for item in items:
        small = isinstance(item, Batch) and item.rows < OWN_RUN_ROWS
        fits = small and sum(b.rows for b in pending) + item.rows <= JOIN_ROWS
        if small and (not pending or (pending[-1].joins(item) and fits)):
            pending.append(item)
            continue
        if pending:
            runs.append(Batch.joined(pending))
            pending = []
        if small:
            pending.append(item)
        else:
            runs.append(item)
    if pending:
        runs.append(Batch.joined(pending))
    return runs
