"""A drift alert end to end: push -> Pushgateway -> Prometheus rule -> Alertmanager -> webhook, and back.

Runs its own local stack: Prometheus with the project's rules and Alertmanager
with deploy/prometheus/alertmanager.yml, whose webhook URL points at a local
sink and whose group_wait/group_interval are cut to seconds so the resolved
notification comes quickly (routing and receiver are the file's own).
"""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

from gangplank_devtools import WebhookSink, wait_for
from gangplank_devtools.localstack import LocalStack, with_webhook_url
from tests.gateway_tools import RULE_FILES
from tests.stack_tools import DEPLOY

JOB = "alert-live"
TIMEOUT = 90.0


@pytest.fixture(scope="module")
def sink():
    with WebhookSink() as server:
        yield server


@pytest.fixture(scope="module")
def stack(sink, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("alert-stack")
    config = with_webhook_url(DEPLOY / "alertmanager.yml", sink.url, workdir / "alertmanager.yml")
    text = re.sub(r"group_wait: \S+", "group_wait: 1s", config.read_text())
    config.write_text(re.sub(r"group_interval: \S+", "group_interval: 2s", text))
    with LocalStack(rule_files=RULE_FILES, alertmanager_config=config, workdir=workdir) as running:
        yield running


def push_drift(stack, agent: str, detected: int, signal: str = "input") -> None:
    registry = CollectorRegistry()
    Gauge("gangplank_predict_drift_detected", "drift in the last window", registry=registry).set(detected)
    signals = Gauge("gangplank_predict_drift_signal", "signal that decided drift", ["signal"], registry=registry)
    for name in ("input", "prediction", "confidence", "accuracy"):
        signals.labels(name).set(detected if name == signal else 0)
    pushadd_to_gateway(stack.pushgateway.address, job=JOB, registry=registry, grouping_key={"agent": agent})


def prometheus_alerts(stack, alertname: str) -> list[dict]:
    with urllib.request.urlopen(stack.prometheus.url + "/api/v1/alerts", timeout=5) as response:
        alerts = json.loads(response.read())["data"]["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == alertname and a["labels"].get("job") == JOB]


def test_drift_alert_fires_reaches_the_webhook_and_resolves(stack, sink):
    push_drift(stack, "live-a1", 1, signal="input")
    push_drift(stack, "live-a2", 0)

    firing = wait_for(lambda: [a for a in prometheus_alerts(stack, "GangplankDriftDetected") if a["state"] == "firing"], TIMEOUT)
    assert [a["labels"]["agent"] for a in firing] == ["live-a1"]  # live-a2 pushed 0: no alert

    received = wait_for(lambda: sink.alerts("GangplankDriftDetected", "firing"), TIMEOUT)
    assert received, "the webhook never received the firing alert"
    alert = received[0]
    assert alert["labels"]["agent"] == "live-a1" and alert["labels"]["severity"] == "warning"
    assert "signals at 1: input." in alert["annotations"]["description"]

    push_drift(stack, "live-a1", 0)
    assert wait_for(lambda: not prometheus_alerts(stack, "GangplankDriftDetected"), TIMEOUT), "the alert never resolved in Prometheus"
    resolved = wait_for(lambda: sink.alerts("GangplankDriftDetected", "resolved"), TIMEOUT)
    assert resolved and resolved[0]["labels"]["agent"] == "live-a1", "the webhook never received the resolution"
    assert all(a["labels"]["agent"] == "live-a1" for a in sink.alerts("GangplankDriftDetected"))
