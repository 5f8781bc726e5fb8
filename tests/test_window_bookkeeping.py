"""The tracker's per-window bookkeeping against plain computations: a window zeroed in place and refilled
reports what a fresh one does, and the totals, recent windows and status of real windows (labels, a shadow
model, late labels joined by stream row, windows closed by time, a regression model) are what numpy written
out plainly over the same rows says."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gangplank import DriftReference
from gangplank._drift.comparison import SIGNALS, WindowReport
from gangplank._drift.families import Totals
from gangplank._drift.recent_windows import RecentWindows
from gangplank._drift.settings import MonitorSettings
from gangplank._drift.tracker import WindowTracker
from tests.test_drift_quality import FakeClock, generate

WINDOW = 100


def shadow_of(p, rng):
    """A shadow model's classes: the model's own, one in five replaced by a random class."""
    shadow = p.argmax(axis=1)
    swap = rng.random(shadow.size) < 0.2
    shadow[swap] = rng.integers(0, p.shape[1], int(swap.sum()))
    return shadow


@pytest.fixture(scope="module")
def stream():
    """Reference rows, then a live stream whose second half is shifted (so some windows fire)."""
    rng = np.random.default_rng(3)
    x, p, y = generate(rng, 2000)
    reference = DriftReference.fit(x, p, y, shadow=shadow_of(p, rng), window_size=WINDOW, n_simulations=50)
    calm, shifted = generate(rng, 500), generate(rng, 450, shift=0.6)
    live = tuple(np.concatenate(pair) for pair in zip(calm, shifted, strict=True))
    return reference, live + (shadow_of(live[1], rng),)


SUMS = ("input_mean", "input_std", "confidence_mean", "entropy_mean")  # float sums: their order may differ


def assert_reports_equal(got: WindowReport, want: WindowReport, sums_rel: float = 0.0) -> None:
    """Every field equal; ``sums_rel``: the relative tolerance of the float sums of rows added in other pieces."""
    for field in dataclasses.fields(WindowReport):
        if field.name == "input_cells":
            continue
        a, b = getattr(got, field.name), getattr(want, field.name)
        if isinstance(b, np.ndarray):
            np.testing.assert_array_equal(a, b, err_msg=field.name)  # NaN equals NaN here
        elif isinstance(b, float) and np.isnan(b):
            assert np.isnan(a), field.name
        elif field.name in SUMS:
            assert a == pytest.approx(b, rel=sums_rel, abs=0.0), field.name
        else:
            assert a == b, field.name
    np.testing.assert_array_equal(got.input_js, want.input_js)  # read after the window was reset and refilled
    np.testing.assert_array_equal(got.input_ks, want.input_ks)


def test_a_window_reset_and_refilled_reports_what_a_fresh_window_does(stream):
    reference, (x, p, y, shadow) = stream
    reused = reference.new_window()
    reports = []
    for start in (0, 600):  # a calm window, then a shifted one, in the same Window
        rows = slice(start, start + WINDOW)
        reused.add(reference.prepare(x[rows], p[rows], y[rows], shadow=shadow[rows], normalise=False))
        reports.append(reference.compare(reused))
        reused.reset()
    for start, report in zip((0, 600), reports, strict=True):
        rows = slice(start, start + WINDOW)
        fresh = reference.window_of(x[rows], p[rows], y[rows], shadow=shadow[rows])
        assert_reports_equal(report, reference.compare(fresh))
    assert reports[1].signals["input"] and not reports[0].signals["input"]  # two different windows were compared
    assert reused.samples == reused.labelled == reused.input_rows == 0
    counts = (
        "input_counts",
        "class_counts",
        "confidence_counts",
        "confusion",
        "confidence_labelled",
        "confidence_correct",
    )
    assert not any(getattr(reused, name).any() for name in counts)


def test_the_labelled_count_is_the_confusion_matrix_sum(stream):
    reference, (x, p, y, _) = stream
    window = reference.new_window()
    for start in range(0, 96, 32):
        window.add(reference.prepare(x[start : start + 32], p[start : start + 32], y[start : start + 32]))
        window.add_feedback(y[start : start + 5], p[start : start + 5].argmax(axis=1))  # labels joined later
    assert window.labelled == int(window.confusion.sum()) == 96 + 3 * 5
    assert window.correct == int(np.trace(window.confusion))


def plain_totals(x, p, y, shadow, windows: list[slice], reports: list[WindowReport]) -> dict:
    """What the counters must say, from the rows and the reports alone."""
    rows = np.concatenate([np.arange(w.start, w.stop) for w in windows])
    predicted = p[rows].argmax(axis=1)
    confusion = np.zeros((p.shape[1], p.shape[1]), dtype=np.int64)
    np.add.at(confusion, (y[rows], predicted), 1)
    return {
        "samples": rows.size,
        "windows": len(windows),
        "drifted_windows": sum(report.drift_detected for report in reports),
        "signal_windows": {name: sum(report.signals[name] for report in reports) for name in SIGNALS},
        "feedback_samples": rows.size,
        "feedback_correct": int(np.sum(y[rows] == predicted)),
        "confusion": confusion,
        "shadow_samples": rows.size,
        "shadow_agreed": int(np.sum(shadow[rows] == predicted)),
    }


def assert_totals(totals: Totals, want: dict) -> None:
    for name, value in want.items():
        np.testing.assert_array_equal(getattr(totals, name), value, err_msg=name)


def test_reports_totals_and_status_of_labelled_shadowed_windows_match_a_plain_computation(stream):
    reference, (x, p, y, shadow) = stream
    closed: list[WindowReport] = []
    statuses = []
    settings = MonitorSettings(window_size=WINDOW, recent_windows=3, min_feedback=10)
    tracker = WindowTracker(reference, settings, clock=FakeClock(), wall_clock=lambda: 1.7e9)
    tracker.on_close = lambda report: (closed.append(report), statuses.append(tracker.status))
    for start in range(0, 900, 32):  # 32-row requests: windows of 100 close mid-batch
        rows = slice(start, min(start + 32, 900))
        tracker.add(reference.prepare(x[rows], p[rows], y[rows], shadow=shadow[rows], normalise=False))
    windows = [slice(start, start + WINDOW) for start in range(0, 900, WINDOW)]
    assert len(closed) == len(windows)
    for window, report in zip(windows, closed, strict=True):
        fresh = reference.window_of(x[window], p[window], y[window], shadow=shadow[window])  # one piece, not 32 rows
        assert_reports_equal(report, reference.compare(fresh), sums_rel=1e-12)
    assert closed[-1].signals["input"] and not closed[0].signals["input"]
    assert_totals(tracker.totals, plain_totals(x, p, y, shadow, windows, closed))
    for n, status in enumerate(statuses, start=1):
        recent = closed[max(0, n - 3) : n]
        assert status.recent_windows == len(recent)
        assert status.recent_signals == {name: sum(r.signals[name] for r in recent) for name in SIGNALS}
        assert status.closed_at == 1.7e9
    labelled, accuracy = statuses[-1].recent_feedback  # pooled from the newest windows until enough labels
    needed = tracker.recent.labels_needed
    pooled = [report for report in reversed(closed)]
    count = next(i for i in range(1, len(pooled) + 1) if sum(r.labelled for r in pooled[:i]) >= needed)
    assert labelled == sum(r.labelled for r in pooled[:count])
    assert accuracy == sum(r.correct for r in pooled[:count]) / labelled


def test_late_labels_joined_by_row_and_windows_closed_by_time_match_a_plain_computation(stream):
    reference, (x, p, y, _) = stream
    clock = FakeClock()
    closed: list[WindowReport] = []
    settings = MonitorSettings(window_size=WINDOW, window_seconds=60.0)
    tracker = WindowTracker(reference, settings, on_close=closed.append, clock=clock, wall_clock=lambda: 1.7e9)
    tracker.add(reference.prepare(x[:70], p[:70], normalise=False))
    clock.now += 61.0
    tracker.add(reference.prepare(x[70:150], p[70:150], normalise=False))  # the first window expired at 70 rows
    predicted = p.argmax(axis=1)
    late, open_rows = np.arange(10, 40), np.arange(75, 90)  # rows of the closed window and of the open one
    status_before = tracker.status
    tracker.add_feedback(y[late], predicted[late], rows=late)
    tracker.add_feedback(y[open_rows], predicted[open_rows], rows=open_rows)
    assert tracker.status is not status_before and tracker.status.recent_feedback[0] == late.size
    assert tracker.window.labelled == open_rows.size
    clock.now += 61.0
    assert tracker.close_if_expired()
    assert [report.samples for report in closed] == [70, 80]
    first = reference.window_of(x[:70], p[:70])
    assert_reports_equal(closed[0], reference.compare(first), sums_rel=1e-12)
    second = reference.window_of(x[70:150], p[70:150])
    second.add_feedback(y[open_rows], predicted[open_rows])
    assert_reports_equal(closed[1], reference.compare(second), sums_rel=1e-12)
    rows = np.concatenate([late, open_rows])
    totals = tracker.totals
    assert totals.samples == 150 and totals.windows == 2
    assert totals.feedback_samples == rows.size
    assert totals.feedback_correct == int(np.sum(y[rows] == predicted[rows]))
    confusion = np.zeros_like(totals.confusion)
    np.add.at(confusion, (y[rows], predicted[rows]), 1)
    np.testing.assert_array_equal(totals.confusion, confusion)


def test_a_copy_of_the_totals_keeps_its_counts_while_the_totals_go_on(stream):
    reference, (x, p, y, _) = stream
    report = reference.compare(reference.window_of(x[:WINDOW], p[:WINDOW], y[:WINDOW]))
    totals = Totals(reference.n_classes)
    totals.add_window(report)
    copied = totals.copy()
    confusion = copied.confusion.copy()
    totals.add_window(report)
    totals.add_feedback(report.confusion)
    totals.signal_windows["input"] += 1
    np.testing.assert_array_equal(copied.confusion, confusion)
    np.testing.assert_array_equal(totals.confusion, 3 * confusion)
    assert copied.feedback_samples == report.labelled and totals.feedback_samples == 3 * report.labelled
    assert copied.signal_windows["input"] == int(report.signals["input"])


def test_a_regression_models_error_sums_match_a_plain_computation():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1000, 4)).astype(np.float32)
    reference = DriftReference.fit(x, x[:, 0], task="regression", window_size=50, n_simulations=20)
    closed: list[WindowReport] = []
    tracker = WindowTracker(reference, MonitorSettings(window_size=50), on_close=closed.append, clock=FakeClock())
    live = rng.normal(size=(120, 4)).astype(np.float32)
    predictions, targets = live[:, 0], live[:, 0] + rng.normal(scale=0.1, size=120).astype(np.float32)
    for start in range(0, 120, 32):
        rows = slice(start, start + 32)
        tracker.add(reference.prepare(live[rows], predictions[rows], normalise=False))
        tracker.add_feedback(targets[rows], predictions[rows])
    tracker.finish()
    errors = (targets - predictions).astype(np.float64)
    totals = tracker.totals
    assert totals.feedback_samples == 120 and totals.samples == 120
    # The window sums float32 errors: float32's precision.
    assert totals.absolute_error_sum == pytest.approx(np.abs(errors).sum(), rel=1e-6)
    assert totals.squared_error_sum == pytest.approx(np.square(errors).sum(), rel=1e-6)
    assert sum(report.error_rows for report in closed) == 120


def test_recent_signal_counts_equal_a_count_over_the_last_m_windows():
    rng = np.random.default_rng(7)
    recent, history = RecentWindows(m=4), []
    for _ in range(40):
        names = [name for name in SIGNALS if rng.random() < 0.8]  # a window may lack a signal
        signals = {name: bool(rng.random() < 0.4) for name in names}
        recent.add(signals)
        history.append(dict(signals))
        signals["input"] = True  # a change after add does not reach the counts
        plain: dict[str, int] = {}
        for window in history[-4:]:
            for name, fired in window.items():
                plain[name] = plain.get(name, 0) + int(fired)
        assert recent.signal_counts() == plain
    with pytest.raises(ValueError, match="m >= 1"):
        RecentWindows(m=0)
