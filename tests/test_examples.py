"""The MNIST examples end to end: scripts/demo.sh (shortened) and the HTTP server.

``test_demo_*`` run the one-command demo as a user would (``bash
scripts/demo.sh``) with the interpreter of this test run, free ports and a
shortened story: 3,000 training images, one epoch, three windows per
scenario. The demo starts its own local stack (real Pushgateway, Prometheus
and Alertmanager with the project's rules), trains, evaluates, runs the three
production scenarios at once and waits for Prometheus's alerts; it writes what
it read from the gateway and Prometheus to a summary file checked here.
The server test uses the model that run trained, and a fresh Pushgateway.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from gangplank_devtools import free_port, read_gateway, value, wait_for

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples/mnist"
sys.path.append(str(EXAMPLES))  # for mnist_common and serve; appended so that nothing else is shadowed

import mnist_common  # noqa: E402
import serve  # noqa: E402

GOOD, BAD = "MNIST_Multiclass", ("MNIST_Multiclass_wrong_inputs", "MNIST_Multiclass_wrong_model")
WINDOWS = 3


def local_mnist() -> Path | None:
    """A local mnist.npz: $MNIST_NPZ, the shared offline copy, or Keras's cache."""
    for candidate in (os.environ.get("MNIST_NPZ"), ROOT.parent / "shared/data/mnist.npz", Path.home() / ".keras/datasets/mnist.npz"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


MNIST = local_mnist()
needs_stack = pytest.mark.skipif(
    not all(shutil.which(b) or Path(f"/usr/bin/{b}").exists() for b in ("prometheus", "prometheus-pushgateway", "prometheus-alertmanager")),
    reason="the Debian packages prometheus, prometheus-pushgateway, prometheus-alertmanager are missing",
)
needs_mnist = pytest.mark.skipif(MNIST is None, reason="no local mnist.npz (set MNIST_NPZ)")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{proc.name}: {cmdline}")
    return found


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One shortened run of scripts/demo.sh: (completed process, summary dict, ports, work dir)."""
    if MNIST is None:
        pytest.skip("no local mnist.npz (set MNIST_NPZ)")
    work = tmp_path_factory.mktemp("demo")
    ports = {"PGW_PORT": free_port(), "PROM_PORT": free_port(), "AM_PORT": free_port()}
    env = {**os.environ, "PYTHON": sys.executable, "MNIST_NPZ": str(MNIST), "TMPDIR": str(work),
           **{k: str(v) for k, v in ports.items()}}
    summary = work / "summary.json"
    completed = subprocess.run(
        ["bash", str(ROOT / "scripts/demo.sh"), "--out", str(work / "models"), "--limit", "3000", "--epochs", "1",
         "--wrong-epochs", "1", "--batch-size", "32", "--windows", str(WINDOWS), "--summary", str(summary)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=400,
    )
    if completed.returncode != 0 or not summary.exists():
        pytest.fail(f"demo.sh exited {completed.returncode}\n--- stdout\n{completed.stdout[-6000:]}\n--- stderr\n{completed.stderr[-4000:]}")
    return completed, json.loads(summary.read_text()), ports, work


def gateway_value(lines, name, **labels):
    """The value of the one gateway line ``name{...labels...}``."""
    hits = [line for line in lines if line.startswith(name + "{")
            and all(f'{k}="{v}"' in line for k, v in labels.items())]
    assert len(hits) == 1, f"{name}{labels}: {hits}"
    return float(hits[0].rsplit(" ", 1)[1])


@needs_stack
@needs_mnist
def test_demo_pushes_training_and_evaluation_to_the_gateway(demo):
    _, summary, _, _ = demo
    lines = summary["gateway"]
    assert gateway_value(lines, "gangplank_train_model_parameters_count", job="mnist") == 104202
    assert gateway_value(lines, "gangplank_train_epochs_count", job="mnist") == 1
    assert gateway_value(lines, "gangplank_train_running", job="mnist") == 0
    assert gateway_value(lines, "gangplank_train_val_accuracy", job="mnist") > 0.8
    for name in ("gangplank_train_loss", "gangplank_train_accuracy", "gangplank_train_val_loss", "gangplank_train_elapsed_time_seconds"):
        assert np.isfinite(gateway_value(lines, name, job="mnist"))
    # evaluate added the test metrics beside the training ones, with the weight histogram
    assert gateway_value(lines, "gangplank_test_accuracy", job="mnist") > 0.8
    assert np.isfinite(gateway_value(lines, "gangplank_test_loss", job="mnist"))
    assert gateway_value(lines, "gangplank_test_model_weights_count", job="mnist") == 104202
    assert gateway_value(lines, "gangplank_test_model_weights_bucket", job="mnist", le="+Inf") == 104202
    # the wrong model trained under its own job
    assert gateway_value(lines, "gangplank_train_epochs_count", job="mnist_wrong") == 1


@needs_stack
@needs_mnist
def test_demo_finds_drift_for_the_bad_agents_only(demo):
    completed, summary, _, _ = demo
    lines = summary["gateway"]
    for agent in (GOOD, *BAD):
        assert gateway_value(lines, "gangplank_predict_windows_total", agent=agent) == WINDOWS
        assert gateway_value(lines, "gangplank_predict_samples_total", agent=agent) == WINDOWS * 200
        assert gateway_value(lines, "gangplank_predict_feedback_samples_total", agent=agent) > 0  # late labels arrived
    assert gateway_value(lines, "gangplank_predict_drift_detected_total", agent=GOOD) == 0
    assert gateway_value(lines, "gangplank_predict_drift_detected", agent=GOOD) == 0
    for agent in BAD:
        assert gateway_value(lines, "gangplank_predict_drift_detected", agent=agent) == 1
    assert gateway_value(lines, "gangplank_predict_drift_signal", agent=BAD[0], signal="input") == 1  # inverted pixels
    # The wrong model drifts from the first window; the inputs only from the inverted window 3 on.
    assert gateway_value(lines, "gangplank_predict_drift_detected_total", agent=BAD[1]) == WINDOWS
    out = completed.stdout
    assert re.search(rf"\[{BAD[0]}\] window +1: 200 samples, drift no", out)
    assert re.search(rf"\[{BAD[0]}\] window +3 \[inverted\]: 200 samples, drift YES", out)
    assert len(re.findall(rf"\[{GOOD}\] window +\d+: 200 samples, drift no", out)) == WINDOWS

    firing = {(a["labels"]["alertname"], a["labels"].get("agent")) for a in summary["alerts"] if a["state"] == "firing"}
    assert {("GangplankDriftDetected", agent) for agent in BAD} <= firing
    assert not [alert for alert in firing if alert[1] == GOOD]
    assert summary["ok"] and "OK: GangplankDriftDetected is firing for" in out


@needs_stack
@needs_mnist
def test_demo_leaves_no_process_running(demo):
    completed, summary, ports, work = demo
    assert "stopping the local stack" in completed.stdout and "demo run time:" in completed.stdout
    for port in ports.values():
        assert not port_open(port), f"something still listens on {port}"
    assert processes_mentioning(str(work)) == []
    assert not list(work.glob("gangplank-demo.*")), "the demo's temporary directory was not removed"


# -- the server -------------------------------------------------------------------------
@pytest.fixture
def server(demo, pushgateway):
    """serve.py on a free port with the demo's model, pushing to a fresh gateway: its base URL."""
    _, _, _, work = demo
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "serve.py"), "--model", str(work / "models" / mnist_common.MODEL_FILE),
         "--port", "0", "--pgw", pushgateway.address],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    url = wait_for(lambda: next((m.group(1) for m in map(re.compile(r"on (http://\S+)/model/predict").search, lines) if m), None), 60)
    if not url:
        process.kill()
        pytest.fail(f"serve.py did not start: {lines}")
    yield url, process, lines
    if process.poll() is None:
        process.kill()
        process.wait(10)


