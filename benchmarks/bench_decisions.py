"""Benchmark: how often the decisions fire on a healthy model, against what they promise.

* Sequential charts (src/gangplank/sequential.py): the monitor's four charts
  (labels and shadow agreement, small and large drop) designed for the MNIST
  MLP reference of tests/mnist_streams.py with every row of a window of 200
  labelled and shadowed, one window a minute. Exact false pages a month from
  the charts' run lengths, and simulated months of Bernoulli outcomes through
  the very ``AccuracyCharts`` the monitor runs: at the reference rate (a model
  as good as on its reference) and at the in-control rate (a model worse by
  the margin left for the reference's own error), with the one-sided 95 %
  Poisson upper bound of the pages a month.
* Count statistics (src/gangplank/count_null.py): the per-window rate of the
  prediction and confidence signals at the configured α, exact calibration
  against the chi-square p-value the monitor used before, on a balanced
  reference, one with a class at 0.2 % of traffic and the MNIST MLP's
  confidence histogram (saturated confidences, near-empty bins): windows
  drawn from the population each reference was sampled from, several
  references each.
* Time order: the MNIST test set through both MLPs in file order (writer
  populations differ between its halves: real, harmless drift) against the
  same rows shuffled, every label and the shadow model in, the shipped rules
  replayed with promtool: pages and warnings.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import stats

from benchmarks.common import table

WINDOW = 200
WINDOWS_PER_MONTH = 43_200
CHUNK = 1_000_000


def _months_of_pages(charts_factory, evidence: str, rate: float, months: int, rng) -> int:
    """Alarm episodes over ``months`` months of outcomes at ``rate`` through fresh charts of one evidence."""
    pages = 0
    per_month = WINDOW * WINDOWS_PER_MONTH
    for _ in range(months):
        charts = charts_factory()
        for start in range(0, per_month, CHUNK):
            charts.add(evidence, rng.random(min(CHUNK, per_month - start)) < rate)
        pages += sum(state.alarms for (kind, _), state in charts.states().items() if kind == evidence)
    return pages


def _upper_95(count: int, exposure: float) -> float:
    """One-sided 95 % upper bound of a Poisson rate with ``count`` events in ``exposure``."""
    return float(stats.chi2.ppf(0.95, 2 * (count + 1)) / 2 / exposure)


def charts_null(ctx, streams) -> dict:
    from gangplank._drift.accuracy_charts import AccuracyCharts

    ref = streams.reference
    accuracy, agreement, rows = ref.accuracy(), ref.agreement(), len(ref.labels)
    per_month = WINDOW * WINDOWS_PER_MONTH

    def factory():
        return AccuracyCharts.of(
            accuracy,
            rows,
            tolerance=0.02,
            labels_per_month=per_month,
            shadow_agreement=agreement,
            shadow_rows=rows,
            shadow_per_month=per_month,
        )

    charts = factory()
    designs = {key: chart.design for key, chart in charts.charts.items()}
    exact = {}
    for (evidence, size), d in designs.items():
        reference_rate = accuracy if evidence == "labels" else agreement
        exact[f"{evidence}/{size}"] = {
            "in_control": d.in_control,
            "out_of_control": d.out_of_control,
            "threshold": d.threshold,
            "pages_a_month_at_reference": per_month / d.average_run_length(reference_rate),
            "pages_a_month_at_in_control": per_month / d.average_run_length(d.in_control),
        }
    months = 2 if ctx.quick else 200
    rng = np.random.default_rng(2026)
    simulated = {}
    for evidence, rate in (("labels", accuracy), ("shadow", agreement)):
        in_control = designs[(evidence, "small")].in_control
        for name, p in (("reference", rate), ("in_control", in_control)):
            start = time.perf_counter()
            pages = _months_of_pages(factory, evidence, p, months, rng)
            simulated[f"{evidence} at {name}"] = {
                "rate": p,
                "months": months,
                "pages": pages,
                "pages_a_month": pages / months,
                "upper_95": _upper_95(pages, months),
                "seconds": time.perf_counter() - start,
            }
            ctx.log(f"decisions: {evidence} at {name} rate {p:.4f}: {pages} pages in {months} months")
    return {"accuracy": accuracy, "agreement": agreement, "rows": rows, "exact": exact, "simulated": simulated}


def count_rates(ctx, streams) -> dict:
    from gangplank._drift import count_null

    alpha = 1e-4 / 5  # the default false_alarm_rate over the five signals
    windows = 200_000 if ctx.quick else 4_000_000
    references = 2 if ctx.quick else 6
    confidence_edges = np.concatenate([np.arange(1, 10) / 10, [0.99, 0.999, 0.9999]])
    mnist_confidence = np.bincount(
        np.searchsorted(confidence_edges, streams.reference.probabilities.max(axis=1), side="right"),
        minlength=confidence_edges.size + 1,
    )
    populations = {
        "prediction, balanced (10 classes)": ("chi2", np.full(10, 0.1)),
        "prediction, a class at 0.2 %": ("chi2", np.array([0.002] + [0.998 / 9] * 9)),
        "confidence, MNIST MLP histogram": ("psi", mnist_confidence / mnist_confidence.sum()),
    }
    rng = np.random.default_rng(7)
    out = {}
    for name, (kind, population) in populations.items():
        start = time.perf_counter()
        exact_hits = asymptotic_hits = 0
        for _ in range(references):
            reference = rng.multinomial(10_000, population)
            shares = (reference + 0.5) / (reference.sum() + 0.5 * reference.size)
            if kind == "chi2":
                statistic = lambda c, s=shares: count_null.chi_square_statistic(c, s)  # noqa: E731
                asymptotic_cut = stats.chi2.isf(alpha, reference.size - 1)
            else:
                statistic = lambda c, r=reference: count_null.psi_statistic(c, r)  # noqa: E731
                asymptotic_cut = None  # PSI has no textbook null; the monitor moment-matched it before
            cut = count_null.null_quantiles(reference, WINDOW, alpha, {"s": statistic}, seed=int(rng.integers(1e9)))
            for chunk in range(0, windows, 500_000):
                counts = rng.multinomial(WINDOW, population, size=min(500_000, windows - chunk))
                values = statistic(counts)
                exact_hits += int(np.sum(values > cut["s"]))
                if asymptotic_cut is not None:
                    asymptotic_hits += int(np.sum(values > asymptotic_cut))
        total = windows * references
        out[name] = {
            "alpha": alpha,
            "windows": total,
            "exact_rate": exact_hits / total,
            "exact_ratio": exact_hits / total / alpha,
            "exact_interval": [float(x) / total for x in stats.poisson.interval(0.95, max(exact_hits, 1))],
            "asymptotic_rate": asymptotic_hits / total if kind == "chi2" else None,
            "seconds": time.perf_counter() - start,
        }
        ctx.log(f"decisions: {name}: exact {exact_hits / total:.2e} against α {alpha:.0e}")
    return out


def file_order(ctx, streams) -> dict:
    from gangplank import DriftMonitor, DriftReference
    from tests.rule_replay import alert_names, monitor_snapshots, replay, severities

    ref = streams.reference
    reference = DriftReference.fit(ref.inputs, ref.probabilities, ref.labels, shadow=ref.shadow, window_size=WINDOW)
    pool = streams.streams["clean"]
    n = (pool.labels.size // WINDOW) * WINDOW
    alerts = alert_names(groups=["gangplank-production"])
    severity = severities()
    out = {}
    for order_name, order in (("file order", np.arange(n)), ("shuffled", np.random.default_rng(3).permutation(n))):
        windows = [
            {
                "inputs": pool.inputs[rows],
                "probabilities": pool.probabilities[rows],
                "shadow": pool.shadow[rows],
                "labels": pool.labels[rows],
            }
            for rows in order.reshape(-1, WINDOW)
        ]
        monitor = DriftMonitor(None, "bench", reference=reference, agent="order", window_size=WINDOW)
        reports = []
        monitor.on_window = reports.append
        try:
            firing = replay(monitor_snapshots(monitor, windows, shadow=True), alerts=alerts)
        finally:
            monitor.close()
        on = {
            level: [bool({a for a in f if severity[a] == level}) for f in firing] for level in ("critical", "warning")
        }
        out[order_name] = {
            "windows": len(windows),
            "page_windows": sum(on["critical"]),
            "warning_windows": sum(on["warning"]),
            "warnings": sorted({a for f in firing for a in f if severity[a] == "warning"}),
            "signal_windows": {s: sum(r.signals[s] for r in reports) for s in reports[0].signals},
            "accuracy_halves": [
                float(np.mean([r.accuracy for r in part]))
                for part in (reports[: len(reports) // 2], reports[len(reports) // 2 :])
            ],
        }
        ctx.log(f"decisions: MNIST test set in {order_name}: {out[order_name]}")
    return out


def bench_decisions(ctx):
    from tests.mnist_streams import MnistStreams

    streams = MnistStreams.build(ctx.cache / "mnist-streams")
    return {
        "charts": charts_null(ctx, streams),
        "counts": count_rates(ctx, streams),
        "order": file_order(ctx, streams),
    }


def report_decisions(result) -> str:
    charts = result["charts"]
    lines = [
        "### Decisions on a healthy model",
        "",
        f"Sequential charts for the MNIST MLP reference (accuracy {charts['accuracy']:.4f}, shadow agreement "
        f"{charts['agreement']:.4f}, {charts['rows']:,} labelled rows), windows of {WINDOW} with every row labelled "
        f"and shadowed, one window a minute ({WINDOW * WINDOWS_PER_MONTH:,} outcomes a month of each kind). "
        "Exact pages a month from each chart's run length:",
        "",
        table(
            ["chart", "in control", "detects", "threshold (nats)", "pages/month at reference", "at in-control"],
            [
                [
                    name,
                    f"{e['in_control']:.4f}",
                    f"{e['out_of_control']:.4f}",
                    f"{e['threshold']:.2f}",
                    f"{e['pages_a_month_at_reference']:.2e}",
                    f"{e['pages_a_month_at_in_control']:.3f}",
                ]
                for name, e in charts["exact"].items()
            ],
        ),
        "",
        "Simulated months of outcomes through the monitor's own charts (both charts of one kind):",
        "",
        table(
            ["outcomes", "rate", "months", "pages", "pages/month", "95 % upper bound"],
            [
                [k, f"{s['rate']:.4f}", s["months"], s["pages"], f"{s['pages_a_month']:.3f}", f"{s['upper_95']:.3f}"]
                for k, s in charts["simulated"].items()
            ],
        ),
        "",
        "Per-window rate of the count signals at the configured α, windows drawn from the population each "
        "reference was sampled from (the reference's own error included):",
        "",
        table(
            ["signal, reference", "α", "windows", "exact calibration", "÷ α", "chi-square p < α (before)"],
            [
                [
                    name,
                    f"{c['alpha']:.0e}",
                    f"{c['windows']:,}",
                    f"{c['exact_rate']:.2e}",
                    f"{c['exact_ratio']:.2f}",
                    "–" if c["asymptotic_rate"] is None else f"{c['asymptotic_rate']:.2e}",
                ]
                for name, c in result["counts"].items()
            ],
        ),
        "",
        "The MNIST test set through both MLPs, every label and the shadow in, the shipped rules replayed:",
        "",
        table(
            ["order", "windows", "page windows", "warning windows", "warnings", "signal windows", "accuracy by half"],
            [
                [
                    name,
                    o["windows"],
                    o["page_windows"],
                    o["warning_windows"],
                    ", ".join(o["warnings"]) or "–",
                    ", ".join(f"{k} {v}" for k, v in o["signal_windows"].items() if v) or "–",
                    " / ".join(f"{a:.3f}" for a in o["accuracy_halves"]),
                ]
                for name, o in result["order"].items()
            ],
        ),
    ]
    return "\n".join(lines)
