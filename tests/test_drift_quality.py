"""Production quality on a real Pushgateway: feedback by scoring id, per-class figures, the label-free
estimate, k-of-m signals, pooled labels for the floor, scrape = push, retiring an agent, back-pressure."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from gangplank_devtools import read_gateway, value, wait_for
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from scipy import stats

from gangplank import DriftMonitor, DriftReference
from gangplank._drift.families import PREFIX, REGRESSION_ONLY
from gangplank._drift.profile import Profile
from gangplank._drift.recent_windows import WINDOWS_PER_MONTH, RecentWindows, labels_for_floor
from gangplank._drift.scoring_ids import ScoringIds
from gangplank.metric_schema import SCHEMA

D, K = 6, 3
WEIGHTS = np.random.default_rng(7).normal(size=(D, K))


def generate(rng, rows, shift=0.0, temperature=1.0):
    """Inputs, probabilities, and labels drawn from those probabilities (a calibrated model)."""
    x = rng.normal(size=(rows, D)).astype(np.float32) + shift
    logits = (x @ WEIGHTS) / temperature
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = (rng.random((rows, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    return x, p, np.minimum(y, K - 1)


def calibrated_reference() -> DriftReference:
    """A reference of 6,000 rows of :func:`generate`, for windows of 100."""
    x, p, y = generate(np.random.default_rng(0), 6000)
    return DriftReference.fit(x, p, y, window_size=100, n_simulations=100)


@pytest.fixture(scope="module")
def reference():
    return calibrated_reference()


@pytest.fixture
def monitor(reference):
    made = []

    def make(pgw_addr=None, **kwargs):
        kwargs.setdefault("agent", "quality")
        made.append(DriftMonitor(pgw_addr, "quality", reference=kwargs.pop("reference", reference), **kwargs))
        return made[-1]

    yield make
    for m in made:
        m.publisher.close(0.2)


def pushed(pushgateway, name, **labels):
    def look():
        try:
            return (value(read_gateway(pushgateway.url), PREFIX + name, **labels),)
        except KeyError:
            return None

    found = wait_for(look, timeout=15)
    assert found is not None, name
    return found[0]


# -- feedback by scoring id -------------------------------------------------------------
def test_feedback_joins_labels_to_predictions_by_scoring_id(monitor, pushgateway):
    rng = np.random.default_rng(1)
    x, p, _ = generate(rng, 150)
    predicted = p.argmax(axis=1)
    reports = []
    drift = monitor(pushgateway.address, window_size=100, on_window=reports.append)
    ids = [f"req-{i}" for i in range(150)]
    drift.observe(x[:100], p[:100], ids=ids[:100])
    drift.flush()
    labels = predicted.copy()
    labels[:20] = (labels[:20] + 1) % K  # 20 wrong answers among the first 100
    matched = drift.feedback(labels[:100][::-1], ids=ids[:100][::-1])  # any order: joined by id
    assert matched == 100
    assert drift.feedback([0, 1], ids=["never-seen", "req-3"]) == 0  # unknown, and req-3 already labelled
    drift.observe(x[100:150], p[100:150], ids=ids[100:150])
    drift.close()
    # The labels are for the first window's predictions, closed before they came: credited to it (the totals,
    # the pooled recent accuracy), not to the window open when they arrived.
    assert [r.labelled for r in reports] == [0, 0]
    assert drift.totals.feedback_samples == 100 and drift.totals.feedback_correct == 80
    assert drift.recent.pooled_feedback() == (100, 0.8)
    assert pushed(pushgateway, "feedback_unmatched_total", agent="quality") == 2
    assert pushed(pushgateway, "feedback_samples_total", agent="quality") == 100
    assert pushed(pushgateway, "feedback_correct_total", agent="quality") == 80


def test_feedback_needs_ids_or_predictions_and_checks_labels(monitor):
    drift = monitor()
    with pytest.raises(ValueError, match="either predictions or ids"):
        drift.feedback([1])
    with pytest.raises(ValueError, match="labels must be in"):
        drift.feedback([K + 3], ids=["a"])
    with pytest.raises(ValueError, match="scoring ids"):
        drift.observe(np.zeros((1, D)), np.full((1, K), 1 / K), ids=[1.5])
    with pytest.raises(ValueError, match="one scoring id per row"):
        drift.observe(np.zeros((2, D)), np.full((2, K), 1 / K), ids=["a"])


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_scoring_ids_are_bounded_by_count_and_age():
    clock = FakeClock()
    store = ScoringIds(max_ids=3, max_age_seconds=0.2, clock=clock)
    store.remember(["a", "b", "c", "d"], [0, 1, 2, 0])
    assert len(store) == 3
    assert store.join(["a", "d"]) == ([None, 0], 1)  # "a" was the oldest, pushed out
    clock.now += 0.19
    assert store.join(["b"]) == ([1], 0)  # not yet expired
    clock.now += 0.02
    assert store.join(["c"]) == ([None], 1) and len(store) == 0


# -- per-class quality --------------------------------------------------------------------
def test_confusion_matrix_precision_recall_f1_per_window_and_cumulative(monitor, pushgateway):
    rng = np.random.default_rng(2)
    x, p, _ = generate(rng, 200)
    predicted = p.argmax(axis=1)
    labels = np.where(rng.random(200) < 0.3, rng.integers(0, K, 200), predicted)
    reports = []
    drift = monitor(pushgateway.address, window_size=100, on_window=reports.append)
    drift.observe(x, p, labels)
    drift.close()
    for window, report in zip((slice(0, 100), slice(100, 200)), reports, strict=False):
        expected = np.zeros((K, K), dtype=int)
        np.add.at(expected, (labels[window], predicted[window]), 1)
        np.testing.assert_array_equal(report.confusion, expected)
        for c in range(K):  # precision, recall and F1 by their definitions
            tp = np.sum((labels[window] == c) & (predicted[window] == c))
            precision = tp / np.sum(predicted[window] == c)
            recall = tp / np.sum(labels[window] == c)
            assert report.precision[c] == pytest.approx(precision)
            assert report.recall[c] == pytest.approx(recall)
            assert report.f1[c] == pytest.approx(2 * precision * recall / (precision + recall))
    last = reports[-1]
    for t in range(K):
        for q in range(K):
            labels_tq = {"agent": "quality", "true_class": str(t), "predicted_class": str(q)}
            assert pushed(pushgateway, "feedback_confusion_matrix", **labels_tq) == last.confusion[t, q]
            total = np.sum((labels == t) & (predicted == q))
            assert pushed(pushgateway, "feedback_confusion_total", **labels_tq) == total
    assert pushed(pushgateway, "feedback_f1", agent="quality", **{"class": "0"}) == pytest.approx(last.f1[0])


# -- the label-free estimate ----------------------------------------------------------------
def test_the_estimate_of_a_hand_made_profile():
    from gangplank._drift.batch import Batch

    # Two confidence bins split at 0.75: 4 rows at 0.6 (2 right), 4 at 0.9 (all right).
    p = np.array([[0.6, 0.4]] * 4 + [[0.9, 0.1]] * 4)
    y = np.array([0, 0, 1, 1, 0, 0, 0, 0])
    profile = Profile.of_window(Profile.window(None, np.array([0.75]), Batch.of(None, p, y)))
    np.testing.assert_allclose(profile.confidence_accuracy, [0.5, 1.0])
    estimate, error = profile.estimated_accuracy(np.array([30, 10]))
    assert estimate == pytest.approx((30 * 0.5 + 10 * 1.0) / 40)
    # Reference spread of the map (shares 1/2 and 1/2 around the mean 0.75), over 40 window rows,
    # plus the map's own error: bin 0 measured on 4 rows at 0.5 (weight 30/40), bin 1 on 4 rows at 1.0.
    spread = 0.25**2 / 40
    map_error = (30 / 40) ** 2 * 0.5 * 0.5 / 4 + (10 / 40) ** 2 * 1.0 * 0.0 / 4
    assert error == pytest.approx(np.sqrt(spread + map_error))


def test_the_estimate_is_monotone_in_confidence():
    from gangplank._drift.batch import Batch

    p = np.array([[0.55, 0.45]] * 10 + [[0.7, 0.3]] * 10 + [[0.95, 0.05]] * 10)
    y = np.array([0] * 8 + [1] * 2 + [0] * 5 + [1] * 5 + [0] * 10)  # 0.8, then 0.5, then 1.0: not monotone
    profile = Profile.of_window(Profile.window(None, np.array([0.6, 0.8]), Batch.of(None, p, y)))
    assert np.all(np.diff(profile.confidence_accuracy) >= 0)
    np.testing.assert_allclose(profile.confidence_accuracy, [0.65, 0.65, 1.0])  # pooled by isotonic regression


def test_the_estimate_follows_realised_accuracy_of_a_calibrated_model(monitor, reference):
    rng = np.random.default_rng(3)
    reports = []
    drift = monitor(window_size=1000, on_window=reports.append)
    for shift, temperature in ((0.0, 1.0), (1.5, 1.0), (0.0, 3.0)):  # none, covariate shift, less confident
        x, p, y = generate(rng, 1000, shift=shift, temperature=temperature)
        drift.observe(x, p, y)
    drift.close()
    for report in reports:
        assert abs(report.estimated_accuracy - report.accuracy) < 0.05, (report.estimated_accuracy, report.accuracy)
    low = reports[2]
    assert low.estimated_accuracy < reference.accuracy - 0.1
    assert low.signals["estimated_accuracy"]  # shown beside the labels, a warning of its own
    charts = drift.charts.states()
    assert charts[("labels", "large")].alarms == 1  # the labels decide the page


def test_the_estimated_accuracy_signal_fires_without_labels_and_stays_quiet_on_healthy_traffic(monitor):
    rng = np.random.default_rng(4)
    reports = []
    drift = monitor(window_size=100, on_window=reports.append)
    for _ in range(20):
        x, p, _ = generate(rng, 100)
        drift.observe(x, p)
    x, p, _ = generate(rng, 300, temperature=4.0)
    drift.observe(x, p)
    drift.close()
    assert not any(r.signals["estimated_accuracy"] for r in reports[:20])
    assert all(r.signals["estimated_accuracy"] for r in reports[20:])


# -- alert inputs: k of m, pooled labels, settings ----------------------------------------------
def test_labels_for_floor_is_the_smallest_count_under_one_false_page_a_month():
    n = labels_for_floor(0.90, 0.80, min_feedback=10)
    chance = lambda m: stats.binom.cdf(np.ceil(0.8 * m) - 1, m, 0.90)  # noqa: E731  accuracy reads below 0.80
    assert chance(n) < 1 / WINDOWS_PER_MONTH
    assert chance(n - 1) >= 1 / WINDOWS_PER_MONTH or chance(n - 2) >= 1 / WINDOWS_PER_MONTH  # not far from minimal
    assert labels_for_floor(float("nan"), 0.8, 10) == 10 and labels_for_floor(0.75, 0.8, 25) == 25


def test_recent_windows_count_k_of_m_and_pool_labels():
    recent = RecentWindows(m=3, labels_needed=30)
    for fired, labelled, correct in ((True, 10, 10), (False, 10, 5), (True, 10, 10), (True, 10, 0)):
        recent.add({"input": fired}, labelled, correct)
    assert recent.signal_counts() == {"input": 2} and recent.windows == 3  # the first window has left
    assert recent.pooled_feedback() == (30, 15 / 30)  # the last three windows' labels
    assert np.isnan(RecentWindows(labels_needed=30).pooled_feedback()[1])


def test_recent_windows_credit_and_pool_like_a_plain_walk_over_every_window(monkeypatch):
    import gangplank._drift.recent_windows as module

    monkeypatch.setattr(module, "MAX_POOLED_WINDOWS", 40)  # windows fall out of the pool during the run
    rng = np.random.default_rng(11)
    recent = RecentWindows(m=5, labels_needed=25)
    plain: list[list[int]] = []  # [first, end, labelled, correct], every window, written out
    end = 0
    for _ in range(120):
        size, labelled = int(rng.integers(1, 30)), int(rng.integers(0, 4))
        correct = int(rng.integers(0, labelled + 1))
        if rng.random() < 0.1:
            recent.add_feedback(labelled, correct)
            plain.append([-1, -1, labelled, correct] if labelled else [])
        else:
            recent.add({}, labelled, correct, (end, end + size))
            plain.append([end, end + size, labelled, correct])
            end += size + int(rng.integers(0, 3))  # gaps: rows of no window
        if rng.random() < 0.5:
            rows = rng.integers(max(0, end - 200), end + 5, size=int(rng.integers(1, 12)))
            right = rng.random(rows.size) < 0.7
            recent.credit(rows, right)
            kept = [w for w in plain if w][-40:]
            for row, ok in zip(rows.tolist(), right.tolist(), strict=True):
                for w in kept:
                    if w[0] <= row < w[1]:
                        w[2] += 1
                        w[3] += int(ok)
        kept = [w for w in plain if w][-40:]
        labelled = correct = 0
        for w in reversed(kept):
            labelled, correct = labelled + w[2], correct + w[3]
            if labelled >= 25:
                break
        pooled = recent.pooled_feedback()
        assert pooled[0] == labelled
        assert pooled[1] == correct / labelled if labelled >= 25 else np.isnan(pooled[1])


def test_sustained_signals_and_settings_reach_the_gateway(monitor, pushgateway, reference):
    rng = np.random.default_rng(5)
    drift = monitor(pushgateway.address, window_size=100, quality_floor=0.7, min_feedback=20, accuracy_tolerance=0.03)
    for shift in (0.0, 0.0, 3.0, 3.0, 3.0):
        x, p, y = generate(rng, 100, shift=shift)
        drift.observe(x, p)
        drift.flush()
    drift.close()
    assert pushed(pushgateway, "drift_signal_recent", agent="quality", signal="input") == 3
    assert pushed(pushgateway, "recent_windows", agent="quality") == 5
    assert pushed(pushgateway, "sustained_windows", agent="quality") == 3
    assert pushed(pushgateway, "drift_signal_windows_total", agent="quality", signal="input") == 3
    assert pushed(pushgateway, "quality_floor", agent="quality") == 0.7
    assert pushed(pushgateway, "min_feedback", agent="quality") == 20
    assert pushed(pushgateway, "accuracy_tolerance", agent="quality") == 0.03
    assert pushed(pushgateway, "reference_accuracy", agent="quality") == pytest.approx(reference.accuracy)
    assert pushed(pushgateway, "window_interval_seconds", agent="quality") > 0


# -- scrape, no push, retire --------------------------------------------------------------------
def test_a_scrape_serves_exactly_what_a_push_sends(monitor, pushgateway):
    rng = np.random.default_rng(6)
    x, p, y = generate(rng, 250)
    drift = monitor(pushgateway.address, grouping_key={"instance": "pod-1", "zone": "eu"}, window_size=100)
    drift.observe(x, p, y)
    assert drift.flush()
    registry = CollectorRegistry()
    registry.register(drift)
    scraped = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            scraped[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    on_gateway = {}
    for (name, labels), sample_value in read_gateway(pushgateway.url, prefix=PREFIX).items():
        kept = tuple(sorted((k, v) for k, v in labels if k not in ("job", "instance")))
        on_gateway[(name, kept)] = sample_value
    assert scraped.keys() == on_gateway.keys()
    for key, scraped_value in scraped.items():
        assert scraped_value == pytest.approx(on_gateway[key], nan_ok=True), key
    shadow_only = ("shadow_agreement", "reference_shadow_agreement", "shadow_estimated_accuracy")
    not_here = {PREFIX + name for name in (*shadow_only, *REGRESSION_ONLY)}  # no shadow; a classifier
    assert {entry.name for entry in SCHEMA if entry.source == "predict"} - not_here <= {name for name, _ in scraped}


def test_without_a_gateway_nothing_is_pushed_and_flush_succeeds(monitor):
    drift = monitor(None, window_size=10)
    drift.observe(np.zeros((25, D)), np.full((25, K), 1 / K))
    assert drift.flush() and drift.publisher.last_error is None and not drift.publisher.pending
    drift.close()
    assert drift.last_report.samples == 5


def test_retire_deletes_the_agents_group(monitor, pushgateway):
    keep = monitor(pushgateway.address, agent="stays", window_size=10)
    gone = monitor(pushgateway.address, agent="retired", window_size=10)
    for drift in (keep, gone):
        drift.observe(np.zeros((10, D)), np.full((10, K), 1 / K))
        assert drift.flush()
    gone.retire()
    samples = read_gateway(pushgateway.url)
    assert {dict(labels).get("agent") for name, labels in samples if name.startswith(PREFIX)} == {"stays"}
    keep.close()


# -- back-pressure ----------------------------------------------------------------------------------
def test_a_stuck_worker_makes_observe_drop_and_count_rather_than_grow(monitor, pushgateway):
    release = threading.Event()
    drift = monitor(
        pushgateway.address,
        window_size=10,
        max_pending_samples=50,
        max_wait_seconds=0.05,
        on_window=lambda report: release.wait(30),
    )
    batch = np.zeros((10, D)), np.full((10, K), 1 / K)
    for _ in range(30):
        drift.observe(*batch)
        drift.flush(0.01)  # hand over now: the first window's callback holds the worker
    release.set()
    drift.close()
    samples = pushed(pushgateway, "samples_total", agent="quality")
    dropped = pushed(pushgateway, "samples_dropped_total", agent="quality")
    assert dropped > 0 and samples + dropped == 300


def test_a_window_size_far_from_the_calibrated_one_is_warned_about(monitor, caplog):
    with caplog.at_level("WARNING", logger="gangplank"):
        monitor(window_size=1000)
    assert "calibrated for 100" in caplog.text and "window_size=1000" in caplog.text


def test_a_closed_monitor_takes_no_more_batches(monitor):
    drift = monitor()
    drift.close()
    with pytest.raises(RuntimeError, match="closed"):
        drift.observe(np.zeros((1, D)), np.full((1, K), 1 / K))
    with pytest.raises(RuntimeError, match="closed"):
        drift.feedback([0], [0])


def test_push_settings_are_one_object_for_every_exporter(monitor, pushgateway):
    import gangplank

    settings = gangplank.PushSettings(pushgateway.address, timeout=2.0)
    drift = monitor(settings, window_size=10)
    assert drift.publisher.settings is settings and drift.publisher.timeout == 2.0
    drift.observe(np.zeros((10, D)), np.full((10, K), 1 / K))
    drift.close()
    assert pushed(pushgateway, "samples_total", agent="quality") == 10
    with pytest.raises(TypeError, match="in the PushSettings"):
        monitor(settings, timeout=3.0)
