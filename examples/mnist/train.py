"""Train gangplank's MNIST convnet and push every epoch to a Prometheus Pushgateway.

    python examples/mnist/train.py --epochs 3                 # job "mnist"
    python examples/mnist/train.py --epochs 3 --wrong         # MLWatcher's wrong model, job "mnist_wrong"
    python examples/mnist/train.py --data mnist.npz --limit 3000 --epochs 1   # offline, fast

Writes ``<out>/mnist.keras`` (the epoch with the lowest val_loss, kept by
ModelCheckpoint), a shadow model ``<out>/mnist_shadow.keras`` (a small MLP
trained on the same rows with another seed: an independent second opinion,
whose agreement with the convnet estimates its accuracy without labels;
``--no-shadow`` skips it) and the drift reference ``<out>/mnist.drift.npz``,
fitted on the held-out validation rows (the last 10 %, or two windows' worth
on small data, which neither model trained on) with both models' outputs, which the production scenarios and the
server load. ``--wrong`` writes ``mnist_wrong.keras`` / ``mnist_wrong.drift.npz``
instead, trained on every odd digit and about 3 % of the even ones (under 5 %
even digits in all), without a shadow.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import mnist_common as common


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs to train (default 3)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--data", help="an mnist.npz in Keras's format (default: keras.datasets.mnist.load_data())")
    parser.add_argument("--limit", type=int, help="train on the first N training images only (fast runs, CI)")
    parser.add_argument(
        "--out",
        default=common.DEFAULT_OUT,
        help=f"directory for the model and its drift reference (default {common.DEFAULT_OUT})",
    )
    common.add_pushgateway_arguments(parser)
    parser.add_argument(
        "--wrong", action="store_true", help="train MLWatcher's wrong model (under 5 %% even digits), job mnist_wrong"
    )
    parser.add_argument(
        "--reference-size",
        type=int,
        default=6000,
        help="held-out images used for the drift reference (default 6000: all of the validation split)",
    )
    parser.add_argument("--no-shadow", action="store_true", help="do not train the shadow model")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import keras
    import numpy as np

    import gangplank

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), _ = common.load_mnist(args.data)
    if args.limit:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
    job, model_file = common.JOB, common.MODEL_FILE
    if args.wrong:
        job, model_file = common.WRONG_JOB, common.WRONG_MODEL_FILE
        x_train, y_train = common.mostly_odd(x_train, y_train, keep_even=0.03, seed=args.seed)
        print(f"wrong model: {x_train.shape[0]} training images, {np.mean(y_train % 2 == 0):.1%} of them even digits")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / model_file
    x = common.to_model_input(x_train)
    # Keras's validation_split holds out the last rows: 10 %, or enough for two drift windows on small data.
    held_out_share = max(0.1, min(0.5, 2 * common.REFERENCE_WINDOW / x.shape[0]))
    model = common.build_model()
    print(f"{model.name}: {model.count_params():,} parameters; pushing job {job!r} to {args.pgw}")

    started = time.monotonic()
    history = model.fit(
        x,
        y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        validation_split=held_out_share,
        verbose=2,
        callbacks=[
            gangplank.TrainTestExporter(common.push_address(args.pgw, args.pgw_password_file), job),
            keras.callbacks.ModelCheckpoint(model_path, monitor="val_loss", save_best_only=True),
        ],
    )
    best = int(np.argmin(history.history["val_loss"]))
    print(
        f"trained in {time.monotonic() - started:.1f} s; best val_loss {history.history['val_loss'][best]:.4f} "
        f"(val_accuracy {history.history['val_accuracy'][best]:.4f}) at epoch {best + 1}, saved to {model_path}"
    )

    # Neither model trains on the held-out rows: Keras takes them off the end.
    trained_on = math.ceil(x.shape[0] * (1 - held_out_share))  # where Keras splits
    shadow = None
    if not (args.wrong or args.no_shadow):
        started = time.monotonic()
        keras.utils.set_random_seed(args.seed + 1)
        shadow = common.build_shadow_model()
        shadow.fit(x[:trained_on], y_train[:trained_on], epochs=args.epochs, batch_size=args.batch_size, verbose=0)
        shadow_path = out / common.SHADOW_MODEL_FILE
        shadow.save(shadow_path)
        seconds = time.monotonic() - started
        print(f"shadow model ({shadow.count_params():,} parameters) saved to {shadow_path} in {seconds:.1f} s")

    # The drift reference: held-out images, the saved model's probabilities (and the shadow's), the labels.
    started = time.monotonic()
    model = keras.models.load_model(model_path)
    rng = np.random.default_rng(args.seed)
    held_out = x.shape[0] - trained_on
    rows = trained_on + np.sort(rng.choice(held_out, size=min(args.reference_size, held_out), replace=False))
    probabilities = model.predict(x[rows], batch_size=512, verbose=0)
    shadow_probabilities = None if shadow is None else shadow.predict(x[rows], batch_size=512, verbose=0)
    reference = gangplank.DriftReference.fit(
        x[rows], probabilities, y_train[rows], shadow=shadow_probabilities, window_size=common.REFERENCE_WINDOW
    )
    reference_file = common.reference_path(model_path)
    reference.save(reference_file)
    agreement = "" if shadow is None else f", shadow agreement {reference.shadow_agreement:.4f}"
    print(
        f"drift reference of {rows.size} held-out images (accuracy {reference.accuracy:.4f}{agreement}, "
        f"window {reference.window_size}) saved to {reference_file} in {time.monotonic() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
