"""Benchmark 2: what one ``on_epoch_end`` costs the training loop, ours against 0.5.0.

Four gateways: live, a closed port, a silent one (accepts TCP, never answers)
and one answering HTTP 500. 0.5 gets a 2 s socket timeout on the silent gateway
for the repeats, and one extra call with its real 30 s default.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time

import numpy as np

from benchmarks.common import GP05_VERSION, fmt_ms, fmt_x, interleaved, ratio, summary, table
from benchmarks.data import mnist_convnet


class _CountRecords(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = 0

    def emit(self, record):
        self.lines += len(self.format(record).splitlines())


def _short_timeout_handler(seconds):
    """A prometheus_client push handler identical to the default except for the socket timeout."""
    from prometheus_client.exposition import default_handler

    def handler(url, method, timeout, headers, data):
        return default_handler(url, method, seconds, headers, data)

    return handler


def bench_hook(ctx):
    import keras
    from gangplank_devtools import SilentServer, StatusServer, closed_port_address

    from gangplank import TrainTestExporter

    gp05 = ctx.gp05
    keras.utils.set_random_seed(2)
    model = mnist_convnet()
    logs = {
        "accuracy": 0.9448703527450562,
        "loss": 0.18397289514541626,
        "val_accuracy": 0.9835000038146973,
        "val_loss": 0.05415859818458557,
    }
    repeats = 3 if ctx.quick else ctx.repeats(15)
    silent_timeout_05 = 0.2 if ctx.quick else 2.0
    pause = 0.05  # untimed gap after every call: epochs are never back to back
    logger = logging.getLogger("gangplank")
    rows = []
    servers = []
    try:
        scenarios = [("live gateway", ctx.gateway.address), ("closed port", closed_port_address())]
        silent = SilentServer()
        servers.append(silent)
        scenarios.append(("silent gateway", silent.address))
        status = StatusServer(500)
        servers.append(status)
        scenarios.append(("HTTP 500", status.address))
        for scenario, address in scenarios:
            n = min(repeats, 5) if scenario == "silent gateway" else repeats
            ctx.log(f"hook: {scenario}, {n} repeats")
            counter = _CountRecords()
            logger.addHandler(counter)
            ours = TrainTestExporter(address, f"bench-hook-ours-{scenario.split()[0]}")
            ours.set_model(model)
            ours.on_train_begin()
            epoch = {"ours": 0, "gp05": 0}

            def run_ours():
                ours.on_epoch_end(epoch["ours"], logs)
                epoch["ours"] += 1

            cases = {"ours": run_ours}
            stderr = io.StringIO()
            if gp05 is not None:
                handler = _short_timeout_handler(silent_timeout_05) if scenario == "silent gateway" else None
                old = gp05.TrainTestExporter(address, f"bench-hook-05-{scenario.split()[0]}", handler=handler)
                old.set_model(model)
                old.on_train_begin({})

                def run_old():
                    with contextlib.redirect_stderr(stderr):  # 0.5 prints a traceback per failed push
                        old.on_epoch_end(epoch["gp05"], logs)
                    epoch["gp05"] += 1

                cases["gp05"] = run_old
            times = interleaved(cases, n, pause=pause)
            logger.removeHandler(counter)
            row = {
                "scenario": scenario,
                "repeats": n,
                "ours": {
                    **summary(times["ours"]),
                    "process_cpu_median_ms": float(np.median(interleaved.cpu["ours"]) * 1e3),
                },
                "ours_log_lines": counter.lines,
                "ours_pending": bool(ours.publisher.pending),
            }
            if gp05 is not None:
                row["gp05"] = summary(times["gp05"])
                row["gp05_stderr_lines_per_epoch"] = len(stderr.getvalue().splitlines()) / n
                row["ratio"] = ratio(row["gp05"], row["ours"])
                if scenario == "silent gateway":
                    row["gp05_timeout_s"] = silent_timeout_05
            rows.append(row)
            ours.publisher.close(timeout=0.5 if scenario == "live gateway" else 0)
        one_call = None
        if gp05 is not None and not ctx.quick and not ctx.args.skip_30s:
            ctx.log("hook: one 0.5 epoch end against the silent gateway with its real default timeout (about 30 s)")
            old = gp05.TrainTestExporter(silent.address, "bench-hook-05-default-timeout")
            old.set_model(model)
            old.on_train_begin({})
            stderr = io.StringIO()
            start = time.perf_counter()
            with contextlib.redirect_stderr(stderr):
                old.on_epoch_end(0, logs)
            one_call = {"seconds": time.perf_counter() - start, "stderr_lines": len(stderr.getvalue().splitlines())}
    finally:
        for server in servers:
            server.close()
    return {
        "status": "ok",
        "rows": rows,
        "gp05_silent_default_timeout_call": one_call,
        "pause_s": pause,
        "gp05": None if gp05 is None else GP05_VERSION,
        "gp05_skipped": ctx.gp05_reason,
        "ours_timeout_s": 5.0,
    }


def report_hook(result):
    rows = []
    for r in result["rows"]:
        note = ""
        if "gp05_timeout_s" in r:
            note = f"0.5 with a {r['gp05_timeout_s']:g} s socket timeout (its default is 30 s)"
        rows.append(
            [
                r["scenario"],
                fmt_ms(r.get("gp05", {}).get("median_ms")),
                fmt_ms(r["ours"]["median_ms"]),
                fmt_ms(r["ours"]["max_ms"]),
                fmt_x(r.get("ratio")),
                "–" if "gp05" not in r else f"{r['gp05_stderr_lines_per_epoch']:.0f}",
                r["ours_log_lines"],
                note,
            ]
        )
    out = [
        f"### 2. One epoch-end hook (median of {result['rows'][0]['repeats']} alternating calls; silent: "
        f"{result['rows'][2]['repeats']})",
        "",
        table(
            [
                "gateway",
                "0.5.0 ms",
                "ours ms",
                "ours max ms",
                "0.5 / ours",
                "0.5 stderr lines per epoch",
                "ours log lines (whole run)",
                "note",
            ],
            rows,
        ),
    ]
    one = result.get("gp05_silent_default_timeout_call")
    if one:
        out.append(
            f"- 0.5.0, silent gateway, its real default timeout, one epoch end: {one['seconds']:.2f} s "
            f"({one['stderr_lines']} traceback lines)."
        )
    if result.get("gp05_skipped"):
        out.append(f"- 0.5 side skipped: {result['gp05_skipped']}")
    return "\n".join(out)
