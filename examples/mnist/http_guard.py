"""What keeps the example server up under hostile or broken clients: a small layer over http.server.

* :class:`GuardedServer` serves each connection on its own thread, at most
  ``max_connections`` at once. At the bound it stops accepting: further
  clients wait in the kernel's listen backlog, holding no thread and no file.
* :class:`GuardedHandler` gives every request ``request_timeout`` seconds to
  arrive whole (request line, headers and body; a keep-alive connection's
  next request gets the same from the end of the previous one). A client that
  sends slowly, or not at all, is cut off then, so idle clients cannot hold
  every slot for long.
* :func:`read_body` requires a ``Content-Length`` of at most ``cap`` bytes and
  reads exactly that many (413 otherwise, before anything is read).
* :func:`content_type` admits only the media types an endpoint takes (415).
* :func:`parse_json` answers 400, never 500, for whole numbers with more than
  18 digits, NaN/Infinity and nesting deep enough to exhaust the parser.
* :func:`form_file` reads one file field of a ``multipart/form-data`` body.

Example:
    >>> parse_json(b'{"label": 3}')
    {'label': 3}
    >>> parse_json(b'[' * 100000)
    Traceback (most recent call last):
    ...
    http_guard.HttpError: (400, 'the JSON is nested too deeply')
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import io
import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_DIGITS = 18  # of a JSON whole number; more cannot be a pixel, a label or an id here
_LENGTH = re.compile(r"[0-9]{1,15}")


class HttpError(Exception):
    """An answer other than 200: ``HttpError(status, message)``."""

    def __init__(self, status: int, message: str):
        super().__init__(status, message)
        self.status, self.message = status, message


class _DeadlineSocketReader(io.RawIOBase):
    """The connection's socket, read so that every request arrives within its deadline."""

    def __init__(self, sock):
        self.sock = sock
        self.deadline = math.inf

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive in time")
        self.sock.settimeout(remaining)
        return self.sock.recv_into(buffer)


class GuardedHandler(BaseHTTPRequestHandler):
    """A request handler whose requests must arrive whole within ``request_timeout`` seconds."""

    request_timeout = 10.0
    timeout = 10.0  # socket timeout for writing the answer

    def setup(self):
        super().setup()
        self.rfile.close()  # replaced: reads go through the deadline below
        self._reader = _DeadlineSocketReader(self.connection)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self):
        self._reader.deadline = time.monotonic() + self.request_timeout
        super().handle_one_request()

    def writing(self) -> None:
        """Call before answering: the answer gets the plain socket timeout, not what is left of the deadline."""
        self.connection.settimeout(self.timeout)


class GuardedServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` at once; the others wait in the listen backlog."""

    daemon_threads = True
    request_queue_size = 128  # listen backlog; the default 5 resets connections under a burst of clients

    def __init__(self, address, handler, max_connections: int = 32):
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        self._slots.acquire()  # at the bound: no more accept() until a connection ends
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def content_type(headers, allowed: tuple[str, ...]) -> email.message.EmailMessage:
    """The request's Content-Type header, parsed; :class:`HttpError` 415 unless it is one of ``allowed``."""
    value = headers.get("Content-Type")
    parsed = email.message.EmailMessage()
    parsed["Content-Type"] = value or "text/plain"
    if value is None or parsed.get_content_type() not in allowed:
        raise HttpError(415, f"Content-Type must be {' or '.join(allowed)}, got {value!r}")
    return parsed


def read_body(handler: BaseHTTPRequestHandler, cap: int) -> bytes:
    """The request's body, at most ``cap`` bytes; :class:`HttpError` 413, before reading, if it may be more."""
    if handler.headers.get("Transfer-Encoding"):
        raise HttpError(413, f"chunked bodies are not accepted: send a Content-Length of at most {cap} bytes")
    raw = handler.headers.get("Content-Length")
    if raw is None or not _LENGTH.fullmatch(raw.strip()):
        raise HttpError(413, f"a Content-Length of 0 to {cap} bytes is required, got {raw!r}")
    length = int(raw)
    if length > cap:
        raise HttpError(413, f"the body is {length} bytes, over the limit of {cap}")
    body = handler.rfile.read(length)
    if len(body) < length:
        raise HttpError(400, f"the body ended after {len(body)} of {length} bytes")
    return body


def _whole_number(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise HttpError(400, f"a whole number in the JSON has more than {MAX_DIGITS} digits")
    return int(text)


def _no_constant(name: str):
    raise HttpError(400, f"{name} is not a JSON number")


def parse_json(body: bytes):
    """The JSON document in ``body``; :class:`HttpError` 400 for anything that is not reasonable JSON."""
    try:
        return json.loads(body.decode("utf-8"), parse_int=_whole_number, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise HttpError(400, "the body is not UTF-8 text") from None
    except RecursionError:
        raise HttpError(400, "the JSON is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and the int conversion's own limits
        raise HttpError(400, f"the body is not valid JSON: {exc}") from None


def form_file(body: bytes, parsed_type: email.message.EmailMessage, field: str) -> bytes:
    """The content of the file field ``field`` of a multipart/form-data body; :class:`HttpError` 400 if absent."""
    boundary = parsed_type.get_param("boundary")
    if not boundary:
        raise HttpError(400, "multipart/form-data needs a boundary parameter")
    head = f"Content-Type: {parsed_type['Content-Type']}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    parts = (
        [part for part in message.iter_parts() if part.get_param("name", header="content-disposition") == field]
        if message.is_multipart()
        else []
    )
    if len(parts) != 1:
        found = "none" if not parts else f"{len(parts)}"
        raise HttpError(400, f"expected one form field {field!r} holding the image file, found {found}")
    return parts[0].get_payload(decode=True) or b""
