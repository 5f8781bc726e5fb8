"""Benchmark 5: detection on real MNIST, ours against the chi-square rule of 0.5's drift example.

Window 200, batches of 1-20 rows: windows until the first alarm and false
alarms per 100 windows, on the correct stream, inverted pixels and the wrong
model; seeded, so every run gives the same figures. Also (``bench_sustained``)
each signal's per-window and sustained (3 of the last 5 windows, as the
exporter counts it) false-alarm rate over 20,000 correct windows, with and
without ``input_stride=4`` and labels, and the windows until sustained on
inverted pixels and the wrong model.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.common import table


def _stream(rng, n_windows, window, batch_low, batch_high, pool):
    """Row indices (drawn with replacement) cut into batches of ``batch_low..batch_high`` rows."""
    total = n_windows * window
    sizes = []
    while sum(sizes) < total:
        sizes.append(int(rng.integers(batch_low, batch_high + 1)))
    sizes[-1] -= sum(sizes) - total  # end exactly on a window boundary
    if sizes[-1] == 0:
        sizes.pop()
    rows = rng.integers(0, pool, size=total)
    return rows, sizes


def _windows_summary(alarms, per_window_signals=None):
    alarms = np.asarray(alarms, dtype=bool)
    first = int(np.argmax(alarms)) + 1 if alarms.any() else None
    out = {"windows": int(alarms.size), "alarmed": int(alarms.sum()), "first_alarm_window": first}
    if per_window_signals is not None:
        out["signals"] = (
            {k: int(sum(s[k] for s in per_window_signals)) for k in per_window_signals[0]} if per_window_signals else {}
        )
    return out


def bench_detection(ctx):
    from scipy import stats

    from gangplank import ProductionDriftExporter

    data = ctx.data
    reference = data.reference()
    window = reference.window_size
    classes = data.p_test.shape[1]
    train_shares = np.bincount(data.train_labels, minlength=classes) / data.train_labels.size
    scenarios = {
        "correct": (data.flat_test, data.p_test),
        "inverted pixels": (1.0 - data.flat_test, data.p_inverted),
        "wrong model": (data.flat_test, data.p_wrong),
    }
    seeds = 1 if ctx.quick else 5
    n_windows = {
        "correct": 10 if ctx.quick else 200,
        "inverted pixels": 5 if ctx.quick else 20,
        "wrong model": 5 if ctx.quick else 20,
    }
    results = {}
    for scenario, (x_all, p_all) in scenarios.items():
        predicted_all = p_all.argmax(axis=1)
        per_rule = {k: [] for k in RULE_LABELS}
        batches_total = batches_tested = 0
        for seed in range(seeds):
            ctx.log(f"detection: {scenario}, stream {seed + 1}/{seeds}, {n_windows[scenario]} windows of {window}")
            rng = np.random.default_rng(1000 * seed + 7)
            rows, sizes = _stream(rng, n_windows[scenario], window, 1, 20, x_all.shape[0])
            for key, with_labels in (("ours", False), ("ours_with_labels", True)):
                reports = []
                exporter = ProductionDriftExporter(
                    ctx.gateway.address,
                    "bench-detection",
                    reference=reference,
                    agent=f"{scenario.split()[0]}-{key}-{seed}",
                    on_window=reports.append,
                )
                at = 0
                for size in sizes:
                    batch = rows[at : at + size]
                    exporter.observe(x_all[batch], p_all[batch], data.y_test[batch] if with_labels else None)
                    at += size
                exporter.close()  # the stream ends on a window boundary: no extra window
                assert len(reports) == n_windows[scenario], (len(reports), n_windows[scenario])
                per_rule[key].append(
                    _windows_summary([r.drift_detected for r in reports], [r.signals for r in reports])
                )
            # gangplank 0.5's drift example rule, faithfully: on each predict() batch of at least
            # 50 rows, scipy.stats.chisquare of the predicted-class counts against a uniform
            # distribution; p < 0.05 counts as drift. Smaller batches give no p-value at all.
            alarms = np.zeros(n_windows[scenario], dtype=bool)
            at = 0
            for size in sizes:
                batches_total += 1
                if size >= 50:
                    batches_tested += 1
                    counts = np.bincount(predicted_all[rows[at : at + size]], minlength=classes)
                    if stats.chisquare(counts).pvalue < 0.05:
                        alarms[at // window] = True
                at += size
            per_rule["gp05_faithful"].append(_windows_summary(alarms))
            # The same test applied to each closed window of 200 (the most favourable adaptation).
            predicted = predicted_all[rows].reshape(n_windows[scenario], window)
            counts = np.stack([np.bincount(w, minlength=classes) for w in predicted])
            uniform = np.array([stats.chisquare(c).pvalue for c in counts])
            shares = np.array([stats.chisquare(c, f_exp=train_shares * c.sum()).pvalue for c in counts])
            per_rule["gp05_window_uniform"].append(_windows_summary(uniform < 0.05))
            per_rule["gp05_window_train_shares"].append(_windows_summary(shares < 0.05))
            # The rule on its own example's stream: batches of 1-200 (predict calls), same test.
            rows200, sizes200 = _stream(
                np.random.default_rng(1000 * seed + 8), n_windows[scenario], window, 1, 200, x_all.shape[0]
            )
            alarms = np.zeros(n_windows[scenario], dtype=bool)
            at = 0
            for size in sizes200:
                if size >= 50:
                    c = np.bincount(predicted_all[rows200[at : at + size]], minlength=classes)
                    if stats.chisquare(c).pvalue < 0.05:
                        alarms[at // window] = True
                at += size
            per_rule["gp05_own_batches"].append(_windows_summary(alarms))
        results[scenario] = {
            "seeds": seeds,
            "windows_per_stream": n_windows[scenario],
            "batches": batches_total,
            "batches_with_p_value_gp05": batches_tested,
            "rules": {k: _aggregate(v) for k, v in per_rule.items()},
        }
    return {
        "status": "ok",
        "window": window,
        "batch_sizes": [1, 20],
        "accuracy": data.accuracy,
        "wrong_model_even_share": data.wrong_even_share,
        "reference_rows": int(data.flat_ref.shape[0]),
        "thresholds": {
            "drifted_features_ratio": reference.thresholds.drifted_features_ratio,
            "confidence_psi": reference.thresholds.confidence_psi,
            "class_p_value": reference.thresholds.class_p_value,
        },
        "scenarios": results,
        "sustained": bench_sustained(ctx),
    }


def _aggregate(streams):
    windows = sum(s["windows"] for s in streams)
    alarmed = sum(s["alarmed"] for s in streams)
    firsts = [s["first_alarm_window"] for s in streams]
    out = {
        "streams": len(streams),
        "windows": windows,
        "alarmed": alarmed,
        "alarms_per_100_windows": 100.0 * alarmed / windows,
        "first_alarm_window": firsts,
        "median_first_alarm_window": None if any(f is None for f in firsts) else float(np.median(firsts)),
    }
    if streams and "signals" in streams[0]:
        out["signals"] = {k: sum(s["signals"].get(k, 0) for s in streams) for k in streams[0]["signals"]}
    return out


RULE_LABELS = {
    "ours": "ours (inputs + probabilities)",
    "ours_with_labels": "ours, with feedback labels",
    "gp05_faithful": "0.5 example rule as written (per batch, ≥ 50 rows, χ² vs uniform, p < 0.05)",
    "gp05_window_uniform": "0.5 rule per window of 200, χ² vs uniform",
    "gp05_window_train_shares": "0.5 rule per window of 200, χ² vs training class shares",
    "gp05_own_batches": "0.5 rule as written, on its own example's batches of 1–200",
}


def report_detection(result):
    out = [
        f"### 5. Detection on real MNIST (window {result['window']}, batches of "
        f"{result['batch_sizes'][0]}–{result['batch_sizes'][1]})",
        "",
        f"Test-set accuracy: correct model {result['accuracy']['correct_on_test']:.4f}, on inverted pixels "
        f"{result['accuracy']['correct_on_inverted']:.4f}; wrong model {result['accuracy']['wrong_on_test']:.4f} "
        f"(trained on {100 * result['wrong_model_even_share']:.1f}% even digits). Reference: "
        f"{result['reference_rows']:,} held-out training images.",
        "",
    ]
    header = [
        "rule",
        "correct: false alarms / 100 windows",
        "inverted: first alarm (window)",
        "inverted: alarms / 100",
        "wrong model: first alarm (window)",
        "wrong model: alarms / 100",
    ]
    rows = []
    sc = result["scenarios"]
    for key, label in RULE_LABELS.items():

        def first(s):
            r = sc[s]["rules"][key]
            f = r["first_alarm_window"]
            if all(v is None for v in f):
                return f"never ({r['windows']} windows)"
            shown = ", ".join("–" if v is None else str(v) for v in f)
            return f"{shown}" if len(f) > 1 else shown

        rows.append(
            [
                label,
                "{alarms_per_100_windows:.1f} ({alarmed}/{windows})".format(**sc["correct"]["rules"][key]),
                first("inverted pixels"),
                f"{sc['inverted pixels']['rules'][key]['alarms_per_100_windows']:.0f}",
                first("wrong model"),
                f"{sc['wrong model']['rules'][key]['alarms_per_100_windows']:.0f}",
            ]
        )
    out.append(table(header, rows))
    out.append("")
    out.append(
        f"- first-alarm columns list one value per stream ({sc['correct']['seeds']} streams per scenario); "
        f"streams: correct {sc['correct']['windows_per_stream']} windows, corrupted "
        f"{sc['wrong model']['windows_per_stream']} windows each."
    )
    c = sc["correct"]
    out.append(
        f"- 0.5's rule as written computed a p-value for {c['batches_with_p_value_gp05']} of {c['batches']} "
        f"batches of the correct stream "
        f"(it skips batches under 50 rows)."
    )
    for key in ("ours", "ours_with_labels"):
        parts = []
        for s in sc:
            sig = sc[s]["rules"][key].get("signals")
            if sig:
                parts.append(
                    f"{s}: " + ", ".join(f"{k} {v}" for k, v in sig.items()) + f" of {sc[s]['rules'][key]['windows']}"
                )
        out.append(f"- {RULE_LABELS[key]}, windows per signal — " + "; ".join(parts) + ".")
    out += ["", report_sustained(result["sustained"])]
    return "\n".join(out)


# ----------------------------------------------------------------------------- sustained signals (the alert tiers)
SIGNAL_NAMES = ("input", "prediction", "confidence", "estimated_accuracy", "estimated_floor")
DATA_DRIFT = ("input", "prediction", "confidence")  # GangplankDataDrift: any of these sustained
# GangplankModelDegraded's window-based parts: the estimate under the floor sustained, or the pooled labels under it.
# (Its sequential charts on labels and a shadow model weigh every outcome: benchmarks `alerts` and `decisions`.)
DEGRADED = ("estimated_floor",)
RECENT, SUSTAINED = 5, 3  # the exporter's defaults: sustained = fired in 3 of the last 5 windows
WINDOWS_PER_MONTH = 30 * 24 * 60
QUALITY_FLOOR, MIN_FEEDBACK = 0.80, 10


def bench_sustained(ctx):
    """Per-window and sustained (k of m) rates on the correct stream, and windows until sustained on corrupted ones.

    Every window goes through a push-less ``DriftMonitor``; "sustained" is the
    exporter's own ``drift_signal_recent >= sustained_windows`` when the window
    closed. With and without ``input_stride=4``, with and without labels.
    The sequential charts are left to the ``alerts`` and ``decisions`` benchmarks.
    """
    from benchmarks.monitor_windows import monitor_windows, window_rows
    from gangplank import DriftReference

    data = ctx.data
    n_null = 60 if ctx.quick else 20_000
    n_streams, n_windows = (2, 6) if ctx.quick else (5, 10)
    null_rows = window_rows(np.random.default_rng(42), data.flat_test.shape[0], n_null, 200)
    corrupted = {
        "inverted pixels": (1.0 - data.flat_test, data.p_inverted),
        "wrong model": (data.flat_test, data.p_wrong),
    }
    settings = {
        "recent_windows": RECENT,
        "sustained_windows": SUSTAINED,
        "quality_floor": QUALITY_FLOOR,
        "min_feedback": MIN_FEEDBACK,
    }
    configs = []
    for stride in (1, 4):
        reference = DriftReference.fit(data.flat_ref, data.p_ref, data.y_ref, input_stride=stride)
        for labelled in (False, True):
            labels = data.y_test if labelled else None
            ctx.log(
                f"detection: sustained signals, input_stride={stride}, {'with' if labelled else 'without'} labels, "
                f"{n_null} correct windows"
            )
            start = time.perf_counter()
            records = monitor_windows(
                reference, data.flat_test, data.p_test, null_rows, labels, agent=f"null-{stride}", **settings
            )
            seconds = time.perf_counter() - start
            delays = {}
            for scenario, (x, p) in corrupted.items():
                delays[scenario] = [
                    _sustained_delays(
                        monitor_windows(
                            reference,
                            x,
                            p,
                            window_rows(np.random.default_rng(500 + seed), x.shape[0], n_windows, 200),
                            labels,
                            agent=f"delay-{stride}-{seed}",
                            **settings,
                        )
                    )
                    for seed in range(n_streams)
                ]
            configs.append(
                {
                    "input_stride": stride,
                    "labels": labelled,
                    "null": _null_rates(records),
                    "null_seconds": seconds,
                    "delays": {s: {k: [d[k] for d in v] for k in v[0]} for s, v in delays.items()},
                }
            )
    return {
        "window": 200,
        "null_windows": n_null,
        "delay_streams": n_streams,
        "delay_windows": n_windows,
        "reference_accuracy": reference.accuracy,
        "false_alarm_rate": reference.get_params()["false_alarm_rate"],
        "signals_calibrated": len(SIGNAL_NAMES),
        **settings,
        "configs": configs,
    }


def _states(record) -> dict:
    """Per window: which signals fired, which were sustained, and the two alert tiers' conditions."""
    fired = {s: bool(record["signals"].get(s, False)) for s in SIGNAL_NAMES}
    sustained = {s: record["recent"].get(s, 0) >= SUSTAINED for s in SIGNAL_NAMES}
    labels, accuracy = record["pooled"]
    floor = bool(labels >= MIN_FEEDBACK and accuracy < QUALITY_FLOOR)  # NaN (too few pooled labels) compares False
    states = {f"fired {s}": fired[s] for s in SIGNAL_NAMES}
    states["fired any"] = any(fired.values())
    states.update({f"sustained {s}": sustained[s] for s in SIGNAL_NAMES})
    states["floor crossed"] = floor
    states["data drift"] = any(sustained[s] for s in DATA_DRIFT)
    states["model degraded"] = any(sustained[s] for s in DEGRADED) or floor
    return states


