"""MNIST, the two trained convnets, their predictions and the drift reference, cached.

Also the 1.2M-parameter model of the histogram benchmark. The first full run
trains the two convnets (1 epoch each) and caches them with their predictions
and the fitted reference in the cache directory.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

MNIST = Path(os.environ.get("GANGPLANK_MNIST", "/work/shared/data/mnist.npz"))
PIXELS = 784


def mnist_convnet():
    """gangplank 0.5's example MNIST convnet (104,202 parameters)."""
    import keras
    from keras import layers

    inputs = keras.Input((28, 28, 1))
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(128, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def big_model():
    """Conv2D 32, Conv2D 64, max pooling, Dense 128, Dense 10 on 28x28x1 (1,199,882 parameters)."""
    import keras
    from keras import layers

    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu"),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class Data:
    """MNIST, the two trained models, their predictions and the drift reference (cached)."""

    def __init__(self, cache: Path, quick: bool, log):
        import keras

        self.quick = quick
        with np.load(MNIST, allow_pickle=False) as f:
            x_train, y_train, x_test, y_test = f["x_train"], f["y_train"], f["x_test"], f["y_test"]
        n_train = 2000 if quick else 50000
        n_ref = 2000 if quick else 10000
        n_test = 2000 if quick else 10000
        scale = lambda a: (a.astype(np.float32) / 255.0).reshape(-1, 28, 28, 1)  # noqa: E731
        self.n_train = n_train
        self.train_labels = y_train[:n_train]
        self.x_ref = scale(x_train[n_train : n_train + n_ref])  # held out: the models never see it
        self.y_ref = y_train[n_train : n_train + n_ref].astype(np.int64)
        self.x_test = scale(x_test[:n_test])
        self.y_test = y_test[:n_test].astype(np.int64)

        tag = f"n{n_train}-e1-s0"
        self.correct_path = cache / f"convnet-correct-{tag}.keras"
        self.wrong_path = cache / f"convnet-wrong-{tag}.keras"
        rng = np.random.default_rng(0)
        y = y_train[:n_train]
        keep = (y % 2 == 1) | (rng.random(n_train) < 0.03)  # all odd digits, each even one with p = 0.03
        self.wrong_even_share = float(np.mean(y[keep] % 2 == 0))
        self.train_seconds = {}
        for path, rows, name in (
            (self.correct_path, np.arange(n_train), "correct"),
            (self.wrong_path, np.nonzero(keep)[0], "wrong"),
        ):
            if not path.exists():
                log(f"training the {name} convnet on {rows.size} images (1 epoch), cached as {path}")
                keras.utils.set_random_seed(0)
                model = mnist_convnet()
                start = time.perf_counter()
                model.fit(scale(x_train[rows]), y[rows].astype(np.int64), epochs=1, batch_size=64, verbose=0)
                self.train_seconds[name] = time.perf_counter() - start
                model.save(path)
        self.correct = keras.models.load_model(self.correct_path)
        self.wrong = keras.models.load_model(self.wrong_path)

        predictions = cache / f"predictions-{tag}-r{n_ref}-t{n_test}.npz"
        if predictions.exists() and predictions.stat().st_mtime >= max(
            self.correct_path.stat().st_mtime, self.wrong_path.stat().st_mtime
        ):
            with np.load(predictions) as f:
                arrays = {k: f[k] for k in f.files}
        else:
            log("predicting reference, test, inverted-test and wrong-model probabilities (cached)")
            predict = lambda m, x: m.predict(x, batch_size=500, verbose=0).astype(np.float32)  # noqa: E731
            arrays = {
                "p_ref": predict(self.correct, self.x_ref),
                "p_test": predict(self.correct, self.x_test),
                "p_inverted": predict(self.correct, 1.0 - self.x_test),
                "p_wrong": predict(self.wrong, self.x_test),
            }
            np.savez(predictions, **arrays)
        self.p_ref, self.p_test, self.p_inverted, self.p_wrong = (
            arrays[k] for k in ("p_ref", "p_test", "p_inverted", "p_wrong")
        )
        self.flat_ref = self.x_ref.reshape(-1, PIXELS)
        self.flat_test = self.x_test.reshape(-1, PIXELS)
        self.accuracy = {
            "correct_on_test": float(np.mean(self.p_test.argmax(1) == self.y_test)),
            "correct_on_inverted": float(np.mean(self.p_inverted.argmax(1) == self.y_test)),
            "wrong_on_test": float(np.mean(self.p_wrong.argmax(1) == self.y_test)),
        }
        self.reference_path = cache / f"reference-{tag}-r{n_ref}.npz"
        self._reference = None

    def reference(self):
        """The drift reference fitted on the held-out rows (cached file)."""
        from gangplank import DriftReference

        if self._reference is None:
            if (
                self.reference_path.exists()
                and self.reference_path.stat().st_mtime >= self.correct_path.stat().st_mtime
            ):
                self._reference = DriftReference.load(self.reference_path)
            else:
                self._reference = DriftReference.fit(self.flat_ref, self.p_ref, self.y_ref)
                self._reference.save(self.reference_path)
        return self._reference
