"""What a fitted reference can detect, in the terms of its thresholds, and when it is too small to say much.

:func:`sensitivity` reads the calibrated thresholds: the per-feature PSI cut
a feature must pass to count as drifted (median and range), the share of
features that must do so in one window, the confidence PSI cut and the
class-share p-value; :func:`summary` says them in one sentence (``fit``
logs it at INFO). :func:`warnings` names what makes a reference weak: too
few rows for its window size (the input thresholds are calibrated on windows
drawn from a held-out quarter of the rows), windows too small to alarm, and
per-feature cuts so high that only gross shifts count.

Example:
    >>> import numpy as np
    >>> from gangplank import DriftReference
    >>> rng = np.random.default_rng(0)
    >>> x, p = rng.normal(size=(90, 3)), rng.dirichlet([1, 1], 90)
    >>> small = DriftReference.fit(x, p, window_size=30, n_simulations=50)
    >>> warnings(small.sensitivity())[0][:47]
    'the reference has 90 rows for windows of 30: it'
"""

from __future__ import annotations

import numpy as np

HELD_OUT_WINDOWS = 4  # rows per window size below which the held-out quarter is smaller than a window
GROSS_PSI = 1.0  # a per-feature cut above this lets only gross shifts count (PSI 0.25 is a "major" shift)


def sensitivity(thresholds, n_samples: int, window_size: int, min_window_samples: int) -> dict:
    """The reference's detection limits by signal (see the module docstring)."""
    cuts = np.asarray(thresholds.feature_psi, dtype=np.float64)
    finite = cuts[np.isfinite(cuts)]
    return {
        "reference_rows": int(n_samples),
        "window_size": int(window_size),
        "min_window_samples": int(min_window_samples),
        "feature_psi_cut_median": float(np.median(finite)) if finite.size else float("nan"),
        "feature_psi_cut_min": float(finite.min()) if finite.size else float("nan"),
        "feature_psi_cut_max": float(finite.max()) if finite.size else float("nan"),
        "drifted_features_ratio": float(thresholds.drifted_features_ratio),
        "confidence_psi_cut": float(thresholds.confidence_psi),
        "class_p_value": float(thresholds.class_p_value),
    }


def summary(limits: dict) -> str:
    """One sentence of the limits, per signal, for ``fit``'s log."""
    return (
        f"windows of {limits['window_size']}: a feature counts as drifted past PSI "
        f"{limits['feature_psi_cut_median']:.3g} (median cut, {limits['feature_psi_cut_min']:.3g}"
        f"-{limits['feature_psi_cut_max']:.3g}) and input drift needs more than "
        f"{limits['drifted_features_ratio']:.0%} of the features past their cuts; confidence drift a PSI past "
        f"{limits['confidence_psi_cut']:.3g}; prediction drift a class-share p-value under "
        f"{limits['class_p_value']:.2g}. reference.detectable_shift(x, p) turns these into the smallest shifts caught"
    )


def warnings(limits: dict) -> list[str]:
    """Sentences on what makes these limits weak (empty when nothing does)."""
    said = []
    rows, size = limits["reference_rows"], limits["window_size"]
    if rows < HELD_OUT_WINDOWS * size:
        said.append(
            f"the reference has {rows} rows for windows of {size}: its input thresholds are calibrated on "
            f"windows drawn from {max(size, rows // 4)} held-out rows; fit on at least {HELD_OUT_WINDOWS * size} rows "
            f"or use windows of at most {rows // HELD_OUT_WINDOWS}"
        )
    if size < limits["min_window_samples"]:
        said.append(
            f"windows of {size} samples never alarm (fewer than min_window_samples={limits['min_window_samples']})"
        )
    median = limits["feature_psi_cut_median"]
    if np.isfinite(median) and median > GROSS_PSI:
        said.append(
            f"a feature counts as drifted only past a PSI of {median:.2f} (median cut; 0.25 is a major shift), "
            f"and {limits['drifted_features_ratio']:.0%} of the features must do so: only gross shifts are caught; "
            f"use more reference rows or larger windows (reference.detectable_shift(x, p) says which shifts are caught)"
        )
    return said
