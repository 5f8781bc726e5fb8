"""Helpers for tests that read what reached a real Pushgateway."""

from __future__ import annotations

import glob
import socket
import threading
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
RULE_FILES = sorted(glob.glob(str(ROOT / "deploy/prometheus/rules/*.yml")))


def read_gateway(url: str, prefix: str = "gangplank_") -> dict[tuple[str, tuple], float]:
    """Every sample on the gateway whose name starts with ``prefix``, keyed by (name, sorted labels)."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(prefix):
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    """The one sample called ``name`` whose labels include ``labels``."""
    hits = [v for (n, lab), v in samples.items() if n == name and all(dict(lab).get(k) == str(w) for k, w in labels.items())]
    if len(hits) != 1:
        raise KeyError(f"{name}{labels}: {len(hits)} samples; names present: {sorted({n for n, _ in samples})}")
    return hits[0]


def wait_for(predicate, timeout=15.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    return predicate()


class _TcpServer:
    """A loopback TCP listener whose thread hands each accepted connection to :meth:`_accepted`."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self._accepted(conn)

    def _accepted(self, conn):
        raise NotImplementedError

    def close(self):
        self._stop = True
        self._thread.join(2)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SilentServer(_TcpServer):
    """Accepts TCP connections and never answers (a hung gateway)."""

    def __init__(self):
        self._held = []
        super().__init__()

    def _accepted(self, conn):
        self._held.append(conn)

    @property
    def accepted(self) -> int:
        """How many connections were accepted (each push attempt opens one)."""
        return len(self._held)

    def close(self):
        super().close()
        for conn in self._held:
            conn.close()


class StatusServer:
    """A small HTTP server that answers every request with one status code, counting requests.

    ``seen`` lists ``(method, path, headers)`` of every request, in order.
    """

    def __init__(self, status=500, delay=0.0):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        outer = self
        self.requests = 0
        self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                outer.requests += 1
                outer.seen.append((self.command, self.path, dict(self.headers.items())))
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_PUT = do_POST = do_DELETE = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = "127.0.0.1:%d" % self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def closed_port_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return "127.0.0.1:%d" % sock.getsockname()[1]


class SlowProxy(_TcpServer):
    """A TCP proxy in front of a real gateway that holds each new connection ``delay`` seconds.

    The delay in force when a connection is accepted applies to it; set
    ``proxy.delay = 0`` to make the gateway fast again. ``accepted`` counts
    connections, ``answered`` those whose answer came back, ``in_flight`` those
    still being held or forwarded.
    """

    def __init__(self, upstream_port: int, delay: float = 2.0):
        self.upstream = ("127.0.0.1", upstream_port)
        self.delay = delay
        self.accepted = 0
        self.answered = 0
        self.in_flight = 0
        self._lock = threading.Lock()
        super().__init__()

    def _accepted(self, conn):
        with self._lock:
            self.accepted += 1
            self.in_flight += 1
        threading.Thread(target=self._serve, args=(conn, self.delay), daemon=True).start()

    def _serve(self, client, delay):
        try:
            time.sleep(delay)
            with socket.create_connection(self.upstream, timeout=10) as upstream:
                forward = threading.Thread(target=_pipe, args=(client, upstream), daemon=True)
                forward.start()
                got_answer = _pipe(upstream, client)
                forward.join(10)
            if got_answer:
                with self._lock:
                    self.answered += 1
        except OSError:
            pass
        finally:
            client.close()
            with self._lock:
                self.in_flight -= 1


def _pipe(source, sink) -> bool:
    """Copy bytes until ``source`` ends; whether any byte went through."""
    moved = False
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
            moved = True
    except OSError:
        pass
    try:
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    return moved


def run_with_timeout(fn, timeout: float = 60.0, what: str = "call"):
    """Run ``fn()`` in a thread; its result or exception, or a test failure if it hangs.

    A hang guard, not a timing assertion: ``timeout`` is far above what the
    call should ever take.
    """
    outcome = {}

    def target():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"hang-guard: {what}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise AssertionError(f"{what} still running after {timeout:.0f} s (hang guard)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def counting_handler(calls: list, handler=None):
    """A push handler that records ``(method, url)`` of every push, then hands over to ``handler``."""
    from prometheus_client.exposition import default_handler

    inner = handler or default_handler

    def handle(url, method, timeout, headers, data):
        calls.append((method, url))
        return inner(url=url, method=method, timeout=timeout, headers=headers, data=data)

    return handle


def gangplank_warnings(caplog, address: str) -> list:
    """Records of logger ``gangplank`` whose message names ``address`` (other tests' senders may still log)."""
    return [r for r in caplog.records if r.name == "gangplank" and address in r.getMessage()]


def failure_lines(caplog, address: str) -> list[str]:
    return [r.getMessage() for r in gangplank_warnings(caplog, address) if " failed: " in r.getMessage()]


def recovery_lines(caplog, address: str) -> list[str]:
    return [r.getMessage() for r in gangplank_warnings(caplog, address) if "answers again" in r.getMessage()]
