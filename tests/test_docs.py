"""The README documents what the code exports, and its commands exist."""

from __future__ import annotations

import re

from gangplank.drift_metrics import METRICS
from tests.gateway_tools import ROOT

README = (ROOT / "README.md").read_text()


def test_every_production_metric_is_in_the_readme_table():
    documented = set(re.findall(r"`(gangplank_predict_[a-z_0-9]+)`", README))
    missing = {f"gangplank_predict_{name}" for name in METRICS} - documented
    assert not missing


def test_readme_commands_exist():
    for script in re.findall(r"bash (scripts/\w+\.sh)", README):
        assert (ROOT / script).is_file(), script


def test_the_readme_drift_example_runs_as_printed(pushgateway):
    block = README.split("A self-contained run with made-up data")[1].split("```python\n")[1].split("```")[0]
    code, printed = block.split("\n# ", 1)
    code = code.replace('"127.0.0.1:9091"', repr(pushgateway.address))
    namespace: dict = {}
    exec(compile(code.replace("print(", "("), "README.md", "exec"), namespace)
    report = namespace["drift"].last_report
    assert f"{report.drift_detected} {report.signals}" == printed.strip()
