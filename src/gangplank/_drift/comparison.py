"""A window against the reference profile: every statistic, and the per-window signals.

:func:`compare` is pure: it reads a :class:`~gangplank._drift.window.Window` and a
:class:`~gangplank._drift.profile.Profile` and returns a :class:`WindowReport` that
also holds the thresholds it applied (scaled to the window's size), so
nothing downstream re-derives them. Five per-window signals:

* ``input``: share of features whose PSI is over that feature's cut;
* ``prediction``: chi-square p of the predicted-class counts, against a cut
  calibrated on the exact no-drift distribution (:mod:`gangplank._drift.count_null`);
  for a regression model, of its prediction's bin counts (:mod:`gangplank._drift.regression`);
* ``confidence``: PSI of the top-class probability, likewise calibrated (NaN, never
  fires, for a regression model);
* ``estimated_accuracy``: the label-free estimate (see
  :class:`~gangplank._drift.profile.Profile`) significantly below the reference
  accuracy minus ``accuracy_tolerance``: a warning when sustained;
* ``estimated_floor``: the estimate significantly below the absolute
  ``quality_floor``: a page when sustained.

Labels and a shadow model are not judged per window: their outcomes feed
sequential charts (:mod:`gangplank._drift.sequential`), which weigh every label and
every shadowed row as it arrives. The report carries their per-window
figures (accuracy, agreement, the agreement-based estimate) for display.

PSI scales like ``1 / n``, so cuts calibrated for windows of ``window_size``
are multiplied by ``window_size / n``. Windows under ``min_window_samples``
are reported but never alarm.

Example:
    >>> import numpy as np
    >>> from gangplank._drift.batch import Batch
    >>> from gangplank._drift.profile import Profile
    >>> profile = Profile.fit(Batch.of(None, np.array([[0.9, 0.1], [0.2, 0.8]] * 50)))
    >>> window = profile.new_window(); window.add(Batch.of(None, np.array([[0.9, 0.1]] * 30)))
    >>> compare(profile, Thresholds.never(0), window, window_size=100).signals["prediction"]
    False
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import special

from . import count_sums_kernel, psi_kernel
from . import drift_statistics as ds
from .profile import Profile
from .window import Window

SIGNALS = ("input", "prediction", "confidence", "estimated_accuracy", "estimated_floor")
_PER_CLASS_HITS = np.array([[1.0], [1.0], [2.0]])  # hits over: predicted (precision), actual (recall), both (F1)


@dataclass(frozen=True)
class Thresholds:
    """Where each signal fires (PSI values are for a window of the calibrated size)."""

    feature_psi: np.ndarray  # (features,) per-feature PSI cut
    drifted_features_ratio: float  # input: share of features over their cut
    confidence_psi: float  # confidence
    class_p_value: float  # prediction: chi-square p below this
    estimated_accuracy_p_value: float  # estimated_accuracy and estimated_floor: normal p below this
    accuracy_tolerance: float = 0.02  # accuracy loss below the reference that is acceptable
    quality_floor: float = 0.80  # absolute accuracy the model must keep
    min_window_samples: int = 20

    @classmethod
    def never(cls, n_features: int) -> Thresholds:
        """Thresholds no window crosses (before calibration)."""
        return cls(np.full(n_features, np.inf), np.inf, np.inf, 0.0, 0.0)

    def replace(self, **changes) -> Thresholds:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class WindowReport:
    """Every figure of one closed window, the thresholds applied, and the decision."""

    samples: int
    input_rows: int
    input_psi: np.ndarray
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
    confusion: np.ndarray  # (classes, classes) labelled rows: true class × predicted class
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    estimated_accuracy: float
    estimated_accuracy_error: float  # its standard error under no drift
    estimated_accuracy_p_value: float  # P(an estimate this low | accuracy at reference − tolerance)
    estimated_floor_p_value: float  # P(an estimate this low | accuracy at the quality floor)
    reference_accuracy: float
    shadow_rows: int = 0
    shadow_agreed: int = 0
    shadow_agreement: float = float("nan")
    reference_shadow_agreement: float = float("nan")
    shadow_estimated_accuracy: float = float("nan")
    # A regression model's window: rows with a target, their errors, and the reference's (NaN otherwise).
    error_rows: int = 0
    mae: float = float("nan")
    rmse: float = float("nan")
    reference_mae: float = float("nan")
    reference_rmse: float = float("nan")
    thresholds: dict = field(default_factory=dict)  # statistic -> threshold applied to this window
    signals: dict = field(default_factory=dict)
    input_cells: tuple | None = field(
        default=None, repr=False, compare=False
    )  # (the window's valid cells, the reference's Shares), for the two below

    @property
    def drift_detected(self) -> bool:
        return any(self.signals.values())

    # Only displayed, never decided on: computed when first read (a push or a scrape).
    @functools.cached_property
    def input_js(self) -> np.ndarray:
        """Jensen–Shannon distance (base 2) of each feature."""
        return self._per_feature(ds.js_distance_of)

    @functools.cached_property
    def input_ks(self) -> np.ndarray:
        """Binned Kolmogorov–Smirnov statistic of each feature."""
        return self._per_feature(ds.binned_ks_of)

    def _per_feature(self, statistic) -> np.ndarray:
        if self.input_cells is None:
            return np.full(self.input_psi.shape, np.nan)
        cells, reference = self.input_cells
        return statistic(reference.layout.shares_of_cells(cells), reference)


def compare(
    profile: Profile, t: Thresholds, window: Window, window_size: int, input_rows: int | None = None
) -> WindowReport:
    """Every statistic of ``window`` against ``profile``, and the decision under ``t``.

    ``window_size`` is the window the thresholds were calibrated for, and
    ``input_rows`` how many of its rows had their inputs binned (default all).
    """
    n = window.samples
    has_inputs = window.input_rows > 0
    confidence_psi = float("nan")
    if has_inputs:
        scale = (input_rows or window_size) / window.input_rows
        input_cells, input_psi, ratio, confidence_psi = _psi(profile, t, window, scale)
    else:
        input_cells = None
        input_psi = np.full(profile.n_features, np.nan)
        ratio = float("nan")
    finite = window.input_finite_values
    mean = window.input_sum / finite if finite else float("nan")
    variance = window.input_sum_squares / finite - mean**2 if finite else float("nan")
    if profile.is_regression or not n:  # a regression model's one-hot bins have no confidence
        confidence_psi = float("nan")
    elif not has_inputs:  # one feature, every bin: the histogram is its cells
        confidence_psi = float(profile.confidence_psi(window.confidence_counts)[0])
    confidence_psi_cut = t.confidence_psi * window_size / max(n, 1)
    sums = count_sums_kernel.count_sums(  # one compiled call, or None: numpy below
        window.class_counts,
        profile.class_shares,
        window.confidence_counts,
        profile.confidence_accuracy,
        *profile.map_error_terms,
    )
    if sums is None:
        class_p = ds.chi_square_p_value(window.class_counts, profile.class_shares)
    else:
        class_p = ds.chi_square_p_of(sums[1], sums[0], window.class_counts.size)

    labelled = window.labelled
    correct = window.correct if labelled else 0
    estimate, standard_error = profile.estimated_accuracy(window.confidence_counts, None if sums is None else sums[2:])
    estimate_p = _normal_p_below(estimate, max(profile.accuracy - t.accuracy_tolerance, 0.0), standard_error)
    floor_p = _normal_p_below(estimate, t.quality_floor, standard_error)
    precision, recall, f1 = _per_class(window.confusion) if labelled else np.full((3, profile.n_classes), np.nan)

    decide = n >= t.min_window_samples
    signals = {
        "input": bool(decide and has_inputs and ratio > t.drifted_features_ratio),
        "prediction": bool(decide and class_p < t.class_p_value),
        "confidence": bool(decide and confidence_psi > confidence_psi_cut),
        "estimated_accuracy": bool(decide and estimate_p < t.estimated_accuracy_p_value),
        "estimated_floor": bool(decide and floor_p < t.estimated_accuracy_p_value),
    }
    return WindowReport(
        samples=n,
        input_rows=window.input_rows,
        input_psi=input_psi,
        drifted_features_ratio=ratio,
        input_mean=mean,
        input_std=math.sqrt(max(variance, 0.0)) if math.isfinite(variance) else variance,
        input_nonfinite_values=window.input_nonfinite_values,
        class_shares=window.class_counts / n if n else np.full(profile.n_classes, np.nan),
        class_p_value=class_p,
        confidence_mean=window.confidence_sum / n if n and not profile.is_regression else float("nan"),
        confidence_psi=confidence_psi,
        entropy_mean=window.entropy_sum / n if n and not profile.is_regression else float("nan"),
        labelled=labelled,
        correct=correct,
        accuracy=correct / labelled if labelled else float("nan"),
        confusion=window.confusion.copy(),
        precision=precision,
        recall=recall,
        f1=f1,
        estimated_accuracy=estimate,
        estimated_accuracy_error=standard_error,
        estimated_accuracy_p_value=estimate_p,
        estimated_floor_p_value=floor_p,
        reference_accuracy=profile.accuracy,
        shadow_rows=window.shadow_rows,
        shadow_agreed=window.shadow_agreed,
        shadow_agreement=window.shadow_agreement,
        reference_shadow_agreement=profile.shadow_agreement,
        shadow_estimated_accuracy=profile.shadow_estimated_accuracy(window.shadow_agreement),
        error_rows=window.error_rows,
        mae=window.mae,
        rmse=window.rmse,
        reference_mae=profile.errors.mae,
        reference_rmse=profile.errors.rmse,
        thresholds={
            "input_drifted_features_ratio": t.drifted_features_ratio,
            "confidence_psi": confidence_psi_cut,
            "class_chi2_p_value": t.class_p_value,
            "estimated_accuracy_p_value": t.estimated_accuracy_p_value,
        },
        signals=signals,
        input_cells=input_cells,
    )


def _psi(profile: Profile, t: Thresholds, window: Window, scale: float) -> tuple[tuple, np.ndarray, float, float]:
    """(the window's valid input cells, the reference's shares), each feature's PSI, the share of features
    over their cut scaled by ``scale``, and the confidence PSI: one compiled pass, or numpy (the same figures)."""
    n = window.samples
    compiled = psi_kernel.psi_and_over(
        profile.input_psi,
        window.input_counts,
        window.input_rows,
        t.feature_psi,
        scale,
        profile.confidence_psi,
        window.confidence_counts,
        n,
    )
    if compiled is not None:
        cells, input_psi, over, confidence_psi = compiled
    else:
        cells = profile.input_layout.cells(window.input_counts)  # a copy
        input_psi = profile.input_psi(cells)
        over = int(np.count_nonzero(input_psi > t.feature_psi * scale))
        confidence_psi = float(profile.confidence_psi(window.confidence_counts)[0])
    ratio = over / input_psi.size  # = np.mean of the booleans, exactly
    return (cells, profile.input_shares), input_psi, ratio, confidence_psi


def _normal_p_below(estimate: float, floor: float, standard_error: float) -> float:
    """P(an estimate this low | true accuracy at ``floor``), normal approximation."""
    if not math.isfinite(estimate):
        return float("nan")
    if standard_error > 0:
        return float(special.ndtr((estimate - floor) / standard_error))
    return 0.0 if estimate < floor else 1.0


def _per_class(confusion: np.ndarray) -> np.ndarray:
    """Precision, recall and F1 of each class (rows; NaN where undefined) from a confusion matrix."""
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    denominators = np.array((predicted, actual, predicted + actual))
    numerators = np.diagonal(confusion) * _PER_CLASS_HITS  # exact: small integers
    return np.where(denominators > 0, numerators / np.maximum(denominators, 1), np.nan)
