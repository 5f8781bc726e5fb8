"""Replay the shipped alert rules on an exporter's own output, window by window, with promtool.

A push-less ``DriftMonitor`` is fed one window a minute; after each window
closes, :func:`monitor_snapshots` keeps what a scrape serves (``collect()``,
the families a push sends). :func:`replay` writes those samples as promtool
``input_series`` (one sample a minute per series, with the labels a
Pushgateway scrape carries: ``job``, ``agent``, ``instance``) and asks
promtool which alerts fire at each minute. promtool evaluates the rules, so
``for:`` and ``keep_firing_for`` hold as in Prometheus. Nothing is written by
hand: the series are the exporter's.

What a replay adds to the samples, as the deployed stack would see them:

* a series missing from a snapshot is marked stale at its first missing minute
  (a push replaces the whole group, and Prometheus marks a vanished series
  stale), then ``_`` (no sample);
* the replay's clock: ``*_timestamp_seconds`` gauges read the minute the window
  closed, ``gangplank_predict_window_interval_seconds`` reads one minute;
* with ``gateway=True``, the Pushgateway's own series (``up``,
  ``process_start_time_seconds``, and per group ``push_time_seconds`` and
  ``push_failure_time_seconds``), so the gateway alerts see a healthy gateway.

promtool stops a whole test at the first rule that fails to evaluate, so each
alert is tested in a file of its own (with the recording rules it reads); a rule
that fails raises :class:`RuleEvaluationError`.

Example (not run as a doctest: it needs a reference and promtool)::

    monitor = DriftMonitor(None, "replay", reference=reference, agent="web", window_size=200)
    snapshots = monitor_snapshots(monitor, [dict(inputs=x, probabilities=p, labels=y)] * 5)
    monitor.close()
    firing = replay(snapshots)  # [set(), set(), {"GangplankDataDrift"}, ...]
    first_minute(firing, "GangplankDataDrift")  # 2: the 3rd window, 3 of the last 5
"""

from __future__ import annotations

import inspect
import math
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import yaml

RULES = Path(__file__).resolve().parents[1] / "deploy/prometheus/rules/gangplank.rules.yml"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
STEP_SECONDS = 60  # one window a minute
WINDOWS_CLOSED = "gangplank_predict_windows_total"
INTERVAL_GAUGE = "gangplank_predict_window_interval_seconds"
GATEWAY_INSTANCE = "pushgateway:9091"
MINUTE_LABEL = "replay_minute"

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]  # metric name, sorted labels


class RuleEvaluationError(RuntimeError):
    """promtool could not evaluate a rule (Prometheus would skip it; promtool stops the test)."""


# ----------------------------------------------------------------------------- feeding a monitor
def supports_shadow() -> bool:
    """Whether this gangplank takes a shadow model's probabilities (``observe(..., shadow=...)``)."""
    from gangplank import DriftMonitor, DriftReference

    return all("shadow" in inspect.signature(f).parameters for f in (DriftMonitor.observe, DriftReference.fit))


def monitor_snapshots(
    monitor,
    windows: Iterable[Mapping],
    *,
    shadow: bool = False,
    labels_via: str = "observe",
    timeout: float = 60.0,
) -> list[list]:
    """Feed ``monitor`` one window at a time; after each, the families it serves (``collect()``).

    Each window is a mapping with ``probabilities`` (rows, classes) and
    optionally ``inputs`` (rows, features), ``shadow`` (the shadow model's
    probabilities, passed only with ``shadow=True``), ``labels`` (rows,),
    ``labelled`` (rows,) bool (which rows' labels reach the monitor; default
    all when ``labels`` is given) and ``ids`` (rows,) scoring ids. Other keys
    (e.g. ``true_labels``) are ignored. Its row count must be the monitor's
    ``window_size``: each window must close exactly one window (checked).

    ``labels_via="observe"`` passes the labelled rows as one batch with their
    labels and the rest as a second batch, both in the window.
    ``labels_via="feedback"`` observes the whole window with its ids, then
    sends the labels by ``feedback(labels, ids=...)``; today they count in the
    window that is open when they arrive, i.e. the next one.

    Example::

        snapshots = monitor_snapshots(monitor, streams.windows("clean", 10))
    """
    if labels_via not in ("observe", "feedback"):
        raise ValueError(f"labels_via must be 'observe' or 'feedback', got {labels_via!r}")
    if shadow and not supports_shadow():
        raise TypeError("shadow=True, but this gangplank's DriftMonitor.observe takes no shadow= argument")
    snapshots = []
    closed = windows_closed(monitor.collect())
    for i, window in enumerate(windows):
        _feed(monitor, window, shadow, labels_via)
        if not monitor.flush(timeout=timeout):
            raise RuntimeError(f"window {i}: the monitor did not finish within {timeout} s")
        families = list(monitor.collect())
        now = windows_closed(families)
        if now != closed + 1:
            raise RuntimeError(
                f"window {i} closed {now - closed} windows, not 1: give windows of the monitor's window_size "
                f"({monitor.window_size} rows)"
            )
        closed = now
        snapshots.append(families)
    return snapshots


