"""Prometheus metric families of the drift monitor (prefix ``gangplank_predict_``).

Counters (``*_total``) are cumulative over the monitor's life so PromQL can
``sum`` and ``rate`` them across replicas; gauges describe the last closed
window and the monitor's settings. Names, types and help texts come from
:mod:`gangplank.metric_schema`.

Example:
    >>> totals = Totals(n_classes=2)
    >>> [m.name for m in families(totals)][:2]
    ['gangplank_predict_samples', 'gangplank_predict_samples_dropped']
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..metric_schema import family_name, spec
from .comparison import SIGNALS, WindowReport

PREFIX = "gangplank_predict_"
# The worker's steps whose exceptions are counted (``worker_errors_total{stage=...}``): adding a batch or
# labels to the window, comparing it, the user's ``on_window``, building and handing over the families.
WORKER_STAGES = ("process", "compare", "on_window", "publish")


@dataclass
class Totals:
    """The monitor's cumulative counts (what the ``*_total`` counters show)."""

    n_classes: int
    samples: int = 0
    dropped: int = 0
    windows: int = 0
    drifted_windows: int = 0
    feedback_samples: int = 0
    feedback_correct: int = 0
    feedback_unmatched: int = 0
    feedback_dropped: int = 0
    input_nonfinite: int = 0
    probabilities_normalised: int = 0
    shadow_samples: int = 0
    shadow_agreed: int = 0
    signal_windows: dict = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))
    worker_errors: dict = field(default_factory=lambda: dict.fromkeys(WORKER_STAGES, 0))
    confusion: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self):
        if self.confusion is None:
            self.confusion = np.zeros((self.n_classes, self.n_classes), dtype=np.int64)

    def copy(self) -> Totals:
        return dataclasses.replace(
            self,
            signal_windows=dict(self.signal_windows),
            worker_errors=dict(self.worker_errors),
            confusion=self.confusion.copy(),
        )

    def add_window(self, report: WindowReport) -> None:
        self.samples += report.samples
        self.windows += 1
        self.drifted_windows += int(report.drift_detected)
        for name, fired in report.signals.items():
            self.signal_windows[name] += int(fired)
        self.input_nonfinite += report.input_nonfinite_values
        self.shadow_samples += report.shadow_rows
        self.shadow_agreed += report.shadow_agreed
        self.add_feedback(report.confusion)

    def add_feedback(self, confusion: np.ndarray) -> None:
        self.confusion += confusion
        self.feedback_samples += int(confusion.sum())
        self.feedback_correct += int(np.trace(confusion))


@dataclass(frozen=True)
class Status:
    """What the monitor knows besides the last window: settings, recent windows, timing."""

    closed_at: float = float("nan")  # Unix time the last window closed
    interval: float = float("nan")  # usual seconds between closes
    recent_signals: dict = field(default_factory=dict)  # signal -> windows fired among the recent ones
    recent_windows: int = 0
    sustained_windows: int = 3
    recent_feedback: tuple[int, float] = (0, float("nan"))  # pooled labels, their accuracy
    accuracy_tolerance: float = float("nan")
    quality_floor: float = float("nan")
    min_feedback: int = 10
    input_sampling_rate: float = 1.0
    charts: dict = field(default_factory=dict)  # (evidence, chart) -> accuracy_charts.ChartState


