"""What a reference can detect (issue 19): its limits read from the thresholds, warnings when it is weak, and
the smallest shift each signal catches, checked against binned normals and scipy's chi-square."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy import stats

from gangplank import DriftReference


def fit(rows, window_size, features=10, seed=0):
    rng = np.random.default_rng(seed)
    return DriftReference.fit(
        rng.normal(size=(rows, features)), rng.dirichlet([1, 1], rows), window_size=window_size, n_simulations=100
    )


@pytest.mark.slow  # fits a reference, 3-5 s
def test_a_small_reference_for_its_window_is_warned_about(caplog):
    with caplog.at_level(logging.INFO, logger="gangplank"):
        small = fit(114, 30)
    said = [r.getMessage() for r in caplog.records]
    cut = small.thresholds.feature_psi
    summary = f"windows of 30: a feature counts as drifted past PSI {np.median(cut):.3g} (median cut, {cut.min():.3g}"
    assert any(summary in s and "detectable_shift" in s for s in said), said
    assert any("the reference has 114 rows for windows of 30" in s for s in said), said
    limits = small.sensitivity()
    assert limits["feature_psi_cut_median"] == np.median(small.thresholds.feature_psi)
    assert limits["drifted_features_ratio"] == small.thresholds.drifted_features_ratio
    assert limits["feature_psi_cut_median"] > 1.0 and any("only gross shifts" in s for s in said), said


@pytest.mark.slow  # fits a reference, 3-5 s
def test_a_large_reference_is_not_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="gangplank"):
        large = fit(4000, 200)
    assert not [r for r in caplog.records if "DriftReference.fit" in r.getMessage()]
    assert large.sensitivity()["feature_psi_cut_median"] < 0.5


# -- the smallest shift caught (DriftReference.detectable_shift) ---------------------------------------------
WINDOW = 200
CHECK_WINDOWS = 4000  # independent simulated windows per rate checked: its standard error is under 0.008


@pytest.fixture(scope="module")
def gaussian():
    """A reference of two independent standard normal features and a binary model, fresh rows of the same
    distribution, and the shifts the reference reports on them (one feature shifted)."""
    rng = np.random.default_rng(1)
    reference = DriftReference.fit(
        rng.normal(size=(4000, 2)),
        rng.dirichlet([1, 1], 4000),
        window_size=WINDOW,
        n_simulations=200,
        false_alarm_rate=1e-2,  # a loose rule fits in 0.1 s; the checks hold for any rule
    )
    x, p = rng.normal(size=(20000, 2)), rng.dirichlet([1, 1], 20000)
    return reference, x, p, reference.detectable_shift(x, p, features_share=0.5, windows=200)


def binned_normal(reference, feature, mean):
    """P(each of the feature's bins) under N(mean, 1), from scipy: the binner's cell edges as values."""
    binner = reference.binner
    cells = np.flatnonzero(np.diff(binner.lookup[feature].astype(np.int64))) + 1
    edges = binner.low[feature] + cells / binner.scale[feature]
    return np.diff(np.concatenate([[0.0], stats.norm.cdf(edges, loc=mean), [1.0]]))


def psi(counts, reference_counts, missing=True, smoothing=1e-4):
    """The documented PSI, written out: smoothed shares over the bins (and the empty missing bin of an input)."""
    a, b = np.asarray(counts), np.asarray(reference_counts)
    if missing:
        a, b = np.append(a, 0), np.append(b, 0)
    p = (a / a.sum() + smoothing) / (1 + a.size * smoothing)
    q = (b / b.sum() + smoothing) / (1 + b.size * smoothing)
    return float(np.sum((p - q) * np.log(p / q)))


def input_rate(reference, shifted, shift):
    """Share of windows of WINDOW rows, the feature ``shifted`` moved by ``shift``, in which the input signal
    fires: bin counts drawn from the binned normals, each feature over its cut, the share over the threshold."""
    rng = np.random.default_rng(7)
    t = reference.thresholds
    over = []
    for feature in range(reference.n_features):
        bins = reference.binner.n_bins[feature]
        counts = rng.multinomial(
            WINDOW, binned_normal(reference, feature, shift if feature == shifted else 0.0), size=CHECK_WINDOWS
        )
        reference_counts = reference.profile.input_counts[feature, :bins]
        over.append([psi(c, reference_counts) > t.feature_psi[feature] for c in counts])
    return float(np.mean(np.mean(over, axis=0) > t.drifted_features_ratio))


def test_the_input_shift_found_is_where_binned_normals_fire_half_the_windows(gaussian):
    reference, x, _, found = gaussian
    (shifted,) = found["shifted_features"]
    shift = found["input_shift_sd"] * x[:, shifted].std()
    assert 0.1 < found["input_shift_sd"] < 1.0, found
    assert input_rate(reference, shifted, shift) == pytest.approx(0.5, abs=0.08)
    assert input_rate(reference, shifted, 0.7 * shift) < 0.35
    assert input_rate(reference, shifted, 1.3 * shift) > 0.65


def class_rate(reference, share, increase):
    """Share of windows in which scipy's chi-square test of class counts, class 0 at ``share + increase``,
    is under the reference's p-value cut."""
    counts = np.random.default_rng(8).multinomial(WINDOW, [share + increase, 1 - share - increase], CHECK_WINDOWS)
    expected = reference.profile.class_shares * WINDOW
    p_values = stats.chisquare(counts, expected, axis=1).pvalue
    return float(np.mean(p_values < reference.thresholds.class_p_value))


def test_the_class_share_increase_found_is_where_scipy_chisquare_fires_half_the_windows(gaussian):
    reference, _, _, found = gaussian
    share, increase = found["class_shares"][0], found["class_share_increase"][0]
    assert 0.05 < increase < 0.3, found
    assert class_rate(reference, share, increase) == pytest.approx(0.5, abs=0.08)
    assert class_rate(reference, share, 0.7 * increase) < 0.35
    assert class_rate(reference, share, 1.3 * increase) > 0.65


def confidence_rate(reference, p, drop):
    """Share of windows of fresh rows, mixed with the uniform so that their mean confidence drops by ``drop``,
    whose confidence histogram's PSI passes the reference's cut."""
    mix = drop / (p.max(axis=1).mean() - 0.5)
    confidence = ((1 - mix) * p + mix / 2).max(axis=1)
    rows = np.random.default_rng(9).integers(0, p.shape[0], (CHECK_WINDOWS, WINDOW))
    edges, reference_counts = reference.profile.confidence_edges, reference.profile.confidence_counts
    cut = reference.thresholds.confidence_psi
    histograms = [np.histogram(confidence[r], np.concatenate([[0.0], edges, [1.0]]))[0] for r in rows]
    return float(np.mean([psi(h, reference_counts, missing=False) > cut for h in histograms]))


def test_the_confidence_drop_found_is_where_the_confidence_psi_fires_half_the_windows(gaussian):
    reference, _, p, found = gaussian
    drop = found["confidence_drop"]
    assert 0.005 < drop < 0.1 and found["mean_confidence"] == pytest.approx(p.max(axis=1).mean()), found
    assert confidence_rate(reference, p, drop) == pytest.approx(0.5, abs=0.1)
    assert confidence_rate(reference, p, 0.7 * drop) < 0.35
    assert confidence_rate(reference, p, 1.3 * drop) > 0.65


def test_nothing_is_caught_by_windows_that_never_alarm_everything_by_cuts_of_zero_and_bad_arguments_raise(gaussian):
    reference, x, p, _ = gaussian
    never = reference.with_thresholds(min_window_samples=WINDOW + 1)
    found = never.detectable_shift(x[:2000], p[:2000], windows=10)
    assert found["input_shift_sd"] == np.inf and found["confidence_drop"] == np.inf
    assert np.all(found["class_share_increase"] == np.inf)
    always = reference.with_thresholds(feature_psi=np.zeros(2), drifted_features_ratio=0.0)
    assert always.detectable_shift(x[:2000], p[:2000], windows=10)["input_shift_sd"] == 0.0  # fires unshifted
    with pytest.raises(ValueError, match="features_share"):
        reference.detectable_shift(x, p, features_share=0)
    with pytest.raises(ValueError, match="power"):
        reference.detectable_shift(x, p, power=1.0)
    with pytest.raises(ValueError, match="inputs"):
        reference.detectable_shift(x[:, :1], p)


def test_categorical_columns_are_never_shifted():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {"a": rng.normal(size=2000), "c": rng.choice(["x", "y", "z"], 2000), "b": rng.normal(size=2000)}
    )
    p = rng.dirichlet([1, 1], 2000)
    reference = DriftReference.fit(table, p, window_size=100, n_simulations=100, false_alarm_rate=1e-2)
    found = reference.detectable_shift(table, p, windows=20)
    assert found["shifted_features"].tolist() == [0, 2] and 0 < found["input_shift_sd"] < 2
    only_categories = DriftReference.fit(table[["c"]], p, window_size=100, n_simulations=100, false_alarm_rate=1e-2)
    assert np.isnan(only_categories.detectable_shift(table[["c"]], p, windows=20)["input_shift_sd"])
