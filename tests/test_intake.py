"""The request path of ``worker="process"``: the plain-batch check and the shared ring's copy."""

from __future__ import annotations

import numpy as np
import pytest

from gangplank._drift.intake import LIST_CHECK_VALUES, plain_rows
from gangplank._drift.ring import SampleRing


@pytest.mark.parametrize("rows", [1, 32, LIST_CHECK_VALUES // 10 + 1, 200])  # both ways of checking: list and numpy
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_probability_sends_the_batch_the_long_way(rows, bad):
    x = np.zeros((rows, 6), np.float32)
    p = np.full((rows, 10), 0.1, np.float32)
    assert plain_rows(x, p, n_features=6, n_classes=10) is not None
    p[rows // 2, 3] = bad
    assert plain_rows(x, p, n_features=6, n_classes=10) is None


def test_plain_rows_are_views_of_the_callers_arrays_shaped_as_rows():
    x = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28, 1)
    p = np.array([[0.25, 0.75], [1.0, 0.0]])
    inputs, probabilities = plain_rows(x, p, n_features=784, n_classes=2)
    assert inputs.shape == (2, 784) and np.shares_memory(inputs, x) and probabilities is p
    flat = x.reshape(2, 784)
    assert plain_rows(flat, p, n_features=784, n_classes=2)[0] is flat


def test_finite_values_whose_sum_overflows_take_the_long_way():
    p = np.array([[1e308, 1e308]])
    assert np.isfinite(p).all()
    assert plain_rows(np.zeros((1, 3)), p, n_features=3, n_classes=2) is None  # Batch.of then checks them in full


@pytest.mark.parametrize(
    ("x", "p"),
    [
        (np.zeros((2, 3)), np.full((3, 2), 0.5)),  # rows differ
        (np.zeros((2, 4)), np.full((2, 2), 0.5)),  # features
        (np.zeros((2, 3)), np.full((2, 3), 1 / 3)),  # classes
        (np.zeros((2, 3)), np.full((2, 2), 1, np.int64)),  # integer probabilities
        (np.zeros((2, 3)).tolist(), np.full((2, 2), 0.5)),  # a list
        (np.zeros(3), np.full((1, 2), 0.5)),  # one row as 1-D
    ],
)
def test_anything_but_the_plain_batch_takes_the_long_way(x, p):
    assert plain_rows(x, p, n_features=3, n_classes=2) is None


def test_the_ring_keeps_rows_in_order_across_its_end():
    ring = SampleRing(capacity=5, n_features=2, n_classes=2)
    rng = np.random.default_rng(0)
    written = []
    for rows in (3, 1, 4, 2, 5, 1):  # the 3rd, 5th and 6th writes wrap around
        x = rng.normal(size=(rows, 2)).astype(np.float32)
        p = rng.dirichlet([1, 1], size=rows)
        labels = rng.integers(0, 2, rows) if rows % 2 else None
        assert ring.write(x, p, labels, None) == sum(len(w[1]) for w in written)
        written.append((x, p, labels))
        taken = ring.take()
        assert ring.free_rows() == ring.capacity
        assert np.array_equal(np.concatenate([b.inputs for b in taken]), x)
        assert np.array_equal(np.concatenate([b.probabilities for b in taken]), p)
        assert all((b.labels is None) == (labels is None) for b in taken)
        if labels is not None:
            assert np.array_equal(np.concatenate([b.labels for b in taken]), labels)
    assert ring.written == 16
