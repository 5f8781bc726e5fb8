#!/usr/bin/env python
"""Side-by-side benchmarks: gangplank against gangplank 0.5.0 and the drift peers.

Usage (from the repository root, with the project's virtualenv)::

    python benchmarks/run.py                 # every benchmark, full size
    python benchmarks/run.py histogram hook  # some of them
    python benchmarks/run.py --quick         # tiny sizes, for the smoke test

Benchmarks (issue 5), one module each:

``histogram``  (bench_histogram.py) weight histogram export, 0.5's per-weight
               ``Histogram.observe`` loop against
               ``WeightHistogram.from_model(...).to_metric(...)``, on the
               104,202-parameter MNIST convnet and a 1.2M-parameter model.
``hook``       (bench_hook.py) what one ``on_epoch_end`` costs the training
               loop, ours against 0.5, with a live gateway, a closed port, a
               silent gateway and HTTP 500.
``drift``      (bench_drift.py) ``ProductionDriftExporter.observe`` on 200x784
               MNIST batches against ``scipy.stats.ks_2samp`` per feature
               (alibi-detect KSDrift's method) and a numpy sum over the batch
               (memory-bandwidth floor); also ``DriftReference.fit``.
``memory``     (bench_memory.py) peak RSS of an exporter process after 10k and
               1M observed samples (child processes).
``detection``  (bench_detection.py) real MNIST, window 200, batches of 1-20:
               windows until the first alarm and false alarms per 100 windows,
               ours against the chi-square rule of 0.5's drift example; correct
               stream, inverted pixels, wrong model. Also each signal's
               per-window and sustained (3 of 5) false-alarm rate over 20,000
               correct windows (input_stride 1 and 4, with and without labels)
               and the windows until sustained on the corrupted streams.
``serving``    (bench_serving.py) the demo convnet's ``predict_on_batch`` with
               drift monitoring off and on, alternating blocks: latency p50/p99,
               pipeline CPU per sample, the caller's ``observe``, throughput.
``pipeline``   (bench_pipeline.py) the drift pipeline's CPU per sample, stage
               by stage (ring copy, take, normalise, predictions, binning,
               compare, record, families, pickle, push), strides 1 and 4.
``estimate``   (bench_estimate.py) the label-free accuracy estimate against
               realised accuracy per window (MAE, bias, firing rate) on five
               MNIST streams and a tabular set, and NannyML's CBPE on the same
               windows (its own venv under benchmarks/.vendor, a subprocess).
``alerts``     (bench_alerts.py) the shipped alert rules replayed with promtool
               on a push-less monitor's own output, one window a minute
               (tests/rule_replay.py): on the MNIST streams of issue 16 (two
               MLPs, tests/mnist_streams.py) and the tabular set, with labels
               on 100/50/10/0 % of rows, with and without a shadow model: the
               window of the first page and warning, and page/warning onsets
               over many clean windows; NannyML CBPE's alerts on the same windows.
``decisions``  (bench_decisions.py) the decisions on a healthy model against
               what they promise: the sequential charts' false pages a month
               (exact, and simulated months with a 95 % upper bound), the
               count signals' per-window rate at the configured α (balanced,
               rare-class and saturated-confidence references), and the MNIST
               test set in file order against shuffled, rules replayed.
``detectable`` (bench_detectable.py) the smallest shift a reference catches in
               half its windows (``DriftReference.detectable_shift``), by
               reference rows (114-10,000) and window size (30-500), on 30
               tabular features, and on MNIST; windows and minutes until
               ``GangplankDataDrift`` at low traffic.
``wide``       (bench_wide.py) wide inputs (issue 19): a 1,000-row reference of
               224x224x3 images, raw and through each input reduction
               (pool_images, feature_subset, random_projection), and raw at 784
               and 12,288 features: fit time, fit peak RSS, observe+flush per
               sample (child processes).

Shared: common.py (alternating timing, medians, ratios, tables, machine facts,
OpenBLAS threads, the 0.5.0 loader) and data.py (MNIST, trained models,
predictions, the drift reference). This file is only the command line.

Every comparison runs both sides in this one process, alternating call by call
(the order flips every repeat), repeated, and reports medians and ratios.

gangplank 0.5.0 is installed on demand with ``pip install --no-deps --target
benchmarks/.vendor/gangplank-0.5.0`` and imported as ``gangplank05`` (a renamed
package; it does not shadow ours). If pip cannot fetch it, the 0.5 side is
reported as skipped. Trained models, predictions and references are cached in
``benchmarks/.cache`` (both directories are git-ignored). Results are printed as
Markdown tables and written as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # ``benchmarks`` as a package when run as a script

from benchmarks.bench_alerts import bench_alerts, report_alerts  # noqa: E402
from benchmarks.bench_decisions import bench_decisions, report_decisions  # noqa: E402
from benchmarks.bench_detectable import bench_detectable, report_detectable  # noqa: E402
from benchmarks.bench_detection import bench_detection, report_detection  # noqa: E402
from benchmarks.bench_drift import bench_drift, report_drift  # noqa: E402
from benchmarks.bench_estimate import bench_estimate, report_estimate  # noqa: E402
from benchmarks.bench_histogram import bench_histogram, report_histogram  # noqa: E402
from benchmarks.bench_hook import bench_hook, report_hook  # noqa: E402
from benchmarks.bench_memory import bench_memory, memory_child, report_memory  # noqa: E402
from benchmarks.bench_pipeline import bench_pipeline, report_pipeline  # noqa: E402
from benchmarks.bench_serving import bench_serving, report_serving  # noqa: E402
from benchmarks.bench_wide import bench_wide, report_wide  # noqa: E402
from benchmarks.common import GP05_VERSION, HERE, load_gp05, loadavg, machine_info  # noqa: E402  (sets env defaults first)
from benchmarks.data import Data  # noqa: E402

RUNNERS = {
    "histogram": (bench_histogram, report_histogram),
    "hook": (bench_hook, report_hook),
    "drift": (bench_drift, report_drift),
    "memory": (bench_memory, report_memory),
    "detection": (bench_detection, report_detection),
    "serving": (bench_serving, report_serving),
    "pipeline": (bench_pipeline, report_pipeline),
    "estimate": (bench_estimate, report_estimate),
    "alerts": (bench_alerts, report_alerts),
    "decisions": (bench_decisions, report_decisions),
    "detectable": (bench_detectable, report_detectable),
    "wide": (bench_wide, report_wide),
}
BENCHMARKS = tuple(RUNNERS)


class Context:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.cache = Path(args.cache_dir)
        self.cache.mkdir(parents=True, exist_ok=True)
        self.started = time.perf_counter()
        self.gp05, self.gp05_reason = (None, "--no-gp05 given") if args.no_gp05 else load_gp05(Path(args.vendor_dir))
        self.gateway = None
        self._data = None

    def log(self, message):
        print(f"[{time.perf_counter() - self.started:7.1f} s] {message}", file=sys.stderr, flush=True)

    def repeats(self, default):
        return self.args.repeats or default

    @property
    def data(self):
        if self._data is None:
            self._data = Data(self.cache, self.quick, self.log)
        return self._data


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "benchmarks", nargs="*", metavar="BENCHMARK", help=f"which to run: {', '.join(BENCHMARKS)} or all (default all)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes and few repeats (smoke test); figures are not representative"
    )
    parser.add_argument("--repeats", type=int, default=None, help="override the number of alternating repeats")
    parser.add_argument("--json", default=str(HERE / ".cache" / "last-run.json"), help="where to write the raw results")
    parser.add_argument("--cache-dir", default=str(HERE / ".cache"), help="trained models, predictions, references")
    parser.add_argument(
        "--vendor-dir", default=str(HERE / ".vendor"), help="where gangplank 0.5.0 is installed with pip --target"
    )
    parser.add_argument("--no-gp05", action="store_true", help="skip the gangplank 0.5.0 side")
    parser.add_argument("--skip-30s", action="store_true", help="skip the one 0.5 call with its real 30 s timeout")
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "memory-child":
        child = argparse.ArgumentParser()
        for name in ("--samples", "--reference", "--pool", "--gateway"):
            child.add_argument(name, required=True, type=int if name == "--samples" else str)
        return memory_child(child.parse_args(argv[1:]))
    args = parser.parse_args(argv)
    unknown = set(args.benchmarks) - {*BENCHMARKS, "all"}
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {', '.join(BENCHMARKS)} or all")
    chosen = [b for b in BENCHMARKS if not args.benchmarks or "all" in args.benchmarks or b in args.benchmarks]

    from gangplank_devtools import start_pushgateway

    ctx = Context(args)
    if ctx.gp05 is None:
        ctx.log(f"gangplank {GP05_VERSION} side skipped: {ctx.gp05_reason}")
    info = machine_info()
    command = "python benchmarks/run.py " + " ".join(argv)
    results = {
        "meta": {
            **info,
            "command": command.strip(),
            "quick": args.quick,
            "gp05": None
            if ctx.gp05 is None
            else {"version": GP05_VERSION, "path": str(Path(ctx.gp05.__file__).parent)},
            "gp05_skipped": ctx.gp05_reason,
        }
    }
    sections = []
    with start_pushgateway() as gateway:
        ctx.gateway = gateway
        for name in chosen:
            bench, report = RUNNERS[name]
            start, load = time.perf_counter(), loadavg()
            results[name] = bench(ctx)
            results[name]["wall_s"] = time.perf_counter() - start
            results[name]["loadavg"] = [load, loadavg()]
            sections.append(
                report(results[name]) + f"\n- 1-minute load average (2 cores) at start / end of this benchmark: "
                f"{(load or ['?'])[0]} / {(loadavg() or ['?'])[0]}; wall time {results[name]['wall_s']:.0f} s."
            )
            print(sections[-1] + "\n", flush=True)
    if ctx._data is not None:
        results["meta"]["training_seconds_this_run"] = ctx._data.train_seconds
        results["meta"]["model_accuracy"] = ctx._data.accuracy
    results["meta"]["loadavg_end"] = loadavg()
    results["meta"]["wall_s"] = time.perf_counter() - ctx.started
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    ctx.log(f"done in {results['meta']['wall_s']:.0f} s; raw results in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
