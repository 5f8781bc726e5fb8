"""Offline checks of the Prometheus rules and the Alertmanager configuration with promtool and amtool."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tests.stack_tools import DEPLOY, METRIC_CONTRACT, metric_names

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"
RULES = DEPLOY / "rules/gangplank.rules.yml"
RULE_TESTS = sorted((DEPLOY / "rules/tests").glob("*.test.yml"))
SEVERITIES = {
    "GangplankModelDegraded": "critical",
    "GangplankPushgatewayDown": "critical",
    "GangplankDataDrift": "warning",
    "GangplankAgentSilent": "warning",
    "GangplankPushFailing": "warning",
    "GangplankOverfitting": "warning",
    "GangplankTrainingStalled": "warning",
}
RECORDED = {
    "gangplank:predict_samples:rate5m",
    "gangplank:predict_instance_samples:rate5m",
    "gangplank:predict_feedback_accuracy:ratio",
    "gangplank:predict_drift_windows:ratio",
    "gangplank:predict_drift_windows:ratio1h",
}

pytestmark = pytest.mark.skipif(
    not (shutil.which(PROMTOOL) and shutil.which(AMTOOL)),
    reason="promtool/amtool missing: apt-get install prometheus prometheus-alertmanager",
)


def run(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=60, check=False)


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def alerts() -> dict[str, dict]:
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


def copy_deploy(tmp_path):
    """A scratch copy of deploy/prometheus to break."""
    return shutil.copytree(DEPLOY, tmp_path / "prometheus", ignore=shutil.ignore_patterns("grafana"))


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading (lower case, punctuation dropped, spaces to hyphens)."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_prometheus_config_and_its_rules_are_valid():
    result = run(PROMTOOL, "check", "config", DEPLOY / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr


def test_rules_are_valid():
    result = run(PROMTOOL, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout + result.stderr  # lint findings (e.g. duplicate rules) print FAILED with rc 0


def test_the_alerts_their_severities_and_the_recording_rules():
    assert {name: rule["labels"]["severity"] for name, rule in alerts().items()} == SEVERITIES
    assert RECORDED <= {rule["record"] for rule in rules() if "record" in rule}


def test_rule_tests_exist_for_every_alert():
    tested = "".join(path.read_text() for path in RULE_TESTS)
    for name in alerts():
        assert f"alertname: {name}" in tested, f"{name} has no promtool unit test"


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(test_file):
    result = run(PROMTOOL, "test", "rules", test_file.name, cwd=test_file.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_use_only_schema_metrics():
    text = RULES.read_text()
    assert metric_names(text) <= METRIC_CONTRACT, metric_names(text) - METRIC_CONTRACT
    assert {"gangplank_train_val_loss", "gangplank_predict_drift_signal_recent"} <= metric_names(text)


def test_quality_and_drift_alerts_take_their_thresholds_from_pushed_gauges():
    for name in ("GangplankModelDegraded", "GangplankDataDrift"):
        expr = alerts()[name]["expr"]
        assert not re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", expr), f"{name} hard-codes a number: {expr}"
    expr = alerts()["GangplankModelDegraded"]["expr"]
    for gauge in ("quality_floor", "min_feedback", "sustained_windows", "recent_feedback_samples"):
        assert f"gangplank_predict_{gauge}" in expr


def test_every_alert_has_a_runbook_section_in_the_readme():
    readme = (DEPLOY / "README.md").read_text()
    anchors = {github_anchor(m) for m in re.findall(r"^#{2,4}\s+(.+)$", readme, re.MULTILINE)}
    for name, rule in alerts().items():
        url = rule["annotations"]["runbook_url"]
        assert url == f"deploy/prometheus/README.md#runbook-{name.lower()}", url
        assert url.split("#")[1] in anchors, f"README.md has no section 'Runbook: {name}'"
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_alertmanager_config_is_valid():
    result = run(AMTOOL, "check-config", DEPLOY / "alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "labels, receiver",
    [
        (["severity=critical", "alertname=GangplankModelDegraded"], "page"),
        (["severity=critical", "alertname=GangplankPushgatewayDown"], "page"),
        (["severity=warning", "alertname=GangplankDataDrift"], "chat"),
        (["alertname=SomethingElse"], "chat"),
    ],
)
def test_alertmanager_routes_by_severity(labels, receiver):
    result = run(AMTOOL, "config", "routes", "test", f"--config.file={DEPLOY / 'alertmanager.yml'}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [receiver]


def test_every_alert_severity_has_a_receiver():
    for severity in set(SEVERITIES.values()):
        result = run(
            AMTOOL, "config", "routes", "test", f"--config.file={DEPLOY / 'alertmanager.yml'}", f"severity={severity}"
        )
        assert result.stdout.split() == [{"critical": "page", "warning": "chat"}[severity]]


# -- the same checks catch broken copies ------------------------------------------
WEAKENED = [
    # the page without its minimum of labels: 9 labels at 50 % would page
    (
        (
            "\n  and on (job, agent, instance)\n  max by (job, agent, instance) (gangplank_predict_recent_feedback_samples)"
            "\n  >= on (job, agent, instance) group_left () max by (job, agent, instance) (gangplank_predict_min_feedback)"
        ),
        "",
        "GangplankModelDegraded",
    ),
    # one noisy window pages
    (
        (
            '(gangplank_predict_drift_signal_recent{signal=~"accuracy|estimated_accuracy"})\n  >= on (job, agent, instance) '
            "group_left () max by (job, agent, instance) (gangplank_predict_sustained_windows)"
        ),
        '(gangplank_predict_drift_signal_recent{signal=~"accuracy|estimated_accuracy"}) >= 1',
        "GangplankModelDegraded",
    ),
    # one noisy window warns
    (
        (
            '(gangplank_predict_drift_signal_recent{signal=~"input|prediction|confidence"})\n>= on (job, agent, instance) '
            "group_left () max by (job, agent, instance) (gangplank_predict_sustained_windows)"
        ),
        '(gangplank_predict_drift_signal_recent{signal=~"input|prediction|confidence"}) >= 1',
        "GangplankDataDrift",
    ),
    # a retired agent (group deleted on purpose) reported as silent
    (' < on () group_left () max(process_start_time_seconds{job="pushgateway"})', "", "GangplankAgentSilent"),
    # an emptied gateway turns a silent agent green
    (
        (
            "\n      or on (job, agent, instance)\n      (last_over_time(push_time_seconds[6h]) < on () group_left () "
            'max(process_start_time_seconds{job="pushgateway"}))'
        ),
        "",
        "GangplankAgentSilent",
    ),
    # a missing scrape job is not noticed
    (' or absent(up{job="pushgateway"})', "", "GangplankPushgatewayDown"),
    # the overfitting rule without its guard against a rerun's first epoch
    ("\nand gangplank_train_epochs_count > 0", "", 'job="rerun"'),
]


@pytest.mark.parametrize("old, new, named", WEAKENED, ids=[f"{w[2]}-{i}" for i, w in enumerate(WEAKENED)])
def test_a_weakened_rule_fails_its_unit_tests(tmp_path, old, new, named):
    deploy = copy_deploy(tmp_path)
    path = deploy / "rules/gangplank.rules.yml"
    config = yaml.safe_load(path.read_text())
    changed = 0
    for group in config["groups"]:
        for rule in group["rules"]:
            if old in rule["expr"]:
                rule["expr"], changed = rule["expr"].replace(old, new), changed + 1
    assert changed == 1, f"{old!r} not found once in the rules"
    path.write_text(yaml.safe_dump(config, sort_keys=False, width=1000))
    assert run(PROMTOOL, "check", "rules", path).returncode == 0  # still valid, only weaker
    outputs = [run(PROMTOOL, "test", "rules", t.name, cwd=deploy / "rules/tests") for t in RULE_TESTS]
    assert any(r.returncode != 0 for r in outputs)
    assert named in "".join(r.stdout + r.stderr for r in outputs)


def test_a_promql_syntax_error_fails_config_and_rules_checks(tmp_path):
    deploy = copy_deploy(tmp_path)
    path = deploy / "rules/gangplank.rules.yml"
    text = path.read_text()
    path.write_text(
        text.replace(
            "expr: push_failure_time_seconds > push_time_seconds",
            "expr: push_failure_time_seconds > (push_time_seconds",
        )
    )
    assert path.read_text() != text
    assert run(PROMTOOL, "check", "rules", path).returncode != 0
    assert run(PROMTOOL, "check", "config", deploy / "prometheus.yml").returncode != 0


def test_a_broken_alertmanager_config_fails(tmp_path):
    config = tmp_path / "alertmanager.yml"
    config.write_text((DEPLOY / "alertmanager.yml").read_text().replace("receiver: page", "receiver: nobody"))
    result = run(AMTOOL, "check-config", config)
    assert result.returncode != 0
    assert "nobody" in result.stdout + result.stderr
