"""Grafana dashboards: offline structure checks, and every panel query run against a real Prometheus
fed by a real Keras fit/evaluate and a real drift run (Grafana itself cannot run here)."""

from __future__ import annotations

import copy
import importlib.util
import re

import numpy as np
import pytest

import gangplank
from tests.stack_tools import (
    check_dashboard_queries,
    iter_targets,
    load_dashboard,
    metric_names,
    panel_titled,
    prometheus_get,
    provisioned_datasource_uids,
    resolve_variables,
    roundtrip_dropped_keys,
    structure_problems,
    wait_for_series,
)

pytestmark = pytest.mark.slow  # runs the local monitoring stack

DASHBOARDS = ["training.json", "production.json", "regression.json"]
HAS_SDK = importlib.util.find_spec("grafana_foundation_sdk") is not None
TRAINING_METRICS = {
    "gangplank_train_loss",
    "gangplank_train_val_loss",
    "gangplank_train_accuracy",
    "gangplank_train_val_accuracy",
    "gangplank_train_epochs_count",
    "gangplank_train_elapsed_time_seconds",
    "gangplank_train_model_parameters_count",
    "gangplank_train_running",
    "gangplank_train_model_weights",
    "gangplank_test_model_weights",
    "gangplank_test_loss",
    "gangplank_test_accuracy",
    "gangplank_test_confusion_matrix",
    "gangplank_test_f1_score",
}
PRODUCTION_METRICS = {
    "gangplank_predict_estimated_accuracy",
    "gangplank_predict_reference_accuracy",
    "gangplank_predict_accuracy_tolerance",
    "gangplank_predict_feedback_accuracy",
    "gangplank_predict_recent_feedback_accuracy",
    "gangplank_predict_quality_floor",
    "gangplank_predict_drift_signal",
    "gangplank_predict_drift_signal_recent",
    "gangplank_predict_sustained_windows",
    "gangplank_predict_window_end_timestamp_seconds",
    "gangplank_predict_window_interval_seconds",
    "gangplank_predict_feedback_precision",
    "gangplank_predict_feedback_recall",
    "gangplank_predict_feedback_f1",
    "gangplank_predict_feedback_confusion_matrix",
    "gangplank_predict_feedback_confusion_total",
    "gangplank_predict_windows_total",
    "gangplank_predict_feedback_correct_total",
    "gangplank_predict_feedback_samples_total",
    "gangplank_predict_input_psi_max",
    "gangplank_predict_input_js_max",
    "gangplank_predict_input_ks_max",
    "gangplank_predict_input_drifted_features_ratio",
    "gangplank_predict_class_share",
    "gangplank_predict_class_chi2_p_value",
    "gangplank_predict_confidence_mean",
    "gangplank_predict_entropy_mean",
    "gangplank_predict_samples_dropped_total",
    "gangplank_predict_feedback_unmatched_total",
    "gangplank_predict_input_sampling_rate",
    "gangplank_predict_cusum",
    "gangplank_predict_cusum_threshold",
    "gangplank_predict_cusum_alarms_total",
    "gangplank_predict_estimated_accuracy_error",
    "gangplank_predict_shadow_estimated_accuracy",
    "gangplank_predict_shadow_agreement",
    "gangplank_predict_reference_shadow_agreement",
    "gangplank_predict_shadow_agreed_total",
    "gangplank_predict_shadow_samples_total",
}
REGRESSION_METRICS = {
    "gangplank_predict_feedback_mae",
    "gangplank_predict_feedback_rmse",
    "gangplank_predict_reference_mae",
    "gangplank_predict_reference_rmse",
    "gangplank_predict_error_cut",
    "gangplank_predict_cusum",
    "gangplank_predict_cusum_threshold",
    "gangplank_predict_class_share",
    "gangplank_predict_class_chi2_p_value",
}
RECORDING_RULES = {
    "gangplank:predict_samples:rate5m",
    "gangplank:predict_instance_samples:rate5m",
    "gangplank:predict_feedback_accuracy:ratio",
    "gangplank:predict_drift_windows:ratio",
    "gangplank:predict_drift_windows:ratio1h",
}


def used_metrics(dashboard) -> set[str]:
    return set().union(*(metric_names(t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])))


# -- offline --------------------------------------------------------------------
@pytest.mark.parametrize("name", DASHBOARDS)
def test_structure(name):
    assert structure_problems(load_dashboard(name), provisioned_datasource_uids()) == []


@pytest.mark.parametrize(
    "name,variables,metrics",
    [
        ("training.json", ["job"], TRAINING_METRICS),
        ("production.json", ["job", "agent", "instance"], PRODUCTION_METRICS),
        ("regression.json", ["job", "agent", "instance"], REGRESSION_METRICS),
    ],
)
def test_variables_and_coverage(name, variables, metrics):
    dashboard = load_dashboard(name)
    assert [v["name"] for v in dashboard["templating"]["list"]] == variables
    assert metrics <= used_metrics(dashboard), metrics - used_metrics(dashboard)


