"""Offline checks of the Prometheus rules and the Alertmanager configuration with promtool and amtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml
from gangplank_devtools import Service, free_port, wait_for
from gangplank_devtools.processes import find_binary

from tests.stack_tools import DEPLOY, METRIC_CONTRACT, metric_names

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"
RULES = DEPLOY / "rules/gangplank.rules.yml"
RULE_TESTS = sorted((DEPLOY / "rules/tests").glob("*.test.yml"))
SEVERITIES = {
    "GangplankModelDegraded": "critical",
    "GangplankPushgatewayDown": "critical",
    "GangplankAccuracyEstimateLow": "warning",
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
    "gangplank:predict_feedback_mae:rate5m",
    "gangplank:predict_feedback_rmse:rate5m",
    "gangplank:predict_drift_windows:ratio",
    "gangplank:predict_drift_windows:ratio1h",
}

pytestmark = [
    pytest.mark.slow,  # runs promtool on every rule and on weakened copies
    pytest.mark.skipif(
        not (shutil.which(PROMTOOL) and shutil.which(AMTOOL)),
        reason="promtool/amtool missing: apt-get install prometheus prometheus-alertmanager",
    ),
]


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
    for name in ("GangplankModelDegraded", "GangplankAccuracyEstimateLow", "GangplankDataDrift"):
        expr = alerts()[name]["expr"]
        assert not re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", expr), f"{name} hard-codes a number: {expr}"
    expr = alerts()["GangplankModelDegraded"]["expr"]
    for gauge in ("cusum_threshold", "quality_floor", "min_feedback", "sustained_windows", "recent_feedback_samples"):
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
        (["severity=warning", "alertname=GangplankAccuracyEstimateLow"], "chat"),
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


def inhibited_by(alertmanager_url: str) -> dict[tuple[str, str, str], list[str]]:
    """``{(alertname, agent, instance): inhibitedBy}`` of every alert amtool lists (active or inhibited)."""
    result = run(
        AMTOOL, "alert", "query", f"--alertmanager.url={alertmanager_url}", "--active", "--inhibited", "-o", "json"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return {
        (a["labels"]["alertname"], a["labels"]["agent"], a["labels"]["instance"]): a["status"]["inhibitedBy"]
        for a in json.loads(result.stdout)
    }


def test_a_page_inhibits_the_estimate_warning_of_the_same_replica_only(tmp_path):
    port = free_port()
    args = [
        find_binary("alertmanager"),
        f"--config.file={DEPLOY / 'alertmanager.yml'}",
        f"--storage.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    with Service("alertmanager", args, port, tmp_path).start() as manager:
        sent = [
            ("GangplankModelDegraded", "critical", "a", "r0"),
            ("GangplankAccuracyEstimateLow", "warning", "a", "r0"),  # same replica: inhibited
            ("GangplankAccuracyEstimateLow", "warning", "a", "r1"),  # another replica of the agent
            ("GangplankAccuracyEstimateLow", "warning", "b", "r0"),  # another agent
            ("GangplankDataDrift", "warning", "a", "r0"),  # another warning
        ]
        for name, severity, agent, instance in sent:
            labels = [f"alertname={name}", f"severity={severity}", "job=prod", f"agent={agent}", f"instance={instance}"]
            result = run(AMTOOL, "alert", "add", f"--alertmanager.url={manager.url}", *labels)
            assert result.returncode == 0, result.stdout + result.stderr

        def settled():  # the inhibitor sees the page a moment after it arrives
            seen = inhibited_by(manager.url)
            return seen if len(seen) == len(sent) and any(seen.values()) else None

        seen = wait_for(settled) or inhibited_by(manager.url)
    assert [key for key, by in seen.items() if by] == [("GangplankAccuracyEstimateLow", "a", "r0")]
    assert set(seen) == {(name, agent, instance) for name, _, agent, instance in sent}


# -- the same checks catch broken copies ------------------------------------------
JAI = "(job, agent, instance)"
CHART = "(job, agent, instance, evidence, chart)"
SUSTAINED = f"\n>= on {JAI} min by {JAI} (gangplank_predict_sustained_windows)"
END = "(last_over_time(gangplank_predict_window_end_timestamp_seconds[6h]))"
WEAKENED = [
    # the pooled floor without its minimum of labels: 9 labels at 50 % would page
    (
        (
            f"\n  and on {JAI}\n  max by {JAI} (gangplank_predict_recent_feedback_samples)"
            f"\n  >= on {JAI} min by {JAI} (gangplank_predict_min_feedback)"
        ),
        "",
        "GangplankModelDegraded",
    ),
    # a chart held at its threshold (in alarm until it recovers) stops paging
    (f"\n  >= on {CHART}\n", f"\n  > on {CHART}\n", "GangplankModelDegraded"),
    # one noisy window of the estimate under the floor pages
    (
        '(gangplank_predict_drift_signal_recent{signal="estimated_floor"})' + SUSTAINED.replace("\n", "\n  "),
        '(gangplank_predict_drift_signal_recent{signal="estimated_floor"}) >= 1',
        "GangplankModelDegraded",
    ),
    # the confidence-based estimate pages on its own (harmless under-confidence pages)
    ('{signal="estimated_floor"}', '{signal=~"estimated_floor|estimated_accuracy"}', "GangplankModelDegraded"),
    # one noisy window of the estimate warns
    (
        '(gangplank_predict_drift_signal_recent{signal="estimated_accuracy"})' + SUSTAINED,
        '(gangplank_predict_drift_signal_recent{signal="estimated_accuracy"}) >= 1',
        "GangplankAccuracyEstimateLow",
    ),
    # one noisy window warns of drift
    (
        '(gangplank_predict_drift_signal_recent{signal=~"input|prediction|confidence"})' + SUSTAINED,
        '(gangplank_predict_drift_signal_recent{signal=~"input|prediction|confidence"}) >= 1',
        "GangplankDataDrift",
    ),
    # -- a rogue group (same job, agent, instance, one more label) could silence or break them:
    # a rogue threshold makes the comparison many-to-many: the rule fails to evaluate
    (
        f"min by {CHART} (gangplank_predict_cusum_threshold)",
        "gangplank_predict_cusum_threshold",
        "GangplankModelDegraded",
    ),
    # a rogue threshold of 1e9 silences a chart in alarm
    (
        f"min by {CHART} (gangplank_predict_cusum_threshold)",
        f"max by {CHART} (gangplank_predict_cusum_threshold)",
        "GangplankModelDegraded",
    ),
    # a rogue chart without evidence silences a chart in alarm
    (
        f"max by {CHART} (gangplank_predict_cusum)",
        f"min by {CHART} (gangplank_predict_cusum)",
        "GangplankModelDegraded",
    ),
    # a rogue sustained_windows of 1e9 silences the estimate under the floor
    (
        '{signal="estimated_floor"})\n  >= on (job, agent, instance) min by',
        '{signal="estimated_floor"})\n  >= on (job, agent, instance) max by',
        "GangplankModelDegraded",
    ),
    # a rogue accuracy of 1, floor of 0, min_feedback of +Inf or label count of 0 silences the pooled floor
    (
        f"min by {JAI} (gangplank_predict_recent_feedback_accuracy)",
        f"max by {JAI} (gangplank_predict_recent_feedback_accuracy)",
        "GangplankModelDegraded",
    ),
    (
        f"max by {JAI} (gangplank_predict_quality_floor)",
        f"min by {JAI} (gangplank_predict_quality_floor)",
        "GangplankModelDegraded",
    ),
    (
        f"min by {JAI} (gangplank_predict_min_feedback)",
        f"max by {JAI} (gangplank_predict_min_feedback)",
        "GangplankModelDegraded",
    ),
    (
        f"max by {JAI} (gangplank_predict_recent_feedback_samples)",
        f"min by {JAI} (gangplank_predict_recent_feedback_samples)",
        "GangplankModelDegraded",
    ),
    # a rogue sustained_windows of 1e9 silences the warnings
    (
        '{signal="estimated_accuracy"})\n>= on (job, agent, instance) min by',
        '{signal="estimated_accuracy"})\n>= on (job, agent, instance) max by',
        "GangplankAccuracyEstimateLow",
    ),
    (
        '{signal=~"input|prediction|confidence"})\n>= on (job, agent, instance) min by',
        '{signal=~"input|prediction|confidence"})\n>= on (job, agent, instance) max by',
        "GangplankDataDrift",
    ),
    # a rogue window in the far future, or an interval of 1e9 s, hides a silent agent
    (f"min by {JAI} {END}", f"max by {JAI} {END}", "GangplankAgentSilent"),
    (
        f"min by {JAI} (last_over_time(gangplank_predict_window_interval_seconds[6h]))",
        f"max by {JAI} (last_over_time(gangplank_predict_window_interval_seconds[6h]))",
        "GangplankAgentSilent",
    ),
    # without the aggregate, a rogue window makes the comparison many-to-one: the rule fails to evaluate
    (f"time() - min by {JAI} {END}\n  > on", f"time() - {END}\n  > on", "GangplankAgentSilent"),
    # a rogue window claimed for a dead scraped server hides it
    (
        "\n  and on (job, instance) (up == 0)",
        f"\n  unless on {JAI} gangplank_predict_window_end_timestamp_seconds\n  and on (job, instance) (up == 0)",
        "GangplankAgentSilent",
    ),
    # -- silence that is not noticed:
    # a retired agent (group deleted on purpose) reported as silent
    (' < on () group_left () max(process_start_time_seconds{job="pushgateway"})', "", "GangplankAgentSilent"),
    # an emptied gateway turns a silent agent green
    (
        (
            f"\n      or on {JAI}\n      (last_over_time(push_time_seconds[6h]) < on () group_left () "
            'max(process_start_time_seconds{job="pushgateway"}))'
        ),
        "",
        "GangplankAgentSilent",
    ),
    # a rejected push described by the time of the failure instead of the age of the last accepted push
    ("time() - push_time_seconds and ", "", "GangplankPushFailing"),
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
            "expr: time() - push_time_seconds and push_failure_time_seconds > push_time_seconds",
            "expr: time() - push_time_seconds and push_failure_time_seconds > (push_time_seconds",
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
