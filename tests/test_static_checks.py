"""The library's source is clean under ruff (lint and format) and mypy, with the settings in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.gateway_tools import ROOT

CHECKS = {
    "ruff check": [sys.executable, "-m", "ruff", "check", "src/gangplank"],
    "ruff format": [sys.executable, "-m", "ruff", "format", "--check", "src/gangplank"],
    "mypy": [sys.executable, "-m", "mypy"],
}


@pytest.mark.parametrize("name", list(CHECKS))
def test_source_is_clean(name):
    result = subprocess.run(CHECKS[name], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
