"""A ring of validated rows in shared memory: the request path's only work with ``worker="process"``.

The serving process writes each batch's rows (inputs as float32,
probabilities as float32 if the model gave float32, else as float64, and
optionally true labels and a shadow model's class) into preallocated slots
and advances a counter; a worker process
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
import math
import mmap
import threading

import numpy as np

from .batch import Batch
from .intake import LIST_CHECK_VALUES

# Header words (int64): written by the serving process unless said otherwise.
WRITTEN = 0  # rows written so far (the next row's stream number)
READ = 1  # rows the worker process has taken (written by the worker)
DROPPED = 2  # samples dropped by the serving process (ring full, closing)
LABELS_DROPPED = 3  # labels of dropped samples and of dropped feedback
UNMATCHED = 4  # feedback labels whose id was unknown
SCRAPED = 5  # 1 once this process was scraped: the worker then sends its families back on every publish
HEADER_WORDS = 8

HAS_INPUTS, HAS_LABELS, HAS_SHADOW, HAS_FLOAT32 = 1, 2, 4, 8  # HAS_FLOAT32: probabilities in the float32 column
NOT_FINITE = -1  # what write(check_finite=True) returns for probabilities with NaN or ±Inf: nothing was recorded
NOT_WRITTEN = -1  # what write_plain() returns for anything but the common batch that fits: nothing was recorded
SUM_CHECK_VALUES = LIST_CHECK_VALUES  # up to this many probabilities, the finite check is a Python sum (see intake)
_FLOAT32, _FLOAT64 = np.dtype(np.float32), np.dtype(np.float64)


class SampleRing:
    """``capacity`` rows of ``n_features`` inputs and ``n_classes`` probabilities, shared with a forked process.

    Memory: ``capacity * (4 * n_features + 12 * n_classes + 17)`` bytes plus a
    page (:attr:`nbytes`); 1,024 MNIST rows take 3.4 MB.
    """

    def __init__(self, capacity: int, n_features: int, n_classes: int, input_stride: int = 1):
        if capacity < 1:
            raise ValueError(f"the ring needs room for at least one row, got capacity={capacity}")
        self.capacity = int(capacity)
        self.input_stride = int(input_stride)  # write_plain copies the inputs of rows numbered a multiple of it only
        self.n_features = int(n_features)
        self.n_classes = int(n_classes)
        sizes = [
            ("header", np.int64, (HEADER_WORDS,)),
            ("inputs", np.float32, (self.capacity, self.n_features)),
            ("probabilities", np.float64, (self.capacity, self.n_classes)),
            ("probabilities32", np.float32, (self.capacity, self.n_classes)),
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
        _, self._inputs, self._probabilities, self._probabilities32, self._labels, self._shadow, self._flags = arrays
        # The counters and flags as plain memory too: reading and writing them as Python ints and bytes costs
        # the request path far less than numpy scalars do (right after a model's inference, numpy's code is cold).
        whole = memoryview(self._memory)
        self._words = whole[offsets[0] : offsets[0] + HEADER_WORDS * 8].cast("q")
        self._flag_bytes = whole[offsets[6] : offsets[6] + self.capacity]
        self._runs = [memoryview(bytes((flags,)) * self.capacity) for flags in range(16)]  # a batch's flags, sliced
        k = self.n_classes
        self._values = (  # the probabilities columns (float64, float32) as flat Python memory, for the finite check
            whole[offsets[2] : offsets[2] + self.capacity * k * 8].cast("d"),
            whole[offsets[3] : offsets[3] + self.capacity * k * 4].cast("f"),
        )
        np.frombuffer(self._memory, np.uint8)[:] = 0  # pre-fault every page now, not on a request
        self._lock = threading.Lock()
        self.refusing = False  # set by the owner when writes must take its slow path (closing, worker gone)

    # -- the serving process ----------------------------------------------------------
    @property
    def lock(self) -> threading.Lock:
        """The writers' lock (the serving process's threads); hold it to read or change the counters."""
        return self._lock

    def write(self, inputs, probabilities, labels, shadow, *, check_finite: bool = False) -> int | None:
        """Copy one validated batch in (hold :attr:`lock`); its first stream row, or ``None`` if it does not fit.

        With ``check_finite`` the probabilities are checked once copied, before the counter moves: NaN or ±Inf
        (or finite float64 values whose sum overflows) return :data:`NOT_FINITE` and record nothing.
        """
        rows = probabilities.shape[0]
        written, read = self._words[WRITTEN], self._words[READ]
        if rows > self.capacity - (written - read):
            return None
        start = written % self.capacity
        first = min(rows, self.capacity - start)
        float32 = probabilities.dtype is _FLOAT32
        flags = (inputs is not None) * HAS_INPUTS | (labels is not None) * HAS_LABELS
        flags |= (shadow is not None) * HAS_SHADOW | float32 * HAS_FLOAT32
        if first == rows:  # one piece, the common case: no slices of the caller's arrays (each costs the request µs)
            self._put(start, written, inputs, probabilities, labels, shadow, flags)
            if check_finite and not self._finite(float32, start, start + rows):
                return NOT_FINITE
        else:
            for part, at in ((slice(0, first), start), (slice(first, rows), 0)):
                x, y, s = (None if a is None else a[part] for a in (inputs, labels, shadow))
                self._put(at, written + part.start, x, probabilities[part], y, s, flags)
                if check_finite and not self._finite(float32, at, at + (part.stop - part.start)):
                    return NOT_FINITE
        self._words[WRITTEN] = written + rows  # after the rows: the worker reads up to here
        return written

    def write_plain(self, inputs, probabilities) -> int:
        """The request path's one call: copy a common batch in (takes :attr:`lock`); its first stream row, or
        :data:`NOT_WRITTEN`, with nothing recorded, for anything else.

        With an ``input_stride`` n only the inputs of rows whose stream number is a multiple of n are copied (the
        only ones a window bins), here as in :meth:`write`; the other rows' inputs in the ring are not read.

        The common batch: numpy arrays, ``inputs`` of shape ``(rows, n_features)`` (or ``(rows, …)`` of as many
        values) and a numeric kind, ``probabilities`` float32 or float64 of shape ``(rows, n_classes)``, all finite,
        at most :data:`SUM_CHECK_VALUES` of them, that fit in the ring without wrapping around, while not
        :attr:`refusing`. Everything else (bad input, a full ring, closing) is for :meth:`write` and its caller,
        which say what is wrong, wait or drop. One function, few numpy calls: right after a model's inference
        each call on this path costs a microsecond or more.
        """
        if type(inputs) is not np.ndarray or type(probabilities) is not np.ndarray:
            return NOT_WRITTEN
        shape, dtype, k = probabilities.shape, probabilities.dtype, self.n_classes
        if len(shape) != 2 or shape[1] != k or (dtype is not _FLOAT32 and dtype is not _FLOAT64):
            return NOT_WRITTEN
        rows, x_shape = shape[0], inputs.shape
        if not 0 < rows * k <= SUM_CHECK_VALUES or len(x_shape) < 2 or x_shape[0] != rows:
            return NOT_WRITTEN
        if inputs.dtype.kind not in "fiu":
            return NOT_WRITTEN
        if len(x_shape) > 2 or x_shape[1] != self.n_features:
            if inputs.size != rows * self.n_features:
                return NOT_WRITTEN
            inputs = inputs.reshape(rows, self.n_features)
        float32 = dtype is _FLOAT32
        with self._lock:
            words = self._words
            written = words[WRITTEN]
            start = written % self.capacity
            stop = start + rows
            if self.refusing or stop > self.capacity or rows > self.capacity - (written - words[READ]):
                return NOT_WRITTEN
            self._put(start, written, inputs, probabilities, None, None, HAS_INPUTS | float32 * HAS_FLOAT32)
            if not self._finite(float32, start, stop):
                return NOT_WRITTEN
            words[WRITTEN] = written + rows  # after the rows: the worker reads up to here
        return written

    def _put(self, start: int, first_row: int, inputs, probabilities, labels, shadow, flags: int) -> None:
        """Copy rows into the slots from ``start`` on; ``first_row`` is the first one's stream number."""
        stop = start + probabilities.shape[0]
        if flags & HAS_FLOAT32:
            self._probabilities32[start:stop] = probabilities  # converted to float64 by take(), off the request path
        else:
            self._probabilities[start:stop] = probabilities
        if inputs is not None:  # with an input stride, only the rows a window bins (Window.add): take() reads no other
            skip = -first_row % self.input_stride
            self._inputs[start + skip : stop : self.input_stride] = inputs[skip :: self.input_stride]
        if labels is not None:
            self._labels[start:stop] = labels
        if shadow is not None:
            self._shadow[start:stop] = shadow
        self._flag_bytes[start:stop] = self._runs[flags][: stop - start]

    def _finite(self, float32: bool, start: int, stop: int) -> bool:
        """Whether the probabilities just copied into rows ``start:stop`` are all finite (their sum is)."""
        k = self.n_classes
        if (stop - start) * k <= SUM_CHECK_VALUES:
            return math.isfinite(sum(self._values[float32][start * k : stop * k]))  # NaN and ±Inf carry through
        column = self._probabilities32 if float32 else self._probabilities
        return bool(np.isfinite(column[start:stop]).all())

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

        Their slots are free for the writer once this returns. With an ``input_stride`` n, only the inputs of rows
        whose stream number is a multiple of n are copied out (a window reads no others; :meth:`write_plain` does not
        even write them): the other rows' inputs are zeros.
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
                batches.append(self._batch(start + begin, start + end, int(flags[begin]), position + begin))
            position += stop - start
        self._words[READ] = written  # after the copies: the writer may reuse these slots now
        return batches

    def _batch(self, start: int, stop: int, flags: int, first_row: int) -> Batch:
        def rows(array: np.ndarray, present: int) -> np.ndarray | None:
            return array[start:stop].copy() if flags & present else None

        inputs = None
        if flags & HAS_INPUTS:
            stride = self.input_stride
            if stride == 1:
                inputs = self._inputs[start:stop].copy()
            else:
                skip = -first_row % stride
                inputs = np.zeros((stop - start, self.n_features), np.float32)
                inputs[skip::stride] = self._inputs[start + skip : stop : stride]

        probabilities = (
            self._probabilities32[start:stop].astype(np.float64)  # exact: what the caller's path would have made
            if flags & HAS_FLOAT32
            else self._probabilities[start:stop].copy()
        )
        return Batch(
            probabilities,
            inputs,
            rows(self._labels, HAS_LABELS),
            None,
            0,
            False,  # checked by the caller, normalised by the tracker
            rows(self._shadow, HAS_SHADOW),
        )
