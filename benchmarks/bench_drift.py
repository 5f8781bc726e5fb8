"""Benchmark 3: drift ``observe`` on 200x784 MNIST batches.

``DriftMonitor.observe`` followed by ``flush`` — the whole pipeline: validation,
the hand-over, binning, counting and the comparison, scrape-only so no HTTP is
timed — (window closing on every batch, window open, 10-row batches) against ``scipy.stats.ks_2samp`` per feature (what
alibi-detect's KSDrift does), one vectorised ``ks_2samp`` call, and a numpy sum
over the batch (the memory-bandwidth floor). The same ``observe`` calls also run
with numpy's OpenBLAS limited to one thread, and ``DriftReference.fit`` is timed
both ways.
"""

from __future__ import annotations

import numpy as np

from benchmarks.common import BlasThreads, fmt_ms, fmt_x, interleaved, ratio, summary, table
from benchmarks.data import PIXELS


def bench_drift(ctx):
    from scipy.stats import ks_2samp

    from gangplank import DriftMonitor, DriftReference

    data = ctx.data
    x_ref, p_ref, y_ref = data.flat_ref, data.p_ref, data.y_ref
    fit_repeats = 1 if ctx.quick else 3
    blas = BlasThreads.available()
    ctx.log(
        f"drift: DriftReference.fit on {x_ref.shape[0]:,}x{x_ref.shape[1]} ({fit_repeats} runs"
        f"{', alternating with one OpenBLAS thread' if blas else ''})"
    )
    fitted = {}

    def fit():
        fitted["reference"] = DriftReference.fit(x_ref, p_ref, y_ref)

    fit_cases = {"fit": fit}
    fit_contexts = {}
    if blas:
        fit_cases["fit_blas1"] = fit
        fit_contexts["fit_blas1"] = lambda: BlasThreads.limit(1)
    fit_times = interleaved(fit_cases, fit_repeats, contexts=fit_contexts)
    reference = fitted["reference"]
    data._reference = reference
    reference.save(data.reference_path)

    rows = 200
    n_batches = data.flat_test.shape[0] // rows
    batches = [
        (np.ascontiguousarray(data.flat_test[i * rows : (i + 1) * rows]), data.p_test[i * rows : (i + 1) * rows])
        for i in range(n_batches)
    ]
    small = [(x[:10], p[:10]) for x, p in batches]
    closing = DriftMonitor(
        None, "bench-drift", reference=reference, agent="closing"
    )  # scrape-only: the pipeline, not HTTP
    accumulating = DriftMonitor(None, "bench-drift", reference=reference, agent="accumulating", window_size=10**9)
    accumulating_small = DriftMonitor(
        None, "bench-drift", reference=reference, agent="accumulating-10", window_size=10**9
    )
    assert closing.window_size == rows
    i = {"n": 0}

    def batch():
        i["n"] += 1
        return batches[i["n"] % n_batches]

    def floor():
        batch()[0].sum()

    # observe hands the batch to the worker; flush waits until the worker has binned,
    # counted and (when a window is full) compared it: the whole pipeline is timed.
    def ours_closing():
        x, p = batch()
        closing.observe(x, p)
        closing.flush(60)

    def ours_accumulating():
        x, p = batch()
        accumulating.observe(x, p)
        accumulating.flush(60)

    def ours_small():
        x, p = small[i["n"] % n_batches]
        i["n"] += 1
        accumulating_small.observe(x, p)
        accumulating_small.flush(60)

    def ks_per_feature():  # alibi-detect KSDrift.feature_score: one ks_2samp per feature, asymptotic p
        x = batch()[0]
        p_values = np.empty(PIXELS, dtype=np.float32)
        for f in range(PIXELS):
            p_values[f] = ks_2samp(x_ref[:, f], x[:, f], method="asymp")[1]

    def ks_one_call():
        ks_2samp(x_ref, batch()[0], axis=0, method="asymp")

    repeats = 2 if ctx.quick else ctx.repeats(9)
    cases = {
        "floor": floor,
        "ours_closing": ours_closing,
        "ours_accumulating": ours_accumulating,
        "ours_10_rows": ours_small,
        "ks_per_feature": ks_per_feature,
        "ks_one_call": ks_one_call,
    }
    inner = {
        "floor": 200,
        "ours_closing": 20,
        "ours_accumulating": 20,
        "ours_10_rows": 50,
        "ours_closing_blas1": 20,
        "ours_accumulating_blas1": 20,
    }
    contexts = {}
    if blas:  # the same calls with numpy's OpenBLAS limited to one thread (a diagnosis, see RESULTS.md)
        cases.update({"ours_closing_blas1": ours_closing, "ours_accumulating_blas1": ours_accumulating})
        contexts = {k: (lambda: BlasThreads.limit(1)) for k in ("ours_closing_blas1", "ours_accumulating_blas1")}
    ctx.log(
        f"drift: observe vs ks_2samp vs floor, {repeats} alternating repeats (OpenBLAS threads: "
        f"{BlasThreads.current()})"
    )
    times = interleaved(cases, repeats, inner=inner, contexts=contexts)
    for exporter in (closing, accumulating, accumulating_small):
        exporter.close()
    stats = {k: summary(v) for k, v in times.items()}
    for key, s in stats.items():
        s["process_cpu_median_ms"] = float(np.median(interleaved.cpu[key]) * 1e3)
        s["samples_per_s"] = (10 if key == "ours_10_rows" else rows) / (s["median_ms"] / 1e3)
    return {
        "status": "ok",
        "batch": [rows, PIXELS],
        "reference_rows": int(x_ref.shape[0]),
        "repeats": repeats,
        "inner": inner,
        "fit": summary(fit_times["fit"]),
        "fit_blas1": summary(fit_times["fit_blas1"]) if blas else None,
        "fit_window_size": reference.window_size,
        "stats": stats,
        "openblas_threads": BlasThreads.current(),
        "ks_over_ours_closing": ratio(stats["ks_per_feature"], stats["ours_closing"]),
        "ks_over_ours_accumulating": ratio(stats["ks_per_feature"], stats["ours_accumulating"]),
        "ours_closing_over_floor": ratio(stats["ours_closing"], stats["floor"]),
        "ours_accumulating_over_floor": ratio(stats["ours_accumulating"], stats["floor"]),
        **(
            {}
            if not blas
            else {
                "ks_over_ours_closing_blas1": ratio(stats["ks_per_feature"], stats["ours_closing_blas1"]),
                "ks_over_ours_accumulating_blas1": ratio(stats["ks_per_feature"], stats["ours_accumulating_blas1"]),
                "ours_closing_blas1_over_floor": ratio(stats["ours_closing_blas1"], stats["floor"]),
                "ours_accumulating_blas1_over_floor": ratio(stats["ours_accumulating_blas1"], stats["floor"]),
            }
        ),
    }


