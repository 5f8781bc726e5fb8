"""Offline checks of the Prometheus and Alertmanager configuration with promtool and amtool."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.stack_tools import DEPLOY, METRIC_CONTRACT, metric_names

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"
RULES = DEPLOY / "rules/gangplank.rules.yml"
RULE_TESTS = sorted((DEPLOY / "rules/tests").glob("*.yml"))

pytestmark = pytest.mark.skipif(
    not (shutil.which(PROMTOOL) and shutil.which(AMTOOL)),
    reason="promtool/amtool missing: apt-get install prometheus prometheus-alertmanager",
)


def run(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=60)


def copy_deploy(tmp_path):
    """A scratch copy of deploy/prometheus to break."""
    return shutil.copytree(DEPLOY, tmp_path / "prometheus", ignore=shutil.ignore_patterns("grafana"))


def test_prometheus_config_and_its_rules_are_valid():
    result = run(PROMTOOL, "check", "config", DEPLOY / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr


def test_rules_are_valid():
    result = run(PROMTOOL, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_tests_exist_for_every_alert():
    alerts = {line.split(":", 1)[1].strip() for line in RULES.read_text().splitlines() if line.strip().startswith("- alert:")}
    tested = "".join(path.read_text() for path in RULE_TESTS)
    assert alerts == {"GangplankDriftDetected", "GangplankFeedbackAccuracyLow", "GangplankTrainingStalled", "GangplankOverfitting"}
    assert all(f"alertname: {a}" in tested for a in alerts)


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(test_file):
    result = run(PROMTOOL, "test", "rules", test_file.name, cwd=test_file.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_use_only_contract_metrics():
    assert metric_names(RULES.read_text()) <= METRIC_CONTRACT
    assert "gangplank_train_val_loss" in metric_names(RULES.read_text())


def test_alertmanager_config_is_valid():
    result = run(AMTOOL, "check-config", DEPLOY / "alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr


# -- the same checks catch broken copies ------------------------------------------
@pytest.mark.parametrize("old, new, test_file, named", [
    # the accuracy floor weakened
    ("gangplank_predict_feedback_accuracy < 0.80", "gangplank_predict_feedback_accuracy < 0.70", "production.test.yml", "GangplankFeedbackAccuracyLow"),
    # the overfitting rule without its guard against a rerun's first epoch
    ("\n          and gangplank_train_epochs_count > 0", "", "training.test.yml", 'job="rerun"'),
])
def test_a_weakened_rule_fails_its_unit_tests(tmp_path, old, new, test_file, named):
    deploy = copy_deploy(tmp_path)
    rules = deploy / "rules/gangplank.rules.yml"
    text = rules.read_text()
    rules.write_text(text.replace(old, new))
    assert rules.read_text() != text
    result = run(PROMTOOL, "test", "rules", test_file, cwd=deploy / "rules/tests")
    assert result.returncode != 0
    assert named in result.stdout + result.stderr


def test_a_promql_syntax_error_fails_config_and_rules_checks(tmp_path):
    deploy = copy_deploy(tmp_path)
    rules = deploy / "rules/gangplank.rules.yml"
    rules.write_text(rules.read_text().replace("max by (job, agent) (gangplank_predict_drift_detected) == 1", "max by (job, agent) (gangplank_predict_drift_detected == 1"))
    assert run(PROMTOOL, "check", "rules", rules).returncode != 0
    assert run(PROMTOOL, "check", "config", deploy / "prometheus.yml").returncode != 0


def test_a_broken_alertmanager_config_fails(tmp_path):
    config = tmp_path / "alertmanager.yml"
    config.write_text((DEPLOY / "alertmanager.yml").read_text().replace("receiver: gangplank-webhook", "receiver: nobody"))
    result = run(AMTOOL, "check-config", config)
    assert result.returncode != 0
    assert "nobody" in result.stdout + result.stderr
