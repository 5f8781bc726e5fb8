"""MLWatcher's three MNIST production scenarios, watched by gangplank's ProductionDriftExporter.

    python examples/mnist/production.py --scenario correct        # agent MNIST_Multiclass
    python examples/mnist/production.py --scenario wrong_inputs   # agent MNIST_Multiclass_wrong_inputs
    python examples/mnist/production.py --scenario wrong_model    # agent MNIST_Multiclass_wrong_model

Each run is one deployment (one ``agent``) that classifies MNIST test images
arriving in batches of 1 to 20, through ``model.predict`` with the exporter as
a Keras callback. The true labels arrive a few batches later and go in with
``exporter.feedback(labels, probabilities)``. A window closes every
``--window-size`` samples (default: the reference's, 200) and is pushed to the
Pushgateway under ``job="mnist", agent=...``; each closed window is printed.

* ``correct``: test images, the model from ``train.py``: no drift expected.
* ``wrong_inputs``: the same, but the pixels of windows ``--invert-from`` to
  ``--invert-to`` are inverted (``1 - x``): input drift.
* ``wrong_model``: test images, the model from ``train.py --wrong`` (trained
  on under 5 % even digits) with its own reference: the predicted classes,
  the inputs and the accuracy on feedback all drift.

With ``--shadow-model`` (``train.py`` writes ``mnist_shadow.keras``) a second,
independently trained model also classifies every batch, and the exporter
compares the two (``observe(..., shadow=...)``): a sustained drop in their
agreement pages without any label. The batches then go through
``predict_on_batch`` and ``exporter.observe``, the serving-code path.

The three can run at the same time as separate processes (the demo does).
MLWatcher's example waits 1 to 10 s between batches: ``--delay-min 1 --delay-max 10``.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

import mnist_common as common

SCENARIOS = {
    # scenario: (agent, model file)
    "correct": ("MNIST_Multiclass", common.MODEL_FILE),
    "wrong_inputs": ("MNIST_Multiclass_wrong_inputs", common.MODEL_FILE),
    "wrong_model": ("MNIST_Multiclass_wrong_model", common.WRONG_MODEL_FILE),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), required=True)
    parser.add_argument(
        "--out", default=common.DEFAULT_OUT, help=f"where train.py saved the models (default {common.DEFAULT_OUT})"
    )
    parser.add_argument(
        "--model", help="a .keras model (default: the scenario's model in --out); its reference is <model>.drift.npz"
    )
    parser.add_argument("--data", help="an mnist.npz in Keras's format (default: keras.datasets.mnist.load_data())")
    parser.add_argument(
        "--shadow-model",
        help="a second, independently trained .keras model (train.py's mnist_shadow.keras) watched beside the model",
    )
    common.add_pushgateway_arguments(parser)
    parser.add_argument("--job", default=common.JOB, help=f"job label (default {common.JOB})")
    parser.add_argument("--agent", help="agent label (default: the scenario's MLWatcher agent name)")
    parser.add_argument("--windows", type=int, default=10, help="stop after this many closed windows (default 10)")
    parser.add_argument("--window-size", type=int, help="samples per window (default: the reference's)")
    parser.add_argument(
        "--invert-from", type=int, default=1, help="wrong_inputs: first inverted window, counting from 1 (default 1)"
    )
    parser.add_argument("--invert-to", type=int, help="wrong_inputs: last inverted window (default: to the end)")
    parser.add_argument("--batch-min", type=int, default=1)
    parser.add_argument("--batch-max", type=int, default=20)
    parser.add_argument("--delay-min", type=float, default=0.0, help="seconds between batches, at least (default 0)")
    parser.add_argument("--delay-max", type=float, default=0.0, help="seconds between batches, at most (default 0)")
    parser.add_argument(
        "--feedback-lag",
        type=int,
        default=3,
        help="labels arrive this many batches after their predictions (default 3)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 1 <= args.batch_min <= args.batch_max:
        parser.error("need 1 <= --batch-min <= --batch-max")
    if not 0 <= args.delay_min <= args.delay_max:
        parser.error("need 0 <= --delay-min <= --delay-max")
    if args.windows < 1 or args.feedback_lag < 0:
        parser.error("--windows must be at least 1 and --feedback-lag at least 0")
    return args


def describe(agent: str, number: int, report, note: str = "") -> str:
    """One line per closed window: samples, the decision and the signals that fired."""
    fired = [name for name, on in report.signals.items() if on]
    decision = "YES (" + ", ".join(fired) + ")" if fired else "no"
    line = f"[{agent}] window {number:3d}{note}: {report.samples} samples, drift {decision}"
    line += (
        f"; predicted-class p={report.class_p_value:.2g}, drifted features {report.drifted_features_ratio:.0%}, "
        f"confidence {report.confidence_mean:.3f}"
    )
    if report.labelled:
        line += f"; accuracy {report.accuracy:.3f} on {report.labelled} late labels"
    return line


def main(argv=None) -> int:
    args = parse_args(argv)
    import keras
    import numpy as np

    import gangplank

    agent, model_file = SCENARIOS[args.scenario]
    agent = args.agent or agent
    model_path = Path(args.model) if args.model else Path(args.out) / model_file
    reference_path = common.reference_path(model_path)
    for path in (model_path, reference_path):
        if not path.exists():
            hint = " --wrong" if args.scenario == "wrong_model" else ""
            sys.exit(f"{path} not found: run examples/mnist/train.py{hint} first (with the same --out)")
    model = keras.models.load_model(model_path)
    shadow = keras.models.load_model(args.shadow_model) if args.shadow_model else None
    reference = gangplank.DriftReference.load(reference_path)
    _, (x_test, y_test) = common.load_mnist(args.data)
    invert_to = args.invert_to if args.invert_to is not None else args.windows

    rng = np.random.default_rng([args.seed, sorted(SCENARIOS).index(args.scenario)])
    order = rng.permutation(x_test.shape[0])
    closed = []

    def on_window(report):  # called by the exporter for each closed window
        closed.append(report)
        number = len(closed)
        inverted = args.scenario == "wrong_inputs" and args.invert_from <= number <= invert_to
        print(describe(agent, number, report, " [inverted]" if inverted else ""), flush=True)

    exporter = gangplank.ProductionDriftExporter(
        common.push_address(args.pgw, args.pgw_password_file),
        args.job,
        reference=reference,
        agent=agent,
        window_size=args.window_size,
        on_window=on_window,
    )
    window_size = exporter.window_size
    print(
        f"[{agent}] scenario {args.scenario}: model {model_path.name}, windows of {window_size}, "
        f"{args.windows} windows, batches of {args.batch_min}-{args.batch_max}, pushing to {args.pgw}",
        flush=True,
    )

    pending = collections.deque()  # (labels, probabilities) whose labels have not "arrived" yet
    sent = position = 0
    total = args.windows * window_size  # windows close on the exporter's worker: count samples, not reports
    started = time.monotonic()
    with exporter:
        while sent < total:
            # Batches never straddle a window, so "inverted from window I" is exact.
            window_number = sent // window_size + 1
            size = min(int(rng.integers(args.batch_min, args.batch_max + 1)), window_size - sent % window_size)
            rows = order[np.arange(position, position + size) % order.size]
            position += size
            x = common.to_model_input(x_test[rows])
            if args.scenario == "wrong_inputs" and args.invert_from <= window_number <= invert_to:
                x = 1.0 - x
            if shadow is None:
                # The Keras path: the exporter sees the inputs and the probabilities of this predict.
                probabilities = model.predict(exporter.with_inputs(x), callbacks=[exporter], verbose=0)
            else:
                # The serving-code path, with the shadow model's opinion on the same rows.
                probabilities = np.asarray(model.predict_on_batch(x))
                exporter.observe(x, probabilities, shadow=np.asarray(shadow.predict_on_batch(x)))
            sent += size
            pending.append((y_test[rows], probabilities))
            if len(pending) > args.feedback_lag and sent < total:
                labels, predicted = pending.popleft()
                exporter.feedback(labels, predicted)  # the late-label path
            if args.delay_max > 0:
                time.sleep(rng.uniform(args.delay_min, args.delay_max))
        # Labels still pending after the last sample are dropped: they would
        # count in the totals only (close() adds late labels to the counters,
        # not to a window), so every window's accuracy stays that of its own labels.
    drifted = sum(report.drift_detected for report in closed)
    print(
        f"[{agent}] done: {sent} samples in {len(closed)} windows, {drifted} with drift, "
        f"{time.monotonic() - started:.1f} s",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
