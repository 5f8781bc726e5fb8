"""Benchmark: when the shipped alert rules fire on the exporter's own output; NannyML CBPE's alerts on the same windows.

Data (windows of 200 rows drawn with replacement from a pool, one window a minute):

* MNIST, the scenarios of issue 16 (tests/mnist_streams.py): a 784-128-10 MLP
  and a 784-64-10 shadow MLP trained on other rows; streams ``clean``,
  ``halved`` (x*0.5), ``silently_wrong`` (9 % of rows wrong, confidence kept),
  ``inverted`` (1-x).
* the synthetic tabular set of bench_estimate.py (a logistic regression; a
  second one, trained on other rows, as the shadow): ``clean``,
  ``silently_wrong`` (9 % of rows), and the covariate shifts along a feature
  the model uses and one it cannot use. Its monitor gets ``quality_floor=0.6``:
  the model is right 77 % of the time, under the default floor of 0.80.

For each stream, share of labelled rows (100 / 50 / 10 / 0 %) and shadow (off;
on only when the library takes ``shadow=``, see ``rule_replay.supports_shadow``),
a fresh push-less ``DriftMonitor`` sees the windows and the shipped rules are
replayed on what it served after each window (tests/rule_replay.py, promtool):

* detection: the first window (1-based) at which each alert fires, and the
  first page (an alert of severity critical) and warning;
* on the clean streams, over many windows: page and warning onsets (one
  notification each), as a rate per month at one window a minute with its 95 %
  upper bound.

The peer: NannyML's CBPE (its own venv, benchmarks/cbpe_child.py), fitted on
the same reference rows, with chunks = the same windows. It reads no label, so
its answer holds for every label share. A chunk is flagged when CBPE's
estimate leaves its thresholds; counted like our alerts (first flagged window,
onsets on the clean streams).
"""

from __future__ import annotations

import inspect
import subprocess
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_estimate import (
    TABULAR_STREAMS,
    _logistic_regression,
    _predict,
    _tabular_rows,
    nannyml_python,
    run_cbpe,
    tabular,
)
from benchmarks.common import table

WINDOW = 200
LABEL_SHARES = (1.0, 0.5, 0.1, 0.0)
DETECT_WINDOWS, QUICK_DETECT_WINDOWS = 40, 12
CLEAN_WINDOWS, QUICK_CLEAN_WINDOWS = 3000, 240
WINDOWS_PER_MONTH = 43_200  # one window a minute for 30 days
CLEAN = "clean"
PRODUCTION_GROUP = "gangplank-production"  # the agent's alerts; the others watch gateways and training
MONITOR_ARGS = {"mnist": {}, "tabular": {"quality_floor": 0.6}}
TABULAR_NAMES = {  # bench_estimate's tabular streams under this benchmark's names
    "no shift": CLEAN,
    "shift on a used feature (x0 + 1)": "shift_used_feature",
    "shift on an unused feature (x3 + 1.5)": "shift_unused_feature",
}


# ----------------------------------------------------------------------------- data
def mnist_group(ctx):
    from tests.mnist_streams import MnistStreams

    ctx.log("alerts: the MNIST MLPs (primary and shadow), trained once and cached")
    streams = MnistStreams.build(cache_dir=ctx.cache)
    return streams.reference, dict(streams.streams)


def tabular_group(quick: bool):
    """bench_estimate's tabular set as pools, with a shadow logistic regression trained on other rows."""
    from tests.mnist_streams import Pool, silently_wrong

    reference, pools, _ = tabular(quick)
    x_shadow, y_shadow = _tabular_rows(np.random.default_rng(12), 20000, {})
    w_shadow = _logistic_regression(x_shadow, y_shadow)

    def pool(x, p, y) -> Pool:
        return Pool(x, p, _predict(w_shadow, x), y.astype(np.int64))

    out = {TABULAR_NAMES[name]: pool(*pools[name]) for name in TABULAR_STREAMS}
    wrong, _ = silently_wrong(out[CLEAN].probabilities, out[CLEAN].labels)
    out["silently_wrong"] = Pool(out[CLEAN].inputs, wrong, out[CLEAN].shadow, out[CLEAN].labels)
    return pool(reference["x"], reference["p"], reference["y"]), out


