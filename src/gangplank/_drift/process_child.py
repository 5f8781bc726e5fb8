"""What the drift worker process runs: the ring in, an ordinary :class:`DriftWorker` inside, families out.

The child is forked by :class:`~gangplank._drift.process_worker.ProcessWorker`.
It lowers its priority to ``SCHED_IDLE`` (nice 19 where that is refused)
before it starts a thread, so every thread it has runs only on CPU the
serving process leaves idle. It ignores ``SIGINT`` (the serving process
decides when monitoring ends) and ends when its parent does: its pipe to the
parent reads end-of-file then, and its parent id changes.

It looks at the ring every ``BUSY_SECONDS`` while rows flow (every
``WAKE_SECONDS`` when none came for that long: nobody wakes it when the ring
fills). When ``TAKE_ROWS`` rows wait in the ring, ``WAKE_SECONDS`` after its
last take, or on a message, it takes the new rows of the ring (few, large batches: the
pipeline's cost per sample falls with the batch size), hands them to its
:class:`~gangplank._drift.worker.DriftWorker` (a
:class:`~gangplank._drift.tracker.WindowTracker` on a thread, as in the
serving process with ``worker="thread"``), and copies the serving process's
drop counters into it. It pushes itself (with a push address, at most once
a second), and sends the latest published state to the parent at most every
``FAMILIES_SECONDS``, at once for a flush or the stop: a snapshot of the
totals, and the pickled families for scrapes.

Messages from the parent (tuples): ``("feedback", upto, labels, predicted, rows)``,
``("flush", token, upto, timeout)``, ``("report", token)``,
``("stop", upto, ignore_exceptions)``;
``upto`` is the ring's row count when the message was sent, so that labels
and flushes come after the rows observed before them. To the parent:
``("state", snapshot)``, ``("families", families)``, ``("reported", token, report)``,
``("ready",)``, ``("failed", text)``,
``("flushed", token, ok)``, ``("stopped", died, push_error)``.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import threading
import time
from collections.abc import Mapping
from typing import cast

from ..transport import Publisher, PushSettings, logger
from .families import Totals
from .ring import DROPPED, LABELS_DROPPED, SCRAPED, UNMATCHED, SampleRing
from .settings import MonitorSettings
from .tracker import WindowTracker
from .worker import PUSH_SECONDS, WAKE_SECONDS, DriftWorker, Feedback

FAMILIES_SECONDS = 1.0  # a scrape of the serving process sees the worker's state at most this late (flush: at once)
BUSY_SECONDS = 0.005  # while rows wait in the ring, or came within WAKE_SECONDS, it is looked at this often ...
TAKE_ROWS = 256  # ... and taken once this many wait (or a quarter of the ring), or WAKE_SECONDS after the last take
NO_WAIT_LIMIT = 365 * 24 * 3600.0  # the child's own queue never drops: the ring is where drops happen


def lower_priority() -> str:
    """Put the calling thread (and the threads it starts) at ``SCHED_IDLE``, else nice 19; says which."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return "SCHED_IDLE"
    except (AttributeError, OSError):
        os.nice(max(0, 19 - os.nice(0)))
        return "nice 19"


