"""Calibrating the drift thresholds: exact simulation where the statistic reads bin counts, windows drawn otherwise.

``α = false_alarm_rate / 5`` is the per-window rate of each of the five signals.

* Confidence and prediction read only bin counts (confidence bins,
  predicted classes), so their no-drift distribution is simulated exactly
  (:mod:`gangplank._drift.count_null`: reference shares from a Dirichlet on the
  reference counts, window counts from a multinomial), with enough draws
  for an empirical ``1 − α`` quantile: it holds for rare classes and
  near-empty bins, where a chi-square or a moment-matched tail leaks.
* The inputs are calibrated on ``n_simulations`` windows of ``window_size``
  rows drawn with replacement from a held-out quarter of the reference rows
  (no drift by construction), each compared with a profile of the other
  rows. Half the windows set a per-feature PSI cut at the ``1 − feature_alpha``
  quantile of that feature's simulated PSI (at least ``min_feature_psi``);
  the other half set the threshold of the share of features over their cut
  at its empirical ``1 − α_input`` quantile, ``α_input = max(α, 10 /
  (n_simulations / 2))``: a rate the simulations can reach, judged on
  windows the cuts were not fitted to. Input drift is a warning that must be
  sustained over windows; pages come from the sequential rules. When that
  share threshold would be crossed by one feature or never (a handful of
  features), the window alarms when any feature passes its cut
  scaled by the ``1 − α_input`` quantile of the largest scaled PSI (a
  max-statistic test), and the share threshold is 0.
* The estimate's signals are normal tests at ``α`` with the estimate's own
  standard error.

Example:
    >>> import numpy as np
    >>> from gangplank._drift.batch import Batch
    >>> rng = np.random.default_rng(0)
    >>> batch = Batch.of(rng.normal(size=(800, 3)), rng.dirichlet([1, 1], size=800))
    >>> settings = FitSettings(window_size=100, n_simulations=50)
    >>> profile = Profile.fit(batch)
    >>> 0 < calibrate(profile, batch, settings).class_p_value < 1e-3
    True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import special

from . import count_null
from .batch import Batch
from .binning import DEFAULT_GRID
from .comparison import SIGNALS, Thresholds, compare
from .profile import Profile


@dataclass(frozen=True)
class FitSettings:
    """How a reference was fitted and calibrated; saved with it (``DriftReference.get_params()``).

    Fields (``DriftReference.fit``'s keyword arguments, documented here once):
        window_size: samples per production window the thresholds are calibrated for (200).
        false_alarm_rate: chance per window that a drift decision fires on data without drift (1e-4).
        feature_alpha: per-feature false-alarm rate of the PSI cut that counts a feature as drifted (0.01).
        min_feature_psi: the smallest per-feature PSI cut (0.05).
        n_simulations: windows simulated to calibrate the input thresholds (1000).
        width_bins: equal-width bins per feature (10).
        quantile_bins: quantile bins per feature, on top of the equal-width ones (10).
        confidence_bins: bins of the top-class probability (the confidence PSI and the estimate's map) (10).
        grid: resolution of each feature's binning lookup table (256).
        seed: the random seed of the calibration (0).
        input_stride: bin the inputs of every n-th row only (1: all rows): rows whose number in the
            stream is a multiple of n, so a window bins window_size/n of them (one fewer or more when n
            does not divide window_size, allowed for by the comparison); the input thresholds are
            calibrated for it (``gangplank_predict_input_sampling_rate`` = 1/n).
        accuracy_tolerance: accuracy loss below the reference that is acceptable (0.02); the
            accuracy charts and the estimate's signals test for more.
        threshold: for a binary classifier with one output (a sigmoid column or a flat vector of
            P(class 1)), the probability from which it predicts class 1 (0.5 for such an output,
            ``None`` for one with a column per class).
        task: ``"classification"`` (the model gives class probabilities, labels are classes) or
            ``"regression"`` (one prediction per row, binned at ``quantile_bins`` quantiles of the
            reference predictions; labels are continuous targets; see :mod:`gangplank._drift.regression`).
    """

    window_size: int = 200
    false_alarm_rate: float = 1e-4
    feature_alpha: float = 0.01
    min_feature_psi: float = 0.05
    n_simulations: int = 1000
    width_bins: int = 10
    quantile_bins: int = 10
    confidence_bins: int = 10
    grid: int = DEFAULT_GRID
    seed: int = 0
    input_stride: int = 1
    accuracy_tolerance: float = 0.02
    threshold: float | None = None
    task: str = "classification"

    @classmethod
    def field_docs(cls) -> str:
        """The ``Fields`` part of this docstring (for ``DriftReference.fit``'s)."""
        doc = cls.__doc__ or ""
        return doc[doc.index("Fields") :].split(":", 1)[1].strip("\n")

    @property
    def input_rows(self) -> int:
        """Rows of a full window whose inputs are binned (a simulated window's: its rows are numbered from 0)."""
        return -(-self.window_size // self.input_stride)

    def check(self, n_rows: int) -> None:
        """``ValueError`` for settings that cannot calibrate on ``n_rows`` reference rows."""
        if not 2 <= self.window_size <= n_rows:
            raise ValueError(f"window_size must be between 2 and the {n_rows} reference rows, got {self.window_size}")
        if not 0 < self.false_alarm_rate < 1 or not 0 < self.feature_alpha < 1:
            raise ValueError("false_alarm_rate and feature_alpha must be between 0 and 1")
        if isinstance(self.input_stride, bool) or int(self.input_stride) != self.input_stride or self.input_stride < 1:
            raise ValueError(f"input_stride must be a positive whole number, got {self.input_stride!r}")
        if self.n_simulations < 2:
            raise ValueError(f"n_simulations must be at least 2, got {self.n_simulations}")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def calibrate(profile: Profile, batch: Batch, settings: FitSettings) -> Thresholds:
    """Thresholds for windows of ``settings.window_size`` rows of ``batch`` (the reference rows)."""
    window_size = settings.window_size
    batch = Batch(batch.probabilities, batch.inputs)  # labels play no part in these thresholds
    rng = np.random.default_rng(settings.seed)
    order = rng.permutation(batch.rows)
    held_out = order[: max(window_size, batch.rows // 4)]
    rest = order[held_out.size :]
    baseline = profile if rest.size < window_size else profile.of_rows(_rows(batch, rest))
    never = Thresholds.never(profile.n_features)
    feature_psi = []
    for _ in range(settings.n_simulations):
        window = baseline.new_window(settings.input_stride)
        window.add(_rows(batch, rng.choice(held_out, size=window_size, replace=True)))
        feature_psi.append(compare(baseline, never, window, window_size, settings.input_rows).input_psi)
    alpha = settings.false_alarm_rate / len(SIGNALS)
    input_alpha = min(0.05, max(alpha, 10 / (settings.n_simulations // 2)))
    cuts, ratio_threshold = _input_thresholds(np.array(feature_psi), input_alpha, settings)
    confidence_cut, class_p_value = _count_thresholds(profile, window_size, alpha, settings.seed)
    return Thresholds(
        feature_psi=cuts,
        drifted_features_ratio=ratio_threshold,
        confidence_psi=confidence_cut,
        class_p_value=class_p_value,
        estimated_accuracy_p_value=alpha,
        accuracy_tolerance=settings.accuracy_tolerance,
    )


def _count_thresholds(profile: Profile, window_size: int, alpha: float, seed: int) -> tuple[float, float]:
    """The confidence PSI cut and the prediction test's p-value cut, from the exact no-drift simulation."""
    k = profile.n_classes
    class_counts = profile.class_shares * (profile.n_samples + 0.5 * k) - 0.5  # the counts behind the shares
    confidence = count_null.null_quantiles(
        profile.confidence_counts,
        window_size,
        alpha,
        {"psi": lambda counts: count_null.psi_statistic(counts, profile.confidence_counts)},
        seed,
    )
    prediction = count_null.null_quantiles(
        class_counts,
        window_size,
        alpha,
        {"chi2": lambda counts: count_null.chi_square_statistic(counts, profile.class_shares)},
        seed + 1,
    )
    return confidence["psi"], float(special.chdtrc(k - 1, prediction["chi2"]))


def _input_thresholds(feature_psi: np.ndarray, alpha: float, settings: FitSettings) -> tuple[np.ndarray, float]:
    """Per-feature cuts from the first half of the simulated windows, the window-level threshold from the
    second half: judged on windows the cuts were not fitted to, so the threshold holds out of sample."""
    if feature_psi.shape[1] == 0:
        return np.zeros(0), np.inf
    fit, check = feature_psi[::2], feature_psi[1::2]
    cuts = np.maximum(np.quantile(fit, 1 - settings.feature_alpha, axis=0), settings.min_feature_psi)
    ratio_threshold = max(count_null.upper_quantile((check > cuts).mean(axis=1), alpha), 2 * settings.feature_alpha)
    if ratio_threshold * cuts.size >= 2:
        return cuts, ratio_threshold
    # Too few (or too correlated) features for a share of them to be a fine enough
    # statistic (its threshold is reached by a single feature, or never): the window
    # alarms when any feature passes its cut scaled by the (1 - alpha) quantile of the
    # largest scaled PSI, a max-statistic test that needs no independence.
    largest = (check / cuts).max(axis=1)
    return cuts * max(count_null.upper_quantile(largest, alpha), 1.0), 0.0


def _rows(batch: Batch, rows: np.ndarray) -> Batch:
    return Batch(batch.probabilities[rows], None if batch.inputs is None else batch.inputs[rows])
