"""Benchmark: the smallest shift a reference catches in half its windows, by reference rows and window size.

A synthetic tabular set of 30 independent standard normal features and a
3-class model (softmax of a fixed linear map of the first 6 features): for
each (reference rows, window size) a reference is fitted with the defaults
(``false_alarm_rate=1e-4``, 1,000 simulations) and
``DriftReference.detectable_shift`` runs on 5,000 fresh rows: the mean shift
of all 30 features and of 10 of them, in standard deviations, the increase of
one class's share (median over the classes) and the drop of the mean
confidence, each caught in half the windows. The issue's case (114 rows,
windows of 30) is in the grid. Then MNIST (the convnet's reference of 10,000
held-out images, windows of 200, the 784 pixels), with the time
``detectable_shift`` takes there. Last, the low-traffic arithmetic: minutes
per window at a request rate, and the windows until ``GangplankDataDrift``
(3 of the last 5 windows) when each window fires with probability 0.5 (a
shift of the table's size) or 0.8, simulated.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.common import table

FEATURES = 30
SHIFTED = 10
CLASSES = 3
ROWS = (114, 500, 2000, 10000)
WINDOWS = (30, 100, 200, 500)
FRESH_ROWS = 5000
RATES_PER_MINUTE = (2, 20, 200)
RECENT, SUSTAINED = 5, 3


def _rows(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, FEATURES)).astype(np.float32)
    logits = x[:, :6] @ np.random.default_rng(3).normal(size=(6, CLASSES))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return x, (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def _cell(reference, x, p, windows: int) -> dict:
    start = time.perf_counter()
    every = reference.detectable_shift(x, p, windows=windows)
    seconds = time.perf_counter() - start
    some = reference.detectable_shift(x, p, features_share=SHIFTED / FEATURES, windows=windows)
    limits = reference.sensitivity()
    return {
        "psi_cut": limits["feature_psi_cut_median"],
        "features_needed": limits["drifted_features_ratio"],
        "shift_all_sd": every["input_shift_sd"],
        "shift_some_sd": some["input_shift_sd"],
        "class_share_increase": float(np.median(every["class_share_increase"])),
        "confidence_drop": every["confidence_drop"],
        "mean_confidence": every["mean_confidence"],
        "seconds": seconds,
    }


def tabular(ctx) -> list[dict]:
    from gangplank import DriftReference

    rows_grid, window_grid = ((114, 500), (30, 100)) if ctx.quick else (ROWS, WINDOWS)
    simulations, windows = (100, 20) if ctx.quick else (1000, 100)
    rng = np.random.default_rng(0)
    fresh_x, fresh_p = _rows(rng, FRESH_ROWS)
    out = []
    for n in rows_grid:
        x, p = _rows(rng, n)
        for size in window_grid:
            if size > n:
                continue
            ctx.log(f"detectable: {n} reference rows, windows of {size}")
            reference = DriftReference.fit(x, p, window_size=size, n_simulations=simulations)
            out.append({"rows": n, "window": size, **_cell(reference, fresh_x, fresh_p, windows)})
    return out


def issue_case(ctx) -> dict:
    """The issue's 114 rows and windows of 30 (the features at their own locations and scales): the input
    signal's firing rate around the shift found, and on the issue's two changes (10 of 30 features scaled by
    1.5 around their mean and moved by 1 SD; the columns reversed)."""
    from gangplank import DriftReference

    rng = np.random.default_rng(2)
    x, p = _rows(rng, 114)
    fresh_x, fresh_p = _rows(rng, FRESH_ROWS)
    # Columns of their own location and scale, so that reversing their order changes what each one holds.
    scale, location = np.linspace(0.5, 3.0, FEATURES, dtype=np.float32), np.arange(FEATURES, dtype=np.float32)
    x, fresh_x = x * scale + location, fresh_x * scale + location
    reference = DriftReference.fit(x, p, window_size=30, n_simulations=100 if ctx.quick else 1000)
    windows = 20 if ctx.quick else 200
    found = reference.detectable_shift(fresh_x, fresh_p, windows=windows)["input_shift_sd"]
    draws = rng.integers(0, FRESH_ROWS, (windows, 30))
    mean, sd = fresh_x.mean(axis=0), fresh_x.std(axis=0)

    def rate(change) -> float:
        fired = [reference.compare(reference.window_of(change(fresh_x[r]), fresh_p[r])).signals["input"] for r in draws]
        return float(np.mean(fired))

    def scaled(x):
        x = x.copy()
        x[:, :SHIFTED] = (x[:, :SHIFTED] - mean[:SHIFTED]) * 1.5 + mean[:SHIFTED] + sd[:SHIFTED]
        return x

    return {
        "shift_all_sd": found,
        "rates": {str(m): rate(lambda x, m=m: x + m * found * sd) for m in (0.0, 0.5, 1.0, 1.5, 2.0)},
        "scaled_10_by_1_5_plus_1_sd": rate(scaled),
        "columns_reversed": rate(lambda x: x[:, ::-1]),
        "windows": windows,
    }


def mnist(ctx) -> dict:
    data = ctx.data
    reference = data.reference()
    ctx.log(f"detectable: MNIST, {reference.n_samples} reference rows, windows of {reference.window_size}")
    cell = _cell(reference, data.flat_test, data.p_test, 20 if ctx.quick else 100)
    return {"rows": reference.n_samples, "window": reference.window_size, "features": reference.n_features, **cell}


def windows_to_alarm(rate: float, rng, runs: int = 20000, horizon: int = 200) -> tuple[float, float]:
    """Median and 90th percentile of the windows until SUSTAINED of the last RECENT fire, each with ``rate``."""
    fired = rng.random((runs, horizon)) < rate
    counts = np.cumsum(fired, axis=1)
    last = counts - np.concatenate([np.zeros((runs, RECENT)), counts[:, :-RECENT]], axis=1)
    first = np.argmax(last >= SUSTAINED, axis=1) + 1.0
    first[~(last >= SUSTAINED).any(axis=1)] = np.inf
    return float(np.median(first)), float(np.quantile(first, 0.9))


def bench_detectable(ctx):
    rng = np.random.default_rng(1)
    return {
        "status": "ok",
        "tabular": tabular(ctx),
        "issue": issue_case(ctx),
        "mnist": mnist(ctx),
        "alarm_windows": {str(rate): windows_to_alarm(rate, rng) for rate in (0.5, 0.8)},
    }


def _sd(value: float) -> str:
    return "not caught" if not np.isfinite(value) else "fires unshifted" if value == 0 else f"{value:.2f}"


def _points(value: float) -> str:
    return "not caught" if not np.isfinite(value) else "fires unshifted" if value == 0 else f"{100 * value:.1f}"


def report_detectable(result):
    rows = [
        [
            f"{c['rows']:,}",
            c["window"],
            f"{c['psi_cut']:.2f}",
            f"{c['features_needed']:.0%}",
            _sd(c["shift_all_sd"]),
            _sd(c["shift_some_sd"]),
            _points(c["class_share_increase"]),
            _points(c["confidence_drop"]),
        ]
        for c in result["tabular"]
    ]
    header = [
        "reference rows",
        "window",
        "median PSI cut",
        "features needed (more than)",
        f"shift of all {FEATURES} features (SD)",
        f"shift of {SHIFTED} of {FEATURES} (SD)",
        "class share up (points)",
        "mean confidence down (points)",
    ]
    m = result["mnist"]
    seconds = [c["seconds"] for c in result["tabular"]]
    issue = result["issue"]
    rates = ", ".join(f"{v:.2f}" for v in issue["rates"].values())
    median, p90 = result["alarm_windows"]["0.5"]
    median8, p908 = result["alarm_windows"]["0.8"]
    traffic = [
        [rate, size, f"{size / rate:g}", f"{SUSTAINED * size / rate:g}", f"{median * size / rate:g}"]
        for rate, size in ((2, 200), (20, 200), (200, 200), (2, 30), (20, 30))
    ]
    return (
        "### Detectable shift (`python benchmarks/run.py detectable`)\n\n"
        f"Synthetic tabular set, {FEATURES} independent standard normal features, a {CLASSES}-class model; "
        "each shift is the smallest that the reference's own rule catches in half the windows "
        f"(`DriftReference.detectable_shift`, {FRESH_ROWS:,} fresh rows; class share: median over the classes; "
        f"mean confidence {result['tabular'][0]['mean_confidence']:.2f} on the reference):\n\n"
        + table(header, rows)
        + f"\n\n`detectable_shift` took {min(seconds):.1f}-{max(seconds):.1f} s per reference (all three signals)."
        + f"\n\nMNIST convnet, {m['rows']:,} reference rows, windows of {m['window']}, {m['features']} pixels, "
        f"windows drawn from the test images: all pixels shifted {m['shift_all_sd']:.2g} SD, a third of them "
        f"{m['shift_some_sd']:.2g} SD (pixel values sit on a 1/255 grid next to the bin edges: any shift moves some "
        f"across), class share up {_points(m['class_share_increase'])} points, mean confidence "
        f"({m['mean_confidence']:.3f}) down {100 * m['confidence_drop']:.2g} points; "
        f"`detectable_shift` took {m['seconds']:.1f} s (100 windows, all three signals).\n\n"
        f"The issue's case (another draw of 114 rows, each feature at its own location and scale, windows of "
        f"30): all features shifted {issue['shift_all_sd']:.2f} "
        f"SD fire in half the windows; the input signal's rate at 0, 0.5, 1, 1.5 and 2 times that shift: {rates} "
        f"({issue['windows']} windows); 10 of 30 features spread 1.5 times wider and moved by 1 SD: "
        f"{issue['scaled_10_by_1_5_plus_1_sd']:.2f}; the columns reversed: {issue['columns_reversed']:.2f}.\n\n"
        f"Windows until `GangplankDataDrift` ({SUSTAINED} of the last {RECENT}) when each window fires with "
        f"probability 0.5: median {median:g}, 90th percentile {p90:g}; with 0.8: {median8:g} and {p908:g}.\n\n"
        + table(
            [
                "requests a minute",
                "window",
                "minutes per window",
                "`GangplankDataDrift` at best, minutes",
                "median at the table's shift, minutes",
            ],
            traffic,
        )
    )