def run_child(
    conn,
    ring: SampleRing,
    tracker: WindowTracker,
    push: PushSettings,
    job: str,
    grouping_key: Mapping[str, str],
    parent: int,
) -> None:
    """The child's whole life (``conn`` is its end of a duplex pipe); never returns normally."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    send_lock = threading.Lock()

    def send(message: tuple) -> None:
        with send_lock:
            conn.send(message)

    try:
        lower_priority()
        child = _Child(ring, tracker, Publisher(push, job, grouping_key, min_push_interval=PUSH_SECONDS), send)
    except Exception as error:
        send(("failed", f"{type(error).__name__}: {error}"))
        os._exit(1)
    send(("ready",))
    child.serve(conn, parent)
    os._exit(0)


class _Child:
    def __init__(self, ring: SampleRing, tracker: WindowTracker, publisher: Publisher, send):
        self.ring = ring
        self.send = send
        self.publisher = publisher
        self._synced = {DROPPED: 0, LABELS_DROPPED: 0, UNMATCHED: 0}
        self._snapshot: dict = {}
        self.pushes = publisher.settings.pushes
        self.scraped = False
        settings: MonitorSettings = tracker.settings
        tracker.let_callers_in = _nothing  # no request thread shares this process's GIL
        self._families_due = False  # a state was published that the parent has not been sent
        self._families_sent = 0.0  # monotonic
        self._state_due = False  # a state was published whose snapshot the parent has not been sent
        self._state_sent = 0.0  # monotonic
        self._taken_at = self._rows_at = time.monotonic()  # the last take, and the last that had rows
        self._take_rows = max(1, min(TAKE_ROWS, ring.capacity // 4))
        self.worker = DriftWorker(
            tracker,
            cast(Publisher, _Forwarding(publisher, self)),  # what DriftWorker calls of a Publisher: submit
            max_pending_samples=max(ring.capacity, settings.max_pending_samples or 0),
            max_wait_seconds=NO_WAIT_LIMIT,
        )
        self.worker.on_publish = self._remember
        self.worker.publish()  # the first state, with the snapshot this time
        self._send_state(hurry=True)
        self._send_families(hurry=True)  # a scrape right after the start sees the empty state

    def serve(self, conn, parent: int) -> None:
        pipe = select.poll()  # conn.poll(t) builds a selector on every call: this loop runs up to 200 times a second
        pipe.register(conn.fileno(), select.POLLIN)
        while True:
            try:  # TAKE_ROWS waiting are taken at once; fewer every WAKE_SECONDS; nothing: a message or WAKE_SECONDS
                waiting = self.ring.waiting_rows()
                # While rows flow, look every BUSY_SECONDS even when none wait: nobody wakes this process when the
                # ring fills, and a producer faster than the windows would otherwise wait WAKE_SECONDS for room.
                flowing = waiting or time.monotonic() - self._rows_at < WAKE_SECONDS
                wait = 0 if waiting >= self._take_rows else BUSY_SECONDS if flowing else WAKE_SECONDS
                message = conn.recv() if pipe.poll(wait * 1000) else None  # end-of-file too: recv raises
            except (EOFError, OSError):
                message = None
                parent = -1
            if parent != os.getppid():
                logger.error("gangplank: the drift worker process lost its parent; it ends")
                os._exit(1)
            if self.pushes and self.ring.counter(SCRAPED) and not self.scraped:
                self.scraped = True
                self._families_due = True  # the first scrape: the families from now on
            if message is not None or self._take_due():
                self._take(None if message is None else _UPTO[message[0]](message))
            self._sync_counters()
            if message is None:
                self._send_state(hurry=False)
                self._send_families(hurry=False)
                continue
            kind = message[0]
            if kind == "feedback":
                _, _, labels, predicted, rows = message
                self.worker.enqueue(Feedback(labels, predicted, rows), 0)
            elif kind == "flush":
                _, token, _, timeout = message
                deadline = time.monotonic() + timeout
                ok = self.worker.flush(timeout) and self.publisher.flush(max(0.0, deadline - time.monotonic()))
                self._send_state(hurry=True)
                self._send_families(hurry=True)
                self.send(("flushed", token, ok))
            elif kind == "report":
                self.send(("reported", message[1], pickle.dumps(self._report())))
            elif kind == "error":  # an exception the parent went on after (the Keras callback): counted here
                _, _, stage, text = message
                self.worker.count_error(stage, RuntimeError(text))
            elif kind == "stop":
                stopped = self._stop(ignore_exceptions=message[2])
                self._send_state(hurry=True)
                self._send_families(hurry=True)
                self.send(("stopped", *stopped, pickle.dumps(self._report())))
                return

    @property
    def sends_families(self) -> bool:
        """Whether the parent needs the families: it serves scrapes only, or it was scraped."""
        return not self.pushes or self.scraped

    def _take_due(self) -> bool:
        waiting = self.ring.waiting_rows()
        return waiting >= self._take_rows or bool(waiting) and time.monotonic() - self._taken_at >= WAKE_SECONDS

    def _take(self, upto: int | None) -> int:
        """Hand the new rows (up to stream row ``upto``) to the worker, copied out (their slots are free at once: the
        ring and the worker's queue are two buffers); how many there were."""
        self._taken_at = time.monotonic()
        batches = self.ring.take(upto)
        for batch in batches:
            self.worker.enqueue(batch, batch.rows)
        if batches:
            self._rows_at = self._taken_at
        return sum(batch.rows for batch in batches)

    def _sync_counters(self) -> None:
        """Copy the serving process's drop counters into the worker."""
        counts = {word: self.ring.counter(word) for word in self._synced}
        new = {word: counts[word] - self._synced[word] for word in counts}
        if any(new.values()):
            self.worker.count_dropped(new[DROPPED], new[LABELS_DROPPED])
            self.worker.count_feedback(new[UNMATCHED], 0)
            self._synced = counts

    def _stop(self, ignore_exceptions: bool) -> tuple:
        died = self.worker.stop()
        push_error = None
        try:
            if ignore_exceptions:
                self.publisher.close(self.publisher.timeout)
            else:
                try:
                    self.publisher.push_now()
                finally:
                    self.publisher.close(0)
        except Exception as error:
            push_error = error
        last = self.worker.last_error
        return died, push_error, None if last is None else f"{type(last).__name__}: {last}"

    def families_published(self) -> None:
        """The worker published a new state (its families are built when pushed, or when sent here)."""
        self._families_due = self.sends_families
        self._state_due = True

    def _send_state(self, hurry: bool) -> None:
        """Send the latest snapshot to the parent: at once for a flush or the stop, else once a FAMILIES_SECONDS."""
        now = time.monotonic()
        if not self._state_due or not hurry and now - self._state_sent < FAMILIES_SECONDS:
            return
        self._state_due = False  # before reading the snapshot: one published meanwhile is sent next time
        self._state_sent = now
        self.send(("state", self._snapshot))

    def _send_families(self, hurry: bool) -> None:
        """Send the latest families to the parent: at once for a flush or the stop, else at most every FAMILIES_SECONDS.

        Built once for the push and this; never for each window when nobody reads them.
        """
        now = time.monotonic()
        if not self._families_due or not hurry and now - self._families_sent < FAMILIES_SECONDS:
            return
        self._families_due = False
        self._families_sent = now
        families = self.publisher.store.metrics()
        self.send(("families", pickle.dumps(families, protocol=pickle.HIGHEST_PROTOCOL)))

    def _report(self):
        return self.worker.tracker.last_report

    def _remember(self, totals: Totals, report) -> None:
        """The state being published (called by the worker just before it hands the families over)."""
        worker = self.worker
        self._snapshot = {  # small: the report (per-feature arrays, about 1 MB for MNIST) is sent when asked
            "totals": totals,
            "lost_samples": worker.tracker.lost_samples,
            "errors": totals.worker_errors,
            "push_error": self.publisher.last_error,
            "last_error": None if worker.last_error is None else repr(worker.last_error),
        }


_UPTO = {  # the ring's row count a message was sent at (the rows to take before it), by kind
    "feedback": lambda message: message[1],
    "flush": lambda message: message[2],
    "stop": lambda message: message[1],
    "report": lambda message: None,
    "error": lambda message: message[1],
}


def _nothing() -> None:
    pass


class _Forwarding:
    """The child worker's publisher: builds each state's families once, pushes them and sends them to the parent."""

    def __init__(self, publisher: Publisher, child: _Child):
        self._publisher = publisher
        self._child = child

    def submit(self, part: str, metrics) -> None:
        self._publisher.submit(part, metrics)  # a function: built once, when pushed or sent to the parent
        self._child.families_published()
