"""A ring of validated rows in shared memory: the request path's only work with ``worker="process"``.

The serving process writes each batch's rows (inputs as float32,
probabilities as float64, and optionally true labels and a shadow model's
class) into preallocated slots and advances a counter; a worker process
(forked after the ring was made, so it shares the same pages) reads what is
new and advances its own counter. One writer lock in the serving process, no
lock across processes: each counter has one writer, and the rows are
written before the counter that announces them (x86-64 keeps one thread's
stores in order; this module assumes it).

The memory is an anonymous shared mapping, touched once when made (a fresh
page's first write costs a fault on the request path otherwise), and freed
when both processes have let go of it.

Example:
    >>> import numpy as np
    >>> ring = SampleRing(capacity=4, n_features=2, n_classes=2)
    >>> ring.write(np.ones((3, 2), np.float32), np.full((3, 2), 0.5), None, None)
    0
    >>> ring.write(np.ones((2, 2), np.float32), np.full((2, 2), 0.5), None, None) is None  # no room
    True
    >>> [batch.rows for batch in ring.take()], ring.write(np.ones((2, 2), np.float32), np.full((2, 2), 0.5), None, None)
    ([3], 3)
"""

from __future__ import annotations

import itertools
import mmap
import threading

import numpy as np

from .batch import Batch

# Header words (int64): written by the serving process unless said otherwise.
WRITTEN = 0  # rows written so far (the next row's stream number)
READ = 1  # rows the worker process has taken (written by the worker)
DROPPED = 2  # samples dropped by the serving process (ring full, closing)
LABELS_DROPPED = 3  # labels of dropped samples and of dropped feedback
UNMATCHED = 4  # feedback labels whose id was unknown
SCRAPED = 5  # 1 once this process was scraped: the worker then sends its families back on every publish
HEADER_WORDS = 8

HAS_INPUTS, HAS_LABELS, HAS_SHADOW = 1, 2, 4


