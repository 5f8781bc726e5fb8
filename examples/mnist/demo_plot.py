"""The demo's picture: one PNG drawn from Prometheus's ``query_range`` (matplotlib, Agg backend).

* top: training and validation loss per epoch, for each training job;
* one panel per agent: the realised accuracy (late labels), the label-free
  estimated accuracy and the reference accuracy of each window, with the
  drift signals that fired in that window as a strip below;
* bottom: the spans in which each gangplank alert fired (``ALERTS``).

Per-epoch and per-window values are read at the scrapes where
``gangplank_train_epochs_count`` / ``gangplank_predict_windows_total`` show
that epoch or window (a window that closed and was replaced between two
scrapes is missing from the picture).

    python examples/mnist/demo_plot.py --prometheus http://127.0.0.1:9090 --since 600 --out demo.png
"""

from __future__ import annotations

import argparse
import json
import math
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass

SIGNALS = ("input", "prediction", "confidence", "estimated_accuracy", "estimated_floor")
ACCURACIES = (  # metric, legend, style
    ("gangplank_predict_feedback_accuracy", "realised (late labels)", {"marker": "o", "color": "tab:blue"}),
    ("gangplank_predict_estimated_accuracy", "estimated (confidence)", {"marker": "s", "color": "tab:orange"}),
    ("gangplank_predict_shadow_estimated_accuracy", "estimated (shadow)", {"marker": "^", "color": "tab:green"}),
    ("gangplank_predict_reference_accuracy", "reference", {"linestyle": "--", "color": "tab:gray"}),
)


class Prometheus:
    """``query_range`` over one fixed time range: ``{labels as a frozenset: [(t, value), ...]}``."""

    def __init__(self, url: str, start: float, end: float, step: float):
        self.url, self.start, self.end, self.step = url.rstrip("/"), start, end, step

    def series(self, expr: str) -> dict[frozenset, list[tuple[float, float]]]:
        params = urllib.parse.urlencode(
            {"query": expr, "start": f"{self.start:.3f}", "end": f"{self.end:.3f}", "step": f"{self.step:g}"}
        )
        with urllib.request.urlopen(f"{self.url}/api/v1/query_range?{params}", timeout=30) as response:
            answer = json.loads(response.read())
        if answer.get("status") != "success":
            raise RuntimeError(f"query_range {expr!r}: {answer}")
        return {
            frozenset(r["metric"].items()): [(float(t), float(v)) for t, v in r["values"]]
            for r in answer["data"]["result"]
        }


def _label(labels: frozenset, name: str) -> str:
    return dict(labels).get(name, "")


def at_steps(prometheus: Prometheus, counter: str, gauge: str, by: str) -> dict[str, dict[int, float]]:
    """``{by-label value: {counter value: the gauge's value at the first scrape showing it}}``."""
    counts = {_label(k, by): dict(v) for k, v in prometheus.series(counter).items()}
    out: dict[str, dict[int, float]] = defaultdict(dict)
    for labels, values in prometheus.series(gauge).items():
        key = _label(labels, by)
        for t, value in values:
            step = counts.get(key, {}).get(t)
            if step is not None and step >= 1 and int(step) not in out[key]:
                out[key][int(step)] = value
    return out


def spans(values: list[tuple[float, float]], step: float) -> list[tuple[float, float]]:
    """Contiguous runs of samples as (start, duration), a run lasting at least one step."""
    runs: list[list[float]] = []
    for t, _ in values:
        if runs and t - runs[-1][1] <= 1.5 * step:
            runs[-1][1] = t
        else:
            runs.append([t, t])
    return [(a, b - a + step) for a, b in runs]


@dataclass
class Story:
    """What the picture shows, as read from Prometheus (``read``); ``summary()`` for a JSON report."""

    start: float
    end: float
    step: float
    losses: dict  # "loss" / "val_loss" -> {job: {epoch: value}}
    accuracy: dict  # metric -> {agent: {window: value}}
    counts: dict  # agent -> {timestamp: windows_total}
    fired: dict  # agent -> {window: {signal, ...}}
    alerts: dict  # frozenset of ALERTS labels -> [(timestamp, 1.0), ...]

    def alert_spans(self, alertname: str, agent: str) -> list[tuple[float, float]]:
        """The (start, duration) runs in which ``alertname`` fired for ``agent``."""
        values = sorted(
            t
            for k, v in self.alerts.items()
            if _label(k, "alertname") == alertname and _label(k, "agent") == agent
            for t, _ in v
        )
        return spans([(t, 1.0) for t in values], self.step)

    def summary(self) -> dict:
        return {
            "epochs": {job: sorted(per_epoch) for job, per_epoch in self.losses["loss"].items()},
            "windows": {agent: sorted(counts_seen(by_time)) for agent, by_time in self.counts.items()},
            "fired": {
                agent: {str(n): sorted(names) for n, names in sorted(windows.items())}
                for agent, windows in self.fired.items()
            },
            "alerts": sorted([_label(k, "alertname"), _label(k, "agent")] for k in self.alerts),
        }


