"""What the example server adds to uvicorn and Starlette to hold against hostile clients.

uvicorn already bounds a request's head (h11's 16 KiB), answers requests over
``--max-connections`` open connections with 503 and closes idle keep-alive
connections; Starlette parses multipart bodies with a bound on their parts and
refuses foreign ``Host`` headers (TrustedHostMiddleware). What neither does,
and this module does by hand:

* :class:`DeadlineH11Protocol`: every request must arrive whole (head and
  body) within ``request_timeout`` seconds of its first byte, else the
  connection is closed with one log line. uvicorn has no such deadline, so a
  client trickling one header line a second would hold its connection forever.
  Its protocol errors (bad ``Content-Length``, a head over 16 KiB) are answered
  in the API's JSON error form, with h11's status (413, 414, 431, 400).
* :func:`declared_length`: a POST must declare a ``Content-Length`` of at most
  ``cap`` bytes (413 before anything is read): h11 would read a chunked body of
  any length, and the body is held in memory.
* :func:`parse_json`: 400, never 500, for whole numbers of more than 18 digits,
  NaN/Infinity and nesting deep enough to exhaust the parser (the standard
  ``json`` module, which FastAPI uses, accepts the first two and raises
  RecursionError on the third).
* :func:`cross_site`: a browser's request from another site (CSRF); Starlette's
  CORS middleware only adds headers, it refuses nothing.

Example:
    >>> parse_json(b'{"label": 3}')
    {'label': 3}
    >>> parse_json(b'[' * 100000)
    Traceback (most recent call last):
    ...
    http_guard.HttpError: (400, 'the JSON is nested too deeply')
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import urllib.parse
from collections.abc import Mapping

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_DIGITS = 18  # of a JSON whole number; more cannot be a pixel, a label or an id here
_LENGTH = re.compile(r"[0-9]{1,15}")
log = logging.getLogger("gangplank.serve")


class HttpError(Exception):
    """An answer other than 200: ``HttpError(status, message)``."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(status, message)
        self.status, self.message, self.headers = status, message, dict(headers or {})


def error_body(message: str) -> bytes:
    """The API's error answer: ``{"status": "error", "message": ...}``."""
    return json.dumps({"status": "error", "message": message}).encode()


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, with a deadline for each request to arrive whole.

    The deadline starts at a request's first byte (or at the connection's
    start) and ends when its body is complete; a keep-alive connection waiting
    between requests is uvicorn's ``timeout_keep_alive`` business.
    """

    request_timeout: float = 10.0  # set on a subclass by :func:`protocol_with_deadline`

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._start_deadline()

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state is h11.IDLE:
            self._start_deadline()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE and self.conn.their_state is not h11.SEND_BODY:
            self._stop_deadline()  # the request is whole (DONE), or the connection is over

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def _start_deadline(self) -> None:
        self._deadline = self.loop.call_later(self.request_timeout, self._too_slow)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            client = "{}:{}".format(*self.client) if self.client else "a client"
            log.warning(
                "closed the connection of %s: its request did not arrive within %g s", client, self.request_timeout
            )
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 cannot parse, as JSON and with h11's status (413 for a bad length)."""
        error = sys.exc_info()[1]  # uvicorn calls this while handling the h11.RemoteProtocolError
        status, message = 400, msg
        if isinstance(error, h11.RemoteProtocolError):
            message = str(error)
            status = 413 if "Content-Length" in message else error.error_status_hint
            if status == 431 and b"\n" not in self.conn.trailing_data[0]:
                status, message = 414, "the request line is too long"
            elif status == 431:
                message = "the request's head is too long"
        body = error_body(message)
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        for event in (h11.Response(status_code=status, headers=headers), h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()


def protocol_with_deadline(request_timeout: float) -> type[DeadlineH11Protocol]:
    """A :class:`DeadlineH11Protocol` whose requests get ``request_timeout`` seconds; give it as uvicorn's ``http``."""
    if not request_timeout > 0:
        raise ValueError(f"request_timeout must be positive, got {request_timeout}")
    return type("DeadlineH11Protocol", (DeadlineH11Protocol,), {"request_timeout": float(request_timeout)})


def declared_length(headers: Mapping[str, str], cap: int) -> int:
    """The body's declared ``Content-Length``; :class:`HttpError` 413 if it is absent, chunked or over ``cap``."""
    if headers.get("transfer-encoding"):
        raise HttpError(413, f"chunked bodies are not accepted: send a Content-Length of at most {cap} bytes")
    raw = headers.get("content-length")
    if raw is None or not _LENGTH.fullmatch(raw.strip()):
        raise HttpError(413, f"a Content-Length of 0 to {cap} bytes is required, got {raw!r}")
    length = int(raw)
    if length > cap:
        raise HttpError(413, f"the body is {length} bytes, over the limit of {cap}")
    return length


def cross_site(headers: Mapping[str, str]) -> bool:
    """Whether a browser sent this request from another site (``Sec-Fetch-Site``, or an ``Origin`` not the Host)."""
    if headers.get("sec-fetch-site") == "cross-site":
        return True
    origin = headers.get("origin")
    return origin is not None and urllib.parse.urlsplit(origin).netloc != headers.get("host")


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
