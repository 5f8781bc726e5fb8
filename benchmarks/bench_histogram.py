"""Benchmark 1: weight histogram export, gangplank 0.5.0 against ours.

0.5's per-weight ``Histogram.observe`` loop (``TrainTestExporter._construct_histogram``)
against ``WeightHistogram.from_model(...).to_metric(...)``, on the 104,202-parameter
MNIST convnet and a 1.2M-parameter model; also the full ``on_test_end`` with a
synchronous push to the live gateway.
"""

from __future__ import annotations

import numpy as np

from benchmarks.common import GP05_VERSION, fmt_ms, fmt_x, interleaved, paired_ratios, ratio, summary, table
from benchmarks.data import big_model


def bench_histogram(ctx):
    import keras

    from gangplank import TrainTestExporter
    from gangplank.weights import HISTOGRAM_WEIGHT_BUCKETS_0_3, WeightHistogram

    gp05 = ctx.gp05
    keras.utils.set_random_seed(1)
    models = [("MNIST convnet (0.5 example)", ctx.data.correct)]
    if not ctx.quick:
        models.append(("Conv32-Conv64-Pool-Dense128-Dense10 (untrained)", big_model()))
    repeats = 2 if ctx.quick else ctx.repeats(9)
    logs = {"accuracy": 0.98, "loss": 0.05}
    rows = []
    for label, model in models:
        params = int(model.count_params())
        ctx.log(f"histogram: {label}, {params:,} parameters, {repeats} repeats")
        name = "gangplank_test_model_weights"

        def ours_histogram():
            return WeightHistogram.from_model(model, HISTOGRAM_WEIGHT_BUCKETS_0_3).to_metric(name, "weights")

        ours_hook = TrainTestExporter(
            ctx.gateway.address,
            "bench-histogram-ours",
            histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_0_3,
            ignore_exceptions=False,
        )
        ours_hook.set_model(model)

        def ours_end_hook():  # families incl. the histogram, then a synchronous push (ignore_exceptions=False)
            ours_hook.on_test_begin()
            ours_hook.on_test_end(logs)

        cases = {"ours_histogram": ours_histogram, "ours_end_hook": ours_end_hook}
        fresh = []
        if gp05 is not None:
            # 0.5 registers its Histogram in the exporter's registry: one fresh
            # exporter per call, made before the timing starts.
            def make05():
                exporter = gp05.TrainTestExporter(
                    ctx.gateway.address,
                    "bench-histogram-05",
                    histogram_buckets=gp05.HISTOGRAM_WEIGHT_BUCKETS_0_3,
                    ignore_exceptions=False,
                )
                exporter.set_model(model)
                return exporter

            fresh = [make05() for _ in range(2 * repeats + 1)]
            made = []

            def gp05_histogram():
                exporter = fresh.pop()
                exporter._construct_histogram(name)  # its per-weight Histogram.observe loop
                made.append(exporter)

            def gp05_end_hook():  # histogram + synchronous push of the test metrics
                exporter = fresh.pop()
                exporter.on_test_begin({})
                exporter.on_test_end(logs)

            cases.update({"gp05_histogram": gp05_histogram, "gp05_end_hook": gp05_end_hook})
        times = interleaved(cases, repeats)
        stats = {
            k: {**summary(v), "process_cpu_median_ms": float(np.median(interleaved.cpu[k]) * 1e3)}
            for k, v in times.items()
        }
        row = {"model": label, "parameters": params, **{k: s for k, s in stats.items()}}
        ours_metric = ours_histogram()
        ours_counts = [s.value for s in ours_metric.samples if s.name.endswith("_bucket")]
        row["ours_count"] = ours_counts[-1]
        row["ours_sum"] = next(s.value for s in ours_metric.samples if s.name.endswith("_sum"))
        if gp05 is not None:
            row["ratio_histogram"] = ratio(stats["gp05_histogram"], stats["ours_histogram"])
            row["paired_ratio_histogram"] = paired_ratios(times["gp05_histogram"], times["ours_histogram"])
            row["ratio_end_hook"] = ratio(stats["gp05_end_hook"], stats["ours_end_hook"])
            gp05_exporter = made[-1]
            old_counts = [
                s.value for m in gp05_exporter.registry.collect() for s in m.samples if s.name.endswith("_bucket")
            ]
            row["gp05_count"] = old_counts[-1]
            differences = (abs(a - b) for a, b in zip(ours_counts, old_counts, strict=False))
            row["bucket_count_differences"] = int(sum(differences))
        rows.append(row)
        ours_hook.publisher.close(timeout=1)
    return {
        "status": "ok",
        "buckets": "HISTOGRAM_WEIGHT_BUCKETS_0_3",
        "repeats": repeats,
        "rows": rows,
        "gp05": None if gp05 is None else GP05_VERSION,
        "gp05_skipped": ctx.gp05_reason,
    }


def report_histogram(result):
    rows = []
    for r in result["rows"]:
        rows.append(
            [
                f"{r['model']}, {r['parameters']:,} params",
                "histogram (compute + metric)",
                fmt_ms(r.get("gp05_histogram", {}).get("median_ms")),
                fmt_ms(r["ours_histogram"]["median_ms"]),
                fmt_ms(r["ours_histogram"]["min_ms"]),
                fmt_x(r.get("ratio_histogram")),
                "–" if "paired_ratio_histogram" not in r else " / ".join(fmt_x(v) for v in r["paired_ratio_histogram"]),
            ]
        )
        rows.append(
            [
                "",
                "end hook, live gateway (histogram + synchronous push)",
                fmt_ms(r.get("gp05_end_hook", {}).get("median_ms")),
                fmt_ms(r["ours_end_hook"]["median_ms"]),
                fmt_ms(r["ours_end_hook"]["min_ms"]),
                fmt_x(r.get("ratio_end_hook")),
                "",
            ]
        )
    out = [
        f"### 1. Weight histogram export ({result['buckets']}, median of {result['repeats']} alternating repeats)",
        "",
        table(
            [
                "model",
                "path",
                "0.5.0 ms",
                "ours ms",
                "ours min ms",
                "0.5 / ours (medians)",
                "paired ratios min / median / max",
            ],
            rows,
        ),
    ]
    for r in result["rows"]:
        if "bucket_count_differences" in r:
            out.append(
                f"- {r['model']}: ours counts {r['ours_count']:,.0f} weights (sum {r['ours_sum']:.3f}); 0.5 counts "
                f"{r['gp05_count']:,.0f}; bucket counts differ by {r['bucket_count_differences']} in total."
            )
    if result.get("gp05_skipped"):
        out.append(f"- 0.5 side skipped: {result['gp05_skipped']}")
    return "\n".join(out)
