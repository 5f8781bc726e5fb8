"""Every metric family gangplank exports: name, type, help, labels and source, in one place.

The drift families, the scrape collectors, the README's metric tables and the
tests' contract (rules and dashboards may name only what is here) all derive
from :data:`SCHEMA`. Names are written as PromQL sees them: counters end in
``_total``; a histogram is named by its family (``…_bucket``, ``_sum`` and
``_count`` belong to it).

Example:
    >>> spec("gangplank_predict_samples_total").type
    'counter'
    >>> "gangplank_test_model_weights" in names()
    True
    >>> family_name(spec("gangplank_predict_samples_total"))
    'gangplank_predict_samples'
"""

from __future__ import annotations

import functools
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    """One exported family."""

    name: str  # as PromQL writes it
    type: str  # "gauge", "counter" or "histogram"
    help: str
    labels: tuple[str, ...] = ()  # labels of the samples, besides job/instance/agent
    source: str = "predict"  # "train", "test" or "predict"


def _predict(name, kind, help_text, *labels):
    return MetricSpec("gangplank_predict_" + name, kind, help_text, tuple(labels), "predict")


PREDICT = (
    _predict("samples_total", "counter", "Samples observed in closed windows"),
    _predict(
        "samples_dropped_total",
        "counter",
        "Samples left out of every window: the worker queue stayed full, the monitor was closing, or the worker failed",
    ),
    _predict("windows_total", "counter", "Windows closed"),
    _predict("drift_detected_total", "counter", "Windows in which drift was detected"),
    _predict("drift_signal_windows_total", "counter", "Windows in which this signal fired", "signal"),
    _predict("feedback_samples_total", "counter", "Labelled samples received"),
    _predict("feedback_correct_total", "counter", "Labelled samples the model predicted correctly"),
    _predict("feedback_unmatched_total", "counter", "Feedback labels whose scoring id was unknown or expired"),
    _predict(
        "feedback_dropped_total",
        "counter",
        "Labels not counted because their samples were dropped (not in feedback_samples_total)",
    ),
    _predict(
        "feedback_confusion_total",
        "counter",
        "Labelled samples by true and predicted class",
        "true_class",
        "predicted_class",
    ),
    _predict("input_nonfinite_total", "counter", "Input values that were NaN or infinite"),
    _predict("shadow_samples_total", "counter", "Samples a shadow model also predicted"),
    _predict("shadow_agreed_total", "counter", "Shadowed samples on which both models predicted the same class"),
    _predict(
        "cusum_alarms_total",
        "counter",
        "Alarm episodes of this sequential chart (evidence: labels, shadow or error; chart: small or large drop)",
        "evidence",
        "chart",
    ),
    _predict(
        "probabilities_normalised_total",
        "counter",
        "Probability rows that were logits or did not sum to 1 and were normalised",
    ),
    _predict(
        "worker_errors_total",
        "counter",
        "Exceptions the drift monitor caught and went on after, by step (process, compare, on_window, publish; "
        "callback: a model.predict batch the Keras callback could not observe)",
        "stage",
    ),
    _predict("drift_detected", "gauge", "1 if the last closed window drifted, else 0"),
    _predict("drift_signal", "gauge", "1 if this signal fired in the last closed window", "signal"),
    _predict("drift_signal_recent", "gauge", "Of the recent windows, how many this signal fired in", "signal"),
    _predict("recent_windows", "gauge", "How many recent windows drift_signal_recent counts over"),
    _predict("sustained_windows", "gauge", "Recent windows a signal must fire in to count as sustained"),
    _predict("window_samples", "gauge", "Samples in the last closed window"),
    _predict("window_end_timestamp_seconds", "gauge", "Unix time the last window closed"),
    _predict(
        "start_timestamp_seconds",
        "gauge",
        "Unix time the monitor started (GangplankAgentSilent: an agent that never closed a window)",
    ),
    _predict("window_seconds", "gauge", "Seconds after which a non-empty window closes (0: by size only)"),
    _predict("window_interval_seconds", "gauge", "Usual seconds between window closes (moving average)"),
    _predict("input_sampling_rate", "gauge", "Share of rows whose inputs are binned"),
    _predict("input_psi_max", "gauge", "Largest per-feature population stability index of the last window"),
    _predict("input_psi_mean", "gauge", "Mean per-feature population stability index of the last window"),
    _predict("input_js_max", "gauge", "Largest per-feature Jensen-Shannon distance (base 2) of the last window"),
    _predict("input_js_mean", "gauge", "Mean per-feature Jensen-Shannon distance (base 2) of the last window"),
    _predict("input_ks_max", "gauge", "Largest per-feature binned Kolmogorov-Smirnov statistic of the last window"),
    _predict(
        "input_drifted_features_ratio", "gauge", "Share of input features whose PSI exceeded their calibrated cut"
    ),
    _predict("input_mean", "gauge", "Mean of all finite input values in the last window"),
    _predict("input_std", "gauge", "Standard deviation of all finite input values in the last window"),
    _predict("class_share", "gauge", "Share of the last window predicted as this class", "class"),
    _predict(
        "class_chi2_p_value", "gauge", "Chi-square p-value of predicted-class counts against the reference shares"
    ),
    _predict("confidence_mean", "gauge", "Mean top-class probability in the last window"),
    _predict(
        "confidence_psi", "gauge", "Population stability index of the top-class probability against the reference"
    ),
    _predict("entropy_mean", "gauge", "Mean entropy of the predicted probabilities, in nats"),
    _predict(
        "estimated_accuracy", "gauge", "Accuracy of the last window estimated from its confidence, without labels"
    ),
    _predict(
        "estimated_accuracy_error", "gauge", "Standard error of estimated_accuracy under no drift (map error included)"
    ),
    _predict("reference_accuracy", "gauge", "Accuracy of the model on the labelled reference rows"),
    _predict("shadow_agreement", "gauge", "Share of the last window's shadowed samples on which both models agreed"),
    _predict("reference_shadow_agreement", "gauge", "Share of reference rows on which both models agreed"),
    _predict(
        "shadow_estimated_accuracy",
        "gauge",
        "Accuracy of the last window estimated from its agreement with the shadow model, without labels",
    ),
    _predict(
        "cusum",
        "gauge",
        "Sequential evidence (nats) that accuracy (labels) or agreement (shadow) fell, or that a regression "
        "model's errors grew (error); at or above its threshold while in alarm",
        "evidence",
        "chart",
    ),
    _predict("cusum_threshold", "gauge", "Evidence at which this sequential chart pages", "evidence", "chart"),
    _predict("accuracy_tolerance", "gauge", "Accuracy loss below the reference that is acceptable"),
    _predict("quality_floor", "gauge", "Absolute accuracy floor on labelled feedback and on the estimate"),
    _predict("min_feedback", "gauge", "Labels needed before accuracy on feedback is judged"),
    _predict("feedback_samples", "gauge", "Labelled samples in the last window"),
    _predict("feedback_accuracy", "gauge", "Accuracy on the labelled samples of the last window (NaN without labels)"),
    _predict("recent_feedback_samples", "gauge", "Labelled samples pooled over the most recent windows"),
    _predict(
        "recent_feedback_accuracy", "gauge", "Accuracy on the labelled samples pooled over the most recent windows"
    ),
    _predict(
        "feedback_confusion_matrix",
        "gauge",
        "Labelled samples of the last window by true and predicted class",
        "true_class",
        "predicted_class",
    ),
    _predict(
        "feedback_precision", "gauge", "Precision of this class on the labelled samples of the last window", "class"
    ),
    _predict("feedback_recall", "gauge", "Recall of this class on the labelled samples of the last window", "class"),
    _predict("feedback_f1", "gauge", "F1 score of this class on the labelled samples of the last window", "class"),
    _predict("threshold", "gauge", "Threshold the drift decision used in the last window", "statistic"),
    # A regression model's monitor (task="regression"): its targets' errors, target - prediction.
    _predict(
        "feedback_absolute_error_total",
        "counter",
        "Regression: sum of the absolute errors of targets received (over feedback_samples_total: the MAE)",
    ),
    _predict(
        "feedback_squared_error_total",
        "counter",
        "Regression: sum of the squared errors of targets received (over feedback_samples_total: the MSE)",
    ),
    _predict("feedback_mae", "gauge", "Regression: mean absolute error of the targets that arrived in the last window"),
    _predict(
        "feedback_rmse", "gauge", "Regression: root mean squared error of the targets that arrived in the last window"
    ),
    _predict("reference_mae", "gauge", "Regression: mean absolute error on the reference rows"),
    _predict("reference_rmse", "gauge", "Regression: root mean squared error on the reference rows"),
    _predict(
        "error_cut",
        "gauge",
        "Regression: absolute error above which a target counts against the error charts (the reference's 90th "
        "percentile)",
    ),
)


