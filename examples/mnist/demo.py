"""The MNIST story end to end against a running stack: train, evaluate, production, alerts.

    python examples/mnist/demo.py --pgw 127.0.0.1:9091 --prometheus http://127.0.0.1:9090

``scripts/demo.sh`` installs what is missing, starts the local stack and runs
this; with the compose stack (``deploy/prometheus``) already up, run this
directly. Steps, each a run of one of the example scripts:

1. ``train.py``: the convnet on MNIST, pushing job ``mnist`` every epoch;
2. ``test.py``: its evaluation on the test set, with the weight histogram;
3. ``train.py --wrong``: MLWatcher's wrong model (job ``mnist_wrong``);
4. ``production.py`` three times at once: agents ``MNIST_Multiclass``
   (no drift expected), ``MNIST_Multiclass_wrong_inputs`` (pixels inverted
   from window ``--invert-from`` on) and ``MNIST_Multiclass_wrong_model``;
5. the gangplank metrics on the Pushgateway, and Prometheus's alerts: the
   demo waits until ``GangplankDataDrift`` (drift in at least 3 of the last 5
   windows) fires for the two bad agents and checks that no production alert
   fires for the correct one (exit status 1 if not);
6. one picture, drawn from Prometheus's ``query_range`` (demo_plot.py):
   loss per epoch, accuracy and drift signals per window for each agent, and
   the spans in which each alert fired; its path is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import mnist_common

HERE = Path(__file__).resolve().parent
JOB = "mnist"
GOOD = "MNIST_Multiclass"
BAD = ("MNIST_Multiclass_wrong_inputs", "MNIST_Multiclass_wrong_model")
SCENARIOS = {"correct": GOOD, "wrong_inputs": BAD[0], "wrong_model": BAD[1]}
DRIFT_ALERT = "GangplankDataDrift"
PAGE_ALERT = "GangplankModelDegraded"
PRODUCTION_ALERTS = (
    "GangplankDataDrift",
    "GangplankModelDegraded",
    "GangplankAccuracyEstimateLow",
    "GangplankAgentSilent",
)
# TensorFlow's start-up lines that TF_CPP_MIN_LOG_LEVEL cannot silence.
NOISE = re.compile(
    r"absl::InitializeLog|oneDNN custom operations|cpu_feature_guard|"
    r"To enable the following instructions|rebuild TensorFlow"
)
# The production gauges shown in the printed excerpt of the gateway (all of them are on it).
SHOWN_PREDICT = re.compile(
    r"gangplank_predict_(windows_total|samples_total|drift_detected_total|drift_detected|drift_signal|"
    r"feedback_accuracy|input_drifted_features_ratio|class_chi2_p_value)\{"
)

_children: list[subprocess.Popen] = []


def url_of(address: str) -> str:
    return address.rstrip("/") if "://" in address else f"http://{address}"


def http_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def start(args: list[str]) -> subprocess.Popen:
    """Start an example script with this Python, echoing the command."""
    print("$ python " + " ".join([os.path.relpath(args[0])] + args[1:]), flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    _children.append(process)
    return process


def relay(process: subprocess.Popen) -> None:
    """Copy a child's output to ours, without TensorFlow's start-up noise."""
    for line in process.stdout:
        if not NOISE.search(line):
            print(line, end="", flush=True)
    process.wait()


def run(args: list[str]) -> None:
    process = start(args)
    relay(process)
    if process.returncode:
        raise SystemExit(f"{args[0]} failed with exit status {process.returncode}")


def gateway_lines(pgw: str, password_file: str | None = None) -> list[str]:
    request = urllib.request.Request(url_of(pgw) + "/metrics", headers=mnist_common.auth_headers(password_file))
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    return [line for line in text.splitlines() if line.startswith("gangplank_")]


def excerpt(lines: list[str]) -> list[str]:
    """Training, then evaluation (histogram buckets left out), then a few drift gauges per agent."""
    train = [line for line in lines if line.startswith("gangplank_train_")]
    test = [line for line in lines if line.startswith("gangplank_test_") and "_bucket{" not in line]
    predict = [
        line
        for line in lines
        if SHOWN_PREDICT.match(line)
        and not (line.startswith("gangplank_predict_drift_signal{") and float(line.rsplit(" ", 1)[1]) != 1)
    ]
    predict.sort(key=lambda line: (re.search(r'agent="([^"]*)"', line).group(1), line))
    return train + test + predict


def query(prometheus: str, expr: str) -> list[dict]:
    return http_json(url_of(prometheus) + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))["data"]["result"]


def gangplank_alerts(prometheus: str) -> list[dict]:
    alerts = http_json(url_of(prometheus) + "/api/v1/alerts")["data"]["alerts"]
    return [a for a in alerts if a["labels"].get("alertname", "").startswith("Gangplank")]


def firing(alerts, names=(DRIFT_ALERT,)) -> set[str]:
    """The agents of job mnist for which one of the alerts ``names`` fires."""
    return {
        a["labels"].get("agent")
        for a in alerts
        if a["labels"]["alertname"] in names and a["state"] == "firing" and a["labels"].get("job") == JOB
    }


def wait_for_alerts(prometheus: str, windows: int, since: float, timeout: float) -> list[dict]:
    """Prometheus has scraped every agent's last window (of this run), then the drift alerts of both bad agents
    fire, and the wrong model's page."""
    deadline = time.monotonic() + timeout
    expr = (
        f'gangplank_predict_windows_total{{job="{JOB}"}} >= {windows} and on (job, agent, instance) '
        f"gangplank_predict_window_end_timestamp_seconds >= {since:.3f}"
    )
    while {r["metric"].get("agent") for r in query(prometheus, expr)} < {GOOD, *BAD}:
        if time.monotonic() > deadline:
            raise SystemExit("Prometheus never scraped the last windows of all three agents from the Pushgateway")
        time.sleep(0.5)
    time.sleep(2.5)  # at least one rule evaluation (1 s interval locally) on those final values
    while True:
        alerts = gangplank_alerts(prometheus)
        expected = set(BAD) <= firing(alerts) and BAD[1] in firing(alerts, (PAGE_ALERT,))
        if expected or time.monotonic() > deadline:
            return alerts
        time.sleep(0.5)


