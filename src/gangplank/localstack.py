"""Run the monitoring stack without Docker: Pushgateway, Prometheus, Alertmanager on loopback.

The Debian packages ``prometheus``, ``prometheus-pushgateway`` and
``prometheus-alertmanager`` provide the binaries. Every service listens on
127.0.0.1 only, keeps its data in a temporary directory and is stopped by
:meth:`LocalStack.stop` (or when the ``with`` block ends). Prometheus loads the
same rule files as the compose stack in ``deploy/prometheus``.

Example:
    >>> with start_pushgateway() as gateway:  # doctest: +SKIP
    ...     print(gateway.url)
    http://127.0.0.1:40125

Command line: ``python -m gangplank.localstack up --config-dir deploy/prometheus``
(``--help`` for the options; ``down --pid-file F`` stops a stack started with
``--pid-file F``).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BINARIES = {
    "pushgateway": "prometheus-pushgateway",
    "prometheus": "prometheus",
    "alertmanager": "prometheus-alertmanager",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_binary(name: str) -> str:
    """Path of a stack binary, or a clear error saying which package provides it."""
    binary = BINARIES.get(name, name)
    path = shutil.which(binary) or (f"/usr/bin/{binary}" if Path(f"/usr/bin/{binary}").exists() else None)
    if path is None:
        raise FileNotFoundError(
            f"{binary} not found; install it with: apt-get install --no-install-recommends {binary if name != 'prometheus' else 'prometheus'}"
        )
    return path


def http_get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Service:
    """One running server process."""

    name: str
    port: int
    process: subprocess.Popen
    log_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ready(self) -> bool:
        try:
            return http_get(self.url + "/-/ready", timeout=1.0) is not None
        except OSError:
            return False

    def wait_ready(self, timeout: float = 20.0) -> "Service":
        def check():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}: {self.log_tail()}")
            return self.ready()

        wait_until(check, timeout, what=f"{self.name} on {self.url}")
        return self

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)

    def restart(self, timeout: float = 20.0) -> "Service":
        """Stop and start the same command on the same port (a Pushgateway comes back empty)."""
        self.stop()
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        return self.wait_ready(timeout)

    def __enter__(self) -> "Service":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _spawn(name: str, args: list[str], port: int, workdir: Path) -> Service:
    log_path = workdir / f"{name}.log"
    log = open(log_path, "ab")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    return Service(name, port, process, log_path, args)


def start_pushgateway(port: int | None = None, workdir: str | Path | None = None, web_config: str | Path | None = None) -> Service:
    """Start a Pushgateway on 127.0.0.1 with no persistence; returns once it is ready."""
    port = port or free_port()
    workdir = Path(workdir or tempfile.mkdtemp(prefix="gangplank-pgw-"))
    args = [find_binary("pushgateway"), f"--web.listen-address=127.0.0.1:{port}", "--persistence.file="]
    if web_config:
        args.append(f"--web.config.file={web_config}")
    service = _spawn("pushgateway", args, port, workdir)
    if web_config:  # /-/ready needs credentials then; wait for the port instead
        wait_until(lambda: _port_open(port), 20.0, what=f"pushgateway on port {port}")
        return service
    return service.wait_ready()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class LocalStack:
    """Pushgateway, Prometheus and Alertmanager on loopback, wired like the compose stack.

    Args:
        rule_files: Prometheus rule files to load (the compose stack's rules).
        alertmanager_config: an Alertmanager configuration file.
        scrape_interval: how often Prometheus scrapes the Pushgateway.
        ports: optional fixed ports, e.g. ``{"pushgateway": 9091}``.

    Example:
        >>> with LocalStack(rule_files=["deploy/prometheus/rules/gangplank.rules.yml"]) as stack:  # doctest: +SKIP
        ...     stack.pushgateway.url, stack.prometheus.url
    """

    def __init__(self, rule_files=(), alertmanager_config=None, scrape_interval="1s", ports=None, workdir=None):
        self.rule_files = [str(Path(p).resolve()) for p in rule_files]
        self.alertmanager_config = alertmanager_config
        self.scrape_interval = scrape_interval
        self.ports = dict(ports or {})
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="gangplank-stack-"))
        self.pushgateway: Service | None = None
        self.prometheus: Service | None = None
        self.alertmanager: Service | None = None

    def start(self, wait_hooked_up: bool = True) -> "LocalStack":
        try:
            self.pushgateway = start_pushgateway(self.ports.get("pushgateway"), self.workdir)
            am_port = self.ports.get("alertmanager") or free_port()
            am_config = self.alertmanager_config or self._default_alertmanager_config()
            self.alertmanager = _spawn("alertmanager", [
                find_binary("alertmanager"), f"--config.file={am_config}",
                f"--storage.path={self.workdir / 'alertmanager'}",
                f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
            ], am_port, self.workdir).wait_ready()
            prom_port = self.ports.get("prometheus") or free_port()
            config = self._write_prometheus_config(am_port)
            self.prometheus = _spawn("prometheus", [
                find_binary("prometheus"), f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'prometheus'}",
                f"--web.listen-address=127.0.0.1:{prom_port}", "--web.enable-lifecycle",
            ], prom_port, self.workdir).wait_ready()
            if wait_hooked_up:
                # /-/ready is not enough: Prometheus 2.42 hands over discovered targets every 5 s.
                wait_until(self.hooked_up, 30.0, interval=0.1, what="Prometheus to scrape the Pushgateway and find Alertmanager")
        except BaseException:
            self.stop()
            raise
        return self

    def hooked_up(self) -> bool:
        targets = json.loads(http_get(self.prometheus.url + "/api/v1/targets?state=active"))
        managers = json.loads(http_get(self.prometheus.url + "/api/v1/alertmanagers"))
        up = any(t.get("health") == "up" for t in targets["data"]["activeTargets"])
        return up and bool(managers["data"]["activeAlertmanagers"])

    def stop(self) -> None:
        for service in (self.prometheus, self.alertmanager, self.pushgateway):
            if service is not None:
                service.stop()

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _default_alertmanager_config(self) -> Path:
        path = self.workdir / "alertmanager.yml"
        path.write_text("route: {receiver: 'null'}\nreceivers: [{name: 'null'}]\n")
        return path

    def _write_prometheus_config(self, am_port: int) -> Path:
        config = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "rule_files": self.rule_files,
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
            "scrape_configs": [{
                "job_name": "pushgateway",
                "honor_labels": True,
                "static_configs": [{"targets": [self.pushgateway.address]}],
            }],
        }
        path = self.workdir / "prometheus.yml"
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        return path

    def query(self, expr: str) -> list[dict]:
        """Run an instant PromQL query; the result vector."""
        url = self.prometheus.url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        body = json.loads(http_get(url))
        if body.get("status") != "success":
            raise RuntimeError(f"query {expr!r} failed: {body}")
        return body["data"]["result"]


def config_dir_files(config_dir: str | Path) -> tuple[list[str], Path | None]:
    """The rule files (``rules/*.yml``) and ``alertmanager.yml`` of a directory laid out like ``deploy/prometheus``."""
    config_dir = Path(config_dir)
    if not config_dir.is_dir():
        raise FileNotFoundError(f"config directory {config_dir} does not exist")
    alertmanager = config_dir / "alertmanager.yml"
    return sorted(str(p) for p in (config_dir / "rules").glob("*.yml")), alertmanager if alertmanager.exists() else None


def with_webhook_url(alertmanager_config: str | Path, url: str, dest: str | Path) -> Path:
    """Copy an Alertmanager configuration with every webhook ``url:`` replaced by ``url``."""
    text = Path(alertmanager_config).read_text()
    text, count = re.subn(r"^(\s*(?:-\s+)?url:\s*)\S+", lambda m: m.group(1) + url, text, flags=re.M)
    if not count:
        raise ValueError(f"{alertmanager_config} has no webhook url to replace")
    Path(dest).write_text(text)
    return Path(dest)


def _is_localstack(pid: int) -> bool:
    try:
        return b"gangplank.localstack" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def stop_by_pid_file(pid_file: str | Path, timeout: float = 30.0) -> bool:
    """Stop the ``up`` process recorded in ``pid_file`` (SIGTERM, then wait); False if none was running."""
    import os
    import signal

    path = Path(pid_file)
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return False
    if not _is_localstack(pid):
        path.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not _is_localstack(pid), timeout, interval=0.1, what=f"local stack process {pid} to exit")
    path.unlink(missing_ok=True)
    return True


def main(argv=None) -> int:
    import argparse
    import os
    import signal

    parser = argparse.ArgumentParser(
        prog="python -m gangplank.localstack",
        description=__doc__.splitlines()[0],
        epilog="Example: python -m gangplank.localstack up --config-dir deploy/prometheus --pid-file /tmp/stack.pid &"
        "  ...  python -m gangplank.localstack down --pid-file /tmp/stack.pid",
    )
    parser.add_argument("command", nargs="?", choices=["up", "down"], default="up",
                        help="up: run the stack in the foreground until SIGTERM or Ctrl-C (default); down: stop the one in --pid-file")
    parser.add_argument("--config-dir", help="a directory like deploy/prometheus: loads rules/*.yml and alertmanager.yml")
    parser.add_argument("--rules", nargs="*", help="Prometheus rule files (instead of the config dir's)")
    parser.add_argument("--alertmanager-config", help="Alertmanager configuration file (instead of the config dir's)")
    parser.add_argument("--webhook-url", help="send alerts to this webhook instead of the one in the Alertmanager configuration")
    parser.add_argument("--scrape-interval", default="1s", help="scrape and rule evaluation interval (default 1s)")
    parser.add_argument("--pushgateway-port", type=int, default=9091)
    parser.add_argument("--prometheus-port", type=int, default=9090)
    parser.add_argument("--alertmanager-port", type=int, default=9093)
    parser.add_argument("--workdir", help="where data and logs go (default: a new temporary directory)")
    parser.add_argument("--pid-file", help="up: written once the stack is ready, removed at exit; down: the process to stop")
    args = parser.parse_args(argv)

    if args.command == "down":
        if not args.pid_file:
            parser.error("down needs --pid-file")
        stopped = stop_by_pid_file(args.pid_file)
        print("stopped" if stopped else f"no local stack running for {args.pid_file}", flush=True)
        return 0

    rules, am_config = config_dir_files(args.config_dir) if args.config_dir else ([], None)
    rules = args.rules if args.rules is not None else rules
    am_config = args.alertmanager_config or am_config
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gangplank-stack-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.webhook_url:
        if not am_config:
            parser.error("--webhook-url needs an Alertmanager configuration (--config-dir or --alertmanager-config)")
        am_config = with_webhook_url(am_config, args.webhook_url, workdir / "alertmanager-webhook.yml")
    stack = LocalStack(rules, am_config, scrape_interval=args.scrape_interval, workdir=workdir, ports={
        "pushgateway": args.pushgateway_port, "prometheus": args.prometheus_port, "alertmanager": args.alertmanager_port,
    })

    def interrupt(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # also during start-up: stop() runs either way
    try:
        with stack:
            print(f"Pushgateway {stack.pushgateway.url}  Prometheus {stack.prometheus.url}  "
                  f"Alertmanager {stack.alertmanager.url}  (data and logs: {workdir})", flush=True)
            print(f"{len(rules)} rule file(s); Ctrl-C or SIGTERM stops all three.", flush=True)
            if args.pid_file:
                Path(args.pid_file).write_text(f"{os.getpid()}\n")
            while True:
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        if args.pid_file and Path(args.pid_file).exists() and Path(args.pid_file).read_text().strip() == str(os.getpid()):
            Path(args.pid_file).unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
