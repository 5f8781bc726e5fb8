"""The drift worker as a separate process at idle priority: the serving process only copies rows into shared memory.

:class:`ProcessWorker` answers what :class:`~gangplank._drift.worker.DriftWorker`
answers (``enqueue``, ``count_feedback``, ``flush``, ``stop``, ``dropped``,
``alive``), for ``DriftMonitor(..., worker="process")``. It makes a
:class:`~gangplank._drift.ring.SampleRing` of ``max_pending_samples`` rows,
forks a child (:mod:`gangplank._drift.process_child`) that runs the windows,
comparisons and pushes at ``SCHED_IDLE``, and keeps two threads of its own
that sleep in the pipe to the child: one sends labels, flushes and the stop
(a caller never blocks on a child starved of CPU), one receives each
published state (its families are unpickled only when a scrape asks).

A batch that finds the ring full waits up to ``max_wait_seconds`` for room,
then is dropped and counted (``gangplank_predict_samples_dropped_total``).
A batch larger than the ring never fits: it is dropped and counted too.

Example:
    >>> import os
    >>> import numpy as np
    >>> from gangplank import DriftMonitor, DriftReference
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(1000, 3)); p = rng.dirichlet([1, 1], size=1000)
    >>> reference = DriftReference.fit(x, p, window_size=100, n_simulations=50)
    >>> with DriftMonitor(None, "demo", reference=reference, worker="process") as monitor:
    ...     monitor.observe(x[:250], p[:250])
    ...     flushed = monitor.flush(10)
    ...     flushed, monitor.totals.samples, monitor.totals.windows, monitor.worker.pid != os.getpid()
    (True, 200, 2, True)
    >>> monitor.totals.samples  # close() closed the last window of 50
    250
"""

from __future__ import annotations

import gc
import itertools
import multiprocessing
import os
import pickle
import platform
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

from ..transport import Publisher, PushSettings
from .batch import Batch
from .comparison import WindowReport
from .families import Totals
from .intake import all_finite
from .process_child import run_child
from .ring import DROPPED, LABELS_DROPPED, NOT_FINITE, SCRAPED, UNMATCHED, SampleRing
from .tracker import WindowTracker
from .worker import Feedback

START_SECONDS = 60.0  # how long the child may take to say it is ready
ROOM_POLL_SECONDS = 0.001  # a caller waiting for room looks again this often
MAX_PENDING_LABELS = 1_000_000  # labels waiting for the pipe; more are dropped and counted
STOP_GRACE_SECONDS = 30.0  # beyond the push timeout, for the child's last window before it is killed