def post(url, body, content_type="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def assert_bad_requests_get_400(predict):
    good = [[0] * 28 for _ in range(28)]
    cases = {
        "not json": b"{image: 1",
        "no image": {"picture": good},
        "both": {"image": good, "images": [good]},
        "wrong shape": {"image": [[0] * 27 for _ in range(28)]},
        "too few pixels": {"image": [0] * 783},
        "grey level above 255": {"image": [[300] * 28 for _ in range(28)]},
        "scaled above 1": {"image": [0.5] * 783 + [2.5]},
        "text pixels": {"image": ["0"] * 784},
        "bool pixels": {"image": [True] * 784},
        "empty list": {"images": []},
    }
    for case, body in cases.items():
        status, answer = post(predict, body)
        assert status == 400 and answer["status"] == "error" and answer["message"], case
    status, answer = post(predict.replace("/model/predict", "/model/nothing"), {"image": good})
    assert status == 404 and answer["status"] == "error"


@needs_stack
@needs_mnist
def test_serve_predicts_over_http_answers_errors_and_pushes_drift(server, pushgateway):
    url, process, lines = server
    _, (x_test, y_test) = mnist_common.load_mnist(MNIST)
    predict = url + "/model/predict"

    status, body = post(predict, {"image": x_test[0].tolist()})  # 28 rows of grey levels 0-255
    assert status == 200 and body["status"] == "ok"
    [answer] = body["predictions"]
    assert set(answer) == {"prediction", "probability"} and 0 <= answer["prediction"] <= 9 and 0 < answer["probability"] <= 1

    # 199 more in one request, as flat lists of scaled floats: one window of 200 closes and is pushed
    images = (x_test[1:200].reshape(199, 784) / 255.0).tolist()
    status, body = post(predict, {"images": images})
    assert status == 200 and len(body["predictions"]) == 199
    predicted = np.array([answer["prediction"]] + [p["prediction"] for p in body["predictions"]])
    assert np.mean(predicted == y_test[:200]) > 0.8
    samples = wait_for(lambda: read_gateway(pushgateway.url).get(
        ("gangplank_predict_samples_total", (("agent", "MNIST_Multiclass_serve"), ("instance", ""), ("job", "mnist")))), 10)
    assert samples == 200

    # a burst of 32 clients at once: every one answered, every image observed
    results = []

    def client(i):
        try:
            results.append(post(predict, {"image": x_test[200 + i].tolist()})[0])
        except OSError as exc:  # e.g. a connection reset by a full listen backlog
            results.append(repr(exc))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 32

    with urllib.request.urlopen(url + "/model/metadata", timeout=10) as response:
        assert json.loads(response.read())["parameters"] == 104202
    assert_bad_requests_get_400(predict)

    # SIGTERM: the server stops and pushes its last, partial window (the 32 images)
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    scrape = read_gateway(pushgateway.url)
    assert value(scrape, "gangplank_predict_windows_total", agent="MNIST_Multiclass_serve") == 2
    assert value(scrape, "gangplank_predict_samples_total", agent="MNIST_Multiclass_serve") == 232


# -- small pieces, no stack -----------------------------------------------------------------
def test_wrong_model_training_set_has_under_5_percent_even_digits():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 60000)
    images = np.zeros((labels.size, 28, 28), np.uint8)
    _, kept = mnist_common.mostly_odd(images, labels)
    assert np.all(np.isin(labels[labels % 2 == 1], kept))  # every odd digit kept
    assert (kept % 2 == 1).sum() == (labels % 2 == 1).sum()
    assert 0.01 < np.mean(kept % 2 == 0) < 0.05
    _, again = mnist_common.mostly_odd(images, labels)
    assert np.array_equal(kept, again)  # fixed seed


