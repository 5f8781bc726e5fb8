"""Prometheus metric families of the drift monitor (prefix ``gangplank_predict_``).

Counters (``*_total``) are cumulative over the monitor's life so PromQL can
``sum`` and ``rate`` them across replicas; gauges describe the last closed
window and the monitor's settings. Names, types and help texts come from
:mod:`gangplank.metric_schema`.

Example:
    >>> totals = Totals(n_classes=2)
    >>> [m.name for m in families(totals)][:2]
    ['gangplank_predict_samples', 'gangplank_predict_samples_dropped']
    >>> len(families(totals)) < len(PREDICT)  # the last window's gauges come with a report
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from ..metric_schema import PREDICT, MetricSpec, family_name
from .comparison import SIGNALS, WindowReport

PREFIX = "gangplank_predict_"
# The worker's steps whose exceptions are counted (``worker_errors_total{stage=...}``): adding a batch or
# labels to the window, comparing it, the user's ``on_window``, building and handing over the families.
WORKER_STAGES = ("process", "compare", "on_window", "publish", "callback")


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
    # A regression model's targets (counted in feedback_samples too) and the sums of their errors.
    absolute_error_sum: float = 0.0
    squared_error_sum: float = 0.0

    def __post_init__(self):
        if self.confusion is None:
            self.confusion = np.zeros((self.n_classes, self.n_classes), dtype=np.int64)

    def copy(self) -> Totals:
        """An independent copy (``confusion`` is shared: no Totals changes it in place, see :meth:`add_feedback`)."""
        copied = object.__new__(Totals)
        copied.__dict__.update(self.__dict__)
        copied.signal_windows = dict(self.signal_windows)
        copied.worker_errors = dict(self.worker_errors)
        return copied

    def add_window(self, report: WindowReport) -> None:
        self.samples += report.samples
        self.windows += 1
        self.drifted_windows += int(report.drift_detected)
        for name, fired in report.signals.items():
            self.signal_windows[name] += int(fired)
        self.input_nonfinite += report.input_nonfinite_values
        self.shadow_samples += report.shadow_rows
        self.shadow_agreed += report.shadow_agreed
        if report.labelled:  # the window's confusion matrix sums to report.labelled, its trace is report.correct
            self._add_confusion(report.confusion, report.labelled, report.correct)
        if report.error_rows:
            self.add_error_sums(report.error_rows, report.mae * report.error_rows, report.rmse**2 * report.error_rows)

    def add_error_sums(self, rows: int, absolute: float, squared: float) -> None:
        self.feedback_samples += int(rows)
        self.absolute_error_sum += absolute
        self.squared_error_sum += squared

    def add_feedback(self, confusion: np.ndarray) -> None:
        """Add labelled rows, as a (true class × predicted class) count matrix."""
        self._add_confusion(confusion, int(confusion.sum()), int(np.trace(confusion)))

    def _add_confusion(self, confusion: np.ndarray, labelled: int, correct: int) -> None:
        self.confusion = self.confusion + confusion  # a new array: copies share the old one
        self.feedback_samples += labelled
        self.feedback_correct += correct


@dataclass(frozen=True)
class Status:
    """What the monitor knows besides the last window: settings, recent windows, timing."""

    started_at: float = float("nan")  # Unix time the monitor started
    window_seconds: float | None = None  # the monitor's window_seconds setting
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
    regression: bool = False  # a regression model's monitor: error families, no class-only ones
    error_cut: float = float("nan")  # |error| above which a target counts against the error charts


def families(totals: Totals, report: WindowReport | None = None, status: Status = Status()) -> list:
    """Every metric family for the current totals, the last window ``report`` and ``status``.

    Names, types, help and labels come from the schema
    (:data:`gangplank.metric_schema.PREDICT`), in its order; this module
    only says where each value comes from.
    """
    values = {**_cumulative(totals, status), **_settings(status)}
    if report is not None:
        values.update(_last_window(report, status, totals.n_classes))
    if status.regression:
        values.update(_regression(totals, report, status))
        for name in CLASSIFIER_ONLY:
            values.pop(PREFIX + name, None)
    unknown = set(values) - {entry.name for entry in PREDICT}
    assert not unknown, f"not in the schema: {sorted(unknown)}"
    return [_family(entry, values[entry.name]) for entry in PREDICT if entry.name in values]


def _cumulative(totals: Totals, status: Status) -> dict:
    k = totals.n_classes
    charts = status.charts
    return _named(
        samples_total=totals.samples,
        samples_dropped_total=totals.dropped,
        windows_total=totals.windows,
        drift_detected_total=totals.drifted_windows,
        drift_signal_windows_total=totals.signal_windows,
        feedback_samples_total=totals.feedback_samples,
        feedback_correct_total=totals.feedback_correct,
        feedback_unmatched_total=totals.feedback_unmatched,
        feedback_dropped_total=totals.feedback_dropped,
        feedback_confusion_total={(str(t), str(p)): totals.confusion[t, p] for t in range(k) for p in range(k)},
        input_nonfinite_total=totals.input_nonfinite,
        probabilities_normalised_total=totals.probabilities_normalised,
        shadow_samples_total=totals.shadow_samples,
        shadow_agreed_total=totals.shadow_agreed,
        cusum={key: state.statistic for key, state in charts.items()},
        cusum_threshold={key: state.threshold for key, state in charts.items()},
        cusum_alarms_total={key: state.alarms for key, state in charts.items()},
        worker_errors_total=totals.worker_errors,
    )


def _settings(status: Status) -> dict:
    return _named(
        start_timestamp_seconds=status.started_at,
        window_seconds=0.0 if status.window_seconds is None else status.window_seconds,
        accuracy_tolerance=status.accuracy_tolerance,
        quality_floor=status.quality_floor,
        min_feedback=status.min_feedback,
        sustained_windows=status.sustained_windows,
        input_sampling_rate=status.input_sampling_rate,
    )


def _last_window(report: WindowReport, status: Status, k: int) -> dict:
    recent_labels, recent_accuracy = status.recent_feedback
    values = _named(
        drift_detected=float(report.drift_detected),
        drift_signal={name: float(fired) for name, fired in report.signals.items()},
        drift_signal_recent=status.recent_signals,
        recent_windows=status.recent_windows,
        window_samples=report.samples,
        window_end_timestamp_seconds=status.closed_at,
        window_interval_seconds=status.interval,
        input_psi_max=_max(report.input_psi),
        input_psi_mean=_mean(report.input_psi),
        input_js_max=_max(report.input_js),
        input_js_mean=_mean(report.input_js),
        input_ks_max=_max(report.input_ks),
        input_drifted_features_ratio=report.drifted_features_ratio,
        input_mean=report.input_mean,
        input_std=report.input_std,
        class_share=dict(enumerate(report.class_shares.tolist())),
        class_chi2_p_value=report.class_p_value,
        confidence_mean=report.confidence_mean,
        confidence_psi=report.confidence_psi,
        entropy_mean=report.entropy_mean,
        estimated_accuracy=report.estimated_accuracy,
        estimated_accuracy_error=report.estimated_accuracy_error,
        reference_accuracy=report.reference_accuracy,
        feedback_samples=report.labelled,
        feedback_accuracy=report.accuracy,
        recent_feedback_samples=recent_labels,
        recent_feedback_accuracy=recent_accuracy,
        feedback_confusion_matrix={(str(t), str(p)): report.confusion[t, p] for t in range(k) for p in range(k)},
        feedback_precision=dict(enumerate(report.precision.tolist())),
        feedback_recall=dict(enumerate(report.recall.tolist())),
        feedback_f1=dict(enumerate(report.f1.tolist())),
        threshold=report.thresholds,
    )
    if np.isfinite(report.reference_shadow_agreement):  # only for a monitor with a shadow model
        values.update(
            _named(
                shadow_agreement=report.shadow_agreement,
                reference_shadow_agreement=report.reference_shadow_agreement,
                shadow_estimated_accuracy=report.shadow_estimated_accuracy,
            )
        )
    return values


# What a regression model's monitor does not export: its "classes" are prediction bins, one-hot.
CLASSIFIER_ONLY = (
    "feedback_correct_total",
    "feedback_confusion_total",
    "confidence_mean",
    "confidence_psi",
    "entropy_mean",
    "estimated_accuracy",
    "estimated_accuracy_error",
    "reference_accuracy",
    "feedback_accuracy",
    "recent_feedback_samples",
    "recent_feedback_accuracy",
    "feedback_confusion_matrix",
    "feedback_precision",
    "feedback_recall",
    "feedback_f1",
)


# What only a regression model's monitor exports.
REGRESSION_ONLY = (
    "feedback_absolute_error_total",
    "feedback_squared_error_total",
    "error_cut",
    "feedback_mae",
    "feedback_rmse",
    "reference_mae",
    "reference_rmse",
)


def _regression(totals: Totals, report: WindowReport | None, status: Status) -> dict:
    values = _named(
        feedback_absolute_error_total=totals.absolute_error_sum,
        feedback_squared_error_total=totals.squared_error_sum,
        error_cut=status.error_cut,
    )
    if report is not None:
        values.update(
            _named(
                feedback_mae=report.mae,
                feedback_rmse=report.rmse,
                reference_mae=report.reference_mae,
                reference_rmse=report.reference_rmse,
            )
        )
    return values


def _named(**values) -> dict:
    """Values keyed by their schema name (``samples_total`` is ``gangplank_predict_samples_total``)."""
    return {PREFIX + name: value for name, value in values.items()}


def _family(entry: MetricSpec, value) -> Metric:
    """The family of one schema entry: one value, or a dict keyed by label values (a tuple for several labels)."""
    kind = CounterMetricFamily if entry.type == "counter" else GaugeMetricFamily
    if not entry.labels:
        return kind(family_name(entry), entry.help, value=float(value))
    family = kind(family_name(entry), entry.help, labels=list(entry.labels))
    for key, sample in value.items():
        family.add_metric([str(k) for k in key] if isinstance(key, tuple) else [str(key)], float(sample))
    return family


def _max(values: np.ndarray) -> float:
    return float(np.nanmax(values)) if values.size and np.isfinite(values).any() else float("nan")


def _mean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if values.size and np.isfinite(values).any() else float("nan")