class SampleRing:
    """``capacity`` rows of ``n_features`` inputs and ``n_classes`` probabilities, shared with a forked process.

    Memory: ``capacity * (4 * n_features + 8 * n_classes + 17)`` bytes plus a
    page (:attr:`nbytes`); 1,024 MNIST rows take 3.3 MB.
    """

    def __init__(self, capacity: int, n_features: int, n_classes: int):
        if capacity < 1:
            raise ValueError(f"the ring needs room for at least one row, got capacity={capacity}")
        self.capacity = int(capacity)
        self.n_features = int(n_features)
        self.n_classes = int(n_classes)
        sizes = [
            ("header", np.int64, (HEADER_WORDS,)),
            ("inputs", np.float32, (self.capacity, self.n_features)),
            ("probabilities", np.float64, (self.capacity, self.n_classes)),
            ("labels", np.int64, (self.capacity,)),
            ("shadow", np.int64, (self.capacity,)),
            ("flags", np.uint8, (self.capacity,)),
        ]
        offsets, total = [], 0
        for _, dtype, shape in sizes:
            total = -(-total // 64) * 64  # each array on its own cache line
            offsets.append(total)
            total += int(np.prod(shape)) * np.dtype(dtype).itemsize
        self.nbytes = max(total, mmap.PAGESIZE)
        self._memory = mmap.mmap(-1, self.nbytes, flags=mmap.MAP_SHARED)
        arrays = [
            np.ndarray(shape, dtype, buffer=self._memory, offset=offset)
            for (_, dtype, shape), offset in zip(sizes, offsets, strict=True)
        ]
        _, self._inputs, self._probabilities, self._labels, self._shadow, self._flags = arrays
        # The counters and flags as plain memory too: reading and writing them as Python ints and bytes costs
        # the request path far less than numpy scalars do (right after a model's inference, numpy's code is cold).
        whole = memoryview(self._memory)
        self._words = whole[offsets[0] : offsets[0] + HEADER_WORDS * 8].cast("q")
        self._flag_bytes = whole[offsets[5] : offsets[5] + self.capacity]
        np.frombuffer(self._memory, np.uint8)[:] = 0  # pre-fault every page now, not on a request
        self._lock = threading.Lock()

    # -- the serving process ----------------------------------------------------------
    @property
    def lock(self) -> threading.Lock:
        """The writers' lock (the serving process's threads); hold it to read or change the counters."""
        return self._lock

    def write(self, inputs, probabilities, labels, shadow) -> int | None:
        """Copy one validated batch in (hold :attr:`lock`); its first stream row, or ``None`` if it does not fit."""
        rows = probabilities.shape[0]
        written, read = self._words[WRITTEN], self._words[READ]
        if rows > self.capacity - (written - read):
            return None
        start = written % self.capacity
        first = min(rows, self.capacity - start)
        flags = (inputs is not None) * HAS_INPUTS | (labels is not None) * HAS_LABELS
        flags |= (shadow is not None) * HAS_SHADOW
        if first == rows:  # one piece, the common case: no slices of the caller's arrays (each costs the request µs)
            self._put(start, inputs, probabilities, labels, shadow, flags)
        else:
            for part, at in ((slice(0, first), start), (slice(first, rows), 0)):
                x, y, s = (None if a is None else a[part] for a in (inputs, labels, shadow))
                self._put(at, x, probabilities[part], y, s, flags)
        self._words[WRITTEN] = written + rows  # after the rows: the worker reads up to here
        return written

    def _put(self, start: int, inputs, probabilities, labels, shadow, flags: int) -> None:
        stop = start + probabilities.shape[0]
        self._probabilities[start:stop] = probabilities
        if inputs is not None:
            self._inputs[start:stop] = inputs
        if labels is not None:
            self._labels[start:stop] = labels
        if shadow is not None:
            self._shadow[start:stop] = shadow
        self._flag_bytes[start:stop] = bytes((flags,)) * (stop - start)

    def free_rows(self) -> int:
        return self.capacity - (self._words[WRITTEN] - self._words[READ])

    @property
    def written(self) -> int:
        return self._words[WRITTEN]

    def count(self, word: int, amount: int) -> None:
        """Add to a counter of the serving process (hold :attr:`lock`)."""
        self._words[word] += amount

    def counter(self, word: int) -> int:
        return self._words[word]

    # -- the worker process -----------------------------------------------------------
    def waiting_rows(self) -> int:
        """Rows written and not taken yet."""
        return self._words[WRITTEN] - self._words[READ]

    def take(self, upto: int | None = None) -> list[Batch]:
        """The rows written since the last take (up to stream row ``upto``), as batches of one kind each, copied out.

        Their slots are free for the writer once this returns.
        """
        written = self._words[WRITTEN] if upto is None else min(upto, self._words[WRITTEN])
        batches: list[Batch] = []
        position = self._words[READ]
        while position < written:
            start = position % self.capacity
            stop = start + min(written - position, self.capacity - start)
            flags = self._flags[start:stop]
            bounds = [0, *(np.flatnonzero(flags[1:] != flags[:-1]) + 1).tolist(), stop - start]
            for begin, end in itertools.pairwise(bounds):
                batches.append(self._batch(start + begin, start + end, int(flags[begin])))
            position += stop - start
        self._words[READ] = written  # after the copies: the writer may reuse these slots now
        return batches

    def _batch(self, start: int, stop: int, flags: int) -> Batch:
        def rows(array: np.ndarray, present: int) -> np.ndarray | None:
            return array[start:stop].copy() if flags & present else None

        return Batch(
            self._probabilities[start:stop].copy(),
            rows(self._inputs, HAS_INPUTS),
            rows(self._labels, HAS_LABELS),
            None,
            0,
            False,  # checked by the caller, normalised by the tracker
            rows(self._shadow, HAS_SHADOW),
        )
