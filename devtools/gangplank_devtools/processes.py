"""Supervised server processes on 127.0.0.1: they die with the thread that started them, ready only when *they* answer.

Each child gets its own process group (stopped as a group) and, on Linux,
``prctl(PR_SET_PDEATHSIG, SIGTERM)``: when the thread that started it ends,
for instance because the Python process was killed with SIGKILL, the kernel
stops the child too. So start services from a thread that outlives them (the
main thread, a pytest fixture).

Example:
    >>> with start_pushgateway() as gateway:  # doctest: +SKIP
    ...     gateway.url
    'http://127.0.0.1:40125'
"""

from __future__ import annotations

import ctypes
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
import weakref
from pathlib import Path

from .ports import free_port, listens_on, port_in_use
from .waiting import wait_until

BINARIES = {
    "pushgateway": "prometheus-pushgateway",
    "prometheus": "prometheus",
    "alertmanager": "prometheus-alertmanager",
}
_PR_SET_PDEATHSIG = 1


class PortInUseError(RuntimeError):
    """A service's port is taken by another process."""


def find_binary(name: str) -> str:
    """Path of a stack binary, or a clear error naming the Debian package that provides it."""
    binary = BINARIES.get(name, name)
    path = shutil.which(binary) or (f"/usr/bin/{binary}" if Path(f"/usr/bin/{binary}").exists() else None)
    if path is None:
        raise FileNotFoundError(
            f"{binary} not found; install it with: apt-get install --no-install-recommends {binary}"
        )
    return path


def _load_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return prctl


_PRCTL = _load_prctl()


def _child_setup(parent: int):
    """What the child runs between fork and exec (nothing here may import or take locks)."""

    def setup():
        os.setpgid(0, 0)
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)

    return setup


def spawn(args: list[str], log_path: Path) -> subprocess.Popen:
    """Start ``args`` supervised (own process group, dies with this process on Linux), its output appended to a log.

    The kernel's parent-death signal fires when the *thread* that forked the
    child ends, so every child is forked by one long-lived spawner thread:
    a server started (or restarted) from a short-lived thread outlives it.
    """
    done: queue.Queue = queue.Queue(maxsize=1)
    _spawn_requests.put((args, log_path, done))
    outcome = done.get()
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


_spawn_requests: queue.Queue = queue.Queue()


def _spawner() -> None:
    while True:
        args, log_path, done = _spawn_requests.get()
        try:
            with open(log_path, "ab") as log:
                done.put(
                    subprocess.Popen(
                        args,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        preexec_fn=_child_setup(os.getpid()),
                    )
                )
        except BaseException as exc:  # handed to the caller of spawn()
            done.put(exc)


threading.Thread(target=_spawner, name="gangplank-devtools-spawner", daemon=True).start()


def signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group led by ``pid`` (every supervised child leads its own); quiet if it is gone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def process_start(pid: int) -> str | None:
    """The start time of a live process (clock ticks since boot, from /proc), None if it is gone or a zombie.

    With the pid it identifies a process across pid reuse. Where /proc is
    missing, ``"?"`` for any process that exists.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "?"
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name, in parentheses, may hold spaces
    return None if fields[0] in ("Z", "X") else fields[19]


def is_running(pid: int, start: str | None) -> bool:
    """Whether the process ``pid`` that started at ``start`` (see :func:`process_start`) still runs."""
    now = process_start(pid)
    return now is not None and (start in (None, "?") or now == "?" or now == start)


class Service:
    """One supervised server process listening on 127.0.0.1:``port``.

    Args:
        name: what to call it in messages and the log file name (``workdir/NAME.log``).
        args: the command line.
        port: the port the command listens on.
        workdir: where the log goes.
        probe_ready: also require ``GET /-/ready`` to answer (off for servers that need credentials).
        temporary: remove ``workdir`` on :meth:`close` (and at interpreter exit).

    Example:
        >>> Service("pushgateway", ["prometheus-pushgateway", "--web.listen-address=127.0.0.1:9191"], 9191,
        ...         "/tmp").start()  # doctest: +SKIP
    """

    def __init__(
        self,
        name: str,
        args: list[str],
        port: int,
        workdir: str | Path,
        probe_ready: bool = True,
        temporary: bool = False,
    ):
        self.name, self.args, self.port, self.probe_ready = name, list(args), port, probe_ready
        self.workdir = Path(workdir)
        self.log_path = self.workdir / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self._remove_workdir = weakref.finalize(self, shutil.rmtree, self.workdir, True) if temporary else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Service:
        """Start the process and wait until it is ready; ``PortInUseError`` if another process holds the port."""
        if port_in_use(self.port):
            raise PortInUseError(f"{self.name}: port {self.port} on 127.0.0.1 is already in use by another process")
        self.process = spawn(self.args, self.log_path)
        return self.wait_ready(timeout)

    def ready(self) -> bool:
        """Whether this process (not another one on the same port) listens and, if probed, answers ``/-/ready``."""
        if self.process is None or self.process.poll() is not None or not listens_on(self.process.pid, self.port):
            return False
        if not self.probe_ready:
            return True
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=1.0):
                return True
        except OSError:
            return False

    def wait_ready(self, timeout: float = 20.0) -> Service:
        def check():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with status {self.process.returncode}:\n{self.log_tail()}")
            return self.ready()

        wait_until(check, timeout, what=f"{self.name} on {self.url}")
        return self

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the process (SIGTERM to its group, SIGKILL after ``timeout``); :meth:`restart` may follow."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout)

    def restart(self, timeout: float = 20.0) -> Service:
        """Stop and start the same command on the same port (a Pushgateway comes back empty)."""
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Stop for good, and remove the work directory if it is temporary."""
        self.stop()
        if self._remove_workdir is not None:
            self._remove_workdir()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_pushgateway(
    port: int | None = None, workdir: str | Path | None = None, web_config: str | Path | None = None
) -> Service:
    """Start a Pushgateway on 127.0.0.1 with no persistence; returns once it is ready.

    Without ``workdir`` its log goes to a temporary directory, removed when the
    service is closed. With ``web_config`` (TLS, basic auth) readiness is the
    port alone, since ``/-/ready`` needs credentials then.
    """
    port = port or free_port()
    temporary = workdir is None
    workdir = Path(workdir or tempfile.mkdtemp(prefix="gangplank-pgw-"))
    args = [find_binary("pushgateway"), f"--web.listen-address=127.0.0.1:{port}", "--persistence.file="]
    if web_config:
        args.append(f"--web.config.file={web_config}")
    service = Service("pushgateway", args, port, workdir, probe_ready=not web_config, temporary=temporary)
    try:
        return service.start()
    except BaseException:
        service.close()
        raise