def fit_reference(ref, shadow: bool):
    from gangplank import DriftReference

    extra = {"shadow": ref.shadow} if shadow else {}
    return DriftReference.fit(ref.inputs, ref.probabilities, ref.labels, window_size=WINDOW, **extra)


# ----------------------------------------------------------------------------- one run
def replay_run(reference, windows: list[dict], shadow: bool, agent: str, monitor_args: dict, alerts: list[str]):
    """Feed the windows to a fresh push-less monitor and replay the rules: the firing alerts per window."""
    from gangplank import DriftMonitor
    from tests.rule_replay import monitor_snapshots, replay

    monitor = DriftMonitor(None, "bench-alerts", reference=reference, agent=agent, window_size=WINDOW, **monitor_args)
    try:
        snapshots = monitor_snapshots(monitor, windows, shadow=shadow)
    finally:
        monitor.close()
    return replay(snapshots, alerts=alerts, job="bench-alerts")


def summarise(firing: list[set[str]], severity: dict[str, str]) -> dict:
    from tests.rule_replay import first_minute, onsets

    pages = [a for a, s in severity.items() if s == "critical"]
    warnings = [a for a, s in severity.items() if s != "critical"]
    plus_one = lambda t: None if t is None else t + 1  # noqa: E731  (windows are counted from 1)
    return {
        "windows": len(firing),
        "first": {a: plus_one(first_minute(firing, a)) for a in severity},
        "first_page": plus_one(first_minute(firing, *pages)),
        "first_warning": plus_one(first_minute(firing, *warnings)),
        "page_onsets": len(onsets(firing, *pages)),
        "warning_onsets": len(onsets(firing, *warnings)),
        "page_windows": sum(bool(f & set(pages)) for f in firing),
        "warning_windows": sum(bool(f & set(warnings)) for f in firing),
    }


def per_month(onsets: int, windows: int) -> tuple[float, float]:
    """Onsets a month at one window a minute, and the one-sided 95 % Poisson upper bound."""
    from scipy.stats import chi2

    upper = chi2.ppf(0.95, 2 * (onsets + 1)) / 2
    return onsets / windows * WINDOWS_PER_MONTH, upper / windows * WINDOWS_PER_MONTH