def test_production_dashboard_shows_the_fleet_through_the_recording_rules():
    exprs = " ".join(t["expr"] for _, t in iter_targets(load_dashboard("production.json")))
    assert RECORDING_RULES <= set(re.findall(r"gangplank:[a-z0-9_]+:[a-z0-9_]+", exprs))
    assert 'ALERTS{alertstate="firing"' in exprs


@pytest.mark.skipif(
    not HAS_SDK, reason="grafana-foundation-sdk not installed: pip install 'grafana-foundation-sdk==1769699452!11.5.0'"
)
@pytest.mark.parametrize("name", DASHBOARDS)
def test_grafana_model_keeps_every_key(name):
    assert roundtrip_dropped_keys(load_dashboard(name)) == []


def test_structure_checks_catch_mistakes():
    broken = copy.deepcopy(load_dashboard("training.json"))
    broken["panels"][1]["id"] = broken["panels"][0]["id"]
    broken["panels"][2]["gridPos"]["x"] = 22
    broken["panels"][5]["gridPos"]["y"] = 5
    broken["panels"][3]["datasource"] = {"type": "prometheus", "uid": "nope"}
    broken["panels"][4]["targets"][0]["expr"] = "gangplank_test_acuracy"
    problems = "\n".join(structure_problems(broken, provisioned_datasource_uids()))
    for expected in (
        "duplicate panel id",
        "bad gridPos",
        "overlaps",
        "'nope' is not provisioned",
        "gangplank_test_acuracy",
    ):
        assert expected in problems


@pytest.mark.skipif(not HAS_SDK, reason="grafana-foundation-sdk not installed")
def test_roundtrip_catches_a_misspelled_key():
    broken = copy.deepcopy(load_dashboard("training.json"))
    broken["panels"][0]["gridpos"] = broken["panels"][0].pop("gridPos")
    assert roundtrip_dropped_keys(broken) == ["/panels/0/gridpos"]


# -- live: real runs into the local stack -------------------------------------------
@pytest.fixture(scope="module")
def trained(local_stack):
    """A tiny real fit (with validation) and evaluate pushed as job dash-train,
    with per-class F1 and a confusion matrix."""
    import keras

    from gangplank.metrics import ConfusionMatrix

    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = keras.utils.to_categorical((x[:, 0] + x[:, 1] > 0).astype("int32"), 2)
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2, activation="softmax")]
    )
    model.compile(
        optimizer="adam",
        loss="categorical_crossentropy",
        metrics=["accuracy", keras.metrics.F1Score(average=None), ConfusionMatrix(2)],
    )
    exporter = gangplank.TrainTestExporter(
        local_stack.pushgateway.address, "dash-train", histogram_buckets=gangplank.HISTOGRAM_WEIGHT_BUCKETS_1_0
    )
    model.fit(x, y, epochs=2, batch_size=32, validation_split=0.25, verbose=0, callbacks=[exporter])
    model.evaluate(x, y, verbose=0, callbacks=[exporter])
    assert exporter.close(timeout=15)
    for expr in (
        'gangplank_train_running{job="dash-train"} == 0',
        'gangplank_test_model_weights_bucket{job="dash-train"}',
        'gangplank_test_confusion_matrix{job="dash-train"}',
        'gangplank_test_f1_score{job="dash-train"}',
    ):
        assert wait_for_series(local_stack.prometheus.url, expr), f"Prometheus never saw {expr}"
    return local_stack


def test_training_dashboard_queries_return_data(trained):
    dashboard, url = load_dashboard("training.json"), trained.prometheus.url
    variables = resolve_variables(dashboard, url, {"job": ["dash-train"]})
    assert check_dashboard_queries(dashboard, url, variables) == []


def test_live_check_catches_broken_queries(trained):
    dashboard, url = copy.deepcopy(load_dashboard("training.json")), trained.prometheus.url
    panel_titled(dashboard, "Loss")["targets"][0]["expr"] = 'gangplank_train_los{job="$job"}'
    panel_titled(dashboard, "Accuracy")["targets"][0]["expr"] = (
        'rate(gangplank_train_accuracy{job="$job"}[$__rate_interval]'
    )
    problems = check_dashboard_queries(dashboard, url, {"job": ["dash-train"]})
    assert len(problems) == 2, problems
    assert "no series" in problems[0] and "bad_data" in problems[1]


