"""Helpers for the monitoring-stack tests: paths, the metric schema as contract, dashboard checks.

The webhook sink is in gangplank_devtools.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from gangplank import metric_schema

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy/prometheus"
DASHBOARDS = DEPLOY / "grafana/dashboards"
DATASOURCES = DEPLOY / "grafana/provisioning/datasources"

# Every name a rule or dashboard may use: gangplank's metric schema (one source for the exporters too).
METRIC_CONTRACT = metric_schema.names()
HISTOGRAMS = frozenset(spec.name for spec in metric_schema.SCHEMA if spec.type == "histogram")


def metric_names(text: str) -> set[str]:
    """The gangplank metric names a PromQL text uses (histogram series folded to their family)."""
    names = set()
    for name in re.findall(r"\bgangplank_[a-z0-9_]+", text):
        family = re.sub(r"_(bucket|count|sum)$", "", name)
        names.add(family if family in HISTOGRAMS else name)
    return names


# -- dashboards, offline ------------------------------------------------------
def load_dashboard(name: str) -> dict:
    return json.loads((DASHBOARDS / name).read_text())


def iter_panels(dashboard: dict):
    """Every panel, rows' collapsed panels included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panel_titled(dashboard: dict, title: str) -> dict:
    return next(p for p in iter_panels(dashboard) if p.get("title") == title)


def iter_targets(dashboard: dict):
    """(panel, target) for every query of every panel."""
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target


def provisioned_datasource_uids() -> set[str]:
    """uids declared in grafana/provisioning/datasources/*.yml (read without a YAML library)."""
    uids = set()
    for path in DATASOURCES.glob("*.yml"):
        uids.update(m.strip("'\"") for m in re.findall(r"^\s*uid:\s*(\S+)", path.read_text(), re.MULTILINE))
    return uids


def structure_problems(dashboard: dict, datasource_uids: set[str]) -> list[str]:
    """Layout and reference mistakes Grafana would load silently."""
    problems, ids, cells = [], set(), {}
    defined = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
    for panel in iter_panels(dashboard):
        pid, title = panel.get("id"), panel.get("title")
        if pid in ids:
            problems.append(f"duplicate panel id {pid} ({title})")
        ids.add(pid)
        grid = panel.get("gridPos", {})
        x, y, w, h = (grid.get(k) for k in ("x", "y", "w", "h"))
        if None in (x, y, w, h) or w <= 0 or h <= 0 or x < 0 or x + w > 24:
            problems.append(f"panel {title!r}: bad gridPos {grid}")
            continue
        if panel.get("type") != "row":
            mine = {(cx, cy) for cx in range(x, x + w) for cy in range(y, y + h)}
            clash = sorted({cells[c] for c in mine if c in cells})
            if clash:
                problems.append(f"panel {title!r} overlaps {clash}")
            cells.update(dict.fromkeys(mine, title))
    refs = [v.get("datasource") for v in dashboard.get("templating", {}).get("list", [])]
    refs += [p.get("datasource") for p in iter_panels(dashboard)] + [
        t.get("datasource") for _, t in iter_targets(dashboard)
    ]
    for ref in refs:
        if isinstance(ref, dict) and ref.get("type") == "prometheus" and ref.get("uid") not in datasource_uids:
            problems.append(f"datasource uid {ref.get('uid')!r} is not provisioned ({sorted(datasource_uids)})")
    for panel, target in iter_targets(dashboard):
        expr = target.get("expr", "")
        if not expr.strip():
            problems.append(f"panel {panel.get('title')!r}: target {target.get('refId')} has no expr")
        for name in set(_variable_names(expr)) - defined - set(BUILTIN_INTERVALS):
            problems.append(f"panel {panel.get('title')!r}: undefined variable ${name}")
        for name in metric_names(expr) - METRIC_CONTRACT:
            problems.append(f"panel {panel.get('title')!r}: {name} is not in the metric contract")
    return problems


