"""What the MNIST examples share: loading the data, the convnet, file names.

``load_mnist()`` is Keras's normal download (``keras.datasets.mnist.load_data()``,
cached in ``~/.keras/datasets``); ``load_mnist("mnist.npz")`` reads a local
copy of the same file instead (offline machines, CI).
"""

from __future__ import annotations

import base64
import os
import urllib.parse
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the examples' output

import numpy as np

DEFAULT_PGW = "127.0.0.1:9091"
DEFAULT_OUT = "artifacts/mnist"
JOB = "mnist"
WRONG_JOB = "mnist_wrong"
MODEL_FILE = "mnist.keras"
WRONG_MODEL_FILE = "mnist_wrong.keras"
SHADOW_MODEL_FILE = "mnist_shadow.keras"  # a second, independently trained model: its agreement estimates accuracy
PGW_USER = "gangplank"  # the user of the stack's Pushgateway basic auth (gangplank_devtools.pushgateway_auth)
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


def build_shadow_model():
    """The shadow model: a small MLP (784-64-10), unlike the convnet, so that the two err independently."""
    import keras
    from keras import layers

    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ],
        name="mnist_shadow_mlp",
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


def add_pushgateway_arguments(parser) -> None:
    """``--pgw`` and ``--pgw-password-file``: where to push, and the password of a gateway behind basic auth."""
    parser.add_argument("--pgw", default=DEFAULT_PGW, help=f"Pushgateway address (default {DEFAULT_PGW})")
    parser.add_argument(
        "--pgw-password-file",
        metavar="FILE",
        help=f"the Pushgateway's basic-auth password (user {PGW_USER}): the local stack writes it to "
        "WORKDIR/secrets/pushgateway_password, the compose stack reads deploy/prometheus/secrets/pushgateway_password "
        "(default: no auth)",
    )


def push_address(pgw: str, password_file: str | os.PathLike | None) -> str:
    """``pgw`` with the credentials in it (``http://gangplank:PASSWORD@host:port``), the form the exporters take.

    >>> push_address("127.0.0.1:9091", None)
    '127.0.0.1:9091'
    """
    if not password_file:
        return pgw
    scheme, _, host = pgw.rpartition("://")
    password = urllib.parse.quote(Path(password_file).read_text().strip(), safe="")
    return f"{scheme or 'http'}://{PGW_USER}:{password}@{host}"


def auth_headers(password_file: str | os.PathLike | None) -> dict[str, str]:
    """The ``Authorization`` header for reading a gateway behind basic auth (empty without a password file)."""
    if not password_file:
        return {}
    token = base64.b64encode(f"{PGW_USER}:{Path(password_file).read_text().strip()}".encode()).decode()
    return {"Authorization": f"Basic {token}"}
