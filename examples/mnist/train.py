"""Train gangplank's MNIST convnet and push every epoch to a Prometheus Pushgateway.

    python examples/mnist/train.py --epochs 3                 # job "mnist"
    python examples/mnist/train.py --epochs 3 --wrong         # MLWatcher's wrong model, job "mnist_wrong"
    python examples/mnist/train.py --data mnist.npz --limit 3000 --epochs 1   # offline, fast

Writes ``<out>/mnist.keras`` (the epoch with the lowest val_loss, kept by
ModelCheckpoint) and its drift reference ``<out>/mnist.drift.npz``, which the
production scenarios and the server load. ``--wrong`` writes
``mnist_wrong.keras`` / ``mnist_wrong.drift.npz`` instead, trained on every
odd digit and about 3 % of the even ones (under 5 % even digits in all).
"""

from __future__ import annotations

import argparse
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
        "--reference-size", type=int, default=20000, help="training images used for the drift reference (default 20000)"
    )
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
    model = common.build_model()
    print(f"{model.name}: {model.count_params():,} parameters; pushing job {job!r} to {args.pgw}")

    started = time.monotonic()
    history = model.fit(
        x,
        y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        validation_split=0.1,
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

    # The drift reference: images the model trained on (Keras's validation_split
    # holds out the last 10 %), the saved model's probabilities, the labels.
    started = time.monotonic()
    model = keras.models.load_model(model_path)
    trained_on = int(x.shape[0] * 0.9)
    rng = np.random.default_rng(args.seed)
    rows = np.sort(rng.choice(trained_on, size=min(args.reference_size, trained_on), replace=False))
    probabilities = model.predict(x[rows], batch_size=512, verbose=0)
    reference = gangplank.DriftReference.fit(x[rows], probabilities, y_train[rows], window_size=common.REFERENCE_WINDOW)
    reference_file = common.reference_path(model_path)
    reference.save(reference_file)
    print(
        f"drift reference of {rows.size} images (accuracy {reference.accuracy:.4f}, window {reference.window_size}) "
        f"saved to {reference_file} in {time.monotonic() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