def families(totals: Totals, report: WindowReport | None = None, status: Status = Status()) -> list:
    """Every metric family for the current totals, the last window ``report`` and ``status``."""
    k = totals.n_classes
    pairs = {(str(t), str(p)): float(totals.confusion[t, p]) for t in range(k) for p in range(k)}
    out = [
        _counter("samples_total", totals.samples),
        _counter("samples_dropped_total", totals.dropped),
        _counter("windows_total", totals.windows),
        _counter("drift_detected_total", totals.drifted_windows),
        _labelled("drift_signal_windows_total", totals.signal_windows),
        _counter("feedback_samples_total", totals.feedback_samples),
        _counter("feedback_correct_total", totals.feedback_correct),
        _counter("feedback_unmatched_total", totals.feedback_unmatched),
        _counter("feedback_dropped_total", totals.feedback_dropped),
        _labelled("feedback_confusion_total", pairs),
        _counter("input_nonfinite_total", totals.input_nonfinite),
        _counter("probabilities_normalised_total", totals.probabilities_normalised),
        _counter("shadow_samples_total", totals.shadow_samples),
        _counter("shadow_agreed_total", totals.shadow_agreed),
        _labelled("cusum", {key: state.statistic for key, state in status.charts.items()}),
        _labelled("cusum_threshold", {key: state.threshold for key, state in status.charts.items()}),
        _labelled("cusum_alarms_total", {key: state.alarms for key, state in status.charts.items()}),
        _labelled("worker_errors_total", totals.worker_errors),
        _gauge("accuracy_tolerance", status.accuracy_tolerance),
        _gauge("quality_floor", status.quality_floor),
        _gauge("min_feedback", status.min_feedback),
        _gauge("sustained_windows", status.sustained_windows),
        _gauge("input_sampling_rate", status.input_sampling_rate),
    ]
    if report is None:
        return out
    confusion = {(str(t), str(p)): float(report.confusion[t, p]) for t in range(k) for p in range(k)}
    recent_labels, recent_accuracy = status.recent_feedback
    out += [
        _gauge("drift_detected", float(report.drift_detected)),
        _labelled("drift_signal", {name: float(fired) for name, fired in report.signals.items()}),
        _labelled("drift_signal_recent", status.recent_signals),
        _gauge("recent_windows", status.recent_windows),
        _gauge("window_samples", report.samples),
        _gauge("window_end_timestamp_seconds", status.closed_at),
        _gauge("window_interval_seconds", status.interval),
        _gauge("input_psi_max", _max(report.input_psi)),
        _gauge("input_psi_mean", _mean(report.input_psi)),
        _gauge("input_js_max", _max(report.input_js)),
        _gauge("input_js_mean", _mean(report.input_js)),
        _gauge("input_ks_max", _max(report.input_ks)),
        _gauge("input_drifted_features_ratio", report.drifted_features_ratio),
        _gauge("input_mean", report.input_mean),
        _gauge("input_std", report.input_std),
        _labelled("class_share", dict(enumerate(report.class_shares.tolist()))),
        _gauge("class_chi2_p_value", report.class_p_value),
        _gauge("confidence_mean", report.confidence_mean),
        _gauge("confidence_psi", report.confidence_psi),
        _gauge("entropy_mean", report.entropy_mean),
        _gauge("estimated_accuracy", report.estimated_accuracy),
        _gauge("estimated_accuracy_error", report.estimated_accuracy_error),
        _gauge("reference_accuracy", report.reference_accuracy),
        _gauge("feedback_samples", report.labelled),
        _gauge("feedback_accuracy", report.accuracy),
        _gauge("recent_feedback_samples", recent_labels),
        _gauge("recent_feedback_accuracy", recent_accuracy),
        _labelled("feedback_confusion_matrix", confusion),
        _labelled("feedback_precision", dict(enumerate(report.precision.tolist()))),
        _labelled("feedback_recall", dict(enumerate(report.recall.tolist()))),
        _labelled("feedback_f1", dict(enumerate(report.f1.tolist()))),
        _labelled("threshold", report.thresholds),
    ]
    if np.isfinite(report.reference_shadow_agreement):  # only for a monitor with a shadow model
        out += [
            _gauge("shadow_agreement", report.shadow_agreement),
            _gauge("reference_shadow_agreement", report.reference_shadow_agreement),
            _gauge("shadow_estimated_accuracy", report.shadow_estimated_accuracy),
        ]
    return out


def _counter(name, value):
    entry = spec(PREFIX + name)
    return CounterMetricFamily(family_name(entry), entry.help, value=value)


def _gauge(name, value):
    entry = spec(PREFIX + name)
    return GaugeMetricFamily(entry.name, entry.help, value=float(value))


def _labelled(name, values: dict):
    """A family whose samples carry the schema's labels; keys are label values (a tuple for several)."""
    entry = spec(PREFIX + name)
    kind = CounterMetricFamily if entry.type == "counter" else GaugeMetricFamily
    family = kind(family_name(entry), entry.help, labels=list(entry.labels))
    for key, value in values.items():
        family.add_metric([str(k) for k in key] if isinstance(key, tuple) else [str(key)], float(value))
    return family


def _max(values: np.ndarray) -> float:
    return float(np.nanmax(values)) if values.size and np.isfinite(values).any() else float("nan")


def _mean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if values.size and np.isfinite(values).any() else float("nan")
