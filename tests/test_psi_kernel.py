"""The compiled PSI kernel gives the numpy path's figures on real MNIST windows, plain and shifted: the
same cells, each feature's PSI within 1e-12 relative (the same terms, summed in order where numpy sums
pairwise), the same drifted features; the chi-square and map-error sums within 1e-12 of numpy's; and
compare gives the same report and decisions on the numpy path, without the kernels."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from gangplank._drift import count_sums_kernel, psi_kernel
from gangplank._drift import drift_statistics as ds
from gangplank._drift.batch import Batch
from gangplank._drift.comparison import Thresholds, compare
from gangplank._drift.profile import Profile
from tests.mnist_models import load_mnist

WINDOW = 200


def probabilities(x: np.ndarray) -> np.ndarray:
    """A fixed softmax of a few pixel sums: probabilities that move with the images (no model to train)."""
    logits = x[:, :780].reshape(len(x), 10, 78).sum(axis=2) / 8.0
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def mnist():
    x_train, y_train, x_test, _ = load_mnist()
    reference = x_train[50_000:54_000].reshape(-1, 784)
    profile = Profile.fit(Batch.of(reference, probabilities(reference), y_train[50_000:54_000].astype(np.int64)))
    return profile, x_test[:8000].reshape(-1, 784)


def shifted(rows: np.ndarray, kind: int, rng: np.random.Generator) -> np.ndarray:
    """Real rows, unchanged or shifted: brighter, noisy, inverted, or with their top half blanked."""
    if kind == 1:
        return np.clip(rows * 1.3, 0, 1)
    if kind == 2:
        return np.clip(rows + rng.normal(0, 0.1, rows.shape), 0, 1).astype(np.float32)
    if kind == 3:
        return 1.0 - rows
    if kind == 4:
        rows = rows.copy()
        rows[:, :392] = 0.0
        return rows
    return rows


def windows(profile: Profile, x: np.ndarray, stride: int):
    rng = np.random.default_rng(stride)
    for w in range(x.shape[0] // WINDOW):
        window = profile.new_window(stride)
        rows = shifted(x[w * WINDOW : (w + 1) * WINDOW], w % 5, rng)
        window.add(Batch.of(rows, probabilities(rows)))
        yield window


@pytest.mark.parametrize("stride", [1, 4])
def test_kernel_equals_numpy_on_real_and_shifted_windows(mnist, stride):
    profile, x = mnist
    cut = np.quantile(
        [profile.input_psi(profile.input_layout.cells(w.input_counts)) for w in windows(profile, x[:1000], stride)],
        0.7,
        axis=0,
    )  # a cut some features of plain windows and most of shifted ones cross
    decisions = []
    for window in windows(profile, x, stride):
        scale = (WINDOW // stride) / window.input_rows
        result = psi_kernel.psi_and_over(
            profile.input_psi,
            window.input_counts,
            window.input_rows,
            cut,
            scale,
            profile.confidence_psi,
            window.confidence_counts,
            window.samples,
        )
        assert result is not None, "the PSI kernel did not compile"
        cells, psi, over, confidence_psi = result
        numpy_cells = profile.input_layout.cells(window.input_counts)
        numpy_psi = profile.input_psi(numpy_cells)
        np.testing.assert_array_equal(cells, numpy_cells)
        np.testing.assert_allclose(psi, numpy_psi, rtol=1e-12, atol=1e-15)  # same terms, another order
        assert over == np.count_nonzero(numpy_psi > cut * scale)
        decisions.append(over)
        assert confidence_psi == pytest.approx(profile.confidence_psi(window.confidence_counts)[0], rel=1e-12)
    assert min(decisions) < max(decisions)  # the windows span drifted and quiet ones


def test_features_with_another_total_within_1e_12(mnist):
    """Counts whose features do not all total the window's rows take the division and log per cell."""
    profile, _ = mnist
    rng = np.random.default_rng(5)
    valid = profile.valid_columns
    for _ in range(20):
        counts = np.where(valid, rng.integers(0, 30, valid.shape), 0).astype(np.int64)
        confidence = rng.integers(0, 30, profile.confidence_counts.size)
        result = psi_kernel.psi_and_over(
            profile.input_psi, counts, 50, np.zeros(profile.n_features), 1.0, profile.confidence_psi, confidence, 50
        )
        expected = ds.psi(counts, profile.input_counts, valid)  # plain shares, no tables
        np.testing.assert_allclose(result[1], expected, rtol=1e-12, atol=0)
        assert result[2] == np.count_nonzero(expected > 0)
        assert result[3] == pytest.approx(ds.psi(confidence, profile.confidence_counts)[0], rel=1e-12, abs=0)


