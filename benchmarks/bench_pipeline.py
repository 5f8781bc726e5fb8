"""Benchmark: where the drift pipeline's CPU goes, stage by stage, per sample (issue 17).

The stages the worker process runs on every row, timed one by one on this
thread (``time.thread_time``), with the MNIST reference at ``window_size``
200, 32-row requests, ``input_stride`` 1 and 4: the caller's copy into the
shared ring, the worker taking the rows (copied out of the ring), normalising, the per-window sums of the
predictions, binning the 784 features of every ``input_stride``-th row,
comparing each closed window, recording it (totals, recent windows,
status), and the per-publish work: building the families, pickling them for
the serving process (scrape mode), and the text exposition plus one HTTP
push to a live Pushgateway (push mode). Each stage is reported per sample
as it happens: per window for the first ones, and per publish for the
last three, with what that costs at one publish per window (the first
process worker) and at one a second (pushes coalesced) at 10,000 samples a
second of traffic.

Example (from the repository root)::

    python benchmarks/run.py pipeline
"""

from __future__ import annotations

import pickle
import time

from benchmarks.common import table

WINDOW = 200
ROWS = 32  # rows per request
TAKE = 256  # rows the worker takes at once
RATE = 10_000  # samples per second the per-second publish is reported at


def bench_pipeline(ctx):
    from gangplank import DriftReference

    data = ctx.data
    total = 2_000 if ctx.quick else 40_000
    results = {"window": WINDOW, "rows": ROWS, "samples": total, "strides": {}}
    for stride in (1, 4):
        ctx.log(f"pipeline: stride {stride}, {total} samples")
        reference = DriftReference.fit(
            data.flat_ref, data.p_ref, data.y_ref, input_stride=stride, n_simulations=20 if ctx.quick else 100
        )
        results["strides"][stride] = _stages(reference, data.flat_test, data.p_test, total, ctx.gateway)
    return results


def _stages(reference, flat, probabilities, total, gateway) -> dict:
    from prometheus_client import generate_latest

    from gangplank._drift.families import families
    from gangplank._drift.ring import SampleRing
    from gangplank._drift.settings import MonitorSettings
    from gangplank._drift.tracker import WindowTracker
    from gangplank.transport import PushSettings, _Snapshot

    seconds: dict[str, float] = {}
    exposition_bytes = 0
    counts = {"windows": 0, "publishes": 0}

    def timed(stage, start):
        seconds[stage] = seconds.get(stage, 0.0) + time.thread_time() - start

    def publish_timed(warm, stage, start):
        if warm:
            timed(stage, start)

    tracker = WindowTracker(reference, MonitorSettings(window_size=WINDOW))
    tracker.let_callers_in = lambda: None
    window = tracker.window
    ring = SampleRing(1024, reference.n_features, reference.n_classes)
    sender = PushSettings(gateway.address).sender("bench-pipeline", {"agent": "stages"}) if gateway else None
    n = flat.shape[0] // ROWS * ROWS
    for request in range(total // ROWS):
        i = request * ROWS % n
        x, p = flat[i : i + ROWS], probabilities[i : i + ROWS]
        start = time.thread_time()
        ring.write(x, p, None, None)
        timed("caller: copy into the ring", start)
        if ring.waiting_rows() < TAKE:
            continue
        start = time.thread_time()
        batches = ring.take()
        timed("worker: take the rows", start)
        for batch in batches:
            start = time.thread_time()
            batch = batch.normalise()
            timed("normalise", start)
            begin = 0
            while begin < batch.rows:
                stop = begin + min(batch.rows - begin, WINDOW - window.samples)
                piece = batch[begin:stop]
                first_row = window.samples
                start = time.thread_time()
                window.add(piece.__class__(piece.probabilities))  # the predictions' sums alone
                timed("window: predictions", start)
                start = time.thread_time()
                rows = piece.inputs[(-first_row) % reference.input_stride :: reference.input_stride]
                window._add_inputs(rows)
                timed("window: binning the inputs", start)
                if window.samples >= WINDOW:
                    counts["windows"] += 1
                    start = time.thread_time()
                    report = reference.compare(window)
                    timed("compare", start)
                    start = time.thread_time()
                    window.reset()
                    tracker._record(report)
                    state = (tracker.totals.copy(), report, tracker.status)
                    timed("record (totals, recent windows, status)", start)
                    warm = counts["windows"] > 1  # the first build pays one-off imports and caches: not timed
                    counts["publishes"] += warm
                    start = time.thread_time()
                    built = families(*state)
                    publish_timed(warm, "publish: build the families", start)
                    start = time.thread_time()
                    pickle.dumps(built, protocol=pickle.HIGHEST_PROTOCOL)
                    publish_timed(warm, "publish: pickle them for the parent (scrape)", start)
                    start = time.thread_time()
                    body = generate_latest(_Snapshot(built))
                    if sender is not None:
                        sender.store.put("predict", built)
                        sender.push_now()
                    stage = "publish: text and one push (push)" if sender else "publish: text exposition"
                    publish_timed(warm, stage, start)
                    exposition_bytes = len(body)
                begin = stop
    per_sample = {stage: s / total * 1e6 for stage, s in seconds.items() if not stage.startswith("publish")}
    per_sample.update(  # per window, as if every window published
        {stage: s / counts["publishes"] / WINDOW * 1e6 for stage, s in seconds.items() if stage.startswith("publish")}
    )
    per_publish = {
        stage: seconds[stage] / counts["publishes"] * 1e3 for stage in seconds if stage.startswith("publish")
    }
    return {
        "us_per_sample": per_sample,
        "ms_per_publish": per_publish,
        "windows": counts["windows"],
        "exposition_bytes": exposition_bytes,
        "publish_us_per_sample_at_one_a_second": {stage: ms * 1e3 / RATE for stage, ms in per_publish.items()},
        "pushed": sender is not None,
    }


def report_pipeline(result):
    lines = [
        "### Pipeline: CPU per sample by stage (python benchmarks/run.py pipeline)",
        "",
        f"MNIST reference, window {result['window']}, {result['rows']}-row requests, {result['samples']:,} samples, "
        f"the worker taking {TAKE} rows at once; `time.thread_time` of each stage on one thread.",
        "",
    ]
    strides = result["strides"]
    stages = list(next(iter(strides.values()))["us_per_sample"])
    rows = []
    for stage in stages:
        row = [stage]
        for out in strides.values():
            value = out["us_per_sample"].get(stage, float("nan"))
            row.append(f"{value:.2f}")
            if stage.startswith("publish"):
                row[-1] += f" ({out['publish_us_per_sample_at_one_a_second'][stage]:.3f} at 1/s)"
        rows.append(row)
    row = ["**every row and window (publishing left out)**"]
    for out in strides.values():
        row.append(f"**{sum(v for s, v in out['us_per_sample'].items() if not s.startswith('publish')):.2f}**")
    rows.append(row)
    lines.append(table(["stage", *(f"µs per sample, input_stride {s}" for s in strides)], rows))
    lines.append("")
    any_out = next(iter(strides.values()))
    lines.append(
        f"- publish stages: per window (every {result['window']} samples) as measured; in brackets at one publish a "
        f"second with {RATE:,} samples a second of traffic. One exposition is {any_out['exposition_bytes']:,} bytes"
        + ("; the push goes to a live Pushgateway." if any_out["pushed"] else "; no gateway: no push.")
    )
    lines.append(
        "- the totals leave out the threads' hand-over and the child's poll loop (the `serving` benchmark counts "
        "every thread and process); scrape mode pays the pickle, push mode the text and push."
    )
    return "\n".join(lines)
