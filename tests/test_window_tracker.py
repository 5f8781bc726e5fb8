"""The window tracker driven directly, without threads and on a fake clock: what the drift worker does
with each batch and label, step by step, and the monitor's read-only views of it."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from gangplank import DriftMonitor, DriftReference
from gangplank._drift.settings import MonitorSettings
from gangplank._drift.tracker import WindowTracker
from tests.test_drift_quality import FakeClock, generate


@pytest.fixture(scope="module")
def reference():
    x, p, y = generate(np.random.default_rng(0), 2000)
    return DriftReference.fit(x, p, y, window_size=100, n_simulations=50)


def tracker_of(reference, clock=None, **settings):
    closed = []
    tracker = WindowTracker(
        reference,
        MonitorSettings(**{"window_size": 100, **settings}),
        on_close=closed.append,
        clock=clock or FakeClock(),
        wall_clock=lambda: 1.7e9,
    )
    return tracker, closed


def batch(reference, rows, seed=1, labels=False):
    x, p, y = generate(np.random.default_rng(seed), rows)
    return reference.prepare(x, p, y if labels else None, normalise=False)


def test_batches_fill_windows_of_exactly_window_size(reference):
    tracker, closed = tracker_of(reference)
    tracker.add(batch(reference, 130))
    tracker.add(batch(reference, 90, seed=2))
    assert [r.samples for r in closed] == [100, 100]
    assert tracker.window.samples == 20 and tracker.totals.samples == 200 and tracker.totals.windows == 2
    assert tracker.last_report is closed[-1] and tracker.status.recent_windows == 2


def test_window_seconds_close_a_window_by_its_age_on_the_tracker_clock(reference):
    clock = FakeClock()
    tracker, closed = tracker_of(reference, clock, window_size=10**6, window_seconds=0.3)
    assert tracker.seconds_to_expiry() is None  # an empty window never closes by time
    clock.now += 100.0
    assert not tracker.close_if_expired() and closed == []
    tracker.add(batch(reference, 30))
    clock.now += 0.29
    assert tracker.seconds_to_expiry() == pytest.approx(0.01) and not tracker.close_if_expired()
    clock.now += 0.01
    assert tracker.expired() and tracker.close_if_expired()
    assert [r.samples for r in closed] == [30]
    # The next window's clock starts with its first sample, however long the tracker sat idle.
    clock.now += 50.0
    tracker.add(batch(reference, 5, seed=2))
    clock.now += 0.2
    tracker.add(batch(reference, 3, seed=3))  # still young: joins the same window
    clock.now += 0.1
    assert tracker.close_if_expired() and [r.samples for r in closed] == [30, 8]
    # The interval gauge: the first window took 0.3 s, then 50.3 s passed between closes (moving average).
    assert tracker.status.interval == pytest.approx(0.2 * 50.3 + 0.8 * 0.3)


def test_an_expired_window_closes_before_the_next_batch_joins_it(reference):
    clock = FakeClock()
    tracker, closed = tracker_of(reference, clock, window_size=10**6, window_seconds=1.0)
    tracker.add(batch(reference, 10))
    clock.now += 2.0
    tracker.add(batch(reference, 7, seed=2))
    assert [r.samples for r in closed] == [10] and tracker.window.samples == 7


def test_late_labels_go_to_the_window_their_prediction_was_in(reference):
    tracker, closed = tracker_of(reference)
    first = batch(reference, 100)
    tracker.add(first)
    tracker.add(batch(reference, 50, seed=2))
    predicted = first.probabilities.argmax(axis=1)[:10]
    labels = predicted.copy()
    labels[:4] = (labels[:4] + 1) % predicted.max(initial=1)  # 4 of 10 wrong at most
    wrong = int(np.sum(labels != predicted))
    tracker.add_feedback(labels, predicted, rows=np.arange(10))  # rows of the closed first window
    assert tracker.window.labelled == 0  # not the open window
    assert tracker.totals.feedback_samples == 10 and tracker.totals.feedback_correct == 10 - wrong
    assert tracker.evidence == 10


def test_an_exception_is_counted_as_lost_rows_and_handed_to_caught(reference):
    caught = []

    class Broken(DriftReference):
        def compare(self, window):
            raise ArithmeticError("no")

    broken = Broken(reference.profile, reference.thresholds, reference.window_size, reference.settings)
    tracker = WindowTracker(broken, MonitorSettings(window_size=100), caught=lambda stage, error: caught.append(stage))
    tracker.add(batch(reference, 150))
    assert caught == ["compare"] and tracker.lost_samples == 100 and tracker.window.samples == 50
    assert tracker.totals.windows == 0


def test_without_a_caught_hook_the_tracker_raises(reference):
    tracker = WindowTracker(reference, MonitorSettings(window_size=100))
    with pytest.raises(IndexError):
        tracker.add_feedback(np.array([0, 1]), np.array([0]))  # shapes that do not match


def test_the_monitor_shows_its_tracker_read_only(reference):
    with DriftMonitor(None, "views", reference=reference, window_size=100) as monitor:
        x, p, _ = generate(np.random.default_rng(5), 150)
        monitor.observe(x, p)
        assert monitor.flush()
        assert monitor.tracker.totals is monitor.totals and monitor.totals.samples == 100
        assert monitor.window is monitor.tracker.window and monitor.window.samples == 50
        assert monitor.charts is monitor.tracker.charts and monitor.recent.windows == 1
        assert monitor.dropped == 0 and monitor.worker.alive
        assert monitor.get_params() == monitor.settings.get_params()
    assert not monitor.worker.alive and monitor.totals.samples == 150


def test_window_seconds_closing_windows_far_under_the_calibrated_size_is_warned_about_once(reference, caplog):
    clock = FakeClock()
    tracker, closed = tracker_of(reference, clock, window_seconds=60.0)
    with caplog.at_level(logging.WARNING, logger="gangplank"):
        tracker.add(batch(reference, 60))  # 60 of the 100 calibrated: near enough, not warned about
        clock.now += 60.0
        assert tracker.close_if_expired()
        assert not caplog.records
        for seed in (2, 3):
            tracker.add(batch(reference, 12, seed=seed))
            clock.now += 60.0
            assert tracker.close_if_expired()
    assert [r.samples for r in closed] == [60, 12, 12]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1, said
    assert "window_seconds=60 closed a window of 12 samples" in said[0] and "calibrated for 100" in said[0]
    assert "under min_window_samples=20 never alarm" in said[0]


def test_queued_batches_join_when_small_and_stay_as_they_are_when_large():
    from gangplank._drift.batch import Batch
    from gangplank._drift.worker import JOIN_ROWS, OWN_RUN_ROWS, Feedback, _runs

    def batch(rows: int, first: float) -> Batch:
        p = np.full((rows, 2), 0.5)
        p[:, 0] = first + np.arange(rows)  # row numbers, to check order after joining
        return Batch(p, None, None, None, 0, False)

    sizes = [3, 5, OWN_RUN_ROWS, 7, 1, JOIN_ROWS - 1, 2]
    items, start = [], 0
    for size in sizes:
        items.append(batch(size, start))
        start += size
    feedback = Feedback(np.array([1]), np.array([[0.5, 0.5]]), None)
    items.insert(5, feedback)
    runs = _runs(items)
    kinds = [run.rows if isinstance(run, Batch) else "feedback" for run in runs]
    assert kinds == [8, OWN_RUN_ROWS, 8, "feedback", JOIN_ROWS - 1, 2]  # 3+5 joined; 7+1; the last would overflow
    assert runs[2].probabilities is not items[3].probabilities
    assert runs[1].probabilities is items[2].probabilities  # a large batch is not copied
    joined = np.concatenate([run.probabilities[:, 0] for run in runs if isinstance(run, Batch)])
    assert joined.tolist() == list(range(start))
