"""The rule replay (tests/rule_replay.py): the shipped rules, promtool, a real push-less DriftMonitor."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml

from tests.rule_replay import (
    PROMTOOL,
    RULES,
    RuleEvaluationError,
    alert_names,
    first_minute,
    monitor_snapshots,
    onsets,
    replay,
    rules_for_alert,
    series_values,
)

pytestmark = [
    pytest.mark.slow,  # replays streams through promtool
    pytest.mark.skipif(not shutil.which(PROMTOOL), reason="promtool missing: apt-get install prometheus"),
]

FEATURES, CLASSES, WINDOW = 5, 3, 200
WEIGHTS = 5 * np.random.default_rng(7).normal(size=(FEATURES, CLASSES))  # a model right 90 % of the time
DATA_SIGNALS = ("input", "prediction", "confidence")


def rows(rng, n: int, shift: float = 0.0):
    """Inputs, a fixed softmax model's probabilities, and labels drawn from them (a calibrated model)."""
    x = rng.normal(size=(n, FEATURES)) + shift
    logits = x @ WEIGHTS
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = np.array([rng.choice(CLASSES, p=row) for row in p])
    return x.astype(np.float32), p.astype(np.float32), y


@pytest.fixture(scope="module")
def reference():
    from gangplank import DriftReference

    x, p, y = rows(np.random.default_rng(0), 4000)
    return DriftReference.fit(x, p, y, window_size=WINDOW)


def stream(seed: int, shifts: list[float], labels: bool = True, wrong_labels: bool = False) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for shift in shifts:
        x, p, y = rows(rng, WINDOW, shift)
        if wrong_labels:
            y = (p.argmax(axis=1) + 1) % CLASSES
        out.append({"inputs": x, "probabilities": p, "labels": y if labels else None})
    return out


def run_monitor(reference, windows, **monitor_args):
    """Snapshots after each window, and each closed window's own report (read independently of the gauges)."""
    from gangplank import DriftMonitor

    reports = []
    monitor = DriftMonitor(
        None, "replay", reference=reference, agent="test", window_size=WINDOW, on_window=reports.append, **monitor_args
    )
    try:
        snapshots = monitor_snapshots(monitor, windows)
    finally:
        monitor.close()
    return snapshots, reports


def test_sustained_drift_warns_from_the_third_window_and_a_clean_stream_fires_nothing(reference):
    drifted, _ = run_monitor(reference, stream(1, [3.0] * 8))
    firing = replay(drifted)
    assert [("GangplankDataDrift" in names) for names in firing] == [False, False] + [True] * 6
    assert first_minute(firing, "GangplankDataDrift") == 2
    assert onsets(firing, "GangplankDataDrift") == [2]

    clean, _ = run_monitor(reference, stream(2, [0.0] * 20))
    assert replay(clean) == [set()] * 20


def test_data_drift_follows_three_of_the_last_five_windows_of_the_monitors_own_reports(reference):
    # Drift in some windows only: the alert must hold exactly where 3 of the last 5 windows fired a data signal.
    shifts = [3, 0, 3, 0, 3, 3, 0, 0, 0, 0, 3, 3, 3, 0, 0, 0, 0, 0]
    snapshots, reports = run_monitor(reference, stream(3, [float(s) for s in shifts]))
    fired = {s: np.array([r.signals[s] for r in reports], dtype=int) for s in DATA_SIGNALS}
    expected = [any(fired[s][max(0, t - 4) : t + 1].sum() >= 3 for s in DATA_SIGNALS) for t in range(len(shifts))]
    assert sum(expected) >= 4 and not all(expected)  # the case is not trivial
    firing = replay(snapshots, alerts=["GangplankDataDrift"])
    assert [("GangplankDataDrift" in names) for names in firing] == expected


def test_wrong_labels_page_and_right_ones_do_not(reference):
    wrong, _ = run_monitor(reference, stream(4, [0.0] * 6, wrong_labels=True))
    firing = replay(wrong, alerts=["GangplankModelDegraded"])
    assert first_minute(firing, "GangplankModelDegraded") is not None
    assert all("GangplankModelDegraded" in names for names in firing[first_minute(firing, "GangplankModelDegraded") :])

    right, _ = run_monitor(reference, stream(5, [0.0] * 6))
    assert replay(right, alerts=["GangplankModelDegraded"]) == [set()] * 6


