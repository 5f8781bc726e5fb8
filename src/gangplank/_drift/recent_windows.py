"""What the last few windows said: k-of-m signal counts and labels pooled across windows.

Alerts must not follow one noisy window. :class:`RecentWindows` keeps, per
signal, whether it fired in each of the last ``m`` windows, so a rule can ask
for "fired in at least ``k`` of the last ``m``" exactly, whatever the scrape
or push timing. It also pools the labelled feedback of the most recent
windows until it holds :func:`labels_for_floor` labels: enough that a model
at its reference accuracy falls under the quality floor by chance less than
once a month at one window a minute.

Example:
    >>> labels_for_floor(reference_accuracy=0.90, quality_floor=0.80, min_feedback=10)
    180
    >>> recent = RecentWindows(m=5, labels_needed=20)
    >>> recent.add({"input": True}, labelled=12, correct=12); recent.add({"input": False}, labelled=12, correct=6)
    >>> recent.signal_counts(), recent.pooled_feedback()
    ({'input': 1}, (24, 0.75))
"""

from __future__ import annotations

from collections import deque

import numpy as np
from scipy import stats

WINDOWS_PER_MONTH = 30 * 24 * 60  # one window a minute
MAX_LABELS_FOR_FLOOR = 100_000
MAX_POOLED_WINDOWS = 10_000


def labels_for_floor(reference_accuracy: float, quality_floor: float, min_feedback: int) -> int:
    """Fewest labels with which accuracy ``reference_accuracy`` reads below ``quality_floor`` with
    probability under 1 / :data:`WINDOWS_PER_MONTH` (at least ``min_feedback``)."""
    if not np.isfinite(reference_accuracy) or reference_accuracy <= quality_floor:
        return int(min_feedback)
    n = np.arange(max(int(min_feedback), 1), MAX_LABELS_FOR_FLOOR + 1)
    below = np.ceil(quality_floor * n - 1e-9) - 1  # most correct answers that still read below the floor
    chance = stats.binom.cdf(below, n, reference_accuracy)
    ok = np.nonzero(chance < 1.0 / WINDOWS_PER_MONTH)[0]
    return int(n[ok[0]]) if ok.size else MAX_LABELS_FOR_FLOOR


class RecentWindows:
    """The signals of the last ``m`` windows, and the labels of as many recent windows as needed.

    Every call costs what the labels it pools or credits touch, never the
    whole history (up to :data:`MAX_POOLED_WINDOWS` windows are remembered).
    """

    def __init__(self, m: int = 5, labels_needed: int = 10):
        if m < 1:
            raise ValueError(f"RecentWindows needs m >= 1 windows, got {m}")
        self.m = m
        self.labels_needed = labels_needed
        self._signals: deque[dict] = deque(maxlen=m)
        # Per closed window, oldest first: [first stream row, end row, labelled, correct] ([-1, -1, ...]: labels of no
        # known window). The deque's labels are summed in _labelled, so a pool too small is known without a walk.
        self._feedback: deque[list[int]] = deque()
        self._labelled = 0

    def add(self, signals: dict, labelled: int = 0, correct: int = 0, rows: tuple[int, int] = (-1, -1)) -> None:
        """A closed window: its signals, its labels, and the stream rows ``[first, end)`` it held."""
        self._signals.append(dict(signals))
        self._remember([rows[0], rows[1], labelled, correct])

    def add_feedback(self, labelled: int, correct: int) -> None:
        """Labels that arrived after the last window closed, for predictions of no known window."""
        if labelled:
            self._remember([-1, -1, labelled, correct])

    def _remember(self, entry: list[int]) -> None:
        if len(self._feedback) == MAX_POOLED_WINDOWS:
            self._labelled -= self._feedback.popleft()[2]
        self._feedback.append(entry)
        self._labelled += entry[2]

    def credit(self, rows: np.ndarray, correct: np.ndarray) -> None:
        """Labels of predictions in closed windows (by stream row), credited to those windows.

        Rows older than every remembered window are left out of the pool (the totals have them).
        """
        if not len(rows):
            return
        order = np.argsort(rows, kind="stable")
        rows, correct = np.asarray(rows)[order], np.asarray(correct)[order]
        oldest = int(rows[0])
        for entry in reversed(self._feedback):  # newest first, as far back as the oldest row
            first, end = entry[0], entry[1]
            if first < 0:
                continue
            if end <= oldest:
                break
            lo, hi = np.searchsorted(rows, (first, end), side="left")
            if hi > lo:
                entry[2] += int(hi - lo)
                entry[3] += int(correct[lo:hi].sum())
                self._labelled += int(hi - lo)

    @property
    def windows(self) -> int:
        return len(self._signals)

    def signal_counts(self) -> dict[str, int]:
        """Per signal reported by any of the last ``m`` windows: in how many of them it fired."""
        counts: dict[str, int] = {}
        for signals in self._signals:
            for name, fired in signals.items():
                counts[name] = counts.get(name, 0) + int(fired)
        return counts

    def pooled_feedback(self) -> tuple[int, float]:
        """Labels of the most recent windows (at least ``labels_needed``) and their accuracy.

        The accuracy is NaN while fewer labels than needed have arrived, so a
        floor rule cannot fire on too few.
        """
        if self._labelled < self.labels_needed:
            return self._labelled, float("nan")
        labelled = correct = 0
        for _, _, window_labelled, window_correct in reversed(self._feedback):
            labelled += window_labelled
            correct += window_correct
            if labelled >= self.labels_needed:
                break
        return labelled, correct / labelled
