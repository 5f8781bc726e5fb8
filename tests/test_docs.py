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
