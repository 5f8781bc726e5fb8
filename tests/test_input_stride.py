"""``input_stride`` n: the inputs of rows whose number in the stream is a multiple of n are binned, wherever a window
starts (a window closed early by ``window_seconds`` included), and the ring of ``worker="process"`` copies only
those. Checked against windows fed exactly the expected rows at stride 1 (plain numpy selection)."""

from __future__ import annotations

import numpy as np
import pytest

from gangplank import DriftReference
from gangplank._drift.batch import Batch
from gangplank._drift.ring import SampleRing
from gangplank._drift.settings import MonitorSettings
from gangplank._drift.tracker import WindowTracker
from tests.test_drift_quality import FakeClock, generate

STRIDE = 4


@pytest.fixture(scope="module")
def reference():
    x, p, y = generate(np.random.default_rng(0), 2000)
    return DriftReference.fit(x, p, y, window_size=100, n_simulations=50, input_stride=STRIDE)


def expected_window(reference, x, p, numbers):
    """A stride-1 window fed only the rows whose stream number is a multiple of the stride."""
    window = reference.profile.new_window(1)
    window.add(Batch(p, x[numbers % STRIDE == 0]))
    return window


@pytest.mark.parametrize("first", [0, 1, 2, 3, 37, 102])
def test_a_window_bins_the_rows_numbered_a_multiple_of_the_stride(reference, first):
    x, p, _ = generate(np.random.default_rng(1), 90)
    window = reference.profile.new_window(STRIDE)
    for start, stop in ((0, 1), (1, 30), (30, 33), (33, 90)):
        window.add(Batch(p[start:stop], x[start:stop]), first + start)
    numbers = np.arange(first, first + 90)
    expected = expected_window(reference, x, p, numbers)
    assert window.input_rows == expected.input_rows == np.count_nonzero(numbers % STRIDE == 0)
    assert np.array_equal(window.input_counts, expected.input_counts)
    assert window.input_sum == pytest.approx(expected.input_sum, rel=1e-12)


def test_without_stream_numbers_a_window_numbers_its_rows_from_0(reference):
    x, p, _ = generate(np.random.default_rng(2), 50)
    window = reference.profile.new_window(STRIDE)  # the calibration's windows, and window_of
    window.add(Batch(p[:7], x[:7]))
    window.add(Batch(p[7:], x[7:]))
    assert window.input_rows == 13  # rows 0, 4, ..., 48
    assert np.array_equal(window.input_counts, expected_window(reference, x, p, np.arange(50)).input_counts)


def test_after_a_window_closed_early_the_next_bins_by_stream_number_and_full_windows_bin_a_quarter(reference):
    clock = FakeClock()
    closed = []
    tracker = WindowTracker(
        reference, MonitorSettings(window_size=100, window_seconds=1.0), on_close=closed.append, clock=clock
    )
    x, p, _ = generate(np.random.default_rng(3), 437)
    prepared = reference.prepare(x, p, normalise=False)
    tracker.add(prepared[:37])
    clock.now += 1.0
    assert tracker.close_if_expired()  # rows 0..36: 0, 4, ..., 36 binned
    tracker.add(prepared[37:87])
    open_window = tracker.window  # rows 37..86: 40, 44, ..., 84 (positions 3, 7, ... in this window)
    numbers = np.arange(37, 87)
    expected = expected_window(reference, x[37:87], p[37:87], numbers)
    assert open_window.input_rows == expected.input_rows == 12
    assert np.array_equal(open_window.input_counts, expected.input_counts)
    tracker.add(prepared[87:])
    assert [r.samples for r in closed] == [37, 100, 100, 100, 100]  # rows 37..136, 137..236, ...
    assert [r.input_rows for r in closed] == [10, 25, 25, 25, 25]


def test_the_ring_copies_in_and_out_only_the_inputs_a_window_bins_across_its_end():
    ring = SampleRing(capacity=11, n_features=3, n_classes=2, input_stride=STRIDE)
    rng = np.random.default_rng(4)
    written = 0
    for rows in (1, 1, 1, 1, 5, 3, 9, 2, 7, 1):
        x = rng.normal(size=(rows, 3)).astype(np.float32) + 1.0  # never 0: a skipped row keeps the ring's zeros
        p = rng.dirichlet([1, 1], size=rows).astype(np.float32)
        first = ring.write_plain(x, p)
        if first < 0:  # would wrap around: the long way copies every row
            first = ring.write(x, p, None, None)
        assert first == written
        pieces = ring.take()  # two at the ring's end
        inputs = np.concatenate([b.inputs for b in pieces])
        numbers = np.arange(written, written + rows)
        binned = numbers % STRIDE == 0
        assert np.array_equal(inputs[binned], x[binned])
        assert np.array_equal(np.concatenate([b.probabilities for b in pieces]), p.astype(np.float64))
        assert not inputs[~binned].any()  # taken out as zeros, whichever way they were written
        written += rows
    assert ring.written == written == 31
