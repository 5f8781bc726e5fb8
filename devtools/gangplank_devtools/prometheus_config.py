"""The local stack's Prometheus configuration, derived from the compose one (deploy/prometheus/prometheus.yml).

Same scrape jobs, alerting and rule files; only the targets move: a compose
service name (``pushgateway:9091``), or ``localhost`` on a service's usual
port (``localhost:9090``), becomes the loopback address the local stack
started that service on. A target it cannot place is an error, not a silent
dead job. The global intervals can be shortened for tests (rule groups that
set their own ``interval`` keep it). Credential files (a scrape job's
``basic_auth.password_file``, e.g. the compose secret
``/run/secrets/pushgateway_password``) move to the local stack's copies
given in ``secrets``; a job whose credential file has no local copy scrapes
without credentials (the local stack runs that service without auth).

Example:
    >>> config = loopback_config("deploy/prometheus/prometheus.yml", {
    ...     "pushgateway": "127.0.0.1:19091", "prometheus": "127.0.0.1:19090", "alertmanager": "127.0.0.1:19093"},
    ...     scrape_interval="1s")  # doctest: +SKIP
    >>> config["scrape_configs"][0]["static_configs"][0]["targets"]  # doctest: +SKIP
    ['127.0.0.1:19091']
"""

from __future__ import annotations

import copy
import glob
from pathlib import Path

import yaml

SERVICE_PORTS = {"9090": "prometheus", "9091": "pushgateway", "9093": "alertmanager"}
_LOOPBACK_NAMES = ("localhost", "127.0.0.1")


def load(path: str | Path) -> dict:
    """A Prometheus configuration file as a dict."""
    with open(path) as stream:
        return yaml.safe_load(stream) or {}


def rule_files(config: dict, base: str | Path) -> list[str]:
    """The configuration's rule files as absolute paths, globs expanded, relative ones taken from ``base``."""
    found = []
    for pattern in config.get("rule_files") or []:
        path = Path(base, pattern)  # an absolute pattern stays as it is
        found += sorted(glob.glob(str(path))) if glob.has_magic(str(path)) else [str(path)]
    return [str(Path(p).resolve()) for p in found]


def loopback_target(target: str, addresses: dict[str, str]) -> str:
    """Where a compose target runs in the local stack, ``addresses[service]``; ``ValueError`` if no stack service."""
    host, _, port = target.rpartition(":")
    service = host if host in addresses else SERVICE_PORTS.get(port) if host in _LOOPBACK_NAMES else None
    if service not in addresses:
        raise ValueError(f"target {target!r} is none of the local stack's services ({', '.join(sorted(addresses))})")
    return addresses[service]


def _rewrite_static(configs: list[dict], where: str, addresses: dict[str, str]) -> None:
    for static in configs or []:
        try:
            # host.docker.internal targets are servers on the Docker host (gangplank-serve), not stack services: dropped
            static["targets"] = [
                loopback_target(t, addresses)
                for t in static.get("targets") or []
                if not t.startswith("host.docker.internal:")
            ]
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None


def _move_credentials(job: dict, secrets: dict[str, str]) -> None:
    auth = job.get("basic_auth")
    if not auth or "password_file" not in auth:
        return
    if auth["password_file"] in secrets:
        auth["password_file"] = secrets[auth["password_file"]]
    else:
        del job["basic_auth"]


def _only_static(section: dict, where: str) -> None:
    discovery = sorted(k for k in section if k.endswith("_sd_configs"))
    if discovery:
        raise ValueError(f"{where}: {', '.join(discovery)} cannot be moved to loopback; use static_configs")


def loopback_config(
    source: str | Path,
    addresses: dict[str, str],
    *,
    rules: list[str] | None = None,
    scrape_interval: str | None = None,
    evaluation_interval: str | None = None,
    secrets: dict[str, str] | None = None,
) -> dict:
    """The configuration in ``source`` with its targets on ``addresses`` (service name -> ``host:port``).

    Args:
        source: a Prometheus configuration written for the compose stack.
        addresses: where the local stack runs ``pushgateway``, ``prometheus`` and ``alertmanager``.
        rules: rule files to load instead of the configuration's own (absolute paths).
        scrape_interval: replaces the global and every job's scrape interval (scrape timeouts are
            dropped, so that they fall back to Prometheus's default, capped at the interval).
        evaluation_interval: replaces the global rule evaluation interval.
        secrets: credential file in the source -> the local file holding the same secret.
    """
    source = Path(source)
    config = copy.deepcopy(load(source))
    config["rule_files"] = list(rules) if rules is not None else rule_files(config, source.parent)
    for i, manager in enumerate((config.get("alerting") or {}).get("alertmanagers") or []):
        _only_static(manager, f"alertmanagers[{i}]")
        _rewrite_static(manager.get("static_configs"), f"alertmanagers[{i}]", addresses)
    for job in config.get("scrape_configs") or []:
        where = f"scrape job {job.get('job_name')!r}"
        _only_static(job, where)
        _rewrite_static(job.get("static_configs"), where, addresses)
        _move_credentials(job, secrets or {})
    overrides = {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval}
    global_ = config.setdefault("global", {})
    for key, interval in overrides.items():
        if interval is not None:
            global_[key] = interval
    if scrape_interval is not None:
        global_.pop("scrape_timeout", None)
        for job in config.get("scrape_configs") or []:
            job.pop("scrape_timeout", None)
            if "scrape_interval" in job:
                job["scrape_interval"] = scrape_interval
    return config


def write(config: dict, path: str | Path) -> Path:
    """Write a configuration as YAML; the path."""
    Path(path).write_text(yaml.safe_dump(config, sort_keys=False))
    return Path(path)
