"""The MNIST scenarios of issue 16 on two small MLPs: a primary model and an independently trained shadow.

* primary: a 784-128-10 MLP trained 2 epochs on training rows 0-24,999 (seed 0);
* shadow: a 784-64-10 MLP trained 2 epochs on training rows 25,000-49,999 (seed 1);
* reference: training rows 50,000-59,999, which neither model saw.

Streams are pools of the 10,000 test images (inputs, both models'
probabilities, true labels):

* ``clean``: the test images;
* ``halved``: ``x * 0.5`` (accuracy kept, confidence lower);
* ``silently_wrong``: on 9 % of rows (chosen once, seed 16) the primary's top
  class is swapped with another class that is not the true one, so the row's
  confidence is unchanged and its prediction wrong; the shadow is unaffected;
* ``inverted``: ``1 - x``.

:func:`windows` draws windows from a pool (rows with replacement) as the
mappings :func:`tests.rule_replay.monitor_snapshots` feeds to a monitor.

Training takes a few seconds on two cores. Set ``GANGPLANK_TEST_MODEL_CACHE``
(or pass ``cache_dir``) to keep the weights between sessions; the cache key
covers the recipe below.

Example (not run as a doctest: it trains)::

    streams = MnistStreams.build()  # or the session fixture ``mnist_streams``
    for window in streams.windows("halved", n_windows=5, label_share=0.1, seed=3):
        monitor.observe(window["inputs"], window["probabilities"])
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.mnist_models import load_mnist

STREAMS = ("clean", "halved", "silently_wrong", "inverted")
SILENT_SHARE = 0.09
PRIMARY_ROWS = slice(0, 25_000)
SHADOW_ROWS = slice(25_000, 50_000)
REFERENCE_ROWS = slice(50_000, 60_000)
EPOCHS = 2
RECIPE = f"mlp primary 128 rows 0-25k seed 0; shadow 64 rows 25k-50k seed 1; adam bs128 {EPOCHS} epochs; v1"


@dataclass(frozen=True)
class Pool:
    """Rows to draw windows from: flat inputs, the primary's and the shadow's probabilities, true labels."""

    inputs: np.ndarray  # (rows, features) float32
    probabilities: np.ndarray  # (rows, classes) the primary model
    shadow: np.ndarray  # (rows, classes) the shadow model
    labels: np.ndarray  # (rows,) int64

    def accuracy(self) -> float:
        return float(np.mean(self.probabilities.argmax(axis=1) == self.labels))

    def shadow_accuracy(self) -> float:
        return float(np.mean(self.shadow.argmax(axis=1) == self.labels))

    def agreement(self) -> float:
        """Share of rows where both models predict the same class."""
        return float(np.mean(self.probabilities.argmax(axis=1) == self.shadow.argmax(axis=1)))


def agreement_estimate(pool: Pool, reference: Pool) -> float:
    """Accuracy estimated from agreement: reference accuracy − (reference agreement − pool agreement).

    Example:
        >>> p = np.eye(2, dtype=np.float32)[[0, 1, 0, 1]]
        >>> ref = Pool(np.zeros((4, 1)), p, p, np.array([0, 1, 0, 0]))  # accuracy 0.75, agreement 1
        >>> agreement_estimate(Pool(np.zeros((4, 1)), p, p[::-1], np.zeros(4, int)), ref)  # agreement 0
        -0.25
    """
    return reference.accuracy() - (reference.agreement() - pool.agreement())


def silently_wrong(probabilities: np.ndarray, labels: np.ndarray, share: float = SILENT_SHARE, seed: int = 16):
    """Probabilities with the top class swapped with another (not the true) class on ``share`` of rows.

    Every row keeps its confidence (the same values, permuted); every chosen row
    predicts a wrong class (with two classes, a chosen row that was already
    wrong is left as it is). Returns the new probabilities and the changed rows.

    Example:
        >>> p = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]], dtype=np.float32)
        >>> out, rows = silently_wrong(p, np.array([0, 1]), share=1.0)
        >>> out.max(axis=1).tolist() == p.max(axis=1).tolist(), bool((out.argmax(axis=1) != [0, 1]).all())
        (True, True)
    """
    rng = np.random.default_rng(seed)
    n, k = probabilities.shape
    chosen = np.sort(rng.choice(n, size=int(round(share * n)), replace=False))
    out = probabilities.copy()
    changed = []
    for row in chosen:
        top = int(out[row].argmax())
        others = [c for c in range(k) if c != top and c != labels[row]]
        if not others:  # two classes and already wrong: it stays so
            continue
        other = int(rng.choice(others))
        out[row, [top, other]] = out[row, [other, top]]
        changed.append(row)
    return out, np.array(changed, dtype=np.int64)


def make_mlp(hidden: int, seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def train_mlp(x: np.ndarray, y: np.ndarray, hidden: int, seed: int, cache_dir: Path | None):
    """An MLP trained on ``(x, y)``; its weights read from / written to ``cache_dir`` when given."""
    model = make_mlp(hidden, seed)
    path = None
    if cache_dir is not None:
        key = hashlib.sha256(f"{RECIPE}|{hidden}|{seed}|{x.shape}|{int(y.sum())}".encode()).hexdigest()[:16]
        path = Path(cache_dir) / f"mnist-mlp{hidden}-{key}.weights.h5"
        if path.exists():
            model.load_weights(path)
            return model
    model.fit(x, y, batch_size=128, epochs=EPOCHS, verbose=0, shuffle=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save_weights(path)
    return model


@dataclass
class MnistStreams:
    """The reference pool and the four stream pools (:data:`STREAMS`)."""

    reference: Pool
    streams: dict[str, Pool]
    silent_rows: np.ndarray  # test rows whose primary prediction was made wrong in ``silently_wrong``

    @classmethod
    def build(cls, cache_dir: str | Path | None = None) -> MnistStreams:
        """Train (or load) both MLPs and predict every pool; ``cache_dir`` default: ``GANGPLANK_TEST_MODEL_CACHE``."""
        cache = cache_dir if cache_dir is not None else os.environ.get("GANGPLANK_TEST_MODEL_CACHE")
        cache = Path(cache) if cache else None
        x_train, y_train, x_test, y_test = load_mnist()
        flat_train = x_train.reshape(-1, 784)
        flat_test = x_test.reshape(-1, 784)
        y_train, y_test = y_train.astype(np.int64), y_test.astype(np.int64)
        primary = train_mlp(flat_train[PRIMARY_ROWS], y_train[PRIMARY_ROWS], 128, 0, cache)
        shadow = train_mlp(flat_train[SHADOW_ROWS], y_train[SHADOW_ROWS], 64, 1, cache)

        def pool(x: np.ndarray, y: np.ndarray) -> Pool:
            predict = lambda m: np.asarray(m.predict(x, batch_size=2000, verbose=0), dtype=np.float32)  # noqa: E731
            return Pool(x, predict(primary), predict(shadow), y)

        reference = pool(flat_train[REFERENCE_ROWS], y_train[REFERENCE_ROWS])
        clean = pool(flat_test, y_test)
        wrong, silent_rows = silently_wrong(clean.probabilities, y_test)
        streams = {
            "clean": clean,
            "halved": pool(flat_test * 0.5, y_test),
            "silently_wrong": Pool(clean.inputs, wrong, clean.shadow, y_test),
            "inverted": pool(1.0 - flat_test, y_test),
        }
        return cls(reference, streams, silent_rows)

    def windows(self, stream: str, n_windows: int, window_size: int = 200, label_share: float = 1.0, seed: int = 0):
        """:func:`windows` of the named stream."""
        if stream not in self.streams:
            raise KeyError(f"unknown stream {stream!r}; choose from {', '.join(self.streams)}")
        return windows(self.streams[stream], n_windows, window_size, label_share, seed)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per stream: both models' accuracy, their agreement, and the agreement-based estimate."""
        return {
            name: {
                "primary_accuracy": pool.accuracy(),
                "shadow_accuracy": pool.shadow_accuracy(),
                "agreement": pool.agreement(),
                "agreement_estimate": agreement_estimate(pool, self.reference),
            }
            for name, pool in {"reference": self.reference, **self.streams}.items()
        }


