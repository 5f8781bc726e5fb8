"""Exceptions raised by gangplank."""

from __future__ import annotations


class GangplankError(Exception):
    """Base class of every exception gangplank raises on purpose."""


class PushError(GangplankError, OSError):
    """A push to the Pushgateway failed.

    Raised only where the caller asked for it (``ignore_exceptions=False``);
    otherwise the failure is logged once as a warning and retried in the
    background.

    Attributes:
        gateway: the gateway address, with any ``user:password@`` removed.
        status: the HTTP status code, or ``None`` for a network error.
        reason: what went wrong, e.g. ``"Connection refused"`` or
            ``"Internal Server Error"``.

    Example:
        >>> str(PushError("http://127.0.0.1:9091", 500, "Internal Server Error"))
        'push to Pushgateway http://127.0.0.1:9091 failed: HTTP 500 Internal Server Error'
    """

    def __init__(self, gateway: str, status: int | None, reason: str):
        self.gateway = gateway
        self.status = status
        self.reason = reason
        detail = f"HTTP {status} {reason}" if status is not None else reason
        super().__init__(f"push to Pushgateway {gateway} failed: {detail}")

    def __reduce__(self):
        return type(self), (self.gateway, self.status, self.reason)


class ReferenceFormatError(GangplankError, ValueError):
    """A drift reference file is corrupt, truncated or of another version."""
