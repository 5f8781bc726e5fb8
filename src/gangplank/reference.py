"""DriftReference: the training-data profile a production window is compared with.

``DriftReference.fit(inputs, probabilities, labels)`` bins every input
feature, records predicted-class shares, a confidence histogram and the
accuracy, then *calibrates* the drift thresholds: it draws
``n_simulations`` windows of ``window_size`` rows from the reference itself
(no drift by construction), computes every statistic on each, and sets

* a per-feature PSI cut at the ``1 − feature_alpha`` quantile of the
  simulated PSI of that feature (at least ``min_feature_psi``);
* the threshold of the share of features over their cut, and of the
  confidence PSI, at the ``1 − α`` quantile of a scaled chi-square matched to
  the simulated values (see :func:`moment_matched_threshold`). When that
  share threshold would be 1 or more (a handful of features, where the share
  can never exceed it), each feature is tested on its own instead: its cut
  becomes the ``1 − α/d`` moment-matched quantile of its simulated PSI and the
  share threshold 0, so any one feature over its cut fires (Bonferroni);
* the chi-square p-value threshold of the predicted classes, and of the
  one-sided binomial test of feedback accuracy, at ``α``;

with ``α = false_alarm_rate / 4`` (four signals), so a window from the
training distribution alarms with probability about ``false_alarm_rate``.
PSI scales like ``1 / n``, so a window of another size ``n`` uses the cuts
times ``window_size / n``. Windows under ``min_window_samples`` are reported
but never alarm. Every threshold can be overridden with :meth:`with_thresholds`.

The fitted profile is saved with :meth:`save` and read back with :meth:`load`
in the documented, pickle-free format of :mod:`gangplank.reference_file`.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(2000, 5)); p = rng.dirichlet([1, 1, 1], size=2000)
    >>> reference = DriftReference.fit(x, p, window_size=100, n_simulations=100)
    >>> reference.compare(reference.window_of(x[:100], p[:100])).drift_detected
    False
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from . import drift_statistics as ds
from . import reference_file
from .binning import DEFAULT_GRID, FeatureBinner
from .validation import as_inputs, as_labels, as_probabilities
from .window import Window

SIGNALS = ("input", "prediction", "confidence", "accuracy")


@dataclass(frozen=True)
class Thresholds:
    """Where each drift signal fires (PSI values are for a window of ``window_size``)."""

    feature_psi: np.ndarray  # (features,) per-feature PSI cut
    drifted_features_ratio: float  # input signal: share of features over their cut
    confidence_psi: float  # confidence signal
    class_p_value: float  # prediction signal: chi-square p below this
    accuracy_p_value: float  # accuracy signal: binomial p below this
    min_labelled: int = 10  # feedback needed before the accuracy signal may fire
    min_window_samples: int = 20


@dataclass(frozen=True)
class WindowReport:
    """Every figure of one closed window, and the decision."""

    samples: int
    input_rows: int
    input_psi: np.ndarray
    input_js: np.ndarray
    input_ks: np.ndarray
    drifted_features_ratio: float
    input_mean: float
    input_std: float
    input_nonfinite_values: int
    class_shares: np.ndarray
    class_p_value: float
    confidence_mean: float
    confidence_psi: float
    entropy_mean: float
    labelled: int
    correct: int
    accuracy: float
    recall: np.ndarray
    accuracy_p_value: float
    signals: dict = field(default_factory=dict)

    @property
    def drift_detected(self) -> bool:
        return any(self.signals.values())


@dataclass(frozen=True)
class DriftReference:
    """A fitted reference profile; build it with :meth:`fit` or :meth:`load`."""

    binner: FeatureBinner
    input_counts: np.ndarray  # (features, columns)
    class_shares: np.ndarray  # (classes,)
    confidence_edges: np.ndarray  # inner edges of the confidence histogram
    confidence_counts: np.ndarray
    accuracy: float  # NaN without labels
    window_size: int
    n_samples: int
    thresholds: Thresholds

    @property
    def n_features(self) -> int:
        return self.binner.n_features

    @property
    def n_classes(self) -> int:
        return self.class_shares.size

    # -- fitting ------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        inputs,
        probabilities,
        labels=None,
        *,
        window_size: int = 200,
        false_alarm_rate: float = 1e-4,
        feature_alpha: float = 0.01,
        min_feature_psi: float = 0.05,
        n_simulations: int = 400,
        width_bins: int = 10,
        quantile_bins: int = 10,
        confidence_bins: int = 10,
        grid: int = DEFAULT_GRID,
        seed: int = 0,
    ) -> "DriftReference":
        """Profile the reference data and calibrate thresholds for windows of ``window_size``.

        ``inputs`` are (rows, features) or images (flattened per row);
        ``probabilities`` the model's (rows, classes) output on them; ``labels``
        the true classes, optional (they enable the accuracy signal). Fit on
        data the model did not train on (e.g. the validation split) when you
        can, so that confidence and accuracy reflect unseen data.
        """
        x = as_inputs(inputs)
        p, _ = as_probabilities(probabilities)
        if x.shape[0] != p.shape[0]:
            raise ValueError(f"inputs and probabilities must have the same rows, got {x.shape[0]} and {p.shape[0]}")
        n = x.shape[0]
        if not 2 <= window_size <= n:
            raise ValueError(f"window_size must be between 2 and the {n} reference rows, got {window_size}")
        if not 0 < false_alarm_rate < 1 or not 0 < feature_alpha < 1:
            raise ValueError("false_alarm_rate and feature_alpha must be between 0 and 1")
        y = None if labels is None else as_labels(labels, p.shape[1], n)

        binner = FeatureBinner.fit(x, width_bins, quantile_bins, grid)
        confidence = p.max(axis=1)
        confidence_edges = _confidence_edges(confidence, confidence_bins)
        predicted = p.argmax(axis=1)
        class_counts = np.bincount(predicted, minlength=p.shape[1]).astype(np.float64)
        base = cls(
            binner=binner,
            input_counts=_count_in_chunks(binner, x),
            class_shares=(class_counts + 0.5) / (n + 0.5 * p.shape[1]),
            confidence_edges=confidence_edges,
            confidence_counts=np.bincount(np.searchsorted(confidence_edges, confidence, side="right"), minlength=confidence_edges.size + 1),
            accuracy=float("nan") if y is None else float(np.mean(predicted == y)),
            window_size=int(window_size),
            n_samples=n,
            thresholds=Thresholds(np.full(x.shape[1], np.inf), np.inf, np.inf, 0.0, 0.0),
        )
        return base._calibrated(x, p, false_alarm_rate, feature_alpha, min_feature_psi, n_simulations, seed)

    def _calibrated(self, x, p, false_alarm_rate, feature_alpha, min_feature_psi, n_simulations, seed):
        # Simulated windows come from held-out rows and are compared with a
        # profile of the other rows, so the reference's own sampling noise is
        # part of the calibration (in-sample windows would look too calm).
        rng = np.random.default_rng(seed)
        order = rng.permutation(x.shape[0])
        held_out = order[: max(self.window_size, x.shape[0] // 4)]
        rest = order[held_out.size:]
        profile = self if rest.size < self.window_size else self._profile_of(x[rest], p[rest])
        feature_psi, confidence_psi = [], []
        for _ in range(n_simulations):
            rows = rng.choice(held_out, size=self.window_size, replace=False)
            report = profile.compare(profile.window_of(x[rows], p[rows]))
            feature_psi.append(report.input_psi)
            confidence_psi.append(report.confidence_psi)
        feature_psi = np.array(feature_psi)
        cuts = np.maximum(np.quantile(feature_psi, 1 - feature_alpha, axis=0), min_feature_psi)
        ratios = (feature_psi > cuts).mean(axis=1)
        alpha = false_alarm_rate / len(SIGNALS)
        ratio_threshold = ds.moment_matched_threshold(ratios, alpha, floor=2 * feature_alpha)
        if ratio_threshold >= 1.0:
            # Too few (or too correlated) features for the share ever to cross
            # its threshold: the input signal could never fire. Test each
            # feature on its own instead (Bonferroni, alpha / d each) and
            # alarm when any feature is over its cut.
            d = cuts.size
            cuts = np.array([
                ds.moment_matched_threshold(feature_psi[:, j], alpha / d, floor=cuts[j]) for j in range(d)
            ])
            ratio_threshold = 0.0
        thresholds = Thresholds(
            feature_psi=cuts,
            drifted_features_ratio=ratio_threshold,
            confidence_psi=ds.moment_matched_threshold(np.array(confidence_psi), alpha),
            class_p_value=alpha,
            accuracy_p_value=alpha,
        )
        return dataclasses.replace(self, thresholds=thresholds)

    def _profile_of(self, x, p) -> "DriftReference":
        """This reference's bins with counts and shares taken from other rows."""
        predicted = p.argmax(axis=1)
        class_counts = np.bincount(predicted, minlength=self.n_classes)
        return dataclasses.replace(
            self,
            input_counts=_count_in_chunks(self.binner, x),
            class_shares=(class_counts + 0.5) / (predicted.size + 0.5 * self.n_classes),
            confidence_counts=np.bincount(self.confidence_bin(p), minlength=self.confidence_edges.size + 1),
        )

    def with_thresholds(self, **overrides) -> "DriftReference":
        """A copy with some thresholds replaced, e.g. ``with_thresholds(class_p_value=1e-4)``."""
        return dataclasses.replace(self, thresholds=dataclasses.replace(self.thresholds, **overrides))

    # -- windows --------------------------------------------------------------
    def new_window(self) -> Window:
        return Window(self.n_features, self.binner.n_columns, self.n_classes, self.confidence_edges.size + 1)

    def window_of(self, inputs, probabilities, labels=None) -> Window:
        """A window holding these rows (checked like ``observe`` checks them)."""
        window = self.new_window()
        p, _ = as_probabilities(probabilities, self.n_classes)
        if inputs is not None:
            x = as_inputs(inputs, self.n_features)
            window.add_inputs(self.binner.count(x), x)
        window.add_predictions(p, self.confidence_bin(p))
        if labels is not None:
            window.add_feedback(as_labels(labels, self.n_classes, p.shape[0]), p.argmax(axis=1))
        return window

    def confidence_bin(self, probabilities: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.confidence_edges, probabilities.max(axis=1), side="right")

    def compare(self, window: Window) -> WindowReport:
        """Every statistic of ``window`` against this reference, and the drift decision."""
        t = self.thresholds
        has_inputs = window.input_rows > 0
        nothing = np.full(self.n_features, np.nan)
        if has_inputs:
            window_shares = ds.Shares.of(window.input_counts, self._valid_columns)
            input_psi = ds.psi_of(window_shares, self._input_shares)
            input_js = ds.js_distance_of(window_shares, self._input_shares)
            input_ks = ds.binned_ks_of(window_shares, self._input_shares)
        else:
            input_psi = input_js = input_ks = nothing
        scale_inputs = self.window_size / max(window.input_rows, 1)
        ratio = float(np.mean(input_psi > t.feature_psi * scale_inputs)) if has_inputs else float("nan")
        mean = window.input_sum / window.input_finite_values if window.input_finite_values else float("nan")
        variance = window.input_sum_squares / window.input_finite_values - mean**2 if window.input_finite_values else float("nan")

        n = window.samples
        confidence_psi = float(ds.psi_of(ds.Shares.of(window.confidence_counts), self._confidence_shares)) if n else float("nan")
        class_p = ds.chi_square_p_value(window.class_counts, self.class_shares)
        accuracy = window.correct / window.labelled if window.labelled else float("nan")
        accuracy_p = float("nan")
        if window.labelled and np.isfinite(self.accuracy):
            accuracy_p = float(stats.binomtest(window.correct, window.labelled, self.accuracy, alternative="less").pvalue)
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(window.label_counts > 0, window.correct_by_class / np.maximum(window.label_counts, 1), np.nan)

        decide = n >= t.min_window_samples
        signals = {
            "input": bool(decide and has_inputs and ratio > t.drifted_features_ratio),
            "prediction": bool(decide and class_p < t.class_p_value),
            "confidence": bool(decide and confidence_psi > t.confidence_psi * self.window_size / max(n, 1)),
            "accuracy": bool(window.labelled >= t.min_labelled and accuracy_p < t.accuracy_p_value),
        }
        return WindowReport(
            samples=n,
            input_rows=window.input_rows,
            input_psi=input_psi,
            input_js=input_js,
            input_ks=input_ks,
            drifted_features_ratio=ratio,
            input_mean=mean,
            input_std=float(np.sqrt(max(variance, 0.0))) if np.isfinite(variance) else variance,
            input_nonfinite_values=window.input_nonfinite_values,
            class_shares=window.class_counts / n if n else np.full(self.n_classes, np.nan),
            class_p_value=class_p,
            confidence_mean=window.confidence_sum / n if n else float("nan"),
            confidence_psi=confidence_psi,
            entropy_mean=window.entropy_sum / n if n else float("nan"),
            labelled=window.labelled,
            correct=window.correct,
            accuracy=accuracy,
            recall=recall,
            accuracy_p_value=accuracy_p,
            signals=signals,
        )

    @functools.cached_property
    def _valid_columns(self) -> np.ndarray:
        return self.binner.valid_columns()

    @functools.cached_property
    def _input_shares(self) -> ds.Shares:
        return ds.Shares.of(self.input_counts, self._valid_columns)

    @functools.cached_property
    def _confidence_shares(self) -> ds.Shares:
        return ds.Shares.of(self.confidence_counts)

    # -- files ----------------------------------------------------------------
    def save(self, path) -> None:
        """Write the profile to ``path`` (see :mod:`gangplank.reference_file`; no pickle)."""
        t = self.thresholds
        header = {
            "window_size": self.window_size,
            "n_samples": self.n_samples,
            "accuracy": None if np.isnan(self.accuracy) else self.accuracy,
            "n_columns": self.binner.n_columns,
            "thresholds": {
                "drifted_features_ratio": t.drifted_features_ratio,
                "confidence_psi": t.confidence_psi,
                "class_p_value": t.class_p_value,
                "accuracy_p_value": t.accuracy_p_value,
                "min_labelled": t.min_labelled,
                "min_window_samples": t.min_window_samples,
            },
        }
        reference_file.write(path, header, {
            "low": self.binner.low,
            "scale": self.binner.scale,
            "lookup": self.binner.lookup,
            "input_counts": self.input_counts,
            "class_shares": self.class_shares,
            "confidence_edges": self.confidence_edges,
            "confidence_counts": self.confidence_counts,
            "feature_psi": t.feature_psi,
        })

    @classmethod
    def load(cls, path) -> "DriftReference":
        """Read a profile written by :meth:`save`; :class:`ReferenceFormatError` if it is not one."""
        header, arrays = reference_file.read(path)
        lookup, n_columns = arrays["lookup"], int(header["n_columns"])
        binner = FeatureBinner(
            arrays["low"].astype(np.float32), arrays["scale"].astype(np.float32), lookup,
            lookup[:, -1].astype(np.int64) + 1, n_columns,
        )
        t = header["thresholds"]
        accuracy = header.get("accuracy")
        return cls(
            binner=binner,
            input_counts=arrays["input_counts"].astype(np.int64),
            class_shares=arrays["class_shares"].astype(np.float64),
            confidence_edges=arrays["confidence_edges"].astype(np.float64),
            confidence_counts=arrays["confidence_counts"].astype(np.int64),
            accuracy=float("nan") if accuracy is None else float(accuracy),
            window_size=int(header["window_size"]),
            n_samples=int(header["n_samples"]),
            thresholds=Thresholds(
                feature_psi=arrays["feature_psi"].astype(np.float64),
                drifted_features_ratio=float(t["drifted_features_ratio"]),
                confidence_psi=float(t["confidence_psi"]),
                class_p_value=float(t["class_p_value"]),
                accuracy_p_value=float(t["accuracy_p_value"]),
                min_labelled=int(t["min_labelled"]),
                min_window_samples=int(t["min_window_samples"]),
            ),
        )


def _confidence_edges(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Inner edges mixing reference quantiles (where the mass is) and equal widths over [0, 1]."""
    quantiles = np.quantile(confidence, np.arange(1, bins) / bins)
    widths = np.arange(1, bins) / bins
    return np.unique(np.concatenate([quantiles, widths]))


def _count_in_chunks(binner: FeatureBinner, x: np.ndarray, rows: int = 4096) -> np.ndarray:
    counts = np.zeros((binner.n_features, binner.n_columns), dtype=np.int64)
    for start in range(0, x.shape[0], rows):
        counts += binner.count(x[start:start + rows])
    return counts