def _phase(phase, name, kind, help_text, *labels):
    return MetricSpec(f"gangplank_{phase}_{name}", kind, help_text, tuple(labels), phase)


# Families the training exporter always writes; Keras log values come on top
# (``gangplank_<phase>_<sanitised log key>``, a ``class`` label for per-class ones).
TRAIN_TEST_BUILTINS = ("elapsed_time_seconds", "model_parameters_count", "epochs_count", "running", "model_weights")

TRAIN_TEST = (
    _phase("train", "epochs_count", "gauge", "Epochs completed in the current fit"),
    _phase("train", "running", "gauge", "1 while fit is running, 0 after it ended"),
    *(
        spec
        for phase in ("train", "test")
        for spec in (
            _phase(phase, "elapsed_time_seconds", "gauge", f"Seconds since {phase} began"),
            _phase(phase, "model_parameters_count", "gauge", "Number of model parameters (Keras count_params)"),
            _phase(phase, "model_weights", "histogram", "Model parameters (kernels, biases) by value"),
        )
    ),
    # Keras log values that the shipped dashboards and rules use.
    *(
        _phase(phase, name, "gauge", f"Keras log value {name!r}")
        for phase, names_ in (
            ("train", ("loss", "accuracy", "val_loss", "val_accuracy")),
            ("test", ("loss", "accuracy")),
        )
        for name in names_
    ),
    _phase("test", "f1_score", "gauge", "Keras F1Score(average=None) per class", "class"),
    _phase(
        "train",
        "confusion_matrix",
        "gauge",
        "Training samples by true and predicted class",
        "true_class",
        "predicted_class",
    ),
    _phase(
        "train",
        "val_confusion_matrix",
        "gauge",
        "Validation samples by true and predicted class",
        "true_class",
        "predicted_class",
    ),
    _phase(
        "test",
        "confusion_matrix",
        "gauge",
        "Evaluation samples by true and predicted class",
        "true_class",
        "predicted_class",
    ),
)

SCHEMA: tuple[MetricSpec, ...] = TRAIN_TEST + PREDICT


@functools.cache
def _by_name() -> dict[str, MetricSpec]:
    return {s.name: s for s in SCHEMA}


def spec(name: str) -> MetricSpec:
    """The entry of ``name`` (as PromQL writes it); ``KeyError`` if gangplank does not export it."""
    return _by_name()[name]


def names() -> frozenset[str]:
    """Every family name as PromQL writes it."""
    return frozenset(_by_name())


def family_name(entry: MetricSpec) -> str:
    """The name a prometheus_client family is built with (counters without ``_total``)."""
    return entry.name[: -len("_total")] if entry.type == "counter" else entry.name


def markdown_table(source: str) -> str:
    """The README's table of one source's families (``python -m gangplank.metric_schema predict``)."""
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for entry in SCHEMA:
        if entry.source == source:
            labels = ", ".join(f"`{label}`" for label in entry.labels) or "–"
            rows.append(f"| `{entry.name}` | {entry.type} | {labels} | {entry.help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    import sys

    for source in sys.argv[1:] or ["train", "test", "predict"]:
        print(markdown_table(source), end="\n\n")
