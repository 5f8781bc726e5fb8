"""Sequential tests on a stream of successes: labels that were right, rows where two models agree.

A one-sided Bernoulli CUSUM (Page 1954; Reynolds & Stoumbos 1999) weighs
every outcome as it arrives: a success adds ``log(p1 / p0)`` (negative), a
failure ``log((1 − p1) / (1 − p0))`` (positive), the sum is clamped at 0 and
the chart signals when it reaches ``h`` nats. ``p0`` is the in-control
success rate (a margin under the reference's, for the reference's own
estimation error), ``p1`` the rate it must catch. Evidence accumulates label
by label, across windows, so a drop of a few points that no single window
can show is caught after enough labels, while a model at its reference rate
signals less than once in ``average_run_length`` outcomes.

After a signal the chart stays in alarm until a mirrored chart, weighing the
same outcomes the other way, gathers ``h`` nats that the rate is back at
``p0``: one alarm per episode, no flapping.

:func:`design` picks ``h`` from a budget (outcomes per false alarm) with the
exact run length of the discretised chart (Brook & Evans 1972).

Example:
    >>> chart = Cusum(CusumDesign(in_control=0.95, out_of_control=0.90, threshold=3.0))
    >>> chart.update(np.ones(50, dtype=bool)); chart.statistic, chart.alarm
    (0.0, False)
    >>> chart.update(np.zeros(6, dtype=bool)); chart.alarm
    True
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse import linalg

MAX_STATES = 20_000  # states of the discretised chart at most
MIN_MARGIN = 0.005  # in-control level at least this far under the reference rate


@dataclass(frozen=True)
class CusumDesign:
    """A Bernoulli CUSUM: in-control rate ``p0``, rate to detect ``p1 < p0``, threshold ``h`` in nats."""

    in_control: float
    out_of_control: float
    threshold: float

    def __post_init__(self):
        if not 0 < self.out_of_control < self.in_control < 1:
            raise ValueError(
                f"need 0 < out_of_control < in_control < 1, got {self.out_of_control} and {self.in_control}"
            )
        if not self.threshold > 0:
            raise ValueError(f"threshold must be positive, got {self.threshold}")

    @property
    def success_step(self) -> float:
        return math.log(self.out_of_control / self.in_control)

    @property
    def failure_step(self) -> float:
        return math.log((1 - self.out_of_control) / (1 - self.in_control))

    def steps(self, successes: np.ndarray) -> np.ndarray:
        """The chart's increment for each outcome (True: success)."""
        return np.where(successes, self.success_step, self.failure_step)

    def average_run_length(self, rate: float) -> float:
        """Expected outcomes until the chart first signals when each succeeds with probability ``rate``."""
        return average_run_length(self.success_step, self.failure_step, self.threshold, rate)


class Cusum:
    """The state of one chart; :meth:`update` takes outcomes in arrival order (single-threaded)."""

    def __init__(self, design: CusumDesign):
        self.design = design
        self.statistic = 0.0  # evidence (nats) that the rate fell to out_of_control
        self.recovery = 0.0  # during an alarm: evidence that it is back at in_control
        self.alarm = False
        self.alarms = 0  # episodes so far
        self.outcomes = 0

    def update(self, successes: np.ndarray) -> None:
        """Add outcomes (booleans, in the order they arrived)."""
        steps = self.design.steps(np.asarray(successes, dtype=bool).reshape(-1))
        self.outcomes += steps.size
        h = self.design.threshold
        while steps.size:
            path = _lindley(self.statistic, steps)
            if not self.alarm:
                crossed = np.flatnonzero(path >= h)
                if not crossed.size:
                    self.statistic = float(path[-1])
                    return
                t = int(crossed[0])
                self.statistic, self.alarm, self.recovery = float(path[t]), True, 0.0
                self.alarms += 1
            else:
                back = _lindley(self.recovery, -steps)
                recovered = np.flatnonzero(back >= h)
                if not recovered.size:
                    self.statistic, self.recovery = float(path[-1]), float(back[-1])
                    return
                t = int(recovered[0])
                self.statistic, self.recovery, self.alarm = 0.0, 0.0, False
            steps = steps[t + 1 :]

    @property
    def reported(self) -> float:
        """The statistic as exported: held at the threshold or above while in alarm."""
        return max(self.statistic, self.design.threshold) if self.alarm else self.statistic