# ----------------------------------------------------------------------------- the benchmark
def bench_alerts(ctx):
    from gangplank import DriftMonitor
    from tests.mnist_streams import windows as draw_windows
    from tests.rule_replay import RULES, alert_names, severities, supports_shadow

    detect_n = QUICK_DETECT_WINDOWS if ctx.quick else DETECT_WINDOWS
    clean_n = QUICK_CLEAN_WINDOWS if ctx.quick else CLEAN_WINDOWS
    shadow_supported = supports_shadow()
    shadows = (False, True) if shadow_supported else (False,)
    alerts = alert_names(RULES, groups=[PRODUCTION_GROUP])
    severity = {a: s for a, s in severities(RULES).items() if a in alerts}
    groups = {"mnist": mnist_group(ctx), "tabular": tabular_group(ctx.quick)}

    runs, cbpe_streams = [], []
    for g, (group, (ref, pools)) in enumerate(groups.items()):
        references = {}
        for shadow in shadows:
            ctx.log(f"alerts: {group}, fitting the reference (shadow {'on' if shadow else 'off'})")
            references[shadow] = fit_reference(ref, shadow)
        for s, (stream, pool) in enumerate(pools.items()):
            n = clean_n if stream == CLEAN else detect_n
            seed = 1000 * g + s
            for share in LABEL_SHARES:
                for shadow in shadows:
                    start = time.perf_counter()
                    windows = list(draw_windows(pool, n, WINDOW, share, seed))
                    firing = replay_run(
                        references[shadow], windows, shadow, f"{group}-{s}", MONITOR_ARGS[group], alerts
                    )
                    runs.append(
                        {
                            "group": group,
                            "stream": stream,
                            "label_share": share,
                            "shadow": shadow,
                            **summarise(firing, severity),
                            "seconds": time.perf_counter() - start,
                        }
                    )
                    ctx.log(
                        f"alerts: {group} / {stream} / labels {share:.0%} / shadow {shadow}: "
                        f"first page {runs[-1]['first_page']}, pages {runs[-1]['page_onsets']} in {n} windows"
                    )
            index = np.concatenate([w["index"] for w in draw_windows(pool, n, WINDOW, 0.0, seed)])
            cbpe_streams.append(
                {
                    "group": group,
                    "stream": stream,
                    "window": WINDOW,
                    "key": f"{group}__{s}",
                    "p": pool.probabilities[index],
                    "y": pool.labels[index],
                    "realised": (pool.probabilities[index].argmax(axis=1) == pool.labels[index])
                    .reshape(n, WINDOW)
                    .mean(axis=1),
                }
            )
    cbpe = cbpe_alerts(
        ctx, {g: {"p": ref.probabilities, "y": ref.labels} for g, (ref, _) in groups.items()}, cbpe_streams
    )
    return {
        "status": "ok",
        "window": WINDOW,
        "detect_windows": detect_n,
        "clean_windows": clean_n,
        "shadow_supported": shadow_supported,
        "observe_signature": str(inspect.signature(DriftMonitor.observe)),
        "alerts": severity,
        "monitor_args": MONITOR_ARGS,
        "accuracy": {
            group: {
                name: {"primary": pool.accuracy(), "shadow": pool.shadow_accuracy(), "agreement": pool.agreement()}
                for name, pool in {"reference": ref, **pools}.items()
            }
            for group, (ref, pools) in groups.items()
        },
        "runs": runs,
        "cbpe": cbpe,
    }


def cbpe_alerts(ctx, references: dict, streams: list[dict]) -> dict:
    """CBPE's flagged chunks per stream (first flagged window, onsets, flagged windows), or why it was skipped."""
    from tests.rule_replay import onsets

    python, reason = nannyml_python(Path(ctx.args.vendor_dir), install=not ctx.quick)
    if python is None:
        ctx.log(f"alerts: CBPE skipped: {reason}")
        return {"status": "skipped", "reason": reason}
    ctx.log(f"alerts: NannyML CBPE on the same windows ({python})")
    start = time.perf_counter()
    try:
        estimates, meta = run_cbpe(python, references, streams)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return {"status": "skipped", "reason": str(exc)}
    rows = []
    for s in streams:
        theirs = estimates[f"realised__{s['key']}"]
        known = np.isfinite(theirs)  # NannyML leaves it out (NaN) for a chunk that lacks a class
        if theirs.shape != s["realised"].shape or not np.allclose(theirs[known], s["realised"][known]):
            raise RuntimeError(
                f"CBPE's chunks are not our windows for {s['group']} / {s['stream']}: {theirs} against {s['realised']}"
            )
        flagged = estimates[f"alert__{s['key']}"].astype(bool)
        firing = [{"cbpe"} if f else set() for f in flagged]
        rows.append(
            {
                "group": s["group"],
                "stream": s["stream"],
                "windows": int(flagged.size),
                "first_alert": None if not flagged.any() else int(np.argmax(flagged)) + 1,
                "alert_onsets": len(onsets(firing, "cbpe")),
                "alert_windows": int(flagged.sum()),
                "estimate_mean": float(estimates[f"estimate__{s['key']}"].mean()),
                "realised_mean": float(s["realised"].mean()),
            }
        )
    return {"status": "ok", **meta, "rows": rows, "seconds": time.perf_counter() - start}