def print_alerts(alerts: list[dict]) -> None:
    if not alerts:
        print("(no gangplank alerts)")
    for a in sorted(alerts, key=lambda a: (a["labels"]["alertname"], a["labels"].get("agent", ""))):
        labels = a["labels"]
        where = ", ".join(f"{k}={labels[k]}" for k in ("job", "agent") if k in labels)
        print(f"{labels['alertname']:<30} {a['state']:<8} {where}")
        print(f"    {a['annotations'].get('description') or a['annotations'].get('summary', '')}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mnist_common.add_pushgateway_arguments(parser)
    parser.add_argument(
        "--prometheus", default="http://127.0.0.1:9090", help="Prometheus URL (default http://127.0.0.1:9090)"
    )
    parser.add_argument("--data", help="an mnist.npz in Keras's format (default: keras.datasets.mnist.load_data())")
    parser.add_argument(
        "--out", default="artifacts/mnist-demo", help="where the models go (default artifacts/mnist-demo)"
    )
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the good model (default 2)")
    parser.add_argument("--wrong-epochs", type=int, default=2, help="epochs of the wrong model (default 2)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--limit", type=int, help="train on the first N training images only (fast runs, CI)")
    parser.add_argument("--windows", type=int, default=10, help="windows per production scenario (default 10)")
    parser.add_argument(
        "--batch-delay",
        type=float,
        default=0.05,
        help="mean seconds between production batches (default 0.05: about a window a second, one per scrape)",
    )
    parser.add_argument(
        "--invert-from", type=int, default=3, help="first window of inverted pixels (default 3, at most --windows)"
    )
    parser.add_argument("--alert-timeout", type=float, default=90.0, help="seconds to wait for the alerts (default 90)")
    parser.add_argument("--summary", help="also write the gateway lines, the alerts and the verdict to this JSON file")
    parser.add_argument("--plot", help="where the picture goes (default <out>/demo.png)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    started, started_at = time.monotonic(), time.time()
    common = ["--pgw", args.pgw] + (["--data", args.data] if args.data else [])
    if args.pgw_password_file:
        common += ["--pgw-password-file", args.pgw_password_file]
    train = [str(HERE / "train.py"), "--out", args.out, "--batch-size", str(args.batch_size)] + common
    if args.limit:
        train += ["--limit", str(args.limit)]
    steps = {}

    def step(name, function):
        t = time.monotonic()
        function()
        steps[name] = round(time.monotonic() - t, 1)
        print(f"({name}: {steps[name]} s)", flush=True)

    for name, url, headers in (
        ("Pushgateway", url_of(args.pgw), mnist_common.auth_headers(args.pgw_password_file)),
        ("Prometheus", url_of(args.prometheus), {}),
    ):
        try:
            urllib.request.urlopen(urllib.request.Request(url + "/-/ready", headers=headers), timeout=5).close()
        except OSError as exc:
            raise SystemExit(
                f"{name} is not answering at {url} ({exc}); start the stack first "
                "(bash scripts/demo.sh does, or "
                "python -m gangplank_devtools.localstack up --config-dir deploy/prometheus)"
            ) from None
    banner(f"1/6 Train the convnet (job {JOB}); Pushgateway {url_of(args.pgw)}")
    step("train", lambda: run(train + ["--epochs", str(args.epochs)]))
    banner("2/6 Evaluate it on the test set")
    step("test", lambda: run([str(HERE / "test.py"), "--out", args.out] + common))
    banner("3/6 Train MLWatcher's wrong model (under 5 % even digits; job mnist_wrong)")
    step("train_wrong", lambda: run(train + ["--epochs", str(args.wrong_epochs), "--wrong"]))

    banner("4/6 Three production scenarios at once, batches of 1-20 images, labels arriving 3 batches late")

    def scenarios():
        processes = []
        shadow = Path(args.out) / mnist_common.SHADOW_MODEL_FILE
        for scenario in SCENARIOS:
            extra = ["--invert-from", str(min(args.invert_from, args.windows))] if scenario == "wrong_inputs" else []
            if scenario != "wrong_model" and shadow.exists():  # the convnet's deployments have a shadow model
                extra += ["--shadow-model", str(shadow)]
            processes.append(
                start(
                    [
                        str(HERE / "production.py"),
                        "--scenario",
                        scenario,
                        "--out",
                        args.out,
                        "--windows",
                        str(args.windows),
                        "--delay-min",
                        f"{args.batch_delay / 2:g}",
                        "--delay-max",
                        f"{args.batch_delay * 1.5:g}",
                    ]
                    + common
                    + extra
                )
            )
        relays = [threading.Thread(target=relay, args=(p,)) for p in processes]
        for thread in relays:
            thread.start()
        for thread in relays:
            thread.join()
        failed = [p.args[3] for p in processes if p.returncode]
        if failed:
            raise SystemExit(f"production scenario(s) failed: {failed}")

    scenarios_started = time.time()
    step("scenarios", scenarios)

    banner("5/6 What the monitoring stack shows")
    lines = gateway_lines(args.pgw, args.pgw_password_file)
    shown = excerpt(lines)
    print(
        f"$ curl -s {url_of(args.pgw)}/metrics | grep ^gangplank_    (an excerpt: {len(shown)} of {len(lines)} lines; "
        "no histogram buckets; of the drift metrics only these, and the signals at 1)"
    )
    print("\n".join(shown))
    t = time.monotonic()
    alerts = wait_for_alerts(args.prometheus, args.windows, scenarios_started, args.alert_timeout)
    steps["alerts"] = round(time.monotonic() - t, 1)
    print(f"\n$ curl -s {url_of(args.prometheus)}/api/v1/alerts    (gangplank alerts, after {steps['alerts']} s)")
    print_alerts(alerts)

    drifting, alarmed = firing(alerts), firing(alerts, PRODUCTION_ALERTS)
    paged = firing(alerts, (PAGE_ALERT,))
    ok = set(BAD) <= drifting and BAD[1] in paged and GOOD not in alarmed
    if ok:
        print(
            f"\nOK: {DRIFT_ALERT} is firing for {' and '.join(BAD)}, {PAGE_ALERT} pages for {BAD[1]} (its late "
            f"labels), and no production alert for {GOOD}."
        )
    else:
        print(
            f"\nNOT OK: {DRIFT_ALERT} firing for {sorted(a or '?' for a in drifting)}, {PAGE_ALERT} for "
            f"{sorted(a or '?' for a in paged)}, production alerts for {sorted(a or '?' for a in alarmed)}; expected "
            f"{DRIFT_ALERT} for {list(BAD)}, {PAGE_ALERT} for {BAD[1]} and nothing for {GOOD}."
        )

    banner("6/6 The picture (from Prometheus's query_range)")
    import demo_plot

    t = time.monotonic()
    time.sleep(2)  # two more scrapes and rule evaluations: the alerts' spans show
    story = demo_plot.read(url_of(args.prometheus), started_at, time.time(), JOB)
    page_spans = story.alert_spans(PAGE_ALERT, BAD[1])
    if len(page_spans) != 1:
        ok = False
        print(f"NOT OK: {PAGE_ALERT} for {BAD[1]} fired in {len(page_spans)} spans, not one episode: {page_spans}")
    else:
        print(f"{PAGE_ALERT} for {BAD[1]}: one episode, paging for {page_spans[0][1]:.0f} s to the end")
    plot = os.path.abspath(demo_plot.draw(story, args.plot or str(Path(args.out) / "demo.png")))
    steps["plot"] = round(time.monotonic() - t, 1)
    print(f"picture: {plot}")
    elapsed = time.monotonic() - started
    print(f"demo steps: {', '.join(f'{k} {v} s' for k, v in steps.items())}; {elapsed:.0f} s in all", flush=True)
    if args.summary:
        Path(args.summary).write_text(
            json.dumps(
                {
                    "ok": ok,
                    "steps": steps,
                    "elapsed_seconds": round(elapsed, 1),
                    "gateway": lines,
                    "alerts": alerts,
                    "plot": {"path": plot, **story.summary()},
                },
                indent=1,
            )
        )
    return 0 if ok else 1


def _stop_children(*_):
    for process in _children:
        if process.poll() is None:
            process.terminate()
    for process in _children:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below
    try:
        raise SystemExit(main())
    finally:
        _stop_children()
