"""Alerts end to end: push -> Pushgateway -> Prometheus rules -> Alertmanager routes -> the example receiver.

Runs its own local stack: Prometheus with the project's prometheus.yml and rules,
Alertmanager with deploy/prometheus/alertmanager.yml whose webhook host is moved to
a real deploy/prometheus/alert_receiver.py process on loopback (paths, routes and
receivers are the file's own; group_wait/group_interval are cut to seconds).

The agents' gauges are pushed directly with prometheus_client, the way an exporter
pushes them: the rules only see what reaches the gateway.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from gangplank_devtools import free_port, wait_for
from gangplank_devtools.localstack import LocalStack
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from tests.stack_tools import DEPLOY

pytestmark = pytest.mark.slow  # runs the local monitoring stack

JOB = "alert-live"
TOKEN = "alert-receiver-test-token-0123456789"  # a test-only secret
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TIMEOUT = 90.0
WEBHOOK_HOST = "http://host.docker.internal:5001"


class Receiver:
    """deploy/prometheus/alert_receiver.py in a child process, appending to ``path``."""

    def __init__(self, path):
        self.path, self.port = path, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token_file = path.parent / "token"
        self.token_file.write_text(TOKEN + "\n")
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(DEPLOY / "alert_receiver.py"),
                "--port",
                str(self.port),
                "--output",
                str(path),
                "--token-file",
                str(self.token_file),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert wait_for(self._healthy, 20), "alert_receiver.py did not start"

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/-/healthy", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def notifications(self) -> list[dict]:
        text = self.path.read_text() if self.path.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def alerts(self, status: str | None = None) -> set[tuple[str, str, str, str]]:
        """(path, receiver, alertname, agent) of every alert of job JOB received so far."""
        return {
            (n["path"], n["receiver"], a["labels"]["alertname"], a["labels"].get("agent", ""))
            for n in self.notifications()
            for a in n["alerts"]
            if a["labels"].get("job") == JOB and (status is None or a["status"] == status)
        }

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module")
def receiver(tmp_path_factory):
    server = Receiver(tmp_path_factory.mktemp("receiver") / "alerts.jsonl")
    yield server
    server.close()


@pytest.fixture(scope="module")
def stack(receiver, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("alert-stack")
    text = (DEPLOY / "alertmanager.yml").read_text()
    assert text.count(WEBHOOK_HOST) == 2, "expected the page and chat webhooks on the example receiver"
    text = text.replace(WEBHOOK_HOST, receiver.url)
    assert text.count("credentials_file: /run/secrets/alert_receiver_token") == 2  # the compose secret
    text = text.replace("/run/secrets/alert_receiver_token", str(receiver.token_file))
    text = re.sub(r"group_wait: \S+", "group_wait: 1s", text)
    config = workdir / "alertmanager.yml"
    config.write_text(re.sub(r"group_interval: \S+", "group_interval: 2s", text))
    with LocalStack(alertmanager_config=config, workdir=workdir / "stack") as running:
        yield running


def push_agent(
    stack,
    agent: str,
    recent: dict[str, int],
    charts: dict[tuple[str, str], tuple[float, float]] | None = None,
    **gauges: float,
) -> None:
    """Replace an agent's group with its settings, drift_signal_recent per signal, its sequential charts
    (``{(evidence, chart): (cusum, threshold)}``) and the given gauges."""
    registry = CollectorRegistry()
    values = {
        "sustained_windows": 3,
        "recent_windows": 5,
        "window_interval_seconds": 60,
        "window_end_timestamp_seconds": time.time(),
        "quality_floor": 0.8,
        "min_feedback": 10,
    } | gauges
    for name, value in values.items():
        Gauge(f"gangplank_predict_{name}", name, registry=registry).set(value)
    signals = Gauge(
        "gangplank_predict_drift_signal_recent",
        "windows of the last m in which the signal fired",
        ["signal"],
        registry=registry,
    )
    for signal in ("input", "prediction", "confidence", "estimated_accuracy", "estimated_floor"):
        signals.labels(signal).set(recent.get(signal, 0))
    if charts:
        cusum = Gauge("gangplank_predict_cusum", "evidence", ["evidence", "chart"], registry=registry)
        threshold = Gauge("gangplank_predict_cusum_threshold", "threshold", ["evidence", "chart"], registry=registry)
        for (evidence, chart), (value, at) in charts.items():
            cusum.labels(evidence, chart).set(value)
            threshold.labels(evidence, chart).set(at)
    push_to_gateway(stack.pushgateway.address, job=JOB, registry=registry, grouping_key={"agent": agent})


def delete_agent(stack, agent: str) -> None:
    request = urllib.request.Request(f"{stack.pushgateway.url}/metrics/job/{JOB}/agent/{agent}", method="DELETE")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 202


def prometheus_alerts(stack, alertname: str | None = None, job: str | None = JOB) -> list[dict]:
    with urllib.request.urlopen(stack.prometheus.url + "/api/v1/alerts", timeout=5) as response:
        alerts = json.loads(response.read())["data"]["alerts"]
    return [
        a for a in alerts if alertname in (None, a["labels"]["alertname"]) and job in (None, a["labels"].get("job"))
    ]


def alertmanager_state(stack, alertname: str, agent: str) -> str | None:
    """Alertmanager's state of one alert of job JOB ("active", "suppressed"), None if it does not have it."""
    url = f"{stack.alertmanager.url}/api/v2/alerts?filter=job%3D%22{JOB}%22"
    with urllib.request.urlopen(url, timeout=5) as response:
        alerts = json.loads(response.read())
    states = [
        a["status"]["state"] for a in alerts if (a["labels"]["alertname"], a["labels"]["agent"]) == (alertname, agent)
    ]
    return states[0] if states else None


