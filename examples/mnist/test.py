"""Evaluate the trained MNIST convnet on the test set and push the result, with a weight histogram.

    python examples/mnist/test.py                 # job "mnist": gangplank_test_* next to gangplank_train_*
    python examples/mnist/test.py --wrong         # the wrong model, job "mnist_wrong"

``ignore_exceptions=False``: if the Pushgateway cannot take the result, the
evaluation fails with ``gangplank.PushError`` instead of losing it silently.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import mnist_common as common


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default=common.DEFAULT_OUT, help=f"where train.py saved the model (default {common.DEFAULT_OUT})"
    )
    parser.add_argument(
        "--model", help="a .keras model (default: mnist.keras, or mnist_wrong.keras with --wrong, in --out)"
    )
    parser.add_argument("--wrong", action="store_true", help="evaluate the wrong model, job mnist_wrong")
    parser.add_argument("--data", help="an mnist.npz in Keras's format (default: keras.datasets.mnist.load_data())")
    parser.add_argument("--limit", type=int, help="evaluate on the first N test images only")
    common.add_pushgateway_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import keras

    import gangplank

    job, model_file = (common.WRONG_JOB, common.WRONG_MODEL_FILE) if args.wrong else (common.JOB, common.MODEL_FILE)
    model_path = Path(args.model) if args.model else Path(args.out) / model_file
    if not model_path.exists():
        raise SystemExit(
            f"{model_path} not found: run examples/mnist/train.py{' --wrong' if args.wrong else ''} first "
            "(with the same --out)"
        )
    model = keras.models.load_model(model_path)
    _, (x_test, y_test) = common.load_mnist(args.data)
    if args.limit:
        x_test, y_test = x_test[: args.limit], y_test[: args.limit]

    exporter = gangplank.TrainTestExporter(
        common.push_address(args.pgw, args.pgw_password_file),
        job,
        histogram_buckets=gangplank.HISTOGRAM_WEIGHT_BUCKETS_0_3,
        ignore_exceptions=False,
    )
    results = model.evaluate(
        common.to_model_input(x_test), y_test, batch_size=512, verbose=0, callbacks=[exporter], return_dict=True
    )
    print(
        f"{model_path.name} on {len(y_test)} test images: "
        + ", ".join(f"{name} {value:.4f}" for name, value in results.items())
        + f"; pushed job {job!r} to {args.pgw}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
