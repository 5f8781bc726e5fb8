"""gangplank_devtools.localstack: the configuration it derives, and the servers it supervises (real ones)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from gangplank_devtools import StatusServer, free_port, start_pushgateway, wait_for
from gangplank_devtools import prometheus_config as promconfig
from gangplank_devtools.localstack import LocalStack, down
from gangplank_devtools.ports import listens_on
from gangplank_devtools.processes import is_running, process_start, spawn

from tests.gateway_tools import ROOT, RULE_FILES

pytestmark = pytest.mark.slow  # starts and kills the local monitoring stack

DEPLOY_CONFIG = ROOT / "deploy/prometheus/prometheus.yml"
ADDRESSES = {"pushgateway": "127.0.0.1:19091", "prometheus": "127.0.0.1:19090", "alertmanager": "127.0.0.1:19093"}
HANG_GUARD = 90  # seconds; a stack is ready in about 6


# -- the configuration, derived from deploy/prometheus/prometheus.yml -------------------------------------------
def targets_of(sections) -> list[str]:
    return [t for section in sections for static in section.get("static_configs", []) for t in static["targets"]]


def test_config_has_the_compose_jobs_and_rules_with_every_target_on_loopback(tmp_path):
    compose = promconfig.load(DEPLOY_CONFIG)
    config = promconfig.loopback_config(DEPLOY_CONFIG, ADDRESSES, scrape_interval="1s", evaluation_interval="2s")

    assert [j["job_name"] for j in config["scrape_configs"]] == [j["job_name"] for j in compose["scrape_configs"]]
    assert [j.get("honor_labels") for j in config["scrape_configs"]] == [
        j.get("honor_labels") for j in compose["scrape_configs"]
    ]
    assert config["rule_files"] == RULE_FILES and RULE_FILES
    jobs = {j["job_name"]: targets_of([j]) for j in config["scrape_configs"]}
    assert jobs["pushgateway"] == [ADDRESSES["pushgateway"]]
    assert targets_of(config["alerting"]["alertmanagers"]) == [ADDRESSES["alertmanager"]]
    assert set(targets_of(config["scrape_configs"])) <= set(ADDRESSES.values())
    assert config["global"]["scrape_interval"] == "1s" and config["global"]["evaluation_interval"] == "2s"
    assert compose["global"]["scrape_interval"] != "1s"  # the source is left alone

    written = promconfig.write(config, tmp_path / "prometheus.yml")
    check = subprocess.run(["promtool", "check", "config", str(written)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def test_config_keeps_its_intervals_unless_told(tmp_path):
    config = promconfig.loopback_config(DEPLOY_CONFIG, ADDRESSES)
    assert config["global"] == promconfig.load(DEPLOY_CONFIG)["global"]


def test_config_refuses_a_target_that_is_not_a_stack_service(tmp_path):
    source = tmp_path / "prometheus.yml"
    source.write_text(
        DEPLOY_CONFIG.read_text() + "  - job_name: grafana\n    static_configs:\n      - targets: ['grafana:3000']\n"
    )
    with pytest.raises(ValueError, match="grafana:3000"):
        promconfig.loopback_config(source, ADDRESSES)


# -- supervision ------------------------------------------------------------------------------------------------
def test_a_service_is_ready_only_if_it_holds_the_port_itself():
    with StatusServer(status=200) as other:
        port = int(other.address.rsplit(":", 1)[1])
        assert listens_on(os.getpid(), port)
        sleeper = subprocess.Popen(["sleep", "60"])
        try:
            assert not listens_on(sleeper.pid, port)
        finally:
            sleeper.kill()
            sleeper.wait()


def test_temporary_directories_are_removed_when_services_stop():
    with start_pushgateway() as gateway:
        gateway_dir = gateway.workdir
        assert gateway_dir.is_dir()
    assert not gateway_dir.exists()

    stack = LocalStack(lifecycle=True)
    stack_dir = stack.workdir
    with stack.start(wait_hooked_up=False):
        assert (stack_dir / "prometheus.yml").is_file()
        reload = urllib.request.Request(stack.prometheus.url + "/-/reload", method="POST")
        with urllib.request.urlopen(reload, timeout=10) as response:  # lifecycle=True: the endpoint is on
            assert response.status == 200
    assert not stack_dir.exists()


def up_command(pid_file: Path, ports: dict[str, int]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gangplank_devtools.localstack",
        "up",
        "--pid-file",
        str(pid_file),
        *(arg for name, port in ports.items() for arg in (f"--{name}-port", str(port))),
    ]


def run_down(pid_file: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gangplank_devtools.localstack", "down", "--pid-file", str(pid_file)],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
    )


@pytest.fixture
def runner(tmp_path):
    """``runner()`` starts ``up`` in a child process with its own TMPDIR; (process, pid file record, TMPDIR)."""
    started = []
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    ports = {name: free_port() for name in ("pushgateway", "prometheus", "alertmanager")}

    def start():
        pid_file = tmp_path / "stack.pid"
        process = subprocess.Popen(
            up_command(pid_file, ports), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        started.append(process)
        assert wait_for(lambda: pid_file.exists() or process.poll() is not None, HANG_GUARD), "up never got ready"
        assert process.poll() is None, process.communicate()
        return process, pid_file, json.loads(pid_file.read_text())

    start.ports, start.env, start.tmpdir = ports, env, tmp_path / "tmp"
    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
        process.communicate(timeout=HANG_GUARD)


def servers_running(record) -> list[str]:
    return [name for name, s in record["services"].items() if is_running(s["pid"], s["start"])]


def test_second_up_on_taken_ports_fails_loudly_and_the_first_stack_is_unharmed(runner, tmp_path):
    first, pid_file, record = runner()
    assert sorted(servers_running(record)) == ["alertmanager", "prometheus", "pushgateway"]

    second = subprocess.run(
        up_command(tmp_path / "second.pid", runner.ports),
        env=runner.env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
    )
    assert second.returncode == 1
    assert (
        f"port(s) already in use on 127.0.0.1: pushgateway {runner.ports['pushgateway']}, alertmanager" in second.stderr
    )
    assert not (tmp_path / "second.pid").exists()

    assert first.poll() is None
    assert sorted(servers_running(record)) == ["alertmanager", "prometheus", "pushgateway"]
    gateway = record["services"]["pushgateway"]["pid"]
    assert listens_on(gateway, runner.ports["pushgateway"])
    quit_ = urllib.request.Request(f"http://127.0.0.1:{runner.ports['prometheus']}/-/quit", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:  # lifecycle endpoints are off by default
        urllib.request.urlopen(quit_, timeout=10)
    assert refused.value.code == 403

    stopped = run_down(pid_file)
    assert stopped.returncode == 0 and f"stopped the local stack (pid {first.pid})" in stopped.stdout
    assert first.wait(HANG_GUARD) == 0
    assert servers_running(record) == []
    assert not pid_file.exists()
    assert list(runner.tmpdir.iterdir()) == []  # its temporary directory is gone


def test_servers_die_with_a_killed_runner_and_down_cleans_up_after_it(runner):
    process, pid_file, record = runner()
    workdir = Path(record["workdir"])
    assert record["temporary"] and workdir.parent == runner.tmpdir

    os.kill(process.pid, signal.SIGKILL)
    process.wait(HANG_GUARD)
    assert wait_for(lambda: not servers_running(record), HANG_GUARD), f"still running: {servers_running(record)}"
    assert pid_file.exists() and workdir.exists()  # a killed runner cleans nothing up itself

    cleaned = run_down(pid_file)
    assert cleaned.returncode == 0
    assert f"its runner, pid {process.pid}, had exited" in cleaned.stdout and str(workdir) in cleaned.stdout
    assert not pid_file.exists() and not workdir.exists()
    assert run_down(pid_file).stdout.startswith("no local stack running")


def test_down_stops_servers_that_a_dead_runner_left_behind(tmp_path):
    workdir = tmp_path / "gangplank-stack-left"
    workdir.mkdir()
    server = spawn(["sleep", "600"], tmp_path / "sleep.log")  # stands in for a server that outlived its runner
    pid_file = tmp_path / "stack.pid"
    pid_file.write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "start": "0",  # a start time that is not ours: the recorded runner is gone
                "services": {"pushgateway": {"pid": server.pid, "start": process_start(server.pid)}},
                "workdir": str(workdir),
                "temporary": True,
            }
        )
    )
    try:
        status, message = down(pid_file)
        assert server.wait(HANG_GUARD) == -signal.SIGTERM
    finally:
        if server.poll() is None:
            server.kill()
    assert status == 0
    assert f"stopped its leftover servers: pushgateway (pid {server.pid})" in message
    assert not workdir.exists() and not pid_file.exists()


def test_down_leaves_a_file_that_is_not_a_pid_file_alone(tmp_path):
    stranger = tmp_path / "notes.txt"
    stranger.write_text("12345\n")
    status, message = down(stranger)
    assert status == 1 and "not a local stack pid file" in message
    assert stranger.read_text() == "12345\n"


# -- the Pushgateway behind basic auth ---------------------------------------------------------------------------
def test_config_moves_the_pushgateway_password_file_or_drops_basic_auth_without_one():
    secret = "/run/secrets/pushgateway_password"
    compose = promconfig.load(DEPLOY_CONFIG)
    [compose_job] = [j for j in compose["scrape_configs"] if j["job_name"] == "pushgateway"]
    assert compose_job["basic_auth"] == {"username": "gangplank", "password_file": secret}

    moved = promconfig.loopback_config(DEPLOY_CONFIG, ADDRESSES, secrets={secret: "/tmp/local/pushgateway_password"})
    [job] = [j for j in moved["scrape_configs"] if j["job_name"] == "pushgateway"]
    assert job["basic_auth"] == {"username": "gangplank", "password_file": "/tmp/local/pushgateway_password"}
    unauthenticated = promconfig.loopback_config(DEPLOY_CONFIG, ADDRESSES)
    assert not [j for j in unauthenticated["scrape_configs"] if "basic_auth" in j]


def push_text(url: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=body, method="PUT", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_an_authenticated_stack_refuses_anonymous_pushes_and_scrapes_with_the_password(tmp_path):
    import base64

    import gangplank

    with LocalStack(workdir=tmp_path / "stack", pushgateway_auth=True) as stack:  # start waits for a healthy scrape
        credentials = stack.pushgateway_credentials
        assert credentials.password_file.stat().st_mode & 0o077 == 0  # the owner's only
        group = stack.pushgateway.url + "/metrics/job/auth-test"
        body = b"# TYPE gangplank_auth_probe gauge\ngangplank_auth_probe 1\n"
        assert push_text(group, body) == 401
        wrong = base64.b64encode(b"gangplank:not-the-password").decode()
        assert push_text(group, body, {"Authorization": f"Basic {wrong}"}) == 401

        model, x, y = tiny_model()
        exporter = gangplank.TrainTestExporter(
            credentials.address(stack.pushgateway.address), "auth-test", ignore_exceptions=False
        )
        model.evaluate(x, y, verbose=0, callbacks=[exporter])  # pushes at the end, raising if refused
        exporter.publisher.close(5)
        # Prometheus scrapes the gateway with the password file: the push is in Prometheus
        loss = 'gangplank_test_loss{job="auth-test"}'
        assert wait_for(lambda: len(stack.query(loss)) == 1, 30), stack.query(loss)
        assert [r["value"][1] for r in stack.query('up{job="pushgateway"}')] == ["1"]


def tiny_model():
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    return model, rng.normal(size=(32, 4)).astype("float32"), rng.integers(0, 3, 32)