def _null_rates(records) -> dict:
    """For each state: windows in it, onsets (a notification each) and a one-sided 95 % upper bound of the rate."""
    from scipy import stats

    states = [_states(r) for r in records]
    n = len(states)
    out = {}
    for key in states[0]:
        on = np.array([s[key] for s in states], dtype=bool)
        onsets = int(on[0]) + int(np.sum(on[1:] & ~on[:-1]))
        count = onsets if key.startswith(("sustained", "floor", "data", "model")) else int(on.sum())
        upper = float(stats.beta.ppf(0.95, count + 1, n - count)) if count < n else 1.0
        out[key] = {
            "windows": int(on.sum()),
            "onsets": onsets,
            "per_window": count / n,
            "upper_95": upper,
            "per_month": WINDOWS_PER_MONTH * count / n,
            "per_month_upper_95": WINDOWS_PER_MONTH * upper,
        }
    return out


def _sustained_delays(records) -> dict:
    """Windows until each state first held (1-based), None if it never did."""
    states = [_states(r) for r in records]
    keys = [k for k in states[0] if not k.startswith("fired ") or k == "fired any"]
    return {k: next((i + 1 for i, s in enumerate(states) if s[k]), None) for k in keys}


def report_sustained(result) -> str:
    n, rate = result["null_windows"], result["false_alarm_rate"]
    per_signal = rate / result["signals_calibrated"]
    out = [
        f"#### Sustained signals: {result['sustained_windows']} of the last {result['recent_windows']} windows "
        f"(window {result['window']}, push-less DriftMonitor)",
        "",
        f"Correct stream: {n:,} windows drawn with replacement from the test images, the same rows in every "
        "configuration. 'fired': windows in which the signal fired; other states: onsets (a window in the state "
        "after one that was not: one notification each), with the windows in the state (w). Per month (mo): at one "
        f"window a minute ({WINDOWS_PER_MONTH:,} windows), with the one-sided 95 % upper bound (Clopper-Pearson) "
        f"after ≤; – = cannot fire there. Configured: false_alarm_rate {rate:g} per window, so {per_signal:g} per "
        f"signal ({WINDOWS_PER_MONTH * rate:.2g} and {WINDOWS_PER_MONTH * per_signal:.2g} a month).",
        "",
    ]
    header = [
        "state",
        *(f"stride {c['input_stride']}, {'labels' if c['labels'] else 'no labels'}" for c in result["configs"]),
    ]
    rows = []
    for key in result["configs"][0]["null"]:
        cells = []
        for c in result["configs"]:
            r = c["null"][key]
            if not _relevant(key, c["labels"]):
                cells.append("–")
                continue
            fired = key.startswith("fired")
            count = r["windows"] if fired else f"{r['onsets']} ({r['windows']} w)"
            cells.append(f"{count} → {_rate(r['per_month'])}/mo (≤ {_rate(r['per_month_upper_95'])})")
        rows.append([key, *cells])
    out.append(table(header, rows))
    out += [
        "",
        f"Windows until sustained on the corrupted streams ({result['delay_streams']} streams of "
        f"{result['delay_windows']} windows each; one value per stream, – = not within the stream; "
        "3 is the least possible):",
        "",
    ]
    keys = [
        "fired any",
        "sustained input",
        "sustained prediction",
        "sustained confidence",
        "sustained estimated_accuracy",
        "sustained estimated_floor",
        "floor crossed",
        "data drift",
        "model degraded",
    ]
    header = ["scenario", "input_stride", "labels", *keys]
    rows = []
    for scenario in result["configs"][0]["delays"]:
        for c in result["configs"]:
            d = c["delays"][scenario]
            rows.append(
                [scenario, c["input_stride"], "yes" if c["labels"] else "no", *(_delay_cell(d[k]) for k in keys)]
            )
    out.append(table(header, rows))
    out += [
        "",
        "- data drift = input, prediction or confidence sustained (GangplankDataDrift); model degraded = the "
        "estimate under the floor sustained, or the pooled feedback accuracy under the floor "
        f"{result['quality_floor']} with at least {result['min_feedback']} labels (GangplankModelDegraded's "
        "window-based parts; its sequential charts are in the alerts and decisions benchmarks).",
    ]
    return "\n".join(out)


def _relevant(key: str, labels: bool) -> bool:
    """Without labels the pooled floor cannot fire."""
    return labels or key != "floor crossed"


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2g}"


def _delay_cell(values) -> str:
    if all(v is None for v in values):
        return "never"
    if len(set(values)) == 1:
        return f"{values[0]} (all)"
    return ", ".join("–" if v is None else str(v) for v in values)
