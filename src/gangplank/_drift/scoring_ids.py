"""Predictions remembered by scoring id, for feedback that arrives later (OpenScale's ``scoring_id`` join).

Memory is bounded twice: at most ``max_ids`` ids (the oldest are forgotten
first) and none older than ``max_age_seconds``. Each id joins one label: a
second label for the same id counts as unmatched. Ids of a batch that was
dropped are remembered as :data:`DROPPED`, so that their labels can be
counted apart rather than as unmatched.

Example:
    >>> store = ScoringIds(max_ids=2, max_age_seconds=60)
    >>> store.remember(["a", "b", "c"], [1, 2, 3])
    >>> store.join(["a", "c", "c"])  # "a" was pushed out by "c"; "c" joins once
    ([None, 3, None], 2)
    >>> store.remember(["d"], [DROPPED])
    >>> store.join(["d"])
    ([-1], 0)
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

DROPPED = -1  # the "predicted class" of an id whose batch was dropped


def is_dropped(predicted) -> bool:
    """Whether a joined id's batch was dropped (a regression model's prediction of -1.0 is a float: it was not)."""
    return type(predicted) is int and predicted == DROPPED


class ScoringIds:
    """Thread-safe map of scoring id → predicted class (a regression model's prediction: a float),
    bounded by count and age."""

    def __init__(
        self,
        max_ids: int = 100_000,
        max_age_seconds: float = 24 * 3600.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_ids < 1 or not max_age_seconds > 0:
            raise ValueError("feedback_max_ids must be at least 1 and feedback_max_age_seconds positive")
        self.max_ids = int(max_ids)
        self.max_age_seconds = float(max_age_seconds)
        self.clock = clock  # monotonic seconds (a test passes its own)
        self._predicted: OrderedDict = OrderedDict()  # id -> (monotonic time, predicted class, stream row)
        self._lock = threading.Lock()

    def remember(self, ids: Sequence, predicted: Sequence[int], first_row: int = -1) -> None:
        """Remember each id's predicted class, and its row in the monitor's stream (``first_row``, the next, …)."""
        now = self.clock()
        with self._lock:
            for row, (scoring_id, cls) in enumerate(zip(ids, predicted, strict=True), start=first_row):
                self._predicted.pop(scoring_id, None)
                value = cls if isinstance(cls, float) else int(cls)
                self._predicted[scoring_id] = (now, value, row if first_row >= 0 else -1)
            while len(self._predicted) > self.max_ids:
                self._predicted.popitem(last=False)
            self._expire(now)

    def join(self, ids: Sequence) -> tuple[list, int]:
        """The predicted class of each id (``None`` if unknown or expired, :data:`DROPPED` if its batch was
        dropped), and how many were unmatched (``None``)."""
        found, _, unmatched = self.join_rows(ids)
        return found, unmatched

    def join_rows(self, ids: Sequence) -> tuple[list, list, int]:
        """Like :meth:`join`, with each id's stream row too (``None`` where the class is)."""
        now = self.clock()
        with self._lock:
            self._expire(now)
            entries = [self._predicted.pop(scoring_id, (None, None, None)) for scoring_id in ids]
        found = [entry[1] for entry in entries]
        return found, [entry[2] for entry in entries], sum(cls is None for cls in found)

    def __len__(self) -> int:
        return len(self._predicted)

    def _expire(self, now: float) -> None:
        oldest = now - self.max_age_seconds
        while self._predicted:
            first = next(iter(self._predicted.values()))
            if first[0] >= oldest:
                return
            self._predicted.popitem(last=False)
