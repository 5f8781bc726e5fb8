"""The sequential charts a monitor keeps: is the model still as accurate as its reference?

Two kinds of evidence, each weighed outcome by outcome by two Bernoulli
CUSUM charts (:mod:`gangplank._drift.sequential`):

* ``labels``: was each labelled prediction right? In control a margin under
  the reference accuracy; out of control at the reference accuracy minus
  ``accuracy_tolerance`` (chart ``small``) and minus ``max(2.5 ×
  tolerance, 0.05)`` (chart ``large``, which catches big drops sooner).
* ``shadow``: did a second, independently trained model predict the same
  class? Agreement drops about as much as accuracy when the model goes
  wrong (agreement on the line), so the same drops are tested on the
  reference agreement.
* ``error``: a regression model's target: was the absolute error at most the
  reference's 90th percentile (:mod:`gangplank._drift.regression`)? In control
  about 90 % are; the same drops are tested on the reference's share, so
  the charts catch the share of large errors rising from 10 % to 10 % +
  tolerance (and more).

The margin is the reference rate's own estimation error (two standard
errors, at least half a point). Each chart's threshold makes its false
alarms at that margin rarer than once in ``charts × outcomes a month``, so
all the charts together page a model at its reference accuracy less than
once a month (:func:`outcomes_per_month` says how many outcomes a month
is).

Example:
    >>> charts = AccuracyCharts.of(0.95, 10_000, tolerance=0.02, labels_per_month=1e6)
    >>> sorted(charts.charts), charts.alarmed
    ([('labels', 'large'), ('labels', 'small')], False)
    >>> charts.add("labels", np.zeros(40, dtype=bool)); charts.alarmed
    True
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from .recent_windows import WINDOWS_PER_MONTH
from .sequential import Cusum, design, estimation_margin

logger = logging.getLogger("gangplank")

__all__ = ["WINDOWS_PER_MONTH", "AccuracyCharts", "ChartState", "drops", "outcomes_per_month"]
EVIDENCE = ("labels", "shadow", "error")
CHARTS = ("small", "large")


def drops(tolerance: float) -> dict[str, float]:
    """The drop each chart is tuned for."""
    return {"small": tolerance, "large": max(2.5 * tolerance, 0.05)}


def outcomes_per_month(per_window: float, windows_per_month: float = WINDOWS_PER_MONTH) -> float:
    return float(per_window) * float(windows_per_month)


@dataclass(frozen=True)
class ChartState:
    """What a scrape or a push shows of one chart."""

    statistic: float  # held at or above the threshold while in alarm
    threshold: float
    alarms: int  # episodes so far
    in_control: float
    out_of_control: float


class AccuracyCharts:
    """The charts of one monitor, keyed ``(evidence, chart)``; single-threaded (the monitor's worker)."""

    def __init__(self, charts: dict[tuple[str, str], Cusum]):
        self.charts = charts

    @classmethod
    def of(
        cls,
        reference_accuracy: float,
        labelled_rows: int,
        *,
        tolerance: float,
        labels_per_month: float,
        shadow_agreement: float = float("nan"),
        shadow_rows: int = 0,
        shadow_per_month: float = 0.0,
        error_within: float = float("nan"),
        error_rows: int = 0,
    ) -> AccuracyCharts:
        """Charts for what the reference knows: labels if it had them, a shadow if it had one, a regression
        model's errors if it had targets (``error_within``: the share of its rows within the error cut;
        as many targets a month as labels)."""
        rates = {
            "labels": (reference_accuracy, labelled_rows, labels_per_month),
            "shadow": (shadow_agreement, shadow_rows, shadow_per_month),
            "error": (error_within, error_rows, labels_per_month),
        }
        present = {name: rate for name, rate in rates.items() if rate[1] > 0 and math.isfinite(rate[0])}
        charts = {}
        for evidence, (rate, rows, per_month) in present.items():
            for chart, drop in drops(tolerance).items():
                if rate - drop <= 0.001:
                    continue  # a rate this low has no room for this drop
                margin = min(estimation_margin(rate, rows), drop / 2)
                budget = len(CHARTS) * len(present) * max(per_month, 1.0)
                try:
                    charts[(evidence, chart)] = Cusum(design(rate, drop, budget, margin))
                except ValueError as error:  # the discretised run length cannot reach the budget
                    logger.warning(
                        "gangplank: no %s chart on %s (rate %.4f, drop %.3f): %s; the other charts watch it",
                        chart,
                        evidence,
                        rate,
                        drop,
                        error,
                    )
        return cls(charts)

    def add(self, evidence: str, successes: np.ndarray) -> None:
        """Outcomes of one kind, in arrival order (labels: prediction right; shadow: both models agreed;
        error: the absolute error within the reference's cut)."""
        for (kind, _), chart in self.charts.items():
            if kind == evidence:
                chart.update(successes)

    @property
    def alarmed(self) -> bool:
        return any(chart.alarm for chart in self.charts.values())

    def states(self) -> dict[tuple[str, str], ChartState]:
        return {
            key: ChartState(
                chart.reported,
                chart.design.threshold,
                chart.alarms,
                chart.design.in_control,
                chart.design.out_of_control,
            )
            for key, chart in self.charts.items()
        }