def broken_copy(tmp_path, alert: str, old: str, new: str):
    config = yaml.safe_load(RULES.read_text())
    changed = 0
    for group in config["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                text = yaml.safe_dump(rule, sort_keys=False, width=10_000)
                assert old in text, f"{old!r} not in {alert}"
                rule.clear()
                rule.update(yaml.safe_load(text.replace(old, new)))
                changed += 1
    assert changed == 1
    path = tmp_path / "broken.rules.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, width=10_000))
    return path


def test_a_broken_threshold_or_a_longer_for_changes_the_answer(reference, tmp_path):
    drifted, _ = run_monitor(reference, stream(6, [3.0] * 8))
    assert first_minute(replay(drifted, alerts=["GangplankDataDrift"]), "GangplankDataDrift") == 2
    one_window = broken_copy(
        tmp_path,
        "GangplankDataDrift",
        "min by (job, agent, instance) (gangplank_predict_sustained_windows)",
        "min by (job, agent, instance) (gangplank_predict_sustained_windows) - 2",  # 1 of 5 windows
    )
    assert first_minute(replay(drifted, one_window, alerts=["GangplankDataDrift"]), "GangplankDataDrift") == 0
    held = broken_copy(tmp_path, "GangplankDataDrift", "for: 0m", "for: 2m")
    assert first_minute(replay(drifted, held, alerts=["GangplankDataDrift"]), "GangplankDataDrift") == 4


def test_every_alert_is_replayed_and_the_gateway_series_keep_the_gateway_alerts_quiet(reference):
    snapshots, _ = run_monitor(reference, stream(7, [0.0] * 5))
    assert replay(snapshots) == [set()] * 5
    # Without the Pushgateway's own series its scrape looks absent: that alert fires after its `for: 2m`.
    assert replay(snapshots, gateway=False) == [set(), set()] + [{"GangplankPushgatewayDown"}] * 3


def test_a_rule_that_cannot_be_evaluated_is_an_error_naming_it(reference, tmp_path):
    snapshots, _ = run_monitor(reference, stream(8, [0.0] * 3))
    # One-to-many matching without group_right: Prometheus would skip the rule; promtool stops the test.
    path = broken_copy(
        tmp_path,
        "GangplankDataDrift",
        "on (job, agent, instance) min by (job, agent, instance) (gangplank_predict_sustained_windows)",
        "on (job, agent, instance) gangplank_predict_drift_signal_recent",
    )
    with pytest.raises(RuleEvaluationError, match="GangplankDataDrift"):
        replay(snapshots, path, alerts=["GangplankDataDrift"])
    assert replay(snapshots, path, alerts=["GangplankModelDegraded"]) == [set()] * 3  # its own file: unaffected


def test_windows_of_the_wrong_size_are_refused(reference):
    from gangplank import DriftMonitor

    monitor = DriftMonitor(None, "replay", reference=reference, agent="test", window_size=WINDOW)
    try:
        with pytest.raises(RuntimeError, match="closed 0 windows"):
            monitor_snapshots(monitor, [{"probabilities": rows(np.random.default_rng(9), WINDOW - 1)[1]}])
    finally:
        monitor.close()


def test_partly_labelled_windows_count_only_their_labels(reference):
    window = stream(10, [0.0])[0]
    window["labelled"] = np.arange(WINDOW) < 30
    snapshots, reports = run_monitor(reference, [window])
    assert reports[0].labelled == 30 and reports[0].samples == WINDOW


def test_series_values_notation():
    nan = float("nan")
    assert series_values([1.0, 1.0, 1.0, None, None, None, 2.5, nan, nan]) == "1.0x2 stale _x2 2.5 NaN NaN"
    assert series_values([None, None, -1.0, float("inf"), None]) == "_x2 -1.0 Inf stale"


def test_an_alert_is_tested_with_the_recording_rules_it_reads():
    config = yaml.safe_load(RULES.read_text())
    overfitting = rules_for_alert(config, "GangplankOverfitting")
    records = [r["record"] for g in overfitting["groups"] for r in g["rules"] if "record" in r]
    # the best val_loss, and the three rules built on it, in file order
    assert records == [
        "gangplank:train_val_loss:best",
        "gangplank:train_epochs_count:at_best_val_loss",
        "gangplank:train_loss:at_best_val_loss",
        "gangplank:train_best_val_loss:timestamp",
    ]
    drift = rules_for_alert(config, "GangplankDataDrift")
    assert [r.get("alert") for g in drift["groups"] for r in g["rules"]] == ["GangplankDataDrift"]
    assert "GangplankModelDegraded" in alert_names(groups=["gangplank-production"])
