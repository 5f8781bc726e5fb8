"""An example Alertmanager webhook receiver: each notification becomes one JSON line.

Standard library only. Listens on 127.0.0.1 unless told otherwise, accepts
Alertmanager's webhook POSTs (``Content-Type: application/json``) on any path,
and appends each one, with the path it came to (``/page``, ``/chat``) and the
time it arrived, as a single JSON line to a file or to stdout. Replace it with a
paging tool and a chat bridge in production; alertmanager.yml names both paths.

Only notifications that carry the token (``Authorization: Bearer TOKEN``, what
alertmanager.yml's ``http_config.authorization.credentials_file`` sends) are
taken; others get 401, so nobody else can forge a page. The token comes from
``--token-file`` or the environment variable ``ALERT_RECEIVER_TOKEN``; without
one the receiver does not start.

Example:
    python deploy/prometheus/alert_receiver.py --port 5001 --output alerts.jsonl \
        --token-file deploy/prometheus/secrets/alert_receiver_token
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
import hmac
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 4 * 1024 * 1024  # Alertmanager caps a payload with max_alerts; this bounds memory
MIN_TOKEN_LENGTH = 16
TOKEN_ENV = "ALERT_RECEIVER_TOKEN"


def read_token(token_file: str | None, environ=os.environ) -> str:
    """The bearer token from ``token_file``, else from ``$ALERT_RECEIVER_TOKEN``; ``ValueError`` if none or short.

    >>> read_token(None, {"ALERT_RECEIVER_TOKEN": " 0123456789abcdef\\n"})
    '0123456789abcdef'
    """
    if token_file:
        with open(token_file, encoding="utf-8") as stream:
            token = stream.read().strip()
    else:
        token = environ.get(TOKEN_ENV, "").strip()
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        where = token_file or f"${TOKEN_ENV}"
        raise ValueError(
            f"{where}: the token must be one word of at least {MIN_TOKEN_LENGTH} characters (openssl rand -hex 32)"
        )
    return token


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

    def __init__(self, address: tuple[str, int], output, token: str):
        super().__init__(address, Handler)
        self.output = output
        self.expected = f"Bearer {token}".encode()
        self.lock = threading.Lock()

    def write(self, line: str) -> None:
        with self.lock:
            self.output.write(line + "\n")
            self.output.flush()


class Handler(BaseHTTPRequestHandler):
    server: Receiver
    timeout = 10  # seconds a client may take to send its request

    def do_POST(self):
        given = self.headers.get("Authorization", "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, self.server.expected):
            return self._answer(401, "a bearer token is required", {"WWW-Authenticate": "Bearer"})
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

    def _answer(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        body = text.encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
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
    parser.add_argument(
        "--token-file", help=f"file holding the bearer token notifications must carry (default: ${TOKEN_ENV})"
    )
    args = parser.parse_args(argv)
    try:
        token = read_token(args.token_file)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    with contextlib.ExitStack() as stack:
        output = sys.stdout if args.output == "-" else stack.enter_context(open(args.output, "a", encoding="utf-8"))
        serve(Receiver((args.host, args.port), output, token), args.output)
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
