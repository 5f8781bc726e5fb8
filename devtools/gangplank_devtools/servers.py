"""In-process fakes on 127.0.0.1: a gateway that never answers, one that always fails, a slow proxy, a webhook sink.

Example:
    >>> with StatusServer(status=500) as failing:
    ...     failing.address.startswith("127.0.0.1:")
    True
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .ports import free_port


def closed_port_address() -> str:
    """``127.0.0.1:PORT`` of a port nothing listens on (connections are refused)."""
    return f"127.0.0.1:{free_port()}"


class _TcpServer:
    """A loopback TCP listener whose thread hands each accepted connection to :meth:`_accepted`."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
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


class _HttpServer:
    """A threading HTTP server on 127.0.0.1 serving ``handler`` until :meth:`close`."""

    def __init__(self, handler):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass


class StatusServer(_HttpServer):
    """A small HTTP server that answers every request with one status code, counting requests.

    ``seen`` lists ``(method, path, headers)`` of every request, in order.
    """

    def __init__(self, status=500, delay=0.0):
        outer = self
        self.requests = 0
        self.seen = []

        class Handler(_QuietHandler):
            def _answer(self):
                outer.requests += 1
                outer.seen.append((self.command, self.path, dict(self.headers.items())))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_PUT = do_POST = do_DELETE = _answer

        super().__init__(Handler)


class WebhookSink(_HttpServer):
    """An HTTP server that keeps every JSON body POSTed to it (Alertmanager webhook payloads) on ``url``."""

    def __init__(self):
        sink = self
        self.payloads: list[dict] = []
        self._lock = threading.Lock()

        class Handler(_QuietHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with sink._lock:
                    sink.payloads.append(json.loads(body or b"{}"))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        super().__init__(Handler)
        self.url = f"http://{self.address}/alerts"

    def alerts(self, alertname: str, status: str | None = None) -> list[dict]:
        """Alerts named ``alertname`` received so far (optionally only ``firing`` or ``resolved``)."""
        with self._lock:
            found = [a for p in self.payloads for a in p.get("alerts", [])]
        return [
            a for a in found if a["labels"].get("alertname") == alertname and (status is None or a["status"] == status)
        ]
