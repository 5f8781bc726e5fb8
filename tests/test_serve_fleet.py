"""A fleet: three serve.py replicas of one agent, scraped by a real Prometheus that evaluates the project's rules.

Prometheus (Debian's) runs on 127.0.0.1 with a generated configuration:
a 1 s scrape and evaluation interval, the scrape job ``gangplank-serve`` of
deploy/prometheus/prometheus.yml with one target per replica (its
``instance`` label set to the replica's ``--instance`` name), and every rule
file of deploy/prometheus/rules. Replicas a and b serve MNIST test digits
and get their labels back by scoring id; replica c serves inverted digits.
Checked: per-replica and fleet samples/s, fleet accuracy and share of
drifted windows (the recording rules), and ``GangplankDataDrift`` firing for
replica c only, all computed from scraped metrics.
"""

from __future__ import annotations

import glob
import json
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from gangplank_devtools import free_port, wait_for
from gangplank_devtools.processes import Service, find_binary

from tests.test_serve import AUTH, MNIST, TOKEN, WINDOW, call, mnist_common, start_serve, tiny_model

ROOT = Path(__file__).resolve().parent.parent
RULE_FILES = sorted(glob.glob(str(ROOT / "deploy/prometheus/rules/*.yml")))
AGENT = "fleet_agent"
JOB = "gangplank-serve"
REPLICAS = ("replica-a", "replica-b", "replica-c")