def report_drift(result):
    s = result["stats"]
    labels = {
        "ours_closing": "ours: `observe`, window of 200 closes on every batch (statistics + push hand-off)",
        "ours_accumulating": "ours: `observe`, window still open (bin counts only)",
        "ours_10_rows": "ours: `observe`, batch of 10 rows, window open",
        "ours_closing_blas1": "ours: `observe`, window closes on every batch — OpenBLAS limited to 1 thread",
        "ours_accumulating_blas1": "ours: `observe`, window open — OpenBLAS limited to 1 thread",
        "ks_per_feature": "`ks_2samp` per feature, 784 calls, `method='asymp'` (KSDrift)",
        "ks_one_call": "`ks_2samp(ref, batch, axis=0)`, one call",
        "floor": "`batch.sum()` (memory-bandwidth floor)",
    }
    rows = [
        [
            labels[k],
            fmt_ms(s[k]["median_ms"]),
            fmt_ms(s[k]["min_ms"]),
            fmt_ms(s[k].get("process_cpu_median_ms")),
            f"{s[k]['samples_per_s']:,.0f}",
        ]
        for k in labels
        if k in s
    ]
    fit, fit1 = result["fit"], result.get("fit_blas1")
    blas_lines = []
    if "ks_over_ours_closing_blas1" in result:
        blas_lines = [
            f"- with OpenBLAS limited to 1 thread (default here: {result['openblas_threads']}): per-feature KS / ours "
            f"{fmt_x(result['ks_over_ours_closing_blas1'])} closing, "
            f"{fmt_x(result['ks_over_ours_accumulating_blas1'])} accumulating; "
            f"ours / floor {fmt_x(result['ours_closing_blas1_over_floor'])} closing, "
            f"{fmt_x(result['ours_accumulating_blas1_over_floor'])} accumulating.",
        ]
    if fit1:
        blas_lines.append(
            f"- `DriftReference.fit` with OpenBLAS limited to 1 thread, alternating with the default: median "
            f"{fit1['median_ms'] / 1e3:.2f} s (min {fit1['min_ms'] / 1e3:.2f}, max {fit1['max_ms'] / 1e3:.2f})."
        )
    return "\n".join(
        [
            f"### 3. Drift on {result['batch'][0]}x{result['batch'][1]} MNIST batches (reference "
            f"{result['reference_rows']:,} rows; "
            f"median of {result['repeats']} alternating repeats)",
            "",
            table(["method", "ms per batch", "min ms", "process CPU ms (all threads)", "samples/s"], rows),
            "",
            f"- per-feature KS / ours: {fmt_x(result['ks_over_ours_closing'])} with the window closing on every batch, "
            f"{fmt_x(result['ks_over_ours_accumulating'])} while it accumulates (goal ≥ 100x).",
            f"- ours / floor: {fmt_x(result['ours_closing_over_floor'])} closing, "
            f"{fmt_x(result['ours_accumulating_over_floor'])} "
            f"accumulating (goal ≤ 10x).",
            f"- `DriftReference.fit` on {result['reference_rows']:,}x784 (window {result['fit_window_size']}, "
            f"defaults incl. 400 "
            f"calibration windows): median {fit['median_ms'] / 1e3:.2f} s (min {fit['min_ms'] / 1e3:.2f}, max "
            f"{fit['max_ms'] / 1e3:.2f}, n={fit['n']}).",
            *blas_lines,
        ]
    )
