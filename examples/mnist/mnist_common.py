"""What the MNIST examples share: loading the data, the convnet, file names.

``load_mnist()`` is Keras's normal download (``keras.datasets.mnist.load_data()``,
cached in ``~/.keras/datasets``); ``load_mnist("mnist.npz")`` reads a local
copy of the same file instead (offline machines, CI).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the examples' output

import numpy as np

DEFAULT_PGW = "127.0.0.1:9091"
DEFAULT_OUT = "artifacts/mnist"
JOB = "mnist"
WRONG_JOB = "mnist_wrong"
MODEL_FILE = "mnist.keras"
WRONG_MODEL_FILE = "mnist_wrong.keras"
REFERENCE_WINDOW = 200  # samples per drift window (MLWatcher's max_buffer_size is of this order)


def load_mnist(path: str | os.PathLike | None = None):
    """``(x_train, y_train), (x_test, y_test)`` as uint8 images (n, 28, 28) and uint8 labels.

    Args:
        path: an ``mnist.npz`` in Keras's format (keys ``x_train``, ``y_train``,
            ``x_test``, ``y_test``); ``None`` downloads it the usual Keras way.
    """
    if path is None:
        import keras

        return keras.datasets.mnist.load_data()
    with np.load(path, allow_pickle=False) as data:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(data.files)
        if missing:
            raise ValueError(f"{path} is not a Keras mnist.npz: missing {sorted(missing)}")
        return (data["x_train"], data["y_train"]), (data["x_test"], data["y_test"])


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 images (n, 28, 28) -> float32 (n, 28, 28, 1) in [0, 1], what the convnet takes."""
    return (np.asarray(images, dtype=np.float32) / 255.0).reshape(-1, 28, 28, 1)


def build_model():
    """gangplank 0.5's MNIST convnet: 104,202 parameters."""
    import keras
    from keras import layers

    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(128, (3, 3), activation="relu"),
            layers.Flatten(),
            layers.Dense(10, activation="softmax"),
        ],
        name="mnist_convnet",
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def mostly_odd(images: np.ndarray, labels: np.ndarray, keep_even: float = 0.03, seed: int = 0):
    """MLWatcher's "wrong model" training set: every odd digit, each even digit with probability ``keep_even``."""
    rng = np.random.default_rng(seed)
    keep = (labels % 2 == 1) | (rng.random(labels.shape[0]) < keep_even)
    return images[keep], labels[keep]


def reference_path(model_path: str | os.PathLike) -> Path:
    """Where a model's drift reference lives: ``mnist.keras`` -> ``mnist.drift.npz``."""
    return Path(model_path).with_suffix(".drift.npz")
