"""Benchmark 5: detection on real MNIST, ours against the chi-square rule of 0.5's drift example.

Window 200, batches of 1-20 rows: windows until the first alarm and false
alarms per 100 windows, on the correct stream, inverted pixels and the wrong
model; seeded, so every run gives the same figures.
"""

from __future__ import annotations

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
        out["signals"] = {k: int(sum(s[k] for s in per_window_signals)) for k in per_window_signals[0]} if per_window_signals else {}
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
    n_windows = {"correct": 10 if ctx.quick else 200, "inverted pixels": 5 if ctx.quick else 20, "wrong model": 5 if ctx.quick else 20}
    results = {}
    for scenario, (x_all, p_all) in scenarios.items():
        predicted_all = p_all.argmax(axis=1)
        per_rule = {k: [] for k in ("ours", "ours_with_labels", "gp05_faithful", "gp05_window_uniform", "gp05_window_train_shares", "gp05_own_batches")}
        batches_total = batches_tested = 0
        for seed in range(seeds):
            ctx.log(f"detection: {scenario}, stream {seed + 1}/{seeds}, {n_windows[scenario]} windows of {window}")
            rng = np.random.default_rng(1000 * seed + 7)
            rows, sizes = _stream(rng, n_windows[scenario], window, 1, 20, x_all.shape[0])
            for key, with_labels in (("ours", False), ("ours_with_labels", True)):
                reports = []
                exporter = ProductionDriftExporter(ctx.gateway.address, "bench-detection", reference,
                                                   agent=f"{scenario.split()[0]}-{key}-{seed}", on_window=reports.append)
                at = 0
                for size in sizes:
                    batch = rows[at:at + size]
                    exporter.observe(x_all[batch], p_all[batch], data.y_test[batch] if with_labels else None)
                    at += size
                exporter._closed.set()
                exporter.sender.close(timeout=1)
                assert len(reports) == n_windows[scenario], (len(reports), n_windows[scenario])
                per_rule[key].append(_windows_summary([r.drift_detected for r in reports], [r.signals for r in reports]))
            # gangplank 0.5's drift example rule, faithfully: on each predict() batch of at least
            # 50 rows, scipy.stats.chisquare of the predicted-class counts against a uniform
            # distribution; p < 0.05 counts as drift. Smaller batches give no p-value at all.
            alarms = np.zeros(n_windows[scenario], dtype=bool)
            at = 0
            for size in sizes:
                batches_total += 1
                if size >= 50:
                    batches_tested += 1
                    counts = np.bincount(predicted_all[rows[at:at + size]], minlength=classes)
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
            rows200, sizes200 = _stream(np.random.default_rng(1000 * seed + 8), n_windows[scenario], window, 1, 200, x_all.shape[0])
            alarms = np.zeros(n_windows[scenario], dtype=bool)
            at = 0
            for size in sizes200:
                if size >= 50:
                    c = np.bincount(predicted_all[rows200[at:at + size]], minlength=classes)
                    if stats.chisquare(c).pvalue < 0.05:
                        alarms[at // window] = True
                at += size
            per_rule["gp05_own_batches"].append(_windows_summary(alarms))
        results[scenario] = {"seeds": seeds, "windows_per_stream": n_windows[scenario], "batches": batches_total,
                             "batches_with_p_value_gp05": batches_tested, "rules": {k: _aggregate(v) for k, v in per_rule.items()}}
    return {"status": "ok", "window": window, "batch_sizes": [1, 20], "accuracy": data.accuracy, "wrong_model_even_share": data.wrong_even_share,
            "reference_rows": int(data.flat_ref.shape[0]), "thresholds": {
                "drifted_features_ratio": reference.thresholds.drifted_features_ratio,
                "confidence_psi": reference.thresholds.confidence_psi,
                "class_p_value": reference.thresholds.class_p_value},
            "scenarios": results}


def _aggregate(streams):
    windows = sum(s["windows"] for s in streams)
    alarmed = sum(s["alarmed"] for s in streams)
    firsts = [s["first_alarm_window"] for s in streams]
    out = {"streams": len(streams), "windows": windows, "alarmed": alarmed, "alarms_per_100_windows": 100.0 * alarmed / windows,
           "first_alarm_window": firsts,
           "median_first_alarm_window": None if any(f is None for f in firsts) else float(np.median(firsts))}
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
    out = [f"### 5. Detection on real MNIST (window {result['window']}, batches of {result['batch_sizes'][0]}–{result['batch_sizes'][1]})", "",
           f"Test-set accuracy: correct model {result['accuracy']['correct_on_test']:.4f}, on inverted pixels "
           f"{result['accuracy']['correct_on_inverted']:.4f}; wrong model {result['accuracy']['wrong_on_test']:.4f} "
           f"(trained on {100 * result['wrong_model_even_share']:.1f}% even digits). Reference: {result['reference_rows']:,} held-out training images.", ""]
    header = ["rule", "correct: false alarms / 100 windows", "inverted: first alarm (window)", "inverted: alarms / 100",
              "wrong model: first alarm (window)", "wrong model: alarms / 100"]
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
        rows.append([label, f"{sc['correct']['rules'][key]['alarms_per_100_windows']:.1f} ({sc['correct']['rules'][key]['alarmed']}/{sc['correct']['rules'][key]['windows']})",
                     first("inverted pixels"), f"{sc['inverted pixels']['rules'][key]['alarms_per_100_windows']:.0f}",
                     first("wrong model"), f"{sc['wrong model']['rules'][key]['alarms_per_100_windows']:.0f}"])
    out.append(table(header, rows))
    out.append("")
    out.append(f"- first-alarm columns list one value per stream ({sc['correct']['seeds']} streams per scenario); "
               f"streams: correct {sc['correct']['windows_per_stream']} windows, corrupted {sc['wrong model']['windows_per_stream']} windows each.")
    c = sc["correct"]
    out.append(f"- 0.5's rule as written computed a p-value for {c['batches_with_p_value_gp05']} of {c['batches']} batches of the correct stream "
               f"(it skips batches under 50 rows).")
    for key in ("ours", "ours_with_labels"):
        parts = []
        for s in sc:
            sig = sc[s]["rules"][key].get("signals")
            if sig:
                parts.append(f"{s}: " + ", ".join(f"{k} {v}" for k, v in sig.items()) + f" of {sc[s]['rules'][key]['windows']}")
        out.append(f"- {RULE_LABELS[key]}, windows per signal — " + "; ".join(parts) + ".")
    return "\n".join(out)
