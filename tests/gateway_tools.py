"""What only gangplank's own tests need: paths, and gangplank's log records about one gateway.

The servers and wait helpers that tests and benchmarks share live in the
``gangplank_devtools`` package (devtools/).

Example:
    >>> failure_lines(caplog, gateway.address)  # doctest: +SKIP
    ['push to 127.0.0.1:40125 failed: ...']
"""

from __future__ import annotations

import glob
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RULE_FILES = sorted(glob.glob(str(ROOT / "deploy/prometheus/rules/*.yml")))


def gangplank_warnings(caplog, address: str) -> list:
    """Records of logger ``gangplank`` whose message names ``address`` (other tests' senders may still log)."""
    return [r for r in caplog.records if r.name == "gangplank" and address in r.getMessage()]


def failure_lines(caplog, address: str) -> list[str]:
    return [r.getMessage() for r in gangplank_warnings(caplog, address) if " failed: " in r.getMessage()]


def recovery_lines(caplog, address: str) -> list[str]:
    return [r.getMessage() for r in gangplank_warnings(caplog, address) if "answers again" in r.getMessage()]