def read(prometheus_url: str, start: float, end: float, job: str = "mnist") -> Story:
    """Everything the picture needs, from ``query_range`` over [start, end]."""
    step = max(1.0, math.ceil((end - start) / 2000))
    prom = Prometheus(prometheus_url, start, end, step)
    epochs = "gangplank_train_epochs_count"
    losses = {name: at_steps(prom, epochs, f"gangplank_train_{name}", "job") for name in ("loss", "val_loss")}
    windows = f'gangplank_predict_windows_total{{job="{job}"}}'
    accuracy = {metric: at_steps(prom, windows, f'{metric}{{job="{job}"}}', "agent") for metric, _, _ in ACCURACIES}
    counts = {_label(k, "agent"): dict(v) for k, v in prom.series(windows).items()}
    fired: dict[str, dict[int, set]] = defaultdict(lambda: defaultdict(set))
    for labels, values in prom.series(f'gangplank_predict_drift_signal{{job="{job}"}}').items():
        agent = _label(labels, "agent")
        for t, value in values:
            number = counts.get(agent, {}).get(t)
            if number and value == 1:
                fired[agent][int(number)].add(_label(labels, "signal"))
    alerts = prom.series('ALERTS{alertstate="firing", alertname=~"Gangplank.*"}')
    return Story(start, end, step, losses, accuracy, counts, fired, alerts)


def draw(story: Story, out: str) -> str:
    """Write the picture of ``story`` to ``out`` (PNG); returns ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import ListedColormap

    losses, accuracy, counts, fired, alerts = story.losses, story.accuracy, story.counts, story.fired, story.alerts
    start, end, step = story.start, story.end, story.step
    agents = sorted(counts)

    heights = [2.6] + [2.4, 1.3] * len(agents) + [max(1.4, 0.42 * len(alerts) + 0.9)]
    figure, axes = plt.subplots(
        len(heights), 1, figsize=(11, 1.05 * sum(heights) + 0.6), height_ratios=heights, layout="constrained"
    )
    figure.suptitle("gangplank MNIST demo, read back from Prometheus", fontsize=14)

    ax = axes[0]
    colours = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    for train_job in sorted(set(losses["loss"]) | set(losses["val_loss"])):
        colour = next(colours)
        for name, style in (("loss", "-"), ("val_loss", "--")):
            per_epoch = losses[name].get(train_job, {})
            xs = sorted(per_epoch)
            if xs:
                ax.plot(
                    xs,
                    [per_epoch[x] for x in xs],
                    style,
                    marker="o",
                    color=colour,
                    label=f"{train_job}: {'validation' if name == 'val_loss' else 'training'} loss",
                )
    ax.set_title("Training: loss per epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)

    signal_colours = ListedColormap(["#e6e6e6", "tab:red"])
    for i, agent in enumerate(agents):
        ax, strip = axes[1 + 2 * i], axes[2 + 2 * i]
        last = int(max(counts[agent].values(), default=0))
        for metric, legend, style in ACCURACIES:
            per_window = accuracy[metric].get(agent, {})
            xs = [x for x in sorted(per_window) if not math.isnan(per_window[x])]
            if xs:
                ax.plot(xs, [per_window[x] for x in xs], label=legend, **style)
        ax.set_title(f"Agent {agent}: accuracy and drift signals per window")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.03, 1.05)
        ax.set_xlim(0.5, last + 0.5)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
        ax.tick_params(labelbottom=False)
        ax.xaxis.get_major_locator().set_params(integer=True)
        cells = np.full((len(SIGNALS), max(last, 1)), np.nan)  # white: no scrape saw this window
        for number in counts_seen(counts[agent]):
            cells[:, number - 1] = [name in fired[agent].get(number, ()) for name in SIGNALS]
        strip.pcolormesh(
            np.arange(0.5, max(last, 1) + 1),
            np.arange(-0.5, len(SIGNALS)),
            np.ma.masked_invalid(cells),
            cmap=signal_colours,
            vmin=0,
            vmax=1,
            edgecolors="white",
            linewidth=1.5,
        )
        strip.set_yticks(range(len(SIGNALS)), [name.replace("_", " ") for name in SIGNALS], fontsize=8)
        strip.set_xlim(0.5, last + 0.5)
        strip.set_xlabel("window (red: the signal fired; white: the window closed between two scrapes)", fontsize=8)
        strip.xaxis.get_major_locator().set_params(integer=True)

    ax = axes[-1]
    rows = sorted(alerts, key=lambda k: (_label(k, "alertname"), _label(k, "agent")))
    for row, labels in enumerate(rows):
        colour = "tab:red" if _label(labels, "severity") == "critical" else "tab:orange"
        ax.broken_barh([(a - start, d) for a, d in spans(alerts[labels], step)], (row - 0.35, 0.7), color=colour)
    ax.set_yticks(
        range(len(rows)),
        [f"{_label(k, 'alertname')}\n{_label(k, 'agent') or _label(k, 'job')}" for k in rows],
        fontsize=8,
    )
    ax.set_ylim(-0.7, max(len(rows), 1) - 0.3)
    ax.set_xlim(0, end - start)
    ax.set_xlabel("seconds since the demo started")
    ax.set_title("Alerts firing (red: critical, orange: warning)" if rows else "Alerts firing: none")
    ax.grid(axis="x", alpha=0.3)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out


def counts_seen(by_time: dict[float, float]) -> set[int]:
    """The window numbers some scrape showed."""
    return {int(v) for v in by_time.values() if v >= 1}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--since", type=float, default=900, help="seconds back from now (default 900)")
    parser.add_argument("--job", default="mnist", help="job of the drift agents (default mnist)")
    parser.add_argument("--out", default="demo.png")
    args = parser.parse_args(argv)
    now = time.time()
    print(draw(read(args.prometheus, now - args.since, now, args.job), args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
