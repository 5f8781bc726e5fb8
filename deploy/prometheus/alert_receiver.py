"""An example Alertmanager webhook receiver: each notification becomes one JSON line.

Standard library only. Listens on 127.0.0.1 unless told otherwise, accepts
Alertmanager's webhook POSTs (``Content-Type: application/json``) on any path,
and appends each one, with the path it came to (``/page``, ``/chat``) and the
time it arrived, as a single JSON line to a file or to stdout. Replace it with a
paging tool and a chat bridge in production; alertmanager.yml names both paths.

Example:
    python deploy/prometheus/alert_receiver.py --port 5001 --output alerts.jsonl
    # one line per notification:
    # {"received_at": "2026-08-24T10:00:00.123+00:00", "path": "/page", "receiver": "page",
    #  "status": "firing", "alerts": [{"labels": {"alertname": "GangplankModelDegraded", ...}, ...}], ...}

    >>> line = notification_line("/chat", b'{"receiver": "chat", "status": "firing", "alerts": []}')
    >>> json.loads(line)["path"], json.loads(line)["receiver"]
    ('/chat', 'chat')
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 4 * 1024 * 1024  # Alertmanager caps a payload with max_alerts; this bounds memory


def notification_line(path: str, body: bytes) -> str:
    """The JSON line stored for one webhook body; ``ValueError`` if it is not a JSON object."""
    payload = json.loads(body)
    if not isinstance(payload, dict):
        raise ValueError("the webhook body is not a JSON object")  # noqa: TRY004 (a bad value, answered with 400)
    received = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    return json.dumps({"received_at": received, "path": path, **payload}, sort_keys=False)


class Receiver(ThreadingHTTPServer):
    """The HTTP server; ``write(line)`` appends a line to the output under a lock."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], output):
        super().__init__(address, Handler)
        self.output = output
        self.lock = threading.Lock()

    def write(self, line: str) -> None:
        with self.lock:
            self.output.write(line + "\n")
            self.output.flush()


class Handler(BaseHTTPRequestHandler):
    server: Receiver
    timeout = 10  # seconds a client may take to send its request

    def do_POST(self):
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            return self._answer(411, "Content-Length required")
        if int(length) > MAX_BODY:
            return self._answer(413, "body too large")
        if self.headers.get_content_type() != "application/json":
            return self._answer(415, "application/json required")
        try:
            line = notification_line(self.path, self.rfile.read(int(length)))
        except ValueError as error:  # json.JSONDecodeError is a ValueError
            return self._answer(400, f"not a webhook payload: {error}")
        self.server.write(line)
        self._answer(200, "")

    def do_GET(self):
        self._answer(200, "ok") if self.path == "/-/healthy" else self._answer(404, "POST webhooks here")

    def _answer(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # the JSON lines are the log
        pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5001, help="port to listen on (default 5001; 0 picks a free one)")
    parser.add_argument("--output", default="-", help="file to append the JSON lines to (default -: stdout)")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        output = sys.stdout if args.output == "-" else stack.enter_context(open(args.output, "a", encoding="utf-8"))
        serve(Receiver((args.host, args.port), output), args.output)
    return 0


def serve(server: Receiver, where: str) -> None:
    """Serve until Ctrl-C or SIGTERM."""
    with server:
        host, port = server.server_address[:2]
        print(f"alert receiver on http://{host}:{port} -> {where}", file=sys.stderr, flush=True)
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


def _interrupt(*_):
    raise KeyboardInterrupt


if __name__ == "__main__":
    raise SystemExit(main())