def _feed(monitor, window: Mapping, shadow: bool, labels_via: str) -> None:
    probabilities = np.asarray(window["probabilities"])
    rows = probabilities.shape[0]
    inputs, ids, labels = window.get("inputs"), window.get("ids"), window.get("labels")
    labelled = np.zeros(rows, bool) if labels is None else np.ones(rows, bool)
    if labels is not None and window.get("labelled") is not None:
        labelled = np.asarray(window["labelled"], dtype=bool)
        if labelled.shape != (rows,):
            raise ValueError(f"labelled must have one flag per row ({rows}), got shape {labelled.shape}")
    if labels_via == "feedback" and labelled.any() and ids is None:
        raise ValueError("labels_via='feedback' needs scoring ids in each labelled window")

    def part(rows_mask, with_labels: bool) -> dict:
        batch = {
            "inputs": None if inputs is None else np.asarray(inputs)[rows_mask],
            "probabilities": probabilities[rows_mask],
            "labels": np.asarray(labels)[rows_mask] if with_labels else None,
            "ids": None if ids is None else np.asarray(ids)[rows_mask],
        }
        if shadow and window.get("shadow") is not None:
            batch["shadow"] = np.asarray(window["shadow"])[rows_mask]
        return batch

    if labels_via == "feedback":
        monitor.observe(**part(slice(None), False))
        if labelled.any():
            monitor.feedback(np.asarray(labels)[labelled], ids=np.asarray(ids)[labelled])
        return
    for mask, with_labels in ((labelled, True), (~labelled, False)):
        if mask.any():
            monitor.observe(**part(mask, with_labels))


def windows_closed(families) -> int:
    """The value of ``gangplank_predict_windows_total`` in these families (0 if absent)."""
    values = [v for (name, _), v in samples(families).items() if name == WINDOWS_CLOSED]
    return int(sum(values))


# ----------------------------------------------------------------------------- samples -> input_series
def samples(families) -> dict[SeriesKey, float]:
    """Every sample of these families: ``{(name, sorted labels): value}``."""
    out = {}
    for family in families:
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return out


