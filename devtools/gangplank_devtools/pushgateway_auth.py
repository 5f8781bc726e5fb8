"""Basic auth for a Pushgateway: a random secret, and the ``--web.config.file`` holding its bcrypt hash.

The Pushgateway (1.5 and later, Debian's included) reads ``basic_auth_users``
from its web configuration file and refuses every request without those
credentials (401). Pushers and Prometheus then send ``user:password``.

Example:
    >>> import tempfile
    >>> credentials = write_credentials(tempfile.mkdtemp())
    >>> credentials.user, len(credentials.password) >= 32
    ('gangplank', True)
    >>> credentials.web_config.read_text().startswith("basic_auth_users:")
    True

Command line: ``python -m gangplank_devtools.pushgateway_auth deploy/prometheus/secrets`` writes
``pushgateway_password`` (kept if it exists) and ``pushgateway-web-config.yml`` there, for the compose stack.
"""

from __future__ import annotations

import argparse
import os
import secrets
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import bcrypt

USER = "gangplank"
PASSWORD_FILE = "pushgateway_password"
WEB_CONFIG_FILE = "pushgateway-web-config.yml"
BCRYPT_ROUNDS = 10  # the cost exporter-toolkit's documentation uses; each request pays it once


@dataclass(frozen=True)
class Credentials:
    """Who may push, and the files that say so."""

    user: str
    password: str
    password_file: Path
    web_config: Path

    def address(self, host_port: str) -> str:
        """``http://user:password@host:port``, the form gangplank's exporters take (percent-encoded)."""
        quoted = ":".join(urllib.parse.quote(part, safe="") for part in (self.user, self.password))
        return f"http://{quoted}@{host_port}"


def bcrypt_hash(password: str, rounds: int = BCRYPT_ROUNDS) -> str:
    """The bcrypt hash of ``password``, as ``basic_auth_users`` wants it."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


def write_credentials(directory: str | Path, user: str = USER, mode: int = 0o600) -> Credentials:
    """``directory/pushgateway_password`` (a new random secret unless it exists) and the web config hashing it.

    Both files get ``mode`` (default: readable by their owner only; for the compose stack, whose containers
    run as ``nobody``, give them to group 65534 with mode 0o640: deploy/prometheus/README.md).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    password_file = directory / PASSWORD_FILE
    if not password_file.exists():
        _write(password_file, secrets.token_urlsafe(32) + "\n", mode)
    password = password_file.read_text().strip()
    if not password:
        raise ValueError(f"{password_file} is empty")
    web_config = directory / WEB_CONFIG_FILE
    _write(web_config, f"basic_auth_users:\n  {user}: '{bcrypt_hash(password)}'\n", mode)
    return Credentials(user, password, password_file, web_config)


def _write(path: Path, text: str, mode: int) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "w") as stream:
        stream.write(text)
    os.chmod(path, mode)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gangplank_devtools.pushgateway_auth", description=__doc__.splitlines()[0]
    )
    parser.add_argument("directory", type=Path, help="where to write the files (e.g. deploy/prometheus/secrets)")
    parser.add_argument("--user", default=USER, help=f"the user name (default {USER})")
    args = parser.parse_args(argv)
    credentials = write_credentials(args.directory, args.user)
    print(f"password: {credentials.password_file}; web config: {credentials.web_config} (user {credentials.user})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
