"""The README documents what the code exports, and its commands exist."""

from __future__ import annotations

import re

import pytest

from gangplank.metric_schema import SCHEMA, markdown_table
from tests.gateway_tools import ROOT

README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("source", ["train", "test", "predict"])
def test_the_readme_metric_tables_are_the_schema(source):
    """Each table sits between <!-- metrics:SOURCE --> markers, as `python -m gangplank.metric_schema` prints it."""
    block = README.split(f"<!-- metrics:{source} -->\n")[1].split("\n<!-- /metrics -->")[0]
    assert block == markdown_table(source)
    documented = set(re.findall(r"`(gangplank_[a-z_0-9]+)`", README))
    assert {entry.name for entry in SCHEMA if entry.source == source} <= documented


def test_readme_commands_exist():
    for script in re.findall(r"bash (scripts/\w+\.sh)", README):
        assert (ROOT / script).is_file(), script


@pytest.mark.slow  # runs the README example in a fresh interpreter
def test_the_readme_drift_example_runs_as_printed(pushgateway):
    block = README.split("A self-contained run with made-up data")[1].split("```python\n")[1].split("```")[0]
    code, printed = block.split("\n# ", 1)
    code = code.replace('"127.0.0.1:9091"', repr(pushgateway.address))
    namespace: dict = {}
    exec(compile(code.replace("print(", "("), "README.md", "exec"), namespace)
    report = namespace["drift"].last_report
    assert f"{report.drift_detected} {report.signals}" == printed.strip()