def format_value(value: float) -> str:
    """A sample value in promtool's series notation (``NaN``, ``Inf``, ``-Inf`` or the shortest float)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    return repr(float(value))


def series_values(values: Sequence[float | None]) -> str:
    """promtool's ``values`` for one sample a step; ``None`` where the series is absent.

    The first missing step after a present one is ``stale`` (what Prometheus
    records for a vanished series), later ones ``_``; runs of one value are
    compressed (``1x2`` is three samples of 1, ``_x2`` two missing steps).

    Example:
        >>> series_values([1.0, 1.0, 1.0, None, None, None, 2.5, float("nan")])
        '1.0x2 stale _x2 2.5 NaN'
    """
    tokens: list[str] = []
    previous_present = False
    for value in values:
        if value is None:
            tokens.append("stale" if previous_present else "_")
            previous_present = False
        else:
            tokens.append(format_value(value))
            previous_present = True
    out = []
    i = 0
    while i < len(tokens):
        j = i
        while j + 1 < len(tokens) and tokens[j + 1] == tokens[i] and tokens[i] not in ("NaN", "stale"):
            j += 1
        run = j - i + 1
        if run == 1:
            out.append(tokens[i])
        elif tokens[i] == "_":
            out.append(f"_x{run}")
        else:
            out.append(f"{tokens[i]}x{run - 1}")
        i = j + 1
    return " ".join(out)


def series_name(name: str, labels: Mapping[str, str]) -> str:
    """``name{a="b",...}`` with label values escaped; empty values kept (they mean 'no such label')."""

    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    inner = ",".join(f'{k}="{escape(str(v))}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def input_series(
    snapshots: Sequence[Iterable],
    *,
    job: str = "replay",
    instance: str = "",
    gateway: bool = True,
    step_seconds: int = STEP_SECONDS,
) -> list[dict[str, str]]:
    """promtool ``input_series`` for these snapshots, one per step (see the module docstring)."""
    per_step = [samples(families) for families in snapshots]
    keys: dict[SeriesKey, None] = {}
    for step in per_step:
        keys.update(dict.fromkeys(step))
    rows = []
    for name, labels in keys:
        values = []
        for t, step in enumerate(per_step):
            value = step.get((name, labels))
            if value is not None and math.isfinite(value):
                if name.endswith("_timestamp_seconds"):
                    value = float(t * step_seconds)
                elif name == INTERVAL_GAUGE:
                    value = float(step_seconds)
            values.append(value)
        full = {**dict(labels), "job": job, "instance": instance}
        rows.append({"series": series_name(name, full), "values": series_values(values)})
    if gateway:
        rows += _gateway_series(per_step, job, instance, step_seconds)
    return rows


def _gateway_series(per_step: list[dict], job: str, instance: str, step_seconds: int) -> list[dict[str, str]]:
    """What the Pushgateway itself serves: its ``up`` and start time, and each group's push times."""
    steps = len(per_step)
    gateway = {"job": "pushgateway", "instance": GATEWAY_INSTANCE}
    rows = [
        {"series": series_name("up", gateway), "values": series_values([1.0] * steps)},
        {
            "series": series_name("process_start_time_seconds", gateway),
            "values": series_values([-step_seconds] * steps),
        },
    ]
    agents = sorted({dict(labels).get("agent", "") for step in per_step for _, labels in step})
    for agent in agents:
        group = {"job": job, "instance": instance, **({"agent": agent} if agent else {})}
        pushed = [
            float(t * step_seconds) if any(dict(k[1]).get("agent", "") == agent for k in step) else None
            for t, step in enumerate(per_step)
        ]
        rows.append({"series": series_name("push_time_seconds", group), "values": series_values(pushed)})
        failures = [None if v is None else 0.0 for v in pushed]
        rows.append({"series": series_name("push_failure_time_seconds", group), "values": series_values(failures)})
    return rows


# ----------------------------------------------------------------------------- the rules
def load_rules(rules_path: str | Path = RULES) -> dict:
    return yaml.safe_load(Path(rules_path).read_text())


def alert_names(rules_path: str | Path = RULES, groups: Sequence[str] | None = None) -> list[str]:
    """The alerting rules of the file (of the named groups only, if given), in file order."""
    config = load_rules(rules_path)
    return [
        rule["alert"]
        for group in config["groups"]
        if groups is None or group["name"] in groups
        for rule in group["rules"]
        if "alert" in rule
    ]