def test_long_features_equal_numpy_within_1e_12():
    """A feature of 200 cells (numpy splits its sum in halves): the kernel's ordered sum is within 1e-12."""
    counts = np.arange(200, dtype=np.int64).reshape(1, -1)
    psi_against = ds.PsiAgainst.of(ds.Shares.of(counts[:, ::-1]))
    result = psi_kernel.psi_and_over(psi_against, counts, int(counts.sum()), np.zeros(1), 1.0, psi_against, counts, 1)
    np.testing.assert_allclose(result[1], ds.psi(counts, counts[:, ::-1]), rtol=1e-12, atol=0)
    assert result[2] == 1


def test_compare_without_kernel_gives_the_same_report(mnist, monkeypatch):
    profile, x = mnist
    t = dataclasses.replace(Thresholds.never(profile.n_features), feature_psi=np.full(profile.n_features, 0.05))
    reports = [compare(profile, t, w, WINDOW, WINDOW // 4) for w in windows(profile, x[:1000], 4)]
    monkeypatch.setattr(psi_kernel, "kernel", lambda: None)
    monkeypatch.setattr(count_sums_kernel, "kernel", lambda: None)
    for report, window in zip(reports, windows(profile, x[:1000], 4), strict=True):
        numpy_report = compare(profile, t, window, WINDOW, WINDOW // 4)
        np.testing.assert_allclose(report.input_psi, numpy_report.input_psi, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(report.input_cells[0], numpy_report.input_cells[0])
        np.testing.assert_allclose(report.input_js, numpy_report.input_js, rtol=1e-12)
        assert report.drifted_features_ratio == numpy_report.drifted_features_ratio
        assert report.confidence_psi == pytest.approx(numpy_report.confidence_psi, rel=1e-12)
        assert report.class_p_value == pytest.approx(numpy_report.class_p_value, rel=1e-9)
        assert report.estimated_accuracy == pytest.approx(numpy_report.estimated_accuracy, rel=1e-12)
        assert report.estimated_accuracy_error == pytest.approx(numpy_report.estimated_accuracy_error, rel=1e-12)
        assert math.isfinite(report.estimated_accuracy_error) and math.isfinite(report.class_p_value)
        assert report.signals == numpy_report.signals


@pytest.mark.parametrize("seed", range(4))
def test_count_sums_equal_numpy_written_out(seed):
    """Class and confidence histograms of 2-40 bins (numpy sums fewer than 8 terms in order, more in 8 lanes),
    some empty: the sums are within 1e-12 of numpy's."""
    rng = np.random.default_rng(seed)
    for _ in range(300):
        k, b = rng.integers(2, 41, size=2)
        classes = rng.integers(0, 300, k) * (rng.random(k) > 0.2) * (rng.random() > 0.05)
        shares = rng.dirichlet(np.ones(k))
        confidence = rng.integers(0, 300, b) * (rng.random(b) > 0.3) * (rng.random() > 0.05)
        accuracy = rng.random(b)
        labelled = np.maximum(rng.integers(0, 500, b), 1)
        sums = count_sums_kernel.count_sums(classes, shares, confidence, accuracy, 1 - accuracy, labelled)
        assert sums is not None, "the count sums kernel did not compile"
        observed = classes.astype(np.float64)
        n = observed.sum()
        expected = shares * n
        rows = int(confidence.sum())
        weights = confidence / max(rows, 1)
        assert sums[0] == n and sums[2] == rows
        assert sums[1] == pytest.approx(np.sum((observed - expected) ** 2 / expected) if n else 0.0, rel=1e-12)
        expected_error = np.sum(weights**2 * accuracy * (1 - accuracy) / labelled) if rows else 0.0
        assert sums[3] == pytest.approx(expected_error, rel=1e-12)
        if n:
            assert ds.chi_square_p_of(sums[1], sums[0], k) == pytest.approx(
                stats.chisquare(observed, expected).pvalue, rel=1e-9
            )
