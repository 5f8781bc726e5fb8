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
    """The signals of the last ``m`` windows, and the labels of as many recent windows as needed."""

    def __init__(self, m: int = 5, labels_needed: int = 10):
        self.m = m
        self.labels_needed = labels_needed
        self._signals: deque[dict] = deque(maxlen=m)
        # Per closed window: [first stream row, end row, labelled, correct]
        self._feedback: deque[list[int]] = deque(maxlen=MAX_POOLED_WINDOWS)

    def add(self, signals: dict, labelled: int = 0, correct: int = 0, rows: tuple[int, int] = (-1, -1)) -> None:
        """A closed window: its signals, its labels, and the stream rows ``[first, end)`` it held."""
        self._signals.append(dict(signals))
        self._feedback.append([rows[0], rows[1], labelled, correct])

    def add_feedback(self, labelled: int, correct: int) -> None:
        """Labels that arrived after the last window closed, for predictions of no known window."""
        if labelled:
            self._feedback.append([-1, -1, labelled, correct])

    def credit(self, rows: np.ndarray, correct: np.ndarray) -> None:
        """Labels of predictions in closed windows (by stream row), credited to those windows.

        Rows older than every remembered window are left out of the pool (the totals have them).
        """
        windows = [entry for entry in self._feedback if entry[0] >= 0]
        if not windows:
            return
        ends = np.array([entry[1] for entry in windows])
        index = np.searchsorted(ends, rows, side="right")
        for i in np.unique(index[index < len(windows)]):
            mine = index == i
            inside = mine & (rows >= windows[i][0])
            windows[i][2] += int(inside.sum())
            windows[i][3] += int(correct[inside].sum())

    @property
    def windows(self) -> int:
        return len(self._signals)

    def signal_counts(self) -> dict[str, int]:
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
        labelled = correct = 0
        for _, _, window_labelled, window_correct in reversed(self._feedback):
            labelled += window_labelled
            correct += window_correct
            if labelled >= self.labels_needed:
                return labelled, correct / labelled
        return labelled, float("nan")