def severities(rules_path: str | Path = RULES) -> dict[str, str]:
    """``{alert: severity label}`` of every alerting rule (``""`` when it has none)."""
    config = load_rules(rules_path)
    return {
        rule["alert"]: str(rule.get("labels", {}).get("severity", ""))
        for group in config["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def rules_for_alert(config: dict, alert: str) -> dict:
    """A rules config holding one alerting rule and the recording rules it reads, in their groups and order."""
    records = {rule["record"]: rule for g in config["groups"] for rule in g["rules"] if "record" in rule}
    target = next((rule for g in config["groups"] for rule in g["rules"] if rule.get("alert") == alert), None)
    if target is None:
        raise KeyError(f"no alerting rule named {alert!r}")
    needed: set[str] = set()
    pending = [target["expr"]]
    while pending:
        expr = pending.pop()
        for name, rule in records.items():
            if name not in needed and re.search(rf"(?<![\w:]){re.escape(name)}(?![\w:])", expr):
                needed.add(name)
                pending.append(rule["expr"])
    groups = []
    for group in config["groups"]:
        kept = [r for r in group["rules"] if r is target or r.get("record") in needed]
        if kept:
            groups.append({**group, "rules": kept})
    return {"groups": groups}


# ----------------------------------------------------------------------------- promtool
def replay(
    snapshots: Sequence[Iterable],
    rules_path: str | Path = RULES,
    *,
    alerts: Sequence[str] | None = None,
    job: str = "replay",
    instance: str = "",
    gateway: bool = True,
    promtool: str = PROMTOOL,
    timeout: float = 600.0,
) -> list[set[str]]:
    """The alerts firing at each minute (one snapshot a minute), as promtool evaluates ``rules_path``.

    ``snapshots[t]`` is the list of metric families served after window ``t``
    closed; the answer has one set of alert names per snapshot. ``alerts``
    limits the replay to these alerting rules (default: every one in the file).
    """
    config = load_rules(rules_path)
    names = list(alerts) if alerts is not None else alert_names(rules_path)
    firing: list[set[str]] = [set() for _ in snapshots]
    if not snapshots or not names:
        return firing
    series = input_series(snapshots, job=job, instance=instance, gateway=gateway)
    with tempfile.TemporaryDirectory(prefix="gangplank-replay-") as tmp:
        runs = {}
        for i, name in enumerate(names):
            rules_file = Path(tmp) / f"alert-{i}.rules.yml"
            rules_file.write_text(yaml.safe_dump(rules_for_alert(config, name), sort_keys=False, width=10_000))
            test_file = Path(tmp) / f"alert-{i}.test.yml"
            test_file.write_text(yaml.safe_dump(_test_config(rules_file.name, series, len(snapshots)), width=10_000))
            runs[name] = subprocess.Popen(
                [promtool, "test", "rules", test_file.name],
                cwd=tmp,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        for name, process in runs.items():
            try:
                output, _ = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
                raise RuntimeError(f"promtool took over {timeout} s on {name}") from None
            for minute in _firing_minutes(name, output, process.returncode, len(snapshots)):
                firing[minute].add(name)
    return firing


def _test_config(rules_file: str, series: list[dict], minutes: int) -> dict:
    expr = 'label_replace(count by (alertname) (ALERTS{{alertstate="firing"}}), "{label}", "{t}", "", "")'
    return {
        "rule_files": [rules_file],
        "evaluation_interval": f"{STEP_SECONDS}s",
        "tests": [
            {
                "interval": f"{STEP_SECONDS}s",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": expr.format(label=MINUTE_LABEL, t=t),
                        "eval_time": f"{t * STEP_SECONDS}s",
                        "exp_samples": [],
                    }
                    for t in range(minutes)
                ],
            }
        ],
    }


_GOT = re.compile(r'\{alertname="(?P<alert>[^"]*)", ' + MINUTE_LABEL + r'="(?P<minute>\d+)"\}')


def _firing_minutes(alert: str, output: str, returncode: int, minutes: int) -> list[int]:
    """Minutes at which ``alert`` fired, from promtool's report of the (all empty) expected samples."""
    if returncode == 0:
        return []
    if re.search(r"^\s*rule: .*err:", output, re.MULTILINE):
        raise RuleEvaluationError(f"promtool could not evaluate the rules of {alert}:\n{output.strip()[-3000:]}")
    failures = len(re.findall(r"^\s*expr: ", output, re.MULTILINE))
    found = sorted({int(m["minute"]) for m in _GOT.finditer(output) if m["alert"] == alert})
    if not found or failures != len(found) or found[-1] >= minutes:
        raise RuntimeError(f"promtool's answer for {alert} could not be read (exit {returncode}):\n{output[-3000:]}")
    return found


# ----------------------------------------------------------------------------- reading the answer
def first_minute(firing: Sequence[set[str]], *alerts: str) -> int | None:
    """The first minute (0-based window) at which any of ``alerts`` fires; ``None`` if never."""
    return next((t for t, names in enumerate(firing) if names & set(alerts)), None)


def onsets(firing: Sequence[set[str]], *alerts: str) -> list[int]:
    """Minutes at which any of ``alerts`` starts firing (a notification): firing now, none of them the minute before.

    Example:
        >>> onsets([set(), {"A"}, {"A"}, set(), {"B"}], "A", "B")
        [1, 4]
    """
    wanted = set(alerts)
    return [t for t, names in enumerate(firing) if names & wanted and not (t and firing[t - 1] & wanted)]