# ----------------------------------------------------------------------------- the report
def _at(value) -> str:
    return "–" if value is None else str(value)


def report_alerts(result):
    shares = [f"{share:.0%}" for share in LABEL_SHARES]
    cbpe = result["cbpe"]
    cbpe_rows = {(r["group"], r["stream"]): r for r in cbpe.get("rows", [])}
    out = [
        "### Alerts: the shipped rules replayed on the exporter's output, and NannyML CBPE's alerts "
        "(python benchmarks/run.py alerts)",
        "",
        f"Windows of {result['window']} rows, one a minute; {result['detect_windows']} windows per drifted stream, "
        f"{result['clean_windows']:,} on the clean streams. Alerts replayed with promtool (tests/rule_replay.py): "
        + ", ".join(f"{a} ({s})" for a, s in result["alerts"].items())
        + f". Shadow model: {'passed' if result['shadow_supported'] else 'not supported by this gangplank (skipped)'}.",
        "",
    ]
    if cbpe["status"] != "ok":
        out += [f"**CBPE skipped**: {cbpe['reason']}", ""]
    header = ["data / stream", "shadow", *[f"labels {s}: page / warning" for s in shares], "CBPE: first alert"]
    rows = []
    for (group, stream), _ in {(r["group"], r["stream"]): 0 for r in result["runs"]}.items():
        if stream == CLEAN:
            continue
        for shadow in sorted({r["shadow"] for r in result["runs"]}):
            cells = []
            for share in LABEL_SHARES:
                run = next(
                    r
                    for r in result["runs"]
                    if (r["group"], r["stream"], r["label_share"], r["shadow"]) == (group, stream, share, shadow)
                )
                cells.append(f"{_at(run['first_page'])} / {_at(run['first_warning'])}")
            peer = cbpe_rows.get((group, stream))
            rows.append([f"{group} / {stream}", "on" if shadow else "off", *cells, _at(peer and peer["first_alert"])])
    out += [
        "Detection: the first window (1-based) with a page / a warning; – when none within "
        f"{result['detect_windows']} windows.",
        "",
        table(header, rows),
        "",
    ]
    header = ["data", "shadow", "labels", "windows", "page onsets", "pages a month (95 % upper)", "warning onsets"]
    header += ["CBPE alert onsets", "CBPE a month (95 % upper)"]
    rows = []
    for r in result["runs"]:
        if r["stream"] != CLEAN:
            continue
        month, upper = per_month(r["page_onsets"], r["windows"])
        peer = cbpe_rows.get((r["group"], CLEAN))
        peer_month = per_month(peer["alert_onsets"], peer["windows"]) if peer else None
        rows.append(
            [
                r["group"],
                "on" if r["shadow"] else "off",
                f"{r['label_share']:.0%}",
                f"{r['windows']:,}",
                r["page_onsets"],
                f"{month:.1f} ({upper:.1f})",
                r["warning_onsets"],
                peer["alert_onsets"] if peer else "–",
                f"{peer_month[0]:.1f} ({peer_month[1]:.1f})" if peer else "–",
            ]
        )
    out += ["False alarms on the clean streams (an onset is one notification):", "", table(header, rows), ""]
    accuracy = result["accuracy"]
    out.append(
        "- Realised accuracy, primary / shadow / agreement: "
        + "; ".join(
            f"{group} {name} {a['primary']:.3f} / {a['shadow']:.3f} / {a['agreement']:.3f}"
            for group, streams in accuracy.items()
            for name, a in streams.items()
        )
        + "."
    )
    out.append(
        "- Pages a month: onsets / windows × 43,200 (one window a minute for 30 days); the bound is the one-sided "
        "95 % Poisson upper limit. CBPE reads no label: one figure per stream, shown on every label share."
    )
    if cbpe["status"] == "ok":
        out.append(f"- CBPE: {', '.join(f'{k} {v}' for k, v in cbpe['versions'].items())}; chunk = window.")
    return "\n".join(out)