pytestmark = [
    pytest.mark.slow,  # starts serve.py replicas and Prometheus
    pytest.mark.skipif(
        not (shutil.which("prometheus") or Path("/usr/bin/prometheus").exists()),
        reason="the Debian package prometheus is missing",
    ),
]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """{replica: base URL} of three serve.py processes, and the Prometheus scraping them."""
    if not MNIST.exists():
        pytest.skip("no local mnist.npz")
    model_path = tiny_model(tmp_path_factory.getbasetemp() / "serve-model")
    work = tmp_path_factory.mktemp("fleet")
    (work / "feedback.token").write_text(TOKEN)
    started, urls = [], {}
    prometheus = None
    try:
        for replica in REPLICAS:
            process, url, _ = start_serve(
                model_path,
                "--agent",
                AGENT,
                "--instance",
                replica,
                "--window-size",
                str(WINDOW),
                "--window-seconds",
                "3600",
                "--feedback-token-file",
                str(work / "feedback.token"),
            )
            started.append(process)
            urls[replica] = url
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": RULE_FILES,
            "scrape_configs": [
                {
                    "job_name": JOB,
                    "static_configs": [
                        {"targets": [urlparse_netloc(urls[r])], "labels": {"instance": r}} for r in REPLICAS
                    ],
                }
            ],
        }
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        prometheus = Service(
            "prometheus",
            [
                find_binary("prometheus"),
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            port,
            work,
        ).start(timeout=60)
        yield urls, prometheus
    finally:
        if prometheus is not None:
            prometheus.close()
        for process in started:
            process.terminate()
        for process in started:
            process.wait(60)


@pytest.fixture(scope="module")
def mnist_test():
    return mnist_common.load_mnist(MNIST)[1]


def urlparse_netloc(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc


def query(prometheus, expr: str, at: float | None = None) -> list[dict]:
    params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
    url = prometheus.url + "/api/v1/query?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def by_instance(result) -> dict[str, float]:
    return {r["metric"].get("instance"): float(r["value"][1]) for r in result}


def serve_window(url, images):
    """One window of images in one request; the answer's predicted classes and ids."""
    status, answer, _ = call(url + "/model/predict", {"images": images.tolist()})
    assert status == 200, answer
    return [p["prediction"] for p in answer["predictions"]], [p["id"] for p in answer["predictions"]]


def test_prometheus_shows_each_replica_and_the_fleet(fleet, mnist_test):
    urls, prometheus = fleet
    x_test, y_test = mnist_test
    assert wait_for(lambda: len(query(prometheus, f'up{{job="{JOB}"}} == 1')) == 3, 60), "the replicas are not scraped"
    assert wait_for(lambda: len(query(prometheus, f'gangplank_predict_samples_total{{agent="{AGENT}"}}')) == 3, 30)

    correct = labelled = 0
    for k, replica in enumerate(REPLICAS[:2]):  # two windows each; the labels of the first arrive in the second
        rows = slice(2 * WINDOW * k, 2 * WINDOW * k + WINDOW)
        predicted, ids = serve_window(urls[replica], x_test[rows])
        feedback = [{"id": i, "label": int(y)} for i, y in zip(ids, y_test[rows], strict=True)]
        status, answer, _ = call(urls[replica] + "/model/feedback", feedback, headers=AUTH)
        assert status == 200 and answer["matched"] == WINDOW
        correct += sum(p == y for p, y in zip(predicted, y_test[rows], strict=True))
        labelled += WINDOW
        serve_window(urls[replica], x_test[rows.stop : rows.stop + WINDOW])
    for window in range(3):  # replica c: three windows of inverted digits, enough for a sustained drift
        serve_window(urls["replica-c"], 255 - x_test[1000 + WINDOW * window : 1000 + WINDOW * (window + 1)])

    expected_windows = {"replica-a": 2, "replica-b": 2, "replica-c": 3}
    windows = f'gangplank_predict_windows_total{{job="{JOB}",agent="{AGENT}"}}'
    assert wait_for(lambda: by_instance(query(prometheus, windows)) == expected_windows, 60), query(prometheus, windows)

    # per replica and fleet samples/s, from the recording rules on scraped counters
    def rates():
        per_replica = by_instance(query(prometheus, f'gangplank:predict_instance_samples:rate5m{{agent="{AGENT}"}}'))
        fleet_rate = query(prometheus, f'gangplank:predict_samples:rate5m{{agent="{AGENT}"}}')
        return per_replica, fleet_rate

    assert wait_for(lambda: len(rates()[0]) == 3 and all(v > 0 for v in rates()[0].values()) and rates()[1], 30), (
        rates()
    )
    [fleet_rate] = query(prometheus, f'gangplank:predict_samples:rate5m{{agent="{AGENT}"}}')
    assert (
        fleet_rate["metric"]["job"] == JOB
        and "instance" not in fleet_rate["metric"]
        and float(fleet_rate["value"][1]) > 0
    )
    # At one evaluation (the rules of a group share its timestamp), the fleet's rate is the sum of the replicas'.
    at = float(query(prometheus, f'timestamp(gangplank:predict_samples:rate5m{{agent="{AGENT}"}})')[0]["value"][1])
    fleet_then = query(prometheus, f'gangplank:predict_samples:rate5m{{agent="{AGENT}"}}', at)
    replicas_then = query(prometheus, f'gangplank:predict_instance_samples:rate5m{{agent="{AGENT}"}}', at)
    assert len(replicas_then) == 3
    assert float(fleet_then[0]["value"][1]) == pytest.approx(sum(float(r["value"][1]) for r in replicas_then))

    # fleet accuracy on the labels joined by scoring id, and the share of drifted windows
    accuracy = f'gangplank:predict_feedback_accuracy:ratio{{agent="{AGENT}"}}'

    def latest(expr):  # a recording rule's latest evaluation; one taken before the last scrape lags behind
        found = query(prometheus, expr)
        return float(found[0]["value"][1]) if found else None

    assert wait_for(lambda: latest(accuracy) == pytest.approx(correct / labelled), 30), latest(accuracy)
    drifted = by_instance(query(prometheus, f'gangplank_predict_drift_detected_total{{agent="{AGENT}"}}'))
    assert drifted["replica-c"] == 3
    share = f'gangplank:predict_drift_windows:ratio{{agent="{AGENT}"}}'
    assert wait_for(lambda: latest(share) == pytest.approx(sum(drifted.values()) / 7), 30), latest(share)

    # the alert rules run on the scraped metrics: sustained drift on replica c, and only there
    def drift_alerts():
        return {
            r["metric"]["instance"]
            for r in query(prometheus, f'ALERTS{{alertname="GangplankDataDrift",alertstate="firing",agent="{AGENT}"}}')
        }

    assert wait_for(lambda: drift_alerts() == {"replica-c"}, 30), drift_alerts()
    with urllib.request.urlopen(prometheus.url + "/api/v1/rules", timeout=10) as response:
        groups = json.loads(response.read())["data"]["groups"]
    unhealthy = [
        (rule["name"], rule.get("lastError")) for group in groups for rule in group["rules"] if rule["health"] != "ok"
    ]
    assert not unhealthy and len(groups) == len({g["name"] for g in groups}) >= 3
