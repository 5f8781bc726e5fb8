"""Prometheus metric families of the drift exporter (prefix ``gangplank_predict_``).

Counters (``*_total``) are cumulative over the exporter's life so PromQL can
``sum`` and ``rate`` them across replicas; gauges describe the last closed
window. :data:`METRICS` lists every name with its type and help text; a test
checks that the README's table documents each of them.

Example:
    >>> totals = Totals()
    >>> [m.name for m in families(totals)][:2]
    ['gangplank_predict_samples', 'gangplank_predict_windows']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

PREFIX = "gangplank_predict_"

METRICS: dict[str, tuple[str, str]] = {
    "samples_total": ("counter", "Samples observed in closed windows"),
    "windows_total": ("counter", "Windows closed"),
    "drift_detected_total": ("counter", "Windows in which drift was detected"),
    "feedback_samples_total": ("counter", "Labelled samples received"),
    "feedback_correct_total": ("counter", "Labelled samples the model predicted correctly"),
    "input_nonfinite_total": ("counter", "Input values that were NaN or infinite"),
    "probabilities_normalised_total": ("counter", "Probability rows that were logits or did not sum to 1 and were normalised"),
    "drift_detected": ("gauge", "1 if the last closed window drifted, else 0"),
    "drift_signal": ("gauge", "1 if this signal fired in the last closed window (label signal)"),
    "window_samples": ("gauge", "Samples in the last closed window"),
    "window_end_timestamp_seconds": ("gauge", "Unix time the last window closed"),
    "input_psi_max": ("gauge", "Largest per-feature population stability index of the last window"),
    "input_psi_mean": ("gauge", "Mean per-feature population stability index of the last window"),
    "input_js_max": ("gauge", "Largest per-feature Jensen-Shannon distance (base 2) of the last window"),
    "input_js_mean": ("gauge", "Mean per-feature Jensen-Shannon distance (base 2) of the last window"),
    "input_ks_max": ("gauge", "Largest per-feature binned Kolmogorov-Smirnov statistic of the last window"),
    "input_drifted_features_ratio": ("gauge", "Share of input features whose PSI exceeded their calibrated cut"),
    "input_mean": ("gauge", "Mean of all finite input values in the last window"),
    "input_std": ("gauge", "Standard deviation of all finite input values in the last window"),
    "class_share": ("gauge", "Share of the last window predicted as this class (label class)"),
    "class_chi2_p_value": ("gauge", "Chi-square p-value of predicted-class counts against the reference shares"),
    "confidence_mean": ("gauge", "Mean top-class probability in the last window"),
    "confidence_psi": ("gauge", "Population stability index of the top-class probability against the reference"),
    "entropy_mean": ("gauge", "Mean entropy of the predicted probabilities, in nats"),
    "feedback_samples": ("gauge", "Labelled samples in the last window"),
    "feedback_accuracy": ("gauge", "Accuracy on the labelled samples of the last window (NaN without labels)"),
    "feedback_recall": ("gauge", "Recall of this class on the labelled samples of the last window (label class)"),
    "threshold": ("gauge", "Threshold the drift decision uses (label statistic)"),
}


@dataclass
class Totals:
    """The exporter's cumulative counts (what the ``*_total`` counters show)."""

    samples: int = 0
    windows: int = 0
    drifted_windows: int = 0
    feedback_samples: int = 0
    feedback_correct: int = 0
    input_nonfinite: int = 0
    probabilities_normalised: int = 0


def families(totals: Totals, report=None, reference=None, closed_at: float = float("nan")) -> list:
    """Every metric family for the current totals and the last window ``report``."""
    out = [
        _counter("samples_total", totals.samples),
        _counter("windows_total", totals.windows),
        _counter("drift_detected_total", totals.drifted_windows),
        _counter("feedback_samples_total", totals.feedback_samples),
        _counter("feedback_correct_total", totals.feedback_correct),
        _counter("input_nonfinite_total", totals.input_nonfinite),
        _counter("probabilities_normalised_total", totals.probabilities_normalised),
    ]
    if report is None:
        return out
    out += [
        _gauge("drift_detected", float(report.drift_detected)),
        _labelled("drift_signal", "signal", {name: float(fired) for name, fired in report.signals.items()}),
        _gauge("window_samples", report.samples),
        _gauge("window_end_timestamp_seconds", closed_at),
        _gauge("input_psi_max", _max(report.input_psi)),
        _gauge("input_psi_mean", _mean(report.input_psi)),
        _gauge("input_js_max", _max(report.input_js)),
        _gauge("input_js_mean", _mean(report.input_js)),
        _gauge("input_ks_max", _max(report.input_ks)),
        _gauge("input_drifted_features_ratio", report.drifted_features_ratio),
        _gauge("input_mean", report.input_mean),
        _gauge("input_std", report.input_std),
        _labelled("class_share", "class", dict(enumerate(report.class_shares.tolist()))),
        _gauge("class_chi2_p_value", report.class_p_value),
        _gauge("confidence_mean", report.confidence_mean),
        _gauge("confidence_psi", report.confidence_psi),
        _gauge("entropy_mean", report.entropy_mean),
        _gauge("feedback_samples", report.labelled),
        _gauge("feedback_accuracy", report.accuracy),
        _labelled("feedback_recall", "class", dict(enumerate(report.recall.tolist()))),
    ]
    t = reference.thresholds
    scale = reference.window_size / max(report.samples, 1)
    out.append(_labelled("threshold", "statistic", {
        "input_drifted_features_ratio": t.drifted_features_ratio,
        "confidence_psi": t.confidence_psi * scale,
        "class_chi2_p_value": t.class_p_value,
        "feedback_accuracy_p_value": t.accuracy_p_value,
    }))
    return out


def _counter(name, value):
    return CounterMetricFamily(PREFIX + name[: -len("_total")], METRICS[name][1], value=value)


def _gauge(name, value):
    return GaugeMetricFamily(PREFIX + name, METRICS[name][1], value=float(value))


def _labelled(name, label, values: dict):
    family = GaugeMetricFamily(PREFIX + name, METRICS[name][1], labels=[label])
    for key, value in values.items():
        family.add_metric([str(key)], float(value))
    return family


def _max(values: np.ndarray) -> float:
    return float(np.max(values)) if values.size and np.isfinite(values).any() else float("nan")


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size and np.isfinite(values).any() else float("nan")
