"""The request path of ``worker="process"``: the plain-batch check, the finite check and the shared ring's copy."""

from __future__ import annotations

import numpy as np
import pytest

from gangplank._drift.intake import LIST_CHECK_VALUES, all_finite, plain_rows
from gangplank._drift.ring import NOT_FINITE, NOT_WRITTEN, SUM_CHECK_VALUES, SampleRing


@pytest.mark.parametrize("rows", [1, 32, LIST_CHECK_VALUES // 10 + 1, 200])  # both ways of checking: list and numpy
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_non_finite_probability_is_found_by_every_check_and_nothing_is_recorded(rows, bad, dtype):
    ring = SampleRing(capacity=256, n_features=6, n_classes=10)
    x = np.zeros((rows, 6), np.float32)
    p = np.full((rows, 10), 0.1, dtype)
    assert all_finite(p)
    p[rows // 2, 3] = bad
    assert not all_finite(p)
    assert plain_rows(x, p, n_features=6, n_classes=10) is not None  # the shapes are right: the ring checks values
    assert ring.write_plain(x, p) == NOT_WRITTEN
    assert ring.write(x, p, None, None, check_finite=True) == NOT_FINITE
    assert ring.written == 0 and ring.take() == []


def test_a_non_finite_probability_in_the_wrapped_part_records_nothing():
    ring = SampleRing(capacity=5, n_features=2, n_classes=2)
    assert ring.write_plain(np.zeros((3, 2)), np.full((3, 2), 0.5)) == 0
    ring.take()
    p = np.full((4, 2), 0.5)
    p[3, 1] = np.nan  # rows 3..6 of the stream: slots 3, 4, then 0, 1; the NaN is in the second piece
    assert ring.write(np.zeros((4, 2)), p, None, None, check_finite=True) == NOT_FINITE
    assert ring.written == 3 and ring.take() == []


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
    assert not all_finite(p)  # Batch.of then checks them in full
    ring = SampleRing(capacity=4, n_features=3, n_classes=2)
    assert ring.write_plain(np.zeros((1, 3)), p) == NOT_WRITTEN
    assert ring.write(np.zeros((1, 3)), p, None, None, check_finite=True) == NOT_FINITE
    assert ring.write(np.zeros((1, 3)), p, None, None) == 0  # what the long way does once Batch.of accepted it


NOT_PLAIN = [  # batches of 3 features and 2 classes that are not the plain kind
    (np.zeros((2, 3)), np.full((3, 2), 0.5)),  # rows differ
    (np.zeros((2, 4)), np.full((2, 2), 0.5)),  # features
    (np.zeros((2, 3)), np.full((2, 3), 1 / 3)),  # classes
    (np.zeros((2, 3)), np.full((2, 2), 1, np.int64)),  # integer probabilities
    (np.zeros((2, 3)).tolist(), np.full((2, 2), 0.5)),  # a list
    (np.zeros(3), np.full((1, 2), 0.5)),  # one row as 1-D
]


@pytest.mark.parametrize(("x", "p"), NOT_PLAIN)
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


def test_the_one_call_path_keeps_rows_and_stream_numbers_across_the_end_and_float32_exactly():
    """write_plain takes what fits without wrapping; write() the rest; the worker gets float64 either way, exactly."""
    ring = SampleRing(capacity=7, n_features=3, n_classes=4)
    rng = np.random.default_rng(1)
    expected_first, sent, ways = 0, [], []

    def take_and_compare():
        taken = ring.take()
        assert np.array_equal(np.concatenate([b.inputs for b in taken]), np.concatenate([s[0] for s in sent]))
        got = np.concatenate([b.probabilities for b in taken])
        assert got.dtype == np.float64
        assert np.array_equal(got, np.concatenate([s[1].astype(np.float64) for s in sent]))
        assert all(b.labels is None and b.shadow is None for b in taken)
        sent.clear()

    for rows in (2, 3, 1, 4, 3, 5, 2, 7, 1, 6):
        if ring.free_rows() < rows:
            take_and_compare()  # several batches, float32 and float64, in one take
        x = rng.normal(size=(rows, 3)).astype(np.float32)
        p = rng.dirichlet(np.ones(4), size=rows).astype(np.float32 if rows % 2 else np.float64)
        first = ring.write_plain(x, p)
        ways.append(first != NOT_WRITTEN)
        if first == NOT_WRITTEN:
            assert ring.written % ring.capacity + rows > ring.capacity  # only a batch that would wrap is left over
            first = ring.write(x, p, None, None, check_finite=True)
        assert first == expected_first
        expected_first += rows
        sent.append((x, p))
    take_and_compare()
    assert ring.written == expected_first == 34
    assert 0 < sum(ways) < len(ways)  # both ways were taken


def test_the_one_call_path_takes_image_shaped_and_integer_inputs():
    ring = SampleRing(capacity=8, n_features=4, n_classes=2)
    x = np.arange(8, dtype=np.uint8).reshape(2, 2, 2)
    assert ring.write_plain(x, np.full((2, 2), 0.5, np.float32)) == 0
    (batch,) = ring.take()
    assert np.array_equal(batch.inputs, x.reshape(2, 4).astype(np.float32))


@pytest.mark.parametrize(
    ("x", "p"),
    [
        *NOT_PLAIN,
        (np.zeros((2, 3)), np.full((2, 2), 0.5, np.float16)),  # other floats: write() converts them
        (np.zeros((2, 3), bool), np.full((2, 2), 0.5)),  # boolean inputs
        (np.zeros((0, 3)), np.full((0, 2), 0.5)),  # no rows
        (np.zeros((SUM_CHECK_VALUES, 3)), np.full((SUM_CHECK_VALUES, 2), 0.5)),  # more values than the sum checks
    ],
)
def test_anything_but_the_common_batch_is_left_to_the_long_way_unrecorded(x, p):
    ring = SampleRing(capacity=2 * SUM_CHECK_VALUES, n_features=3, n_classes=2)
    assert ring.write_plain(x, p) == NOT_WRITTEN
    assert ring.written == 0 and ring.take() == []


def test_a_full_or_refusing_ring_leaves_the_batch_to_the_long_way():
    ring = SampleRing(capacity=4, n_features=2, n_classes=2)
    x, p = np.zeros((3, 2)), np.full((3, 2), 0.5)
    assert ring.write_plain(x, p) == 0
    assert ring.write_plain(x[:2], p[:2]) == NOT_WRITTEN  # one row free
    ring.take()
    ring.refusing = True
    assert ring.write_plain(x[:1], p[:1]) == NOT_WRITTEN
    assert ring.written == 3