def windows(
    pool: Pool, n_windows: int, window_size: int = 200, label_share: float = 1.0, seed: int = 0
) -> Iterator[dict]:
    """Windows of ``window_size`` rows drawn with replacement from ``pool``.

    Each is a dict: ``inputs``, ``probabilities``, ``shadow``, ``true_labels``
    (every row), ``labels`` (every row's true label, or ``None`` when
    ``label_share`` is 0), ``labelled`` (bool per row: exactly
    ``round(label_share * window_size)`` rows, chosen at random, have their
    label given to the monitor), ``ids`` (scoring ids, unique over the stream)
    and ``index`` (the pool rows drawn). One ``seed`` draws the same rows at
    every ``label_share``.

    Example:
        >>> p = np.full((10, 2), 0.5, dtype=np.float32)
        >>> w = next(windows(Pool(np.zeros((10, 3)), p, p, np.zeros(10, int)), 1, window_size=4, label_share=0.5))
        >>> int(w["labelled"].sum()), w["ids"].tolist()
        (2, ['s0-w0-r0', 's0-w0-r1', 's0-w0-r2', 's0-w0-r3'])
    """
    if not 0 <= label_share <= 1:
        raise ValueError(f"label_share must be in [0, 1], got {label_share!r}")
    if n_windows < 0 or window_size < 1:
        raise ValueError(f"need n_windows >= 0 and window_size >= 1, got {n_windows} and {window_size}")
    # Rows and labels from separate generators: one seed draws the same rows at every label share.
    rows_rng, labels_rng = np.random.default_rng(seed), np.random.default_rng([seed, 1])
    n_labelled = int(round(label_share * window_size))
    rows_in_pool = pool.labels.shape[0]
    for w in range(n_windows):
        index = rows_rng.integers(0, rows_in_pool, size=window_size)
        labelled = np.zeros(window_size, dtype=bool)
        labelled[labels_rng.choice(window_size, size=n_labelled, replace=False)] = True
        yield {
            "inputs": pool.inputs[index],
            "probabilities": pool.probabilities[index],
            "shadow": pool.shadow[index],
            "true_labels": pool.labels[index],
            "labels": pool.labels[index] if n_labelled else None,
            "labelled": labelled,
            "ids": np.array([f"s{seed}-w{w}-r{r}" for r in range(window_size)]),
            "index": index,
        }


try:
    import pytest
except ImportError:  # the helper also works outside pytest
    pytest = None

if pytest is not None:

    @pytest.fixture(scope="session")
    def mnist_streams() -> MnistStreams:
        """Both MLPs and every stream, built once per session (import this fixture into a test module)."""
        return MnistStreams.build()
