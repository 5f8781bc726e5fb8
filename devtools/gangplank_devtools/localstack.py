"""Run the monitoring stack without Docker: Pushgateway, Prometheus, Alertmanager on loopback.

The Debian packages ``prometheus``, ``prometheus-pushgateway`` and
``prometheus-alertmanager`` provide the binaries. Every service listens on
127.0.0.1 only and dies with the process that started it. Prometheus runs the
compose stack's configuration (deploy/prometheus/prometheus.yml: the same
scrape jobs and rule files) with the targets moved to the loopback ports (see
:mod:`gangplank_devtools.prometheus_config`). Data and logs go to a temporary
directory, removed when the stack stops, unless a work directory is given.
The lifecycle endpoints (``/-/quit``, ``/-/reload``) are off unless asked for.
With ``pushgateway_auth`` (the command line's default) the Pushgateway takes
only requests with basic auth: a random password in
``workdir/secrets/pushgateway_password``, its bcrypt hash in the gateway's
``--web.config.file`` (:mod:`gangplank_devtools.pushgateway_auth`), and
Prometheus scraping with it.

Example:
    >>> with LocalStack() as stack:  # doctest: +SKIP
    ...     stack.query("up")

Command line: ``python -m gangplank_devtools.localstack up --config-dir deploy/prometheus --pid-file F``
runs it in the foreground until SIGTERM or Ctrl-C; ``down --pid-file F`` stops it;
``--help`` lists the options. ``up`` exits with status 1 and says why when a
port is taken or a server fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import weakref
from pathlib import Path

from . import prometheus_config as promconfig
from .ports import free_port, port_in_use
from .processes import PortInUseError, Service, find_binary, is_running, process_start, signal_group
from .pushgateway_auth import Credentials, write_credentials
from .waiting import wait_until

CHECKOUT_CONFIG_DIR = (
    Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
)  # editable install from the checkout
PROG = "python -m gangplank_devtools.localstack"
COMPOSE_PASSWORD_FILE = "/run/secrets/pushgateway_password"  # where prometheus.yml's pushgateway job reads it


def _http_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=2.0) as response:
        return json.loads(response.read())


def _shutdown(services: list[Service], temporary_dir: Path | None) -> None:
    for service in reversed(services):
        service.stop()
    if temporary_dir is not None:
        shutil.rmtree(temporary_dir, ignore_errors=True)


class LocalStack:
    """Pushgateway, Prometheus and Alertmanager on loopback, configured like the compose stack.

    Args:
        rule_files: Prometheus rule files to load instead of those ``prometheus_config`` names.
        alertmanager_config: an Alertmanager configuration file (default: one that drops every alert).
        scrape_interval: the scrape interval (replaces the configuration's, for quick tests).
        ports: fixed ports, e.g. ``{"pushgateway": 9091}``; the others are picked free.
        workdir: where data and logs go; default a temporary directory, removed by :meth:`stop`.
        prometheus_config: the compose configuration to derive from (default the checkout's
            deploy/prometheus/prometheus.yml).
        evaluation_interval: the rule evaluation interval (default ``scrape_interval``).
        lifecycle: pass ``--web.enable-lifecycle`` to Prometheus (``/-/quit``, ``/-/reload``).
        pushgateway_auth: run the Pushgateway with basic auth (``pushgateway_credentials`` then says
            who may push: ``stack.pushgateway_credentials.address(stack.pushgateway.address)``).

    ``start`` raises :class:`~gangplank_devtools.processes.PortInUseError` when a port is taken,
    before starting anything. ``stop`` is final.

    Example:
        >>> with LocalStack(scrape_interval="1s") as stack:  # doctest: +SKIP
        ...     stack.pushgateway.url, stack.prometheus.url
    """

    def __init__(
        self,
        rule_files=None,
        alertmanager_config=None,
        scrape_interval="1s",
        ports=None,
        workdir=None,
        *,
        prometheus_config: str | Path | None = None,
        evaluation_interval: str | None = None,
        lifecycle: bool = False,
        pushgateway_auth: bool = False,
    ):
        self.prometheus_config = Path(prometheus_config or CHECKOUT_CONFIG_DIR / "prometheus.yml")
        if not self.prometheus_config.is_file():
            raise FileNotFoundError(f"Prometheus configuration {self.prometheus_config} does not exist")
        if rule_files is None:
            config = promconfig.load(self.prometheus_config)
            rule_files = promconfig.rule_files(config, self.prometheus_config.parent)
        self.rule_files = [str(Path(p).resolve()) for p in rule_files]
        self.alertmanager_config = alertmanager_config
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval or scrape_interval
        self.lifecycle = lifecycle
        self.pushgateway_auth = pushgateway_auth
        self.pushgateway_credentials: Credentials | None = None
        self.ports = dict(ports or {})
        self.temporary = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="gangplank-stack-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.services: list[Service] = []
        self.pushgateway: Service | None = None
        self.prometheus: Service | None = None
        self.alertmanager: Service | None = None
        self._stop = weakref.finalize(self, _shutdown, self.services, self.workdir if self.temporary else None)

    def start(self, wait_hooked_up: bool = True) -> LocalStack:
        """Start the three servers; with ``wait_hooked_up``, return once Prometheus scrapes and knows Alertmanager."""
        try:
            ports = {
                name: self.ports.get(name) or free_port() for name in ("pushgateway", "alertmanager", "prometheus")
            }
            taken = [f"{name} {port}" for name, port in ports.items() if port_in_use(port)]
            if taken:
                raise PortInUseError(
                    f"port(s) already in use on 127.0.0.1: {', '.join(taken)} "
                    "(another local stack? stop it with `down --pid-file ...`, or choose other ports)"
                )
            addresses = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
            secrets = {}
            web_config = []
            if self.pushgateway_auth:
                self.pushgateway_credentials = write_credentials(self.workdir / "secrets")
                secrets[COMPOSE_PASSWORD_FILE] = str(self.pushgateway_credentials.password_file)
                web_config = [f"--web.config.file={self.pushgateway_credentials.web_config}"]
            self.pushgateway = self._start(
                Service(
                    "pushgateway",
                    [
                        find_binary("pushgateway"),
                        f"--web.listen-address={addresses['pushgateway']}",
                        "--persistence.file=",
                        *web_config,
                    ],
                    ports["pushgateway"],
                    self.workdir,
                    probe_ready=not self.pushgateway_auth,  # /-/ready needs the credentials too
                )
            )
            self.alertmanager = self._start(
                Service(
                    "alertmanager",
                    [
                        find_binary("alertmanager"),
                        f"--config.file={self.alertmanager_config or self._null_alertmanager_config()}",
                        f"--storage.path={self.workdir / 'alertmanager'}",
                        f"--web.listen-address={addresses['alertmanager']}",
                        "--cluster.listen-address=",
                    ],
                    ports["alertmanager"],
                    self.workdir,
                )
            )
            config = promconfig.write(
                promconfig.loopback_config(
                    self.prometheus_config,
                    addresses,
                    rules=self.rule_files,
                    scrape_interval=self.scrape_interval,
                    evaluation_interval=self.evaluation_interval,
                    secrets=secrets,
                ),
                self.workdir / "prometheus.yml",
            )
            self.prometheus = self._start(
                Service(
                    "prometheus",
                    [
                        find_binary("prometheus"),
                        f"--config.file={config}",
                        f"--storage.tsdb.path={self.workdir / 'prometheus'}",
                        f"--web.listen-address={addresses['prometheus']}",
                        *(["--web.enable-lifecycle"] if self.lifecycle else []),
                    ],
                    ports["prometheus"],
                    self.workdir,
                )
            )
            if wait_hooked_up:
                # /-/ready is not enough: Prometheus 2.42 hands over discovered targets every 5 s.
                wait_until(
                    self.hooked_up, 30.0, interval=0.1, what="Prometheus to scrape its targets and find Alertmanager"
                )
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, service: Service) -> Service:
        self.services.append(service)
        return service.start()

    def hooked_up(self) -> bool:
        """Whether every scrape target is up and Prometheus has found Alertmanager."""
        targets = _http_json(self.prometheus.url + "/api/v1/targets?state=active")["data"]["activeTargets"]
        managers = _http_json(self.prometheus.url + "/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
        return bool(targets) and all(t.get("health") == "up" for t in targets) and bool(managers)

    def stop(self) -> None:
        """Stop every server; remove the work directory if it is temporary."""
        self._stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _null_alertmanager_config(self) -> Path:
        path = self.workdir / "alertmanager-null.yml"
        path.write_text("route: {receiver: 'null'}\nreceivers: [{name: 'null'}]\n")
        return path

    def query(self, expr: str) -> list[dict]:
        """Run an instant PromQL query; the result vector."""
        body = _http_json(self.prometheus.url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        if body.get("status") != "success":
            raise RuntimeError(f"query {expr!r} failed: {body}")
        return body["data"]["result"]


def with_webhook_url(
    alertmanager_config: str | Path, url: str, dest: str | Path, token_file: str | Path | None = None
) -> Path:
    """Copy an Alertmanager configuration with every webhook ``url:`` replaced by ``url``.

    With ``token_file``, every ``credentials_file:`` (the webhooks' bearer token) is replaced by it too.
    """
    text = Path(alertmanager_config).read_text()
    text, count = re.subn(r"^(\s*(?:-\s+)?url:\s*)\S+", lambda m: m.group(1) + url, text, flags=re.M)
    if not count:
        raise ValueError(f"{alertmanager_config} has no webhook url to replace")
    if token_file is not None:
        text = re.sub(r"^(\s*credentials_file:\s*)\S+", lambda m: m.group(1) + str(token_file), text, flags=re.M)
    Path(dest).write_text(text)
    return Path(dest)


# -- the pid file: who runs the stack, so that `down` can stop it, or clean up after it ---------------
def write_pid_file(path: str | Path, stack: LocalStack) -> None:
    """Record this runner, its servers and its work directory in ``path`` (JSON, replaced atomically)."""
    record = {
        "pid": os.getpid(),
        "start": process_start(os.getpid()),
        "services": {s.name: {"pid": s.process.pid, "start": process_start(s.process.pid)} for s in stack.services},
        "workdir": str(stack.workdir),
        "temporary": stack.temporary,
    }
    partial = Path(f"{path}.partial")
    partial.write_text(json.dumps(record) + "\n")
    os.replace(partial, path)


def read_pid_file(path: str | Path) -> dict | None:
    """The record in ``path``; None if there is no such file; ``ValueError`` if it is not a local stack's."""
    try:
        record = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a local stack pid file ({error})") from None
    if not isinstance(record, dict) or not {"pid", "start", "services"} <= record.keys():
        raise ValueError(f"{path} is not a local stack pid file")
    return record


def _stop_process(pid: int, start: str | None, timeout: float, group: bool) -> None:
    send = signal_group if group else os.kill
    try:
        send(pid, signal.SIGTERM)
        wait_until(lambda: not is_running(pid, start), timeout, interval=0.1, what=f"process {pid} to exit")
    except ProcessLookupError:
        pass
    except TimeoutError:
        send(pid, signal.SIGKILL)
        wait_until(lambda: not is_running(pid, start), timeout, interval=0.1, what=f"process {pid} to die")


def down(pid_file: str | Path, timeout: float = 30.0) -> tuple[int, str]:
    """Stop the stack recorded in ``pid_file``, and whatever it left behind; (exit status, what happened).

    A runner that was killed leaves its pid file, perhaps servers (where they
    do not die with it) and its temporary directory: all are cleaned up here.
    """
    path = Path(pid_file)
    try:
        record = read_pid_file(path)
    except ValueError as error:
        return 1, f"{error}; left it alone"
    if record is None:
        return 0, f"no local stack running for {path} (no such file)"
    pid, start = record["pid"], record["start"]
    runner_was_running = is_running(pid, start)
    if runner_was_running:
        _stop_process(pid, start, timeout, group=False)
    leftovers = [(name, s["pid"]) for name, s in record["services"].items() if is_running(s["pid"], s["start"])]
    for name, child in leftovers:
        _stop_process(child, record["services"][name]["start"], timeout, group=True)
    workdir = Path(record.get("workdir") or "")
    removed = bool(record.get("temporary")) and workdir.name.startswith("gangplank-stack-") and workdir.is_dir()
    if removed:
        shutil.rmtree(workdir, ignore_errors=True)
    path.unlink(missing_ok=True)
    left = ", ".join(f"{name} (pid {child})" for name, child in leftovers)
    if runner_was_running:
        return 0, f"stopped the local stack (pid {pid})" + (f" and its leftover servers: {left}" if left else "")
    cleaned = " and its temporary directory " + str(workdir) if removed else ""
    if leftovers:
        return (
            0,
            f"the local stack's runner (pid {pid}) was gone; stopped its leftover servers: {left}; "
            f"removed {path}{cleaned}",
        )
    return (
        0,
        f"no local stack running for {path} (its runner, pid {pid}, had exited); removed the stale pid file{cleaned}",
    )


# -- command line ------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.splitlines()[0],
        epilog=f"Example: {PROG} up --config-dir deploy/prometheus --pid-file /tmp/stack.pid &  ...  "
        f"{PROG} down --pid-file /tmp/stack.pid",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["up", "down"],
        default="up",
        help="up: run the stack in the foreground until SIGTERM or Ctrl-C (default); down: stop the one in --pid-file",
    )
    parser.add_argument(
        "--config-dir",
        type=Path,
        default=CHECKOUT_CONFIG_DIR,
        help="a directory like deploy/prometheus: its prometheus.yml (scrape jobs, rule files) and "
        "alertmanager.yml (default: the checkout's deploy/prometheus)",
    )
    parser.add_argument("--rules", nargs="*", help="Prometheus rule files (instead of those prometheus.yml names)")
    parser.add_argument("--alertmanager-config", help="Alertmanager configuration file (instead of the config dir's)")
    parser.add_argument(
        "--webhook-url", help="send alerts to this webhook instead of the one in the Alertmanager configuration"
    )
    parser.add_argument(
        "--webhook-token-file",
        help="with --webhook-url: the file holding the webhook's bearer token (alert_receiver.py --token-file)",
    )
    parser.add_argument("--scrape-interval", default="1s", help="scrape interval (default 1s)")
    parser.add_argument("--evaluation-interval", help="rule evaluation interval (default: the scrape interval)")
    parser.add_argument(
        "--lifecycle",
        action="store_true",
        help="enable Prometheus's lifecycle endpoints /-/quit and /-/reload (off: any local process "
        "or a cross-site POST could stop Prometheus)",
    )
    parser.add_argument(
        "--no-pushgateway-auth",
        dest="pushgateway_auth",
        action="store_false",
        help="run the Pushgateway without basic auth (default: with it; the password is written to "
        "WORKDIR/secrets/pushgateway_password, user gangplank)",
    )
    parser.add_argument("--pushgateway-port", type=int, default=9091)
    parser.add_argument("--prometheus-port", type=int, default=9090)
    parser.add_argument("--alertmanager-port", type=int, default=9093)
    parser.add_argument(
        "--workdir", help="where data and logs go, kept at exit (default: a temporary directory, removed)"
    )
    parser.add_argument(
        "--pid-file", help="up: written once the stack is ready, removed at exit; down: the stack to stop"
    )
    return parser


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)
    return 1


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "down":
        if not args.pid_file:
            parser.error("down needs --pid-file")
        status, message = down(args.pid_file)
        print(message, flush=True)
        return status

    if args.pid_file:
        try:
            record = read_pid_file(args.pid_file)
        except ValueError as error:
            return _fail(str(error))
        if record and is_running(record["pid"], record["start"]):
            return _fail(f"a local stack (pid {record['pid']}) already runs for {args.pid_file}; `down` it first")
    am_config = args.alertmanager_config or (args.config_dir / "alertmanager.yml")
    if args.webhook_url and not Path(am_config).is_file():
        parser.error("--webhook-url needs an Alertmanager configuration (--config-dir or --alertmanager-config)")

    def interrupt(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # also during start-up: the stack stops either way
    signal.signal(signal.SIGHUP, interrupt)
    stack = None
    try:
        stack = LocalStack(
            args.rules,
            am_config if Path(am_config).is_file() else None,
            scrape_interval=args.scrape_interval,
            evaluation_interval=args.evaluation_interval,
            lifecycle=args.lifecycle,
            pushgateway_auth=args.pushgateway_auth,
            workdir=args.workdir,
            prometheus_config=args.config_dir / "prometheus.yml",
            ports={
                "pushgateway": args.pushgateway_port,
                "prometheus": args.prometheus_port,
                "alertmanager": args.alertmanager_port,
            },
        )
        if args.webhook_url:
            stack.alertmanager_config = with_webhook_url(
                am_config, args.webhook_url, stack.workdir / "alertmanager-webhook.yml", args.webhook_token_file
            )
        stack.start()
        kept = "kept" if args.workdir else "removed at exit"
        print(
            f"Pushgateway {stack.pushgateway.url}  Prometheus {stack.prometheus.url}  "
            f"Alertmanager {stack.alertmanager.url}  (data and logs: {stack.workdir}, {kept})",
            flush=True,
        )
        credentials = stack.pushgateway_credentials
        if credentials is not None:
            print(
                f"Pushgateway basic auth: user {credentials.user}, password in {credentials.password_file} "
                f"(push to http://{credentials.user}:PASSWORD@{stack.pushgateway.address})",
                flush=True,
            )
        print(
            f"{len(stack.rule_files)} rule file(s); lifecycle endpoints {'on' if args.lifecycle else 'off'}; "
            "Ctrl-C or SIGTERM stops all three.",
            flush=True,
        )
        if args.pid_file:
            write_pid_file(args.pid_file, stack)
        while True:
            for service in stack.services:
                if service.process.poll() is not None:
                    return _fail(
                        f"{service.name} exited with status {service.process.returncode}; stopping the stack\n"
                        f"{service.log_tail()}"
                    )
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    except (OSError, RuntimeError, ValueError) as error:  # a taken port, a missing binary or file, a server that failed
        return _fail(str(error))
    finally:
        if args.pid_file:
            with contextlib.suppress(Exception):  # not ours, or gone: leave it
                if read_pid_file(args.pid_file)["pid"] == os.getpid():
                    Path(args.pid_file).unlink()
        if stack is not None:
            stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
