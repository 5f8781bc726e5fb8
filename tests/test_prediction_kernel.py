"""The compiled prediction totals against numpy and scipy written out plainly."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

import gangplank._drift.window as window_module
from gangplank._drift.batch import Batch
from gangplank._drift.prediction_kernel import compiled_kernel, probability_check
from gangplank._drift.window import Window

EDGES = np.array([0.3, 0.5, 0.7, 0.9, 0.99])


def batches(rng: np.random.Generator, dtype) -> list[np.ndarray]:
    sharp = rng.dirichlet(np.full(10, 0.1), size=300)
    ties = np.full((20, 10), 0.1)  # every class tied: argmax takes the first
    ties[10:, 3] = ties[10:, 7] = 0.35
    ties[10:, [0, 1, 2, 4, 5, 6, 8, 9]] = 0.3 / 8
    zeros = np.eye(10)[rng.integers(0, 10, size=30)]  # entropy of a zero is 0
    on_edges = np.tile(EDGES[:, None], (1, 2)) * [1, 0]  # confidences exactly on a bin edge: side="right"
    on_edges[:, 1] = 1 - on_edges[:, 0]
    return [b.astype(dtype) for b in (sharp, ties, zeros)] + [on_edges.astype(dtype)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_kernel_equals_argmax_max_searchsorted_and_entr(dtype):
    kernel = compiled_kernel()
    assert kernel is not None, "numba is a dependency: the kernel must compile here"
    for p in batches(np.random.default_rng(3), dtype):
        rows, classes = p.shape
        class_counts, confidence_counts = np.zeros(classes, np.int64), np.zeros(EDGES.size + 1, np.int64)
        predicted, bins = np.empty(rows, np.intp), np.empty(rows, np.intp)
        confidence_sum, entropy_sum = kernel(p, EDGES, class_counts, confidence_counts, predicted, bins)
        confidence = p.max(axis=1)
        assert predicted.tolist() == p.argmax(axis=1).tolist()
        assert bins.tolist() == np.searchsorted(EDGES, confidence, side="right").tolist()
        assert class_counts.tolist() == np.bincount(p.argmax(axis=1), minlength=classes).tolist()
        assert confidence_counts.tolist() == np.bincount(bins, minlength=EDGES.size + 1).tolist()
        assert confidence_sum == pytest.approx(float(confidence.astype(np.float64).sum()), rel=1e-12)
        entropies = special.entr(p.astype(np.float64)).sum()
        assert entropy_sum == pytest.approx(float(entropies), rel=1e-6 if dtype == np.float32 else 1e-12, abs=1e-12)


def test_a_window_holds_the_same_totals_with_and_without_the_kernel(monkeypatch):
    rng = np.random.default_rng(4)
    p = rng.dirichlet(np.ones(10), size=500)
    labels = rng.integers(0, 10, size=500)
    shadow = rng.integers(0, 10, size=500)

    def filled() -> Window:
        window = Window(None, EDGES, 10)
        for start in range(0, 500, 64):
            part = slice(start, start + 64)
            window.add(Batch(p[part], None, labels[part], None, 0, True, shadow[part]))
        return window

    compiled = filled()
    monkeypatch.setattr(window_module, "compiled_kernel", lambda: None)  # the numpy path
    plain = filled()
    for name in ("class_counts", "confidence_counts", "confusion", "confidence_labelled", "confidence_correct"):
        assert getattr(compiled, name).tolist() == getattr(plain, name).tolist(), name
    assert compiled.shadow_agreed == plain.shadow_agreed and compiled.samples == plain.samples == 500
    assert compiled.confidence_sum == pytest.approx(plain.confidence_sum, rel=1e-12)
    assert compiled.entropy_sum == pytest.approx(plain.entropy_sum, rel=1e-12)


def test_the_probability_check_takes_what_normalised_leaves_alone(monkeypatch):
    import gangplank._drift.validation as validation

    kernel = probability_check()
    assert kernel is not None
    rng = np.random.default_rng(5)
    good = rng.dirichlet(np.ones(4), size=50)
    off_sum = good.copy()
    off_sum[7] *= 1.002  # off 1 by 2e-3 > SUM_TOLERANCE
    logits = good.copy()
    logits[3, 1] = -0.1
    above = good.copy()
    above[9, 2] = 1.5
    within = good.copy()
    within[0] *= 1.0009
    for p, expected in ((good, True), (off_sum, False), (logits, False), (above, False), (within, True)):
        assert kernel(p, validation.SUM_TOLERANCE) is expected
        assert kernel(p.astype(np.float32), validation.SUM_TOLERANCE) is expected
        with_kernel = validation.normalised(p.copy())
        monkeypatch.setattr(validation, "probability_check", lambda: None)
        without = validation.normalised(p.copy())
        monkeypatch.undo()
        assert with_kernel[1] == without[1] == (0 if expected else 1)
        assert np.array_equal(with_kernel[0], without[0])
