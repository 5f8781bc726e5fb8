"""Loopback TCP ports: a free one, whether one is taken, and which process listens on one.

Example:
    >>> port = free_port()
    >>> port_in_use(port)
    False
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    """Whether a server could not listen on 127.0.0.1:``port`` now (something listens there, on any address).

    SO_REUSEADDR, as the Go servers set it, so that connections of a stopped
    server still in TIME_WAIT do not count.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def _listening_inodes(port: int) -> set[str] | None:
    """Socket inodes in LISTEN state on ``port`` (Linux /proc/net); None where /proc/net cannot tell."""
    inodes, readable = set(), False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes if readable else None


def listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself holds the listening socket on ``port``.

    What makes "ready" mean *this* server: another process answering on the
    same port does not count. True where /proc cannot tell (not Linux).
    """
    inodes = _listening_inodes(port)
    if inodes is None:
        return True
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False
