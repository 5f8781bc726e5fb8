"""The MNIST examples end to end: scripts/demo.sh (shortened), as a user would run it.

``test_demo_*`` run the one-command demo (``bash scripts/demo.sh --keep``) with
the interpreter of this test run, free ports and a shortened story: 3,000
training images, one epoch, five windows per scenario (the inputs inverted
from window 3, so that drift holds in 3 of the last 5 windows). The demo
starts its own local stack (real Pushgateway, Prometheus and Alertmanager
with the project's rules), trains, evaluates, runs the three production
scenarios at once, waits for Prometheus's alerts and draws its picture from
Prometheus; it writes what it read to a summary file checked here. With
``--keep`` the stack outlives the demo; the test looks at it, then stops it
the way the demo says. ``demo.sh --help`` checks the cleanup without --keep.
The HTTP server has its own tests (test_serve*.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from gangplank_devtools import free_port

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples/mnist"
sys.path.append(str(EXAMPLES))  # for mnist_common; appended so that nothing else is shadowed

import mnist_common  # noqa: E402

pytestmark = pytest.mark.slow  # runs the MNIST example scripts and the local stack

GOOD, BAD = "MNIST_Multiclass", ("MNIST_Multiclass_wrong_inputs", "MNIST_Multiclass_wrong_model")
WINDOWS = 5
PRODUCTION_ALERTS = {"GangplankDataDrift", "GangplankModelDegraded", "GangplankAgentSilent"}


def local_mnist() -> Path | None:
    """A local mnist.npz: $MNIST_NPZ, the shared offline copy, or Keras's cache."""
    for candidate in (
        os.environ.get("MNIST_NPZ"),
        ROOT.parent / "shared/data/mnist.npz",
        Path.home() / ".keras/datasets/mnist.npz",
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


MNIST = local_mnist()
needs_stack = pytest.mark.skipif(
    not all(
        shutil.which(b) or Path(f"/usr/bin/{b}").exists()
        for b in ("prometheus", "prometheus-pushgateway", "prometheus-alertmanager")
    ),
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


def demo_env(work: Path, ports: dict) -> dict:
    return {
        **os.environ,
        "PYTHON": sys.executable,
        "MNIST_NPZ": str(MNIST or ""),
        "TMPDIR": str(work),
        **{k: str(v) for k, v in ports.items()},
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One shortened run of ``scripts/demo.sh --keep``: (completed process, summary, ports, work dir, stop command)."""
    if MNIST is None:
        pytest.skip("no local mnist.npz (set MNIST_NPZ)")
    pytest.importorskip("matplotlib", reason="matplotlib is in the examples extra: pip install -e '.[examples]'")
    work = tmp_path_factory.mktemp("demo")
    ports = {"PGW_PORT": free_port(), "PROM_PORT": free_port(), "AM_PORT": free_port()}
    summary = work / "summary.json"
    completed = subprocess.run(
        [
            "bash",
            str(ROOT / "scripts/demo.sh"),
            "--keep",
            "--out",
            str(work / "models"),
            "--limit",
            "3000",
            "--epochs",
            "1",
            "--wrong-epochs",
            "1",
            "--batch-size",
            "32",
            "--windows",
            str(WINDOWS),
            "--summary",
            str(summary),
        ],
        cwd=ROOT,
        env=demo_env(work, ports),
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    stop = re.search(r"^stop it with: +(.+)$", completed.stdout, re.MULTILINE)
    try:
        if completed.returncode != 0 or not summary.exists() or not stop:
            pytest.fail(
                f"demo.sh exited {completed.returncode}\n--- stdout\n{completed.stdout[-6000:]}\n"
                f"--- stderr\n{completed.stderr[-4000:]}"
            )
        yield completed, json.loads(summary.read_text()), ports, work, stop.group(1)
    finally:
        if stop:
            subprocess.run(stop.group(1).split(), cwd=ROOT, check=False, capture_output=True, timeout=60)


def gateway_value(lines, name, **labels):
    """The value of the one gateway line ``name{...labels...}``."""
    hits = [
        line for line in lines if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items())
    ]
    assert len(hits) == 1, f"{name}{labels}: {hits}"
    return float(hits[0].rsplit(" ", 1)[1])


@needs_stack
@needs_mnist
def test_demo_pushes_training_and_evaluation_to_the_gateway(demo):
    _, summary, _, _, _ = demo
    lines = summary["gateway"]
    assert gateway_value(lines, "gangplank_train_model_parameters_count", job="mnist") == 104202
    assert gateway_value(lines, "gangplank_train_epochs_count", job="mnist") == 1
    assert gateway_value(lines, "gangplank_train_running", job="mnist") == 0
    assert gateway_value(lines, "gangplank_train_val_accuracy", job="mnist") > 0.8
    for name in (
        "gangplank_train_loss",
        "gangplank_train_accuracy",
        "gangplank_train_val_loss",
        "gangplank_train_elapsed_time_seconds",
    ):
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
    completed, summary, _, _, _ = demo
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
    # The wrong model drifts from the first window on; the inputs from the inverted window 3 on.
    assert gateway_value(lines, "gangplank_predict_drift_detected_total", agent=BAD[1]) >= 3
    assert gateway_value(lines, "gangplank_predict_drift_detected_total", agent=BAD[0]) == WINDOWS - 2
    out = completed.stdout
    assert re.search(rf"\[{BAD[0]}\] window +1: 200 samples, drift no", out)
    assert re.search(rf"\[{BAD[0]}\] window +3 \[inverted\]: 200 samples, drift YES", out)
    assert len(re.findall(rf"\[{GOOD}\] window +\d+: 200 samples, drift no", out)) == WINDOWS

    firing = {(a["labels"]["alertname"], a["labels"].get("agent")) for a in summary["alerts"] if a["state"] == "firing"}
    assert {("GangplankDataDrift", agent) for agent in BAD} <= firing
    assert not [alert for alert in firing if alert[1] == GOOD and alert[0] in PRODUCTION_ALERTS]
    assert summary["ok"] and "OK: GangplankDataDrift is firing for" in out


@needs_stack
@needs_mnist
def test_demo_draws_its_picture_from_prometheus(demo):
    from PIL import Image

    completed, summary, _, _, _ = demo
    plot = summary["plot"]
    assert f"picture: {plot['path']}" in completed.stdout
    with Image.open(plot["path"]) as picture:
        assert picture.format == "PNG" and picture.width >= 1000 and picture.height >= 1200
        colours = picture.convert("RGB").getcolors(1 << 20)
    assert len(colours) > 50  # lines, text and panels, not a blank canvas
    assert plot["epochs"] == {"mnist": [1], "mnist_wrong": [1]}
    assert set(plot["windows"]) == {GOOD, *BAD}
    for agent, seen in plot["windows"].items():  # scraped every second: most windows are seen
        assert set(seen) <= set(range(1, WINDOWS + 1)) and len(seen) >= 2, (agent, seen)
    assert not plot["fired"].get(GOOD)
    assert any("input" in names for names in plot["fired"][BAD[0]].values())
    assert {("GangplankDataDrift", agent) for agent in BAD} <= {tuple(a) for a in plot["alerts"]}


@needs_stack
@needs_mnist
def test_demo_keep_leaves_the_stack_running_and_says_how_to_stop_it(demo):
    completed, _, ports, work, stop = demo
    out = completed.stdout
    assert "The stack keeps running (--keep)" in out and "stopping the local stack" not in out
    for name, port in (
        ("Prometheus", ports["PROM_PORT"]),
        ("Pushgateway", ports["PGW_PORT"]),
        ("Alertmanager", ports["AM_PORT"]),
    ):
        assert re.search(rf"^{name} +http://127\.0\.0\.1:{port}\b", out, re.MULTILINE), name
        assert port_open(port), f"{name} is not running on {port}"
    with urllib.request.urlopen(f"http://127.0.0.1:{ports['PROM_PORT']}/api/v1/alerts", timeout=10) as response:
        alerts = json.loads(response.read())["data"]["alerts"]
    assert {"GangplankDataDrift"} <= {a["labels"]["alertname"] for a in alerts}
    # The demo's Pushgateway takes only authenticated requests; the demo pushed with the password it names.
    password_file = re.search(r"^Pushgateway .*password in (\S+)\)$", out, re.MULTILINE).group(1)
    group = f"http://127.0.0.1:{ports['PGW_PORT']}/metrics/job/intruder"
    anonymous = urllib.request.Request(group, data=b"gangplank_predict_sustained_windows 1e9\n", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(anonymous, timeout=10)
    assert refused.value.code == 401
    reader = urllib.request.Request(
        f"http://127.0.0.1:{ports['PGW_PORT']}/metrics", headers=mnist_common.auth_headers(password_file)
    )
    with urllib.request.urlopen(reader, timeout=10) as response:
        assert "gangplank_predict_windows_total" in response.read().decode()

    stopped = subprocess.run(stop.split(), cwd=ROOT, check=False, capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 0 and "stopped the local stack" in stopped.stdout, stopped
    for port in ports.values():
        assert not port_open(port), f"something still listens on {port}"
    assert processes_mentioning(str(work)) == []


@needs_stack
def test_demo_without_keep_stops_the_stack_and_cleans_up(tmp_path):
    ports = {"PGW_PORT": free_port(), "PROM_PORT": free_port(), "AM_PORT": free_port()}
    completed = subprocess.run(
        ["bash", str(ROOT / "scripts/demo.sh"), "--help"],
        cwd=ROOT,
        env=demo_env(tmp_path, ports),
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "usage: demo.py" in completed.stdout and "--plot" in completed.stdout
    assert "stopping the local stack" in completed.stdout and "demo run time:" in completed.stdout
    for port in ports.values():
        assert not port_open(port), f"something still listens on {port}"
    assert processes_mentioning(str(tmp_path)) == []
    assert not list(tmp_path.glob("gangplank-demo.*")), "the demo's temporary directory was not removed"


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
    np.savez(
        path,
        x_train=np.zeros((3, 28, 28), np.uint8),
        y_train=np.arange(3),
        x_test=np.ones((2, 28, 28), np.uint8),
        y_test=np.arange(2),
    )
    (x_train, _), (_, y_test) = mnist_common.load_mnist(path)
    assert x_train.shape == (3, 28, 28) and y_test.tolist() == [0, 1]
    np.savez(
        path,
        x_train=np.zeros(3, dtype=object),
        y_train=np.arange(3),
        x_test=np.ones((2, 28, 28), np.uint8),
        y_test=np.arange(2),
    )
    with pytest.raises(ValueError, match="pickle"):
        mnist_common.load_mnist(path)
