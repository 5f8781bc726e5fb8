"""A monitor's accuracy decisions: sequential charts on labels and on a shadow model, labels credited to their
prediction's window, and the charts' state as exported gauges (the rules only compare)."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gangplank import DriftMonitor, DriftReference
from gangplank._drift.accuracy_charts import WINDOWS_PER_MONTH
from gangplank._drift.sequential import design, estimation_margin

K = 3


def generate(rng, rows, wrong_share=0.0):
    """Rows whose true class is the argmax of their probabilities, except a share made wrong (confidence kept)."""
    x = rng.normal(size=(rows, 4))
    logits = x[:, :K] * 3
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = p.argmax(axis=1)
    flip = rng.random(rows) < wrong_share
    y[flip] = (y[flip] + 1) % K
    return x, p, y


@pytest.fixture(scope="module")
def reference():
    rng = np.random.default_rng(0)
    x, p, y = generate(rng, 6000, wrong_share=0.05)
    shadow = np.where(rng.random(6000) < 0.96, p.argmax(axis=1), (p.argmax(axis=1) + 1) % K)  # agrees on 96 %
    return DriftReference.fit(x, p, y, shadow=shadow, window_size=100, n_simulations=200)


def exported(monitor) -> dict:
    """``{(name, labels): value}`` of what a scrape of ``monitor`` serves."""
    registry = CollectorRegistry()
    registry.register(monitor)
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "agent"))
            out[(sample.name, labels)] = sample.value
    return out


def chart(values: dict, name: str, evidence: str, size: str) -> float:
    return values[(f"gangplank_predict_{name}", (("chart", size), ("evidence", evidence)))]


def test_the_reference_keeps_the_shadow_agreement_and_the_file_keeps_it(reference, tmp_path):
    assert reference.shadow_agreement == pytest.approx(0.96, abs=0.01)
    reference.save(tmp_path / "r.npz")
    loaded = DriftReference.load(tmp_path / "r.npz")
    assert loaded.shadow_agreement == reference.shadow_agreement
    assert loaded.profile.shadow_rows == 6000 and loaded.profile.labelled_rows == 6000


def test_the_exported_thresholds_are_the_designed_ones(reference):
    with DriftMonitor(None, "j", reference=reference, agent="a", labels_per_window=50) as monitor:
        values = exported(monitor)
    margin = estimation_margin(reference.accuracy, 6000)
    expected = design(reference.accuracy, 0.05, 4 * 50 * WINDOWS_PER_MONTH, margin)
    assert chart(values, "cusum_threshold", "labels", "large") == expected.threshold
    assert chart(values, "cusum", "labels", "large") == 0.0
    # four charts share the budget: each runs four months of labels at its in-control rate
    assert expected.average_run_length(expected.in_control) >= 4 * 50 * WINDOWS_PER_MONTH


def test_a_silently_wrong_model_pages_on_labels_and_keeps_paging_until_it_recovers(reference):
    rng = np.random.default_rng(1)
    with DriftMonitor(None, "j", reference=reference, agent="a") as monitor:
        x, p, y = generate(rng, 1000, wrong_share=0.15)  # 10 points under the reference, confidence unchanged
        monitor.observe(x, p, y)
        assert monitor.flush()
        paging = exported(monitor)
        assert chart(paging, "cusum", "labels", "large") >= chart(paging, "cusum_threshold", "labels", "large")
        for _ in range(3):  # still wrong: held at or over the threshold, no second episode
            monitor.observe(*generate(rng, 500, wrong_share=0.15))
            assert monitor.flush()
            held = exported(monitor)
            assert chart(held, "cusum", "labels", "large") >= chart(held, "cusum_threshold", "labels", "large")
        x, p, y = generate(rng, 20_000, wrong_share=0.03)  # fixed: better than the reference
        monitor.observe(x, p, y)
        assert monitor.flush(timeout=60)
        recovered = exported(monitor)
    assert chart(recovered, "cusum", "labels", "large") < chart(recovered, "cusum_threshold", "labels", "large")
    assert chart(recovered, "cusum_alarms_total", "labels", "large") == 1.0


def test_a_model_at_its_reference_accuracy_never_alarms(reference):
    rng = np.random.default_rng(2)
    with DriftMonitor(None, "j", reference=reference, agent="a") as monitor:
        for _ in range(20):
            monitor.observe(*generate(rng, 1000, wrong_share=0.05))
        assert monitor.flush(timeout=60)
        values = exported(monitor)
    for evidence, size in [("labels", "small"), ("labels", "large")]:
        assert chart(values, "cusum_alarms_total", evidence, size) == 0.0
        assert chart(values, "cusum", evidence, size) < chart(values, "cusum_threshold", evidence, size)


def test_the_shadow_model_pages_without_labels_when_the_models_part(reference):
    rng = np.random.default_rng(3)
    reports = []
    with DriftMonitor(None, "j", reference=reference, agent="a", on_window=reports.append) as monitor:
        x, p, _ = generate(rng, 400)
        agree = np.where(rng.random(400) < 0.96, p.argmax(axis=1), (p.argmax(axis=1) + 2) % K)
        monitor.observe(x, p, shadow=agree)
        assert monitor.flush()
        calm = exported(monitor)
        x, p, _ = generate(rng, 400)
        parted = np.where(rng.random(400) < 0.80, p.argmax(axis=1), (p.argmax(axis=1) + 2) % K)
        monitor.observe(x, p, shadow=np.eye(K)[parted])  # probabilities work as well as classes
        monitor.observe(*generate(rng, 100)[:2])  # a batch without a shadow: skipped by the chart
        assert monitor.flush()
        parting = exported(monitor)
    assert chart(calm, "cusum_alarms_total", "shadow", "large") == 0.0
    assert chart(parting, "cusum", "shadow", "large") >= chart(parting, "cusum_threshold", "shadow", "large")
    assert parting[("gangplank_predict_shadow_samples_total", ())] == 800
    last = reports[-1]
    assert last.shadow_rows == 0 and np.isnan(last.shadow_agreement)
    parted_window = reports[4]
    assert parted_window.shadow_agreement == np.mean(parted[:100] == p[:100].argmax(axis=1))  # p: the parted batch
    expected = reference.accuracy - (reference.shadow_agreement - parted_window.shadow_agreement)
    assert parted_window.shadow_estimated_accuracy == pytest.approx(expected)


def test_late_labels_count_for_the_window_of_their_prediction(reference):
    rng = np.random.default_rng(4)
    reports = []
    pooled_at_once = {"min_feedback": 1, "quality_floor": 0.0}  # pool from the first label on
    with DriftMonitor(None, "j", reference=reference, agent="a", on_window=reports.append, **pooled_at_once) as monitor:
        x, p, y = generate(rng, 100)
        monitor.observe(x, p, ids=[f"a{i}" for i in range(100)])  # window 1 closes with no labels
        x2, p2, _ = generate(rng, 60)
        monitor.observe(x2, p2, ids=[f"b{i}" for i in range(60)])  # window 2 opens
        wrong = (y[:40] + 1) % K
        assert monitor.feedback(wrong, ids=[f"a{i}" for i in range(40)]) == 40  # late, for window 1: all wrong
        monitor.observe(*generate(rng, 40)[:2])  # window 2 closes
        assert monitor.flush()
        values = exported(monitor)
    assert reports[0].labelled == 0 and reports[1].labelled == 0  # window 2 did not get window 1's labels
    assert values[("gangplank_predict_feedback_samples_total", ())] == 40
    assert values[("gangplank_predict_feedback_correct_total", ())] == 0
    assert values[("gangplank_predict_recent_feedback_samples", ())] == 40  # pooled by prediction window
    assert values[("gangplank_predict_recent_feedback_accuracy", ())] == 0.0


def test_labels_for_the_open_window_stay_with_it(reference):
    rng = np.random.default_rng(5)
    reports = []
    with DriftMonitor(None, "j", reference=reference, agent="a", on_window=reports.append) as monitor:
        x, p, y = generate(rng, 100)
        monitor.observe(x[:50], p[:50], ids=list(range(50)))
        monitor.feedback(y[:50], ids=list(range(50)))
        monitor.observe(x[50:], p[50:])
        assert monitor.flush()
    assert reports[0].labelled == 50 and reports[0].correct == 50


def test_labels_between_two_windows_go_to_the_closed_one(reference):
    rng = np.random.default_rng(6)
    reports = []
    pooled_at_once = {"min_feedback": 1, "quality_floor": 0.0}
    with DriftMonitor(None, "j", reference=reference, agent="a", on_window=reports.append, **pooled_at_once) as monitor:
        x, p, y = generate(rng, 100)
        monitor.observe(x, p, ids=list(range(100)))
        assert monitor.flush()  # window 1 closed; window 2 has no sample yet
        monitor.feedback((y[:30] + 1) % K, ids=list(range(30)))
        monitor.observe(*generate(rng, 100)[:2])
        assert monitor.flush()
        values = exported(monitor)
    assert [r.labelled for r in reports] == [0, 0]
    assert values[("gangplank_predict_recent_feedback_samples", ())] == 30
