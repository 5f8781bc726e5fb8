"""Grafana dashboards: offline structure checks, and every panel query run against a real Prometheus
fed by a real Keras fit/evaluate and a real drift run (Grafana itself cannot run here)."""

from __future__ import annotations

import copy
import importlib.util

import numpy as np
import pytest

import gangplank
from tests.stack_tools import (
    check_dashboard_queries,
    load_dashboard,
    panel_titled,
    metric_names,
    provisioned_datasource_uids,
    resolve_variables,
    roundtrip_dropped_keys,
    structure_problems,
    wait_for_series,
)

DASHBOARDS = ["training.json", "production.json"]
HAS_SDK = importlib.util.find_spec("grafana_foundation_sdk") is not None
TRAINING_METRICS = {
    "gangplank_train_loss", "gangplank_train_val_loss", "gangplank_train_accuracy", "gangplank_train_val_accuracy",
    "gangplank_train_epochs_count", "gangplank_train_elapsed_time_seconds", "gangplank_train_model_parameters_count",
    "gangplank_train_running", "gangplank_train_model_weights", "gangplank_test_model_weights",
    "gangplank_test_loss", "gangplank_test_accuracy",
}
PRODUCTION_METRICS = {
    "gangplank_predict_drift_detected", "gangplank_predict_windows_total", "gangplank_predict_drift_detected_total",
    "gangplank_predict_drift_signal", "gangplank_predict_samples_total", "gangplank_predict_input_psi_max",
    "gangplank_predict_input_js_max", "gangplank_predict_input_ks_max", "gangplank_predict_input_drifted_features_ratio",
    "gangplank_predict_class_share", "gangplank_predict_class_chi2_p_value", "gangplank_predict_confidence_mean",
    "gangplank_predict_entropy_mean", "gangplank_predict_feedback_accuracy", "gangplank_predict_feedback_recall",
}


def used_metrics(dashboard) -> set[str]:
    return set().union(*(metric_names(t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])))


# -- offline --------------------------------------------------------------------
@pytest.mark.parametrize("name", DASHBOARDS)
def test_structure(name):
    assert structure_problems(load_dashboard(name), provisioned_datasource_uids()) == []


@pytest.mark.parametrize("name,variables,metrics", [
    ("training.json", ["job"], TRAINING_METRICS),
    ("production.json", ["job", "agent"], PRODUCTION_METRICS),
])
def test_variables_and_coverage(name, variables, metrics):
    dashboard = load_dashboard(name)
    assert [v["name"] for v in dashboard["templating"]["list"]] == variables
    assert metrics <= used_metrics(dashboard), metrics - used_metrics(dashboard)


@pytest.mark.skipif(not HAS_SDK, reason="grafana-foundation-sdk not installed: pip install 'grafana-foundation-sdk==1769699452!11.5.0'")
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
    for expected in ("duplicate panel id", "bad gridPos", "overlaps", "'nope' is not provisioned", "gangplank_test_acuracy"):
        assert expected in problems


@pytest.mark.skipif(not HAS_SDK, reason="grafana-foundation-sdk not installed")
def test_roundtrip_catches_a_misspelled_key():
    broken = copy.deepcopy(load_dashboard("training.json"))
    broken["panels"][0]["gridpos"] = broken["panels"][0].pop("gridPos")
    assert roundtrip_dropped_keys(broken) == ["/panels/0/gridpos"]


# -- live: real runs into the local stack -------------------------------------------
@pytest.fixture(scope="module")
def trained(local_stack):
    """A tiny real fit (with validation) and evaluate pushed as job dash-train."""
    import keras

    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    exporter = gangplank.TrainTestExporter(local_stack.pushgateway.address, "dash-train", histogram_buckets=gangplank.HISTOGRAM_WEIGHT_BUCKETS_1_0)
    model.fit(x, y, epochs=2, batch_size=32, validation_split=0.25, verbose=0, callbacks=[exporter])
    model.evaluate(x, y, verbose=0, callbacks=[exporter])
    assert exporter.sender.flush(timeout=15), exporter.sender.last_error
    exporter.sender.close(timeout=1)
    for expr in ('gangplank_train_running{job="dash-train"} == 0', 'gangplank_test_model_weights_bucket{job="dash-train"}'):
        assert wait_for_series(local_stack.prometheus.url, expr), f"Prometheus never saw {expr}"
    return local_stack


def test_training_dashboard_queries_return_data(trained):
    dashboard, url = load_dashboard("training.json"), trained.prometheus.url
    variables = resolve_variables(dashboard, url, {"job": ["dash-train"]})
    assert check_dashboard_queries(dashboard, url, variables) == []


def test_live_check_catches_broken_queries(trained):
    dashboard, url = copy.deepcopy(load_dashboard("training.json")), trained.prometheus.url
    panel_titled(dashboard, "Loss")["targets"][0]["expr"] = 'gangplank_train_los{job="$job"}'
    panel_titled(dashboard, "Accuracy")["targets"][0]["expr"] = 'rate(gangplank_train_accuracy{job="$job"}[$__rate_interval]'
    problems = check_dashboard_queries(dashboard, url, {"job": ["dash-train"]})
    assert len(problems) == 2, problems
    assert "no series" in problems[0] and "bad_data" in problems[1]


@pytest.fixture(scope="module")
def drifted(local_stack):
    """A real drift run: two reference-like windows, then two drifted ones, as job dash-prod, agent a1."""
    if not hasattr(gangplank, "ProductionDriftExporter"):
        pytest.skip("gangplank.ProductionDriftExporter is not there yet")
    rng = np.random.default_rng(2)

    def batch(n, shift=0.0, skew=0.0):
        x = rng.normal(size=(n, 6)) + shift
        logits = np.column_stack([x[:, 0], x[:, 1], -x[:, 0] - x[:, 1]]) + np.array([skew, 0.0, 0.0])
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        y = rng.integers(0, 3, size=n) if skew else p.argmax(axis=1)
        return x, p, y

    x_ref, p_ref, y_ref = batch(600)
    ref = gangplank.DriftReference.fit(x_ref, p_ref, labels=y_ref)
    with gangplank.ProductionDriftExporter(local_stack.pushgateway.address, "dash-prod", ref, agent="a1", window_size=50) as exp:
        for shift, skew in ((0.0, 0.0), (0.0, 0.0), (2.0, 3.0), (2.0, 3.0)):
            x, p, y = batch(50, shift, skew)
            exp.observe(x, p, labels=y)
        exp.close()
    assert wait_for_series(local_stack.prometheus.url, 'gangplank_predict_windows_total{job="dash-prod",agent="a1"} >= 4'), "Prometheus never saw 4 windows"
    # rate() over the counters needs two scrapes of the final state
    assert wait_for_series(local_stack.prometheus.url, 'count_over_time(gangplank_predict_samples_total{job="dash-prod",agent="a1"}[1m]) >= 2')
    return local_stack


def test_production_dashboard_queries_return_data(drifted):
    dashboard, url = load_dashboard("production.json"), drifted.prometheus.url
    variables = resolve_variables(dashboard, url, {"job": ["dash-prod"], "agent": ["a1"]})
    assert check_dashboard_queries(dashboard, url, variables) == []
