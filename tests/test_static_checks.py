"""The whole tree is clean under ruff (lint and format; the pinned version) and the library under mypy,
with the settings in pyproject.toml; ``duplicates`` finds no copied code in the library."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from tests.gateway_tools import ROOT

CHECKS = {
    "ruff check": [sys.executable, "-m", "ruff", "check", "."],
    "ruff format": [sys.executable, "-m", "ruff", "format", "--check", "."],
    "mypy": [sys.executable, "-m", "mypy"],
}


@pytest.mark.parametrize("name", list(CHECKS))
def test_source_is_clean(name):
    result = subprocess.run(CHECKS[name], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_the_pinned_version():
    pinned = re.search(r'"ruff==([0-9.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    result = subprocess.run([sys.executable, "-m", "ruff", "--version"], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["ruff", pinned]


@pytest.mark.skipif(shutil.which("duplicates") is None, reason="the duplicates command is not installed")
def test_no_copied_code_in_the_library():
    result = subprocess.run(["duplicates"], cwd=ROOT / "src", capture_output=True, text=True, timeout=120)
    rows = [line for line in result.stdout.splitlines() if re.match(r"D\d+ ", line) and " shape" not in line]
    assert not rows, result.stdout