@pytest.fixture(scope="module")
def drifted(local_stack):
    """A real drift fleet, job dash-prod, agent a1: replica r0 sees 2 reference-like windows then 4 drifted ones
    (shifted inputs, wrong answers), replica r1 stays clean. A shadow model (the same logits with their own noise)
    scores every row. Each window is seen by Prometheus before the next."""
    rng = np.random.default_rng(2)

    def batch(n, shift=0.0, skew=0.0):
        x = rng.normal(size=(n, 6)) + shift
        logits = np.column_stack([x[:, 0], x[:, 1], -x[:, 0] - x[:, 1]]) + np.array([skew, 0.0, 0.0])
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        y = rng.integers(0, 3, size=n) if skew else p.argmax(axis=1)
        shadow_logits = logits - np.array([skew, 0.0, 0.0]) + rng.normal(scale=0.5, size=logits.shape)
        shadow = np.exp(shadow_logits) / np.exp(shadow_logits).sum(axis=1, keepdims=True)
        return x, p, y, shadow

    x_ref, p_ref, y_ref, s_ref = batch(2000)
    ref = gangplank.DriftReference.fit(x_ref, p_ref, labels=y_ref, window_size=50, shadow=s_ref)
    plan = {"r0": [(0.0, 0.0)] * 2 + [(2.0, 3.0)] * 4, "r1": [(0.0, 0.0)] * 6}

    def observe(monitor, step):
        x, p, y, shadow = batch(50, *step)
        monitor.observe(x, p, labels=y, shadow=shadow)

    run_fleet(
        local_stack,
        ("dash-prod", "a1"),
        ref,
        plan,
        observe,
        (
            'gangplank:predict_drift_windows:ratio1h{job="dash-prod",agent="a1"}',
            'gangplank:predict_instance_samples:rate5m{job="dash-prod",agent="a1"}',
            'ALERTS{alertstate="firing",job="dash-prod",alertname="GangplankModelDegraded",instance="r0"}',
            'ALERTS{alertstate="firing",job="dash-prod",alertname="GangplankDataDrift",instance="r0"}',
        ),
    )
    return local_stack


def run_fleet(local_stack, job_agent, reference, plan, observe, expected) -> None:
    """Monitors for replicas r0 and r1 of ``job_agent``: window i of replica r is ``observe(monitor,
    plan[r][i])``; Prometheus sees each window before the next, then every ``expected`` series."""
    (job, agent), url = job_agent, local_stack.prometheus.url
    monitors = {
        name: gangplank.DriftMonitor(
            local_stack.pushgateway.address, job, reference=reference, agent=agent, grouping_key={"instance": name}
        )
        for name in plan
    }
    for i in range(len(plan["r0"])):
        for name, monitor in monitors.items():
            observe(monitor, plan[name][i])
            monitor.flush(timeout=30)
        for name in monitors:  # counters must rise between scrapes for rate() and increase()
            expr = f'gangplank_predict_windows_total{{job="{job}",agent="{agent}",instance="{name}"}} >= {i + 1}'
            assert wait_for_series(url, expr), f"Prometheus never saw {expr}"
    for monitor in monitors.values():
        monitor.close()
    for expr in expected:
        assert wait_for_series(url, expr), f"Prometheus never saw {expr}"


def test_production_dashboard_queries_return_data(drifted):
    dashboard, url = load_dashboard("production.json"), drifted.prometheus.url
    variables = resolve_variables(dashboard, url, {"job": ["dash-prod"], "agent": ["a1"]})
    assert variables["instance"] == ["r0", "r1"]
    body = prometheus_get(url, "/api/v1/query", {"query": 'ALERTS{job="dash-prod",instance="r1"}'})
    assert body["data"]["result"] == []  # the clean replica raises nothing
    assert check_dashboard_queries(dashboard, url, variables) == []


@pytest.fixture(scope="module")
def regressed(local_stack):
    """A regression fleet, job dash-reg, agent reg: replica r0's model gets noisier after two windows (its
    errors grow), r1 stays as good as the reference. Targets arrive with the predictions."""
    rng = np.random.default_rng(3)
    weights = np.array([1.0, -2.0, 0.5])

    def batch(n, noise=0.0):
        x = rng.normal(size=(n, 3))
        y = x @ weights + rng.normal(scale=0.3, size=n)
        return x, x @ weights + rng.normal(scale=noise, size=n) if noise else x @ weights, y

    ref = gangplank.DriftReference.fit(*batch(2000), task="regression", window_size=50, n_simulations=200)
    run_fleet(
        local_stack,
        ("dash-reg", "reg"),
        ref,
        {"r0": [0.0] * 2 + [1.5] * 4, "r1": [0.0] * 6},
        lambda monitor, noise: monitor.observe(*batch(50, noise)),
        (
            'gangplank:predict_feedback_mae:rate5m{job="dash-reg",agent="reg"}',
            'ALERTS{alertstate="firing",job="dash-reg",alertname="GangplankModelDegraded",instance="r0"}',
        ),
    )
    return local_stack


def test_regression_dashboard_queries_return_data(regressed):
    dashboard, url = load_dashboard("regression.json"), regressed.prometheus.url
    variables = resolve_variables(dashboard, url, {"job": ["dash-reg"], "agent": ["reg"]})
    assert variables["instance"] == ["r0", "r1"]
    body = prometheus_get(url, "/api/v1/query", {"query": 'ALERTS{job="dash-reg",instance="r1"}'})
    assert body["data"]["result"] == []  # the replica whose errors did not grow raises nothing
    assert check_dashboard_queries(dashboard, url, variables) == []
