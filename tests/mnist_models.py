"""Small MNIST models for the drift tests, trained once per session (or read from a cache).

* :func:`load_mnist` — the real images from ``../shared/data/mnist.npz`` as
  float32 in [0, 1], shape (rows, 28, 28), with uint8 labels.
* the *good* model — a small convnet trained one epoch on the first 40k training
  images; the last 20k (the reference's rows) stay unseen, as the reference
  docs advise, so the reference's confidence is that of unseen data.
* the *wrong* model — the same network trained one epoch on a skewed
  training set: every odd digit, even digits kept with probability 0.03
  (MLWatcher's "wrong model", under 5 % even digits).

Training takes tens of seconds on two cores. Set ``GANGPLANK_TEST_MODEL_CACHE``
to a directory to keep the trained weights between sessions (the cache key
covers the recipe below, so changing it retrains).

Example (not run as a doctest: it trains)::

    models = MnistModels.build()  # or the session fixture ``mnist_models``
    probabilities = models.good.predict(models.x_test[:10], verbose=0)
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MNIST_PATH = Path(os.environ.get("GANGPLANK_MNIST", "/work/shared/data/mnist.npz"))
if not MNIST_PATH.exists():  # the shared folder next to the checkout
    MNIST_PATH = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist.npz"

EVEN_KEEP = 0.03
GOOD_TRAIN_ROWS = 40_000  # the other 20k training images profile the reference (unseen by the model)
RECIPE = "convnet-8-16-dense32 adam bs128 1 epoch seed 0; wrong: odd + even p=0.03 seed 1; v1"


def load_mnist():
    """``(x_train, y_train, x_test, y_test)``: float32 images in [0, 1], (rows, 28, 28); uint8 labels."""
    with np.load(MNIST_PATH, allow_pickle=False) as data:
        x_train, y_train = data["x_train"], data["y_train"]
        x_test, y_test = data["x_test"], data["y_test"]
    return (x_train.astype(np.float32) / 255.0, y_train, x_test.astype(np.float32) / 255.0, y_test)


def skewed_training_set(x, y, even_keep: float = EVEN_KEEP, seed: int = 1):
    """Every odd digit, and each even digit with probability ``even_keep``."""
    rng = np.random.default_rng(seed)
    keep = (y % 2 == 1) | (rng.random(y.shape[0]) < even_keep)
    return x[keep], y[keep]


def make_model(seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Reshape((28, 28, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def train(x, y, name: str, seed: int = 0):
    """A model trained one epoch on ``(x, y)``; weights cached when ``GANGPLANK_TEST_MODEL_CACHE`` is set."""
    model = make_model(seed)
    cache = os.environ.get("GANGPLANK_TEST_MODEL_CACHE")
    path = None
    if cache:
        key = hashlib.sha256(f"{RECIPE}|{name}|{x.shape}|{int(y.sum())}".encode()).hexdigest()[:16]
        path = Path(cache) / f"mnist-{name}-{key}.weights.h5"
        if path.exists():
            model.load_weights(path)
            return model
    model.fit(x, y, batch_size=128, epochs=1, verbose=0, shuffle=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save_weights(path)
    return model


@dataclass
class MnistModels:
    """The data and both models, with the probabilities the tests need."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    good: object
    wrong: object
    x_wrong_train: np.ndarray
    y_wrong_train: np.ndarray

    @classmethod
    def build(cls) -> MnistModels:
        x_train, y_train, x_test, y_test = load_mnist()
        x_wrong, y_wrong = skewed_training_set(x_train, y_train)
        good = train(x_train[:GOOD_TRAIN_ROWS], y_train[:GOOD_TRAIN_ROWS], "good")
        wrong = train(x_wrong, y_wrong, "wrong")
        return cls(x_train, y_train, x_test, y_test, good, wrong, x_wrong, y_wrong)

    def predict(self, model, x, batch_size: int = 1000) -> np.ndarray:
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))


try:
    import pytest
except ImportError:  # the helper also works outside pytest
    pytest = None

if pytest is not None:

    @pytest.fixture(scope="session")
    def mnist_models() -> MnistModels:
        """Data and both trained models, built once per session (import this fixture into a test module)."""
        return MnistModels.build()