def test_load_mnist_reads_a_local_npz_without_pickle(tmp_path):
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=np.zeros((3, 28, 28), np.uint8), y_train=np.arange(3), x_test=np.ones((2, 28, 28), np.uint8), y_test=np.arange(2))
    (x_train, y_train), (x_test, y_test) = mnist_common.load_mnist(path)
    assert x_train.shape == (3, 28, 28) and y_test.tolist() == [0, 1]
    np.savez(path, x_train=np.zeros(3, dtype=object), y_train=np.arange(3), x_test=np.ones((2, 28, 28), np.uint8), y_test=np.arange(2))
    with pytest.raises(ValueError, match="pickle"):
        mnist_common.load_mnist(path)


def test_parse_images_scales_grey_levels_and_floats_alike():
    grey = np.arange(784).reshape(28, 28) % 256
    from_grey = serve.parse_images({"image": grey.tolist()})
    from_floats = serve.parse_images({"images": [(grey.reshape(784) / 255.0).tolist()]})
    assert from_grey.shape == (1, 28, 28, 1) and from_grey.dtype == np.float32
    np.testing.assert_allclose(from_grey, from_floats, atol=1e-6)
    with pytest.raises(serve.BadRequest, match="0..255"):
        serve.parse_images({"image": [256] * 784})
    with pytest.raises(serve.BadRequest, match="finite"):
        serve.parse_images({"image": [float("nan")] * 784})