def test_critical_pages_warning_chats_healthy_stays_quiet_and_retired_resolves(stack, receiver):
    chart_in_alarm = {("labels", "small"): (9.5, 9.21)}
    push_agent(
        stack, "degraded", {"estimated_accuracy": 4}, chart_in_alarm, estimated_accuracy=0.41, reference_accuracy=0.98
    )
    push_agent(stack, "under-confident", {"estimated_accuracy": 5}, estimated_accuracy=0.9, reference_accuracy=0.95)
    push_agent(stack, "drifting", {"input": 5, "confidence": 1})
    push_agent(stack, "noisy", {"input": 1, "estimated_accuracy": 1, "estimated_floor": 1})  # one noisy window each
    push_agent(
        stack,
        "healthy",
        {},
        {("labels", "small"): (0.0, 9.21)},
        recent_feedback_accuracy=0.9,
        recent_feedback_samples=200,
        reference_accuracy=0.9,
    )

    expected = {
        ("/page", "page", "GangplankModelDegraded", "degraded"),
        ("/chat", "chat", "GangplankDataDrift", "drifting"),
        ("/chat", "chat", "GangplankAccuracyEstimateLow", "under-confident"),
    }
    assert wait_for(lambda: receiver.alerts("firing") >= expected, TIMEOUT), receiver.notifications()
    firing = {
        (a["labels"]["alertname"], a["labels"]["agent"], a["labels"]["severity"]) for a in prometheus_alerts(stack)
    }
    assert firing == {
        ("GangplankModelDegraded", "degraded", "critical"),
        ("GangplankAccuracyEstimateLow", "degraded", "warning"),  # Prometheus fires it, Alertmanager inhibits it
        ("GangplankAccuracyEstimateLow", "under-confident", "warning"),
        ("GangplankDataDrift", "drifting", "warning"),
    }
    assert wait_for(lambda: alertmanager_state(stack, "GangplankAccuracyEstimateLow", "degraded") == "suppressed", 10)
    assert receiver.alerts() == expected  # nothing for the noisy and the healthy agent, nothing inhibited or misrouted

    page = next(
        a for n in receiver.notifications() for a in n["alerts"] if a["labels"]["alertname"] == "GangplankModelDegraded"
    )
    assert "Charts in alarm: labels/small." in page["annotations"]["description"]
    assert "estimated from confidence 41%" in page["annotations"]["description"]
    assert "reference 98%" in page["annotations"]["description"]
    assert page["annotations"]["runbook_url"].endswith("README.md#runbook-gangplankmodeldegraded")
    chat = next(
        a for n in receiver.notifications() for a in n["alerts"] if a["labels"]["alertname"] == "GangplankDataDrift"
    )
    assert "signals: input." in chat["annotations"]["description"]  # confidence fired in 1 window only

    # Retiring the agents (their groups deleted) resolves the warnings at once; the page is kept for its
    # keep_firing_for (10 minutes, the unit tests pin that), and nothing new fires.
    for agent in ("degraded", "drifting", "under-confident"):
        delete_agent(stack, agent)
    warnings = expected - {("/page", "page", "GangplankModelDegraded", "degraded")}
    assert wait_for(lambda: receiver.alerts("resolved") == warnings, TIMEOUT), receiver.notifications()
    assert {(a["labels"]["alertname"], a["labels"]["agent"]) for a in prometheus_alerts(stack)} == {
        ("GangplankModelDegraded", "degraded")
    }