def roundtrip_dropped_keys(dashboard: dict) -> list[str]:
    """Paths of keys that grafana-foundation-sdk's Dashboard model drops (typos, misplaced keys)."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard

    register_default_plugins()
    again = json.loads(json.dumps(Dashboard.from_json(dashboard), cls=JSONEncoder))
    return _missing_keys(dashboard, again, "")


def _missing_keys(before, after, path) -> list[str]:
    if isinstance(before, dict):
        if not isinstance(after, dict):
            return [path or "/"]
        missing = []
        for key, value in before.items():
            if key not in after:
                missing.append(f"{path}/{key}")
            else:
                missing += _missing_keys(value, after[key], f"{path}/{key}")
        return missing
    if isinstance(before, list) and isinstance(after, list):
        if len(before) != len(after):
            return [f"{path} (length {len(before)} -> {len(after)})"]
        pairs = enumerate(zip(before, after, strict=True))
        return [m for i, (b, a) in pairs for m in _missing_keys(b, a, f"{path}/{i}")]
    return []


# -- dashboards, against a live Prometheus ---------------------------------------
BUILTIN_INTERVALS = {"__rate_interval": "1m", "__interval": "15s", "__range": "15m"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)\]\]")


def _variable_names(text: str) -> list[str]:
    return [a or b or c for a, b, c in _VARIABLE.findall(text)]


def substitute(expr: str, variables: dict[str, list[str]]) -> str:
    """Replace Grafana's interval macros and ``$var``/``${var}`` with one value or ``(v1|v2)``."""

    def value(match):
        name = match.group(1) or match.group(2) or match.group(3)
        if name in BUILTIN_INTERVALS:
            return BUILTIN_INTERVALS[name]
        values = variables[name]
        return values[0] if len(values) == 1 else "(" + "|".join(values) + ")"

    return _VARIABLE.sub(value, expr)


def prometheus_get(prometheus_url: str, path: str, params) -> dict:
    url = f"{prometheus_url}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:  # 400 bad_data carries the parse error
        return json.loads(error.read() or b"{}") or {"status": "error", "error": str(error)}


def resolve_variables(
    dashboard: dict, prometheus_url: str, pick: dict[str, list[str]] | None = None
) -> dict[str, list[str]]:
    """Run each ``label_values`` variable query (in order, chained); keep only ``pick``'s values if given.

    Raises AssertionError if a variable finds no value (or none of the picked ones).
    """
    pick, resolved = pick or {}, {}
    for var in dashboard.get("templating", {}).get("list", []):
        query = var["query"]["query"] if isinstance(var.get("query"), dict) else var.get("query", "")
        match = re.fullmatch(r"\s*label_values\((?:(.*),)?\s*(\w+)\s*\)\s*", query)
        assert match, f"variable {var['name']}: unsupported query {query!r}"
        selector, label = match.group(1), match.group(2)
        params = [("match[]", substitute(selector, resolved))] if selector else []
        body = prometheus_get(prometheus_url, f"/api/v1/label/{label}/values", params)
        values = body.get("data") or []
        if var["name"] in pick:
            values = [v for v in values if v in pick[var["name"]]]
        assert values, (
            f"variable {var['name']} ({query}) found no "
            f"value{' among ' + str(pick[var['name']]) if var['name'] in pick else ''}"
        )
        resolved[var["name"]] = values
    return resolved


def check_dashboard_queries(dashboard: dict, prometheus_url: str, variables: dict[str, list[str]]) -> list[str]:
    """Run every panel query with the variables substituted; the problems (empty list: all returned data)."""
    problems = []
    for panel, target in iter_targets(dashboard):
        expr = substitute(target["expr"], variables)
        body = prometheus_get(prometheus_url, "/api/v1/query", {"query": expr})
        where = f"panel {panel.get('title')!r} {target.get('refId')}: {expr}"
        if body.get("status") != "success":
            problems.append(f"{where} -> {body.get('errorType')}: {body.get('error')}")
        elif not body["data"]["result"]:
            problems.append(f"{where} -> no series")
    return problems


def wait_for_series(prometheus_url: str, expr: str, timeout: float = 60.0) -> list:
    """Poll an instant query until it returns at least one series; the result (empty on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        body = prometheus_get(prometheus_url, "/api/v1/query", {"query": expr})
        result = body.get("data", {}).get("result", []) if body.get("status") == "success" else []
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.25)
