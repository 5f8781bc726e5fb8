"""Every figure of a compared window against an independent computation: PSI written out by hand,
``scipy.stats.chisquare``, the normal CDF, precision/recall/F1 by their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from gangplank import DriftReference
from gangplank._drift import drift_statistics as ds
from tests.test_drift_statistics import hand_psi

D, K = 24, 4
WINDOW = 120


def generate(rng, rows, shift=0.0):
    """Mixed features (continuous, a few values, constant, skewed) so features have different bin counts."""
    x = np.empty((rows, D), dtype=np.float32)
    x[:, :10] = rng.normal(size=(rows, 10)) + shift
    x[:, 10:16] = rng.integers(0, 4, size=(rows, 6))  # four values: fewer bins
    x[:, 16:18] = 0.0  # constant
    x[:, 18:] = rng.exponential(size=(rows, 6)) ** 2
    logits = x[:, :K] * 2.0
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = np.minimum((rng.random((rows, 1)) > np.cumsum(p, axis=1)).sum(axis=1), K - 1)
    return x, p, y


@pytest.fixture(scope="module", params=[1, 3], ids=["stride1", "stride3"])
def reference(request):
    x, p, y = generate(np.random.default_rng(0), 3000)
    return DriftReference.fit(x, p, y, window_size=WINDOW, n_simulations=20, input_stride=request.param)


def windows(reference):
    """Healthy, shifted, labelled, partly labelled, with NaN inputs, and tiny windows of fresh rows."""
    rng = np.random.default_rng(1)
    x, p, y = generate(rng, WINDOW)
    yield "healthy", reference.window_of(x, p)
    x, p, y = generate(rng, WINDOW, shift=0.7)
    yield "shifted, labelled", reference.window_of(x, p, y)
    x, p, y = generate(rng, WINDOW)
    window = reference.window_of(x, p)
    window.add_feedback(y[:30], p[:30].argmax(axis=1))
    yield "partly labelled", window
    x, p, y = generate(rng, WINDOW)
    x[rng.random(x.shape) < 0.05] = np.nan
    yield "NaN inputs", reference.window_of(x, p, y)
    x, p, y = generate(rng, 7)
    yield "tiny", reference.window_of(x, p, y)


def test_every_figure_of_a_window_equals_its_independent_computation(reference):
    profile, t = reference.profile, reference.thresholds
    valid = profile.valid_columns
    for name, window in windows(reference):
        report = reference.compare(window)
        counts, n = window.input_counts, window.samples

        # Input PSI: the plain Shares arithmetic (summed in another order by the compiled kernel), and the
        # hand-written formula.
        plain = ds.psi(counts, profile.input_counts, valid)
        np.testing.assert_allclose(report.input_psi, plain, rtol=1e-12, atol=1e-15, err_msg=name)
        pairs = zip(counts, profile.input_counts, valid, strict=True)
        want = [hand_psi(c[v].tolist(), r[v].tolist()) for c, r, v in pairs]
        np.testing.assert_allclose(report.input_psi, want, rtol=1e-10, atol=1e-15, err_msg=name)
        rows = -(-reference.window_size // reference.input_stride)
        cut = t.feature_psi * (rows / window.input_rows)
        assert report.drifted_features_ratio == float(np.mean(report.input_psi > cut)), name

        # Confidence PSI, class chi-square, shares.
        confidence = ds.psi(window.confidence_counts[None], profile.confidence_counts[None])[0]
        assert report.confidence_psi == pytest.approx(confidence, rel=1e-12, abs=1e-15), name
        hand = hand_psi(window.confidence_counts.tolist(), profile.confidence_counts.tolist())
        assert report.confidence_psi == pytest.approx(hand, rel=1e-10, abs=1e-15), name
        chi = stats.chisquare(window.class_counts, f_exp=profile.class_shares * n).pvalue
        assert report.class_p_value == pytest.approx(chi, rel=1e-9, abs=1e-300), name
        assert np.array_equal(report.class_shares, window.class_counts / n), name

        # The label-free estimate, written out, and its p-values from the normal CDF.
        a, c = profile.confidence_accuracy, window.confidence_counts
        estimate = sum(ci * ai for ci, ai in zip(c.tolist(), a.tolist(), strict=True)) / n
        shares = profile.confidence_counts / profile.confidence_counts.sum()
        map_variance = float(np.sum(shares * (a - np.sum(shares * a)) ** 2))
        labelled_per_bin = np.maximum(profile.confidence_labelled, 1)
        error = math.sqrt(map_variance / n + float(np.sum((c / n) ** 2 * a * (1 - a) / labelled_per_bin)))
        assert report.estimated_accuracy == pytest.approx(estimate, rel=1e-12), name
        assert report.estimated_accuracy_error == pytest.approx(error, rel=1e-9), name
        floor = max(profile.accuracy - t.accuracy_tolerance, 0.0)
        assert report.estimated_accuracy_p_value == pytest.approx(stats.norm.cdf((estimate - floor) / error)), name
        want_floor_p = stats.norm.cdf((estimate - t.quality_floor) / error)
        assert report.estimated_floor_p_value == pytest.approx(want_floor_p), name

        # Labels: accuracy and per-class figures by their definitions (NaN where undefined or unlabelled).
        confusion = window.confusion
        assert np.array_equal(report.confusion, confusion) and report.confusion is not confusion, name
        assert (report.labelled, report.correct) == (int(confusion.sum()), int(np.trace(confusion))), name
        for k in range(K):
            hits, predicted, actual = confusion[k, k], confusion[:, k].sum(), confusion[k].sum()
            precision = hits / predicted if predicted else math.nan
            recall = hits / actual if actual else math.nan
            f1 = 2 * hits / (predicted + actual) if predicted + actual else math.nan
            got = (report.precision[k], report.recall[k], report.f1[k])
            np.testing.assert_allclose(got, (precision, recall, f1), rtol=1e-15, err_msg=f"{name} class {k}")

        # Input summary over the binned rows' finite values.
        assert report.input_nonfinite_values == window.input_nonfinite_values, name
        if window.input_finite_values:
            mean = window.input_sum / window.input_finite_values
            assert report.input_mean == mean, name
            std = math.sqrt(max(window.input_sum_squares / window.input_finite_values - mean**2, 0.0))
            assert report.input_std == std, name


def test_a_window_without_labels_has_nan_per_class_figures(reference):
    x, p, _ = generate(np.random.default_rng(2), WINDOW)
    report = reference.compare(reference.window_of(x, p))
    assert report.labelled == report.correct == 0 and math.isnan(report.accuracy)
    for figure in (report.precision, report.recall, report.f1):
        assert figure.shape == (K,) and np.isnan(figure).all()


def test_psi_against_equals_psi_to_the_last_bit_for_any_totals():
    """The share tables (equal totals) and the per-cell arithmetic (unequal totals, float counts) agree with psi."""
    rng = np.random.default_rng(5)
    valid = rng.random((30, 9)) < 0.7
    valid[:, 0] = True
    reference = rng.integers(0, 300, size=valid.shape)
    layout = ds.CellLayout.of(valid)
    psi_against = ds.PsiAgainst.of(layout.shares(reference))
    for total in [1, 2, 50, 200, *range(3, 3 + 2 * ds.MAX_TABLES)]:  # more totals than the tables kept
        rows = np.zeros(valid.shape, dtype=np.int64)
        for f in range(valid.shape[0]):  # `total` rows, each filling one valid cell of every feature
            rows[f] = np.bincount(rng.choice(np.flatnonzero(valid[f]), total), minlength=valid.shape[1])
        assert np.array_equal(psi_against(layout.cells(rows)), ds.psi(rows, reference, valid)), total
        assert len(psi_against._tables) <= ds.MAX_TABLES
    uneven = rng.integers(0, 9, size=valid.shape) * valid
    assert np.array_equal(psi_against(layout.cells(uneven)), ds.psi(uneven, reference, valid))
    scaled = layout.cells(rows) * 0.5  # non-integer counts: same shares, per-cell arithmetic
    assert np.array_equal(psi_against(scaled), ds.psi(rows * 0.5, reference, valid))
