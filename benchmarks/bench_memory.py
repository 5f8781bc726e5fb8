"""Benchmark 4: peak RSS of an exporter process after 10k and 1M observed samples.

Each size runs in a child process (``run.py memory-child``), twice, alternating.
The child resets the kernel's peak-RSS mark after its setup, so the peak it
reports is the peak while observing.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import HERE, table

RUNNER = HERE / "run.py"  # the child is started as ``run.py memory-child ...``


def memory_child(args):
    """Child process: observe ``--samples`` rows in batches of 200, report RSS at checkpoints (JSON on stdout).

    After the setup (imports, reference, exporter) the kernel's peak-RSS mark
    is reset (``/proc/self/clear_refs``), so the peak at each checkpoint is the
    peak *while observing*, not the import spike of TensorFlow.
    """

    def status_mb(field):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
        return None

    def peak_mb():
        # VmHWM is the kernel's peak RSS of this address space (what clear_refs
        # resets); ru_maxrss also keeps the peaks of exited threads and does not reset.
        hwm = status_mb("VmHWM")
        return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    def current_mb():
        value = status_mb("VmRSS")
        return float("nan") if value is None else value

    stages = {"python + numpy": current_mb()}
    import prometheus_client  # noqa: F401
    import scipy.stats  # noqa: F401

    from gangplank import DriftReference

    stages["+ scipy, prometheus_client, gangplank.reference"] = current_mb()
    from gangplank import ProductionDriftExporter  # imports keras, and with it TensorFlow

    stages["+ ProductionDriftExporter (keras, TensorFlow)"] = current_mb()
    reference = DriftReference.load(args.reference)
    with np.load(args.pool) as f:
        x, p = f["x"], f["p"]
    exporter = ProductionDriftExporter(
        args.gateway, "bench-memory", reference=reference, agent=f"memory-{args.samples}"
    )
    stages["+ reference, 2,000-row batch pool, exporter"] = current_mb()
    setup_peak = peak_mb()
    setup_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    try:
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    marks = [{"samples": 0, "peak_mb": peak_mb(), "rss_mb": current_mb()}]
    checkpoints = sorted({c for c in (10_000, 100_000, args.samples) if c <= args.samples})
    observed, rows, start = 0, 200, time.perf_counter()
    while observed < args.samples:
        at = observed % x.shape[0]
        take = min(rows, args.samples - observed, x.shape[0] - at)
        exporter.observe(x[at : at + take], p[at : at + take])
        observed += take
        if checkpoints and observed >= checkpoints[0]:
            checkpoints.pop(0)
            marks.append(
                {
                    "samples": observed,
                    "peak_mb": peak_mb(),
                    "rss_mb": current_mb(),
                    "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                }
            )
    seconds = time.perf_counter() - start
    exporter.close()
    totals = exporter.totals
    print(
        json.dumps(
            {
                "stages_rss_mb": stages,
                "setup_peak_mb": setup_peak,
                "setup_ru_maxrss_mb": setup_maxrss,
                "peak_reset": reset,
                "marks": marks,
                "seconds": seconds,
                "windows": totals.windows,
                "samples_in_windows": totals.samples,
            }
        )
    )


def bench_memory(ctx):
    data = ctx.data
    reference = data.reference()
    reference.save(data.reference_path)
    pool = ctx.cache / "memory-pool.npz"
    np.savez(pool, x=data.flat_test[:2000], p=data.p_test[:2000])
    sizes = [2_000, 20_000] if ctx.quick else [10_000, 1_000_000]
    runs = 1 if ctx.quick else 2
    rows = []
    for run in range(runs):
        for n in sizes if run % 2 == 0 else sizes[::-1]:
            ctx.log(f"memory: child process observing {n:,} samples (run {run + 1}/{runs})")
            command = [
                sys.executable,
                str(RUNNER),
                "memory-child",
                "--samples",
                str(n),
                "--reference",
                str(data.reference_path),
                "--pool",
                str(pool),
                "--gateway",
                ctx.gateway.address,
            ]
            done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
            if done.returncode:
                raise RuntimeError(f"memory child failed: {done.stderr[-2000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append({"samples": n, "run": run + 1, **result})
    return {"status": "ok", "batch_rows": 200, "rows": rows}


def report_memory(result):
    rows = []
    for r in result["rows"]:
        base = r["marks"][0]
        for mark in r["marks"][1:]:
            rows.append(
                [
                    f"{r['samples']:,}",
                    r["run"],
                    f"{r['setup_peak_mb']:.1f}",
                    f"{base['rss_mb']:.1f}",
                    f"{mark['samples']:,}",
                    f"{mark['peak_mb']:.1f}",
                    f"{mark['peak_mb'] - base['rss_mb']:+.1f}",
                    f"{mark['rss_mb']:.1f}",
                ]
            )
    by_size = {}
    for r in result["rows"]:
        by_size.setdefault(r["samples"], []).append(r["marks"][-1]["peak_mb"])
    peak = {n: float(np.median(v)) for n, v in by_size.items()}
    sizes = sorted(peak)
    speed = [r["samples"] / r["seconds"] for r in result["rows"] if r["samples"] == sizes[-1]]
    stages = result["rows"][0]["stages_rss_mb"]
    reset = all(r["peak_reset"] for r in result["rows"])
    return "\n".join(
        [
            f"### 4. Memory of an exporter process (batches of {result['batch_rows']}, window 200, live "
            f"gateway; peak = VmHWM, reset after setup)",
            "",
            table(
                [
                    "child observes",
                    "run",
                    "setup peak MB",
                    "RSS after setup MB",
                    "at samples",
                    "peak MB while observing",
                    "peak − setup RSS MB",
                    "RSS MB here",
                ],
                rows,
            ),
            "",
            "- peak RSS while observing, median: "
            + ", ".join(f"after {n:,} samples {peak[n]:.1f} MB" for n in sizes)
            + f"; {sizes[-1]:,} minus {sizes[0]:,}: {peak[sizes[-1]] - peak[sizes[0]]:+.1f} MB."
            + ("" if reset else " (the peak could not be reset after setup: peaks include the import spike)"),
            "- RSS during setup (first child): " + "; ".join(f"{k} {v:.0f} MB" for k, v in stages.items()) + ".",
            f"- the largest child observed {np.median(speed):,.0f} samples/s (window statistics and pushes included).",
        ]
    )
