"""Drift statistics against independent references (scipy, and PSI written out by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats
from scipy.spatial.distance import jensenshannon

from gangplank._drift import drift_statistics as ds


def random_counts(rng, features=6, bins=9, zeros=0.3, high=50):
    counts = rng.integers(0, high, size=(features, bins))
    counts[rng.random(counts.shape) < zeros] = 0
    counts[:, 0] += 1  # every row has something
    return counts


def hand_psi(window_row, reference_row, epsilon=1e-4):
    """PSI of one feature, as the module documents it: shares smoothed by ε on both sides."""
    bins = len(window_row)
    w_total, r_total = max(sum(window_row), 1), max(sum(reference_row), 1)  # no counts: shares 0
    value = 0.0
    for w, r in zip(window_row, reference_row, strict=False):
        p = (w / w_total + epsilon) / (1 + bins * epsilon)
        q = (r / r_total + epsilon) / (1 + bins * epsilon)
        value += (p - q) * math.log(p / q)
    return value


# -- against references -------------------------------------------------------
def test_js_distance_matches_scipy_jensenshannon_base_2():
    rng = np.random.default_rng(1)
    window, reference = random_counts(rng), random_counts(rng)
    got = ds.js_distance(window, reference)
    want = [jensenshannon(w, r, base=2) for w, r in zip(window, reference, strict=False)]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_js_distance_with_valid_mask_matches_scipy_on_the_valid_bins():
    rng = np.random.default_rng(2)
    window, reference = random_counts(rng), random_counts(rng)
    valid = np.ones(window.shape, dtype=bool)
    valid[:, 4:7] = False  # bins these features do not have
    got = ds.js_distance(window, reference, valid)
    want = [jensenshannon(w[v], r[v], base=2) for w, r, v in zip(window, reference, valid, strict=False)]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_js_distance_of_disjoint_shares_is_one():
    assert ds.js_distance(np.array([[10, 0]]), np.array([[0, 7]]))[0] == pytest.approx(1.0)


def test_binned_ks_matches_ks_2samp_on_the_bin_indices():
    rng = np.random.default_rng(3)
    window, reference = random_counts(rng, high=20), random_counts(rng, high=200)
    got = ds.binned_ks(window, reference)
    bins = np.arange(window.shape[1])
    for feature, (w, r) in enumerate(zip(window, reference, strict=False)):
        want = stats.ks_2samp(np.repeat(bins, w), np.repeat(bins, r)).statistic
        assert got[feature] == pytest.approx(want, abs=1e-12), feature


def test_chi_square_p_value_matches_scipy_chisquare():
    rng = np.random.default_rng(4)
    for _ in range(20):
        classes = rng.integers(2, 12)
        shares = rng.dirichlet(np.ones(classes))
        observed = rng.multinomial(rng.integers(20, 500), rng.dirichlet(np.ones(classes)))
        want = stats.chisquare(observed, f_exp=shares * observed.sum()).pvalue
        assert ds.chi_square_p_value(observed, shares) == pytest.approx(want, rel=1e-9, abs=1e-300)


def test_chi_square_p_value_of_an_empty_window_is_nan():
    assert math.isnan(ds.chi_square_p_value(np.zeros(3), np.full(3, 1 / 3)))


def test_psi_matches_a_hand_computed_psi_with_the_documented_smoothing():
    rng = np.random.default_rng(5)
    window, reference = random_counts(rng), random_counts(rng, high=500)
    got = ds.psi(window, reference)
    want = [hand_psi(w.tolist(), r.tolist()) for w, r in zip(window, reference, strict=False)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert ds.SMOOTHING == 1e-4


def test_psi_with_valid_mask_uses_only_the_feature_s_bins():
    rng = np.random.default_rng(6)
    window, reference = random_counts(rng), random_counts(rng)
    valid = np.ones(window.shape, dtype=bool)
    valid[0, 3:] = False
    valid[1, 5:8] = False
    got = ds.psi(window, reference, valid)
    want = [hand_psi(w[v].tolist(), r[v].tolist()) for w, r, v in zip(window, reference, valid, strict=False)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_psi_against_a_fixed_reference_equals_psi_to_the_last_bit_and_the_hand_computed_psi():
    rng = np.random.default_rng(9)
    window, reference = random_counts(rng), random_counts(rng, high=500)
    valid = np.ones(window.shape, dtype=bool)
    valid[0, 3:] = False
    window[1] = 0  # a feature the window never filled: shares 0, as in psi()
    layout = ds.CellLayout.of(valid)
    psi_against = ds.PsiAgainst.of(layout.shares(reference))
    got = psi_against(layout.cells(window))
    assert np.array_equal(got, ds.psi(window, reference, valid))  # the same arithmetic in the same order
    rows = np.zeros_like(window)  # every feature with the same total, as binned rows give
    rows[:, 0], rows[:, 2] = 3, 4
    assert np.array_equal(psi_against(layout.cells(rows)), ds.psi(rows, reference, valid))
    filled = [0, 2, 3, 4, 5]
    want = [hand_psi(window[f][valid[f]].tolist(), reference[f][valid[f]].tolist()) for f in filled]
    np.testing.assert_allclose(got[filled], want, rtol=1e-12)


def test_psi_of_a_textbook_example():
    # Two bins, 80/20 against 50/50, no smoothing: (0.3 ln 1.6) + (-0.3 ln 0.4)
    got = ds.psi(np.array([[80, 20]]), np.array([[50, 50]]), smoothing=0.0)[0]
    assert got == pytest.approx(0.3 * math.log(1.6) - 0.3 * math.log(0.4))


def test_entropy_matches_scipy_in_nats():
    rng = np.random.default_rng(7)
    p = rng.dirichlet(np.ones(5), size=20)
    p[0] = [1, 0, 0, 0, 0]
    np.testing.assert_allclose(ds.entropy(p), stats.entropy(p, axis=1), rtol=1e-12, atol=1e-15)


# -- identical distributions ------------------------------------------------------
@pytest.mark.parametrize("scale", [1, 3, 100])
def test_identical_shares_give_zero(scale):
    rng = np.random.default_rng(8)
    reference = random_counts(rng)
    window = reference * scale  # same shares, other totals
    assert np.all(ds.psi(window, reference) == 0.0)
    np.testing.assert_allclose(ds.js_distance(window, reference), 0.0, atol=1e-7)
    np.testing.assert_allclose(ds.binned_ks(window, reference), 0.0, atol=1e-12)


# -- invariants ------------------------------------------------------------------
count_pairs = st.integers(1, 6).flatmap(
    lambda bins: st.tuples(
        arrays(np.int64, (3, bins), elements=st.integers(0, 10_000)),
        arrays(np.int64, (3, bins), elements=st.integers(0, 10_000)),
    )
)


@settings(max_examples=200, deadline=None)
@given(count_pairs)
def test_invariants_hold_for_any_counts(pair):
    window, reference = pair
    window[:, 0] += 1
    reference[:, -1] += 1
    psi = ds.psi(window, reference)
    js = ds.js_distance(window, reference)
    ks = ds.binned_ks(window, reference)
    assert np.all(np.isfinite(psi)) and np.all(psi >= -1e-12)
    assert np.all((js >= 0) & (js <= 1))
    assert np.all((ks >= 0) & (ks <= 1 + 1e-12))
    np.testing.assert_allclose(js, ds.js_distance(reference, window), atol=1e-12)  # symmetric
    np.testing.assert_allclose(ks, ds.binned_ks(reference, window), atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(arrays(np.float64, (4, 5), elements=st.floats(0.01, 100)))
def test_psi_is_symmetric_and_zero_on_the_diagonal(weights):
    a = np.round(weights * 10).astype(np.int64) + 1
    b = a[::-1]
    np.testing.assert_allclose(ds.psi(a, b), ds.psi(b, a), rtol=1e-9, atol=1e-15)
    assert np.all(ds.psi(a, a) == 0.0)


# -- calibration helper ------------------------------------------------------------------
@pytest.mark.parametrize("dof, alpha", [(3, 1e-3), (10, 1e-4), (40, 1e-4)])
def test_moment_matched_threshold_of_chi_square_samples_is_the_chi_square_quantile(dof, alpha):
    samples = np.random.default_rng(dof).chisquare(dof, size=20_000)
    got = ds.moment_matched_threshold(samples, alpha)
    assert got == pytest.approx(stats.chi2.isf(alpha, dof), rel=0.05)


def test_moment_matched_threshold_of_a_scaled_chi_square():
    samples = 0.01 * np.random.default_rng(0).chisquare(6, size=20_000)
    assert ds.moment_matched_threshold(samples, 1e-4) == pytest.approx(0.01 * stats.chi2.isf(1e-4, 6), rel=0.05)


def test_moment_matched_threshold_respects_the_floor_and_degenerate_samples():
    samples = np.random.default_rng(0).chisquare(3, size=1000)
    assert ds.moment_matched_threshold(samples, 0.5, floor=100.0) == 100.0
    assert ds.moment_matched_threshold(np.zeros(50), 1e-3, floor=0.02) == 0.02
    assert ds.moment_matched_threshold(np.array([0.0, 0.3, np.nan, np.inf]), 1e-3) > 0.3 - 1e-12