def _lindley(start: float, steps: np.ndarray) -> np.ndarray:
    """``s_t = max(0, s_{t-1} + steps_t)`` from ``s_0 = start``, for every t, without a Python loop."""
    cumulative = np.cumsum(steps)
    return cumulative - np.minimum(np.minimum.accumulate(cumulative), -start)


def average_run_length(success_step: float, failure_step: float, threshold: float, rate: float) -> float:
    """Expected run length of the CUSUM on a grid: exact for the grid, and never longer than the chart's.

    The grid unit is a fraction ``1/m`` of the success step, so that step is
    exact; the failure step is rounded *up* to the grid and the threshold
    *down*. The grid's statistic then never falls below the chart's and
    signals no later, so a threshold whose grid run length reaches a budget
    reaches it on the chart too. The unit is fine enough that the rounding
    moves the chart's drift at ``rate`` by at most a tenth (a chart whose
    in-control drift is tiny needs a fine grid), with at most
    :data:`MAX_STATES` states.
    """
    drift = rate * success_step + (1 - rate) * failure_step  # nats per outcome
    unit = -success_step / 50
    if drift < 0:
        unit = min(unit, 0.1 * -drift / max(1 - rate, 1e-12))
    unit = max(unit, threshold / MAX_STATES)
    m = max(1, round(-success_step / unit))
    unit = -success_step / m
    down, up = m, max(1, math.ceil(failure_step / unit - 1e-9))
    n = max(1, math.floor(threshold / unit + 1e-9))
    return _run_length(down, up, n, rate)


@functools.lru_cache(maxsize=256)
def _run_length(down: int, up: int, n: int, rate: float) -> float:
    """Outcomes until absorption at ``n`` of a chain on 0..n-1 that moves −down w.p. rate, +up otherwise."""
    states = np.arange(n)
    rows = np.concatenate([states, states[states + up < n]])
    columns = np.concatenate([np.maximum(states - down, 0), (states + up)[states + up < n]])
    values = np.concatenate([np.full(n, rate), np.full(rows.size - n, 1 - rate)])
    transitions = sparse.csr_matrix((values, (rows, columns)), shape=(n, n))
    lengths = linalg.spsolve((sparse.identity(n, format="csc") - transitions).tocsc(), np.ones(n))
    return float(lengths[0])


def design(reference_rate: float, drop: float, budget: float, margin: float = MIN_MARGIN) -> CusumDesign:
    """A chart for a drop of ``drop`` under ``reference_rate`` whose false alarms at ``reference_rate − margin``
    come less than once in ``budget`` outcomes (its average run length there is at least ``budget``).

    Example:
        >>> chart = design(0.95, drop=0.02, budget=1e6)
        >>> chart.in_control, chart.out_of_control, chart.average_run_length(0.945) >= 1e6
        (0.945, 0.93, True)
    """
    p0 = min(reference_rate - margin, 1 - 1e-6)
    p1 = reference_rate - drop
    if not 0 < p1 < p0:
        raise ValueError(
            f"cannot test a drop of {drop} under {reference_rate} with a margin of {margin}: "
            "the drop must exceed the margin and stay above 0"
        )
    return _design(round(p0, 9), round(p1, 9), float(budget))


@functools.lru_cache(maxsize=64)
def _design(p0: float, p1: float, budget: float) -> CusumDesign:
    def run_length(h: float) -> float:
        return CusumDesign(p0, p1, h).average_run_length(p0)

    low, high = 0.5, 1.0
    while run_length(high) < budget:
        low, high = high, high * 2
        if high > 1e3:
            raise ValueError(f"no threshold reaches a run length of {budget:g}")
    for _ in range(40):  # the run length grows about exponentially in h: bisect on h
        middle = (low + high) / 2
        if run_length(middle) >= budget:
            high = middle
        else:
            low = middle
        if high - low < 0.01:
            break
    return CusumDesign(p0, p1, round(high, 3))


def estimation_margin(rate: float, n: int) -> float:
    """Margin under a reference rate measured on ``n`` outcomes: two standard errors, at least :data:`MIN_MARGIN`."""
    if n <= 0 or not np.isfinite(rate):
        return MIN_MARGIN
    return max(MIN_MARGIN, 2 * math.sqrt(rate * (1 - rate) / n))
