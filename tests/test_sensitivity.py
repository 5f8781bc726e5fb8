"""What a reference can detect (issue 19): its limits read from the thresholds, and warnings when it is weak."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from gangplank import DriftReference

pytestmark = pytest.mark.slow  # fits several references, 3-5 s each


def fit(rows, window_size, features=10, seed=0):
    rng = np.random.default_rng(seed)
    return DriftReference.fit(
        rng.normal(size=(rows, features)), rng.dirichlet([1, 1], rows), window_size=window_size, n_simulations=100
    )


def test_a_small_reference_for_its_window_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="gangplank"):
        small = fit(114, 30)
    said = [r.getMessage() for r in caplog.records]
    assert any("the reference has 114 rows for windows of 30" in s for s in said), said
    limits = small.sensitivity()
    assert limits["feature_psi_cut_median"] == np.median(small.thresholds.feature_psi)
    assert limits["drifted_features_ratio"] == small.thresholds.drifted_features_ratio
    assert limits["feature_psi_cut_median"] > 1.0 and any("only gross shifts" in s for s in said), said


def test_a_large_reference_is_not_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="gangplank"):
        large = fit(4000, 200)
    assert not [r for r in caplog.records if "DriftReference.fit" in r.getMessage()]
    assert large.sensitivity()["feature_psi_cut_median"] < 0.5