def test_a_killed_pushgateway_is_noticed(stack):
    assert not prometheus_alerts(stack, "GangplankPushgatewayDown", job=None)
    stack.pushgateway.stop()
    # The rule waits 2 minutes before it fires (promtool tests that part); here: it is pending at once.
    pending = wait_for(lambda: prometheus_alerts(stack, "GangplankPushgatewayDown", job="pushgateway"), TIMEOUT)
    assert pending and pending[0]["labels"]["severity"] == "critical"
    assert pending[0]["state"] in ("pending", "firing")


# -- the example receiver on its own ---------------------------------------------------
def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize(
    "body, headers, status",
    [
        (b'{"receiver": "chat", "status": "firing", "alerts": []}', {"Content-Type": "text/plain"}, 415),
        (b"not json", {"Content-Type": "application/json"}, 400),
        (b"[1, 2]", {"Content-Type": "application/json"}, 400),
        (b"{}", {"Content-Type": "application/json", "Content-Length": "99999999"}, 413),
    ],
    ids=["cross-site-form", "not-json", "not-an-object", "too-large"],
)
def test_the_receiver_refuses_what_is_not_a_webhook_payload(receiver, body, headers, status):
    before = len(receiver.notifications())
    assert post(receiver.url + "/chat", body, {**AUTH, **headers}) == status
    assert len(receiver.notifications()) == before


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-the-token-0123456789"}, {"Authorization": TOKEN}, {"Authorization": "Bearer "}],
    ids=["none", "wrong", "not-bearer", "empty"],
)
def test_the_receiver_refuses_a_forged_notification(receiver, headers):
    before = len(receiver.notifications())
    forged = {"receiver": "page", "status": "firing", "alerts": [{"labels": {"alertname": "Forged", "job": JOB}}]}
    body = json.dumps(forged).encode()
    assert post(receiver.url + "/page", body, {"Content-Type": "application/json", **headers}) == 401
    assert len(receiver.notifications()) == before


def test_the_receiver_does_not_start_without_a_token(tmp_path):
    short = tmp_path / "short"
    short.write_text("abc")
    for args, env in (([], {}), (["--token-file", str(short)], {}), ([], {"ALERT_RECEIVER_TOKEN": "abc"})):
        completed = subprocess.run(
            [sys.executable, str(DEPLOY / "alert_receiver.py"), "--port", "0", *args],
            env={"PATH": "/usr/bin:/bin", **env},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert completed.returncode == 2 and "at least 16 characters" in completed.stderr, completed.stderr


def test_the_receiver_stores_one_line_per_notification(receiver):
    before = receiver.notifications()
    payload = {"receiver": "chat", "status": "resolved", "alerts": [{"labels": {"alertname": "X", "job": "other"}}]}
    headers = {"Content-Type": "application/json", **AUTH}
    assert post(receiver.url + "/chat", json.dumps(payload).encode(), headers) == 200
    after = receiver.notifications()
    assert after[: len(before)] == before and len(after) == len(before) + 1
    assert after[-1]["path"] == "/chat" and after[-1]["alerts"] == payload["alerts"] and "received_at" in after[-1]