class ProcessWorker:
    """The serving process's side of a drift worker process.

    Args:
        tracker: the windows, made here and run in the child (the parent never touches it again).
        push: the push settings (the child pushes); ``job``, ``grouping_key``: the group.
        scrape: the parent's publisher, fed the child's families for scrapes.
        max_pending_samples: the ring's rows; ``max_wait_seconds``: how long a caller waits for room.

    Raises ``RuntimeError`` saying why when the child cannot start.
    """

    def __init__(
        self,
        tracker: WindowTracker,
        push: PushSettings,
        job: str,
        grouping_key: Mapping[str, str],
        *,
        scrape: Publisher,
        max_pending_samples: int,
        max_wait_seconds: float,
    ):
        self.max_pending_samples = max_pending_samples
        self.max_wait_seconds = max_wait_seconds
        self.on_window: Callable[[WindowReport], None] | None = None  # refused: see DriftMonitor
        self._scrape = scrape
        self._agent = tracker.settings.agent
        self._cond = threading.Condition()
        self._snapshot: dict = {}
        self._final_report: WindowReport | None = None
        self._replies: dict = {}
        self._tokens = itertools.count()
        self._outbox: deque = deque()
        self._pending_labels = 0
        self._stopping = False
        self._done = False  # the child has ended (stopped, or died)
        self._waiting = 0
        self.ring = _make_ring(max_pending_samples, tracker)
        self._conn, child_end = _pipe()
        self._process = _fork(child_end, self.ring, tracker, push, job, grouping_key)
        child_end.close()
        self._wait_until_ready()
        self._receiver = threading.Thread(target=self._receive, name=f"gangplank-drift-in-{self._agent}", daemon=True)
        self._courier = threading.Thread(target=self._deliver, name=f"gangplank-drift-out-{self._agent}", daemon=True)
        self._receiver.start()
        self._courier.start()

    # -- read-only views --------------------------------------------------------------------
    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._process.pid

    @property
    def threads(self) -> tuple[threading.Thread, threading.Thread]:
        """This process's two threads of the worker (they sleep in the pipe)."""
        return self._receiver, self._courier

    @property
    def alive(self) -> bool:
        with self._cond:
            return not self._done

    @property
    def dropped(self) -> int:
        """Samples left out of every window: dropped here, or lost in the child (as last published)."""
        with self.ring.lock:
            here = self.ring.counter(DROPPED)
        with self._cond:
            return here + self._snapshot.get("lost_samples", 0)

    @property
    def errors(self) -> dict[str, int]:
        with self._cond:
            return dict(self._snapshot.get("errors") or {})

    @property
    def totals(self) -> Totals | None:
        """The totals as last published by the child (``None`` before its first window)."""
        with self._cond:
            return self._snapshot.get("totals")

    def last_report(self, timeout: float) -> WindowReport | None:
        """The child's last report (asked for: about 1 MB for MNIST), or after :meth:`stop` its final one."""
        with self._cond:
            if self._done:
                return self._final_report
        token = next(self._tokens)
        if not self._post(("report", token)):
            return self._final_report
        reply = self._reply(token, timeout)
        return self._final_report if reply is None else pickle.loads(reply)

    def want_families(self, timeout: float) -> None:
        """A scrape came: a pushing child starts sending its families, beginning now (within ``timeout``)."""
        with self.ring.lock:
            first = not self.ring.counter(SCRAPED)
            self.ring.count(SCRAPED, 1 if first else 0)
        if first:
            self.flush(timeout)

    @property
    def push_error(self):
        with self._cond:
            return self._snapshot.get("push_error")

    @property
    def last_error(self) -> BaseException | None:
        with self._cond:
            text = self._snapshot.get("last_error")
        return None if text is None else RuntimeError(f"in the drift worker process: {text}")

    # -- what callers use -------------------------------------------------------------------
    def enqueue(self, item: Batch | Feedback, samples: int) -> int | None:
        """Copy a batch into the ring (its first stream row), or hand labels to the courier; ``None``: dropped."""
        if isinstance(item, Feedback):
            return self._send_feedback(item)
        return self.write(item.inputs, item.probabilities, item.labels, item.shadow)

    def write(self, inputs, probabilities, labels, shadow, *, check_finite: bool = False) -> int | None:
        """Copy checked rows into the ring: their first stream row, or ``None`` if dropped (and counted).

        With ``check_finite``, probabilities with NaN or ±Inf return :data:`~gangplank._drift.ring.NOT_FINITE`
        and record nothing, whether or not the ring has room.
        """
        ring = self.ring
        with ring.lock:
            self._refuse_if_stopping()
            if not self._done:
                first = ring.write(inputs, probabilities, labels, shadow, check_finite=check_finite)
                if first is not None:
                    return first
            if check_finite and not all_finite(probabilities):  # no room to check it in: checked where it is
                return NOT_FINITE
            rows = probabilities.shape[0]
            if self._done or rows > ring.capacity or not self.max_wait_seconds:
                self._drop(rows, labels is not None)
                return None
            self._waiting += 1
        try:
            deadline = time.monotonic() + self.max_wait_seconds
            while time.monotonic() < deadline:
                time.sleep(ROOM_POLL_SECONDS)  # the child frees room from another process: no one to wake us
                with ring.lock:
                    if self._stopping or self._done:
                        break
                    first = ring.write(inputs, probabilities, labels, shadow)
                    if first is not None:
                        return first
            with ring.lock:
                self._drop(rows, labels is not None)
            return None
        finally:
            with ring.lock:
                self._waiting -= 1

    def count_error(self, stage: str, error: Exception) -> None:
        """Count an exception a caller went on after (e.g. in the Keras callback) where the counters live: the child,
        which logs the first of each kind."""
        with self.ring.lock:
            upto = self.ring.written
        self._post(("error", upto, stage, f"{type(error).__name__}: {error}"))

    def count_feedback(self, unmatched: int, of_dropped: int) -> None:
        with self.ring.lock:
            self._refuse_if_stopping()
            self.ring.count(UNMATCHED, unmatched)
            self.ring.count(LABELS_DROPPED, of_dropped)

    def flush(self, timeout: float) -> bool:
        """Wait until the child has processed every row written so far and published (and pushed) it."""
        token = next(self._tokens)
        with self.ring.lock:
            upto = self.ring.written
        if not self._post(("flush", token, upto, timeout)):
            return False
        return bool(self._reply(token, timeout))

    def stop(self, ignore_exceptions: bool = True) -> tuple[bool, BaseException | None]:
        """Drain, close the last window, push, end the child: (whether it had died, the last push's error)."""
        with self.ring.lock:
            self._stopping = True
            self.ring.refusing = True  # write_plain leaves every batch to write(), which refuses it
        while True:  # callers still waiting for room drop and count their batch first
            with self.ring.lock:
                if not self._waiting:
                    upto = self.ring.written
                    break
            time.sleep(ROOM_POLL_SECONDS)
        grace = self._scrape.timeout + STOP_GRACE_SECONDS
        reply = self._reply("stopped", grace) if self._post(("stop", upto, ignore_exceptions)) else None
        self._process.join(grace if reply is not None else 1.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._finish()
        if reply is None:
            return True, None
        died, push_error, _, report = reply
        self._final_report = pickle.loads(report)
        return bool(died), push_error

    # -- the hand-over ------------------------------------------------------------------------
    def _refuse_if_stopping(self) -> None:
        if self._stopping:
            raise RuntimeError("this DriftMonitor is closed: close() is final; make a new one")

    def _drop(self, rows: int, labelled: bool) -> None:
        """Count rows that never reach the child (hold the ring's lock)."""
        self.ring.count(DROPPED, rows)
        self.ring.count(LABELS_DROPPED, rows if labelled else 0)

    def _send_feedback(self, item: Feedback) -> int | None:
        with self.ring.lock:
            self._refuse_if_stopping()
            upto = self.ring.written
            if self._done or self._pending_labels + item.labels.size > MAX_PENDING_LABELS:
                self.ring.count(LABELS_DROPPED, item.labels.size)
                return None
            self._pending_labels += item.labels.size
        self._post(("feedback", upto, item.labels, item.predicted, item.rows))
        return 0

    def _post(self, message: tuple) -> bool:
        with self._cond:
            if self._done:
                return False
            self._outbox.append(message)
            self._cond.notify_all()
            return True

    def _reply(self, token, timeout: float):
        deadline = time.monotonic() + timeout
        with self._cond:
            while token not in self._replies:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._done:
                    return None
                self._cond.wait(remaining)
            return self._replies.pop(token)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        try:
            while True:
                if not self._conn.poll(max(0.0, deadline - time.monotonic())):
                    raise RuntimeError(f"it did not answer within {START_SECONDS:.0f} s")
                message = self._conn.recv()
                if message[0] == "ready":
                    return
                if message[0] == "failed":
                    raise RuntimeError(message[1])
                self._take_state(message)
        except (RuntimeError, EOFError, OSError) as error:
            self._process.kill()
            self._process.join()
            self._finish()
            raise RuntimeError(
                f"gangplank: the drift worker process of agent {self._agent!r} could not start ({error}); "
                "pass worker='thread' to monitor on a thread of this process"
            ) from error

    def _take_state(self, message: tuple) -> None:
        if message[0] == "state":
            with self._cond:
                self._snapshot = message[1]
        elif message[0] == "families" and not self._scrape.closed:
            families = message[1]
            self._scrape.submit("predict", lambda: pickle.loads(families))  # unpickled by a scrape, if one comes

    # -- the threads --------------------------------------------------------------------------
    def _receive(self) -> None:
        try:
            while True:
                message = self._conn.recv()
                if message[0] in ("state", "families"):
                    self._take_state(message)
                elif message[0] in ("flushed", "reported"):
                    with self._cond:
                        self._replies[message[1]] = message[2]
                        self._cond.notify_all()
                elif message[0] == "stopped":
                    with self._cond:
                        self._replies["stopped"] = message[1:]
                        self._cond.notify_all()
        except (EOFError, OSError):
            self._finish()

    def _deliver(self) -> None:
        while True:
            with self._cond:
                while not self._outbox and not self._done:
                    self._cond.wait()
                if self._done:
                    return
                message = self._outbox.popleft()
            try:
                self._conn.send(message)
            except OSError:
                self._finish()
                return
            if message[0] == "feedback":
                with self.ring.lock:
                    self._pending_labels -= message[2].size

    def _finish(self) -> None:
        """The child is gone: callers drop and count from now on, waits end."""
        with self._cond:
            self._done = True
            self.ring.refusing = True  # write_plain leaves every batch to write(), which drops and counts it
            self._cond.notify_all()


def _make_ring(rows: int, tracker: WindowTracker) -> SampleRing:
    try:
        if platform.machine().lower() not in ("x86_64", "amd64"):
            raise OSError(f"the shared ring assumes x86-64's store order, this is {platform.machine()}")
        reference = tracker.reference
        return SampleRing(rows, reference.n_features, reference.n_classes, reference.input_stride)
    except (OSError, ValueError, MemoryError, OverflowError) as error:
        raise RuntimeError(
            f"gangplank: the drift worker process of agent {tracker.settings.agent!r} could not start: no shared "
            f"ring of {rows} rows ({type(error).__name__}: {error}); pass worker='thread' or a smaller "
            "max_pending_samples"
        ) from error


def _pipe():
    return multiprocessing.get_context("fork").Pipe(duplex=True)


def _fork(child_end, ring: SampleRing, tracker: WindowTracker, push, job, grouping_key):
    try:
        context = multiprocessing.get_context("fork")
    except ValueError as error:
        raise RuntimeError(
            f"gangplank: the drift worker process cannot start here ({error}); pass worker='thread'"
        ) from error
    process = context.Process(
        target=run_child,
        args=(child_end, ring, tracker, push, job, dict(grouping_key), os.getpid()),
        name=f"gangplank-drift-{tracker.settings.agent}",
        daemon=True,  # ended by multiprocessing at exit if close() was never called
    )
    gc.freeze()  # the child's collector leaves the inherited heap alone (no copy-on-write of every object)
    try:
        process.start()
    except OSError as error:
        raise RuntimeError(
            f"gangplank: the drift worker process of agent {tracker.settings.agent!r} could not start "
            f"({type(error).__name__}: {error}); pass worker='thread'"
        ) from error
    finally:
        gc.unfreeze()
    return process
