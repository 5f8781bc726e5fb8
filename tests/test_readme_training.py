"""The README's training examples run as printed, on tiny data, against a real Pushgateway."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from gangplank_devtools import value

from tests.gateway_tools import ROOT

pytestmark = pytest.mark.slow  # trains the README's models

README = (ROOT / "README.md").read_text()


def f1_example() -> str:
    """The code block after "F1 per class, from class-index labels" in the README, exactly."""
    return README.split("F1 per class, from class-index labels")[1].split("```python\n")[1].split("```")[0]


def tiny_mnist_like():
    rng = np.random.default_rng(0)
    x_train = rng.random((120, 8), dtype=np.float32)
    y_train = np.arange(120) % 10  # class indices, every class present
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(10, activation="softmax")])
    return x_train, y_train, model


def test_the_readme_f1_example_runs_and_exports_f1_per_class(pushgateway, scrape, make_exporter):
    x_train, y_train, model = tiny_mnist_like()
    exporter = make_exporter(pushgateway.address, "f1")
    namespace = {"model": model, "x_train": x_train, "y_train": y_train, "exporter": exporter}
    exec(compile(f1_example(), "README.md", "exec"), namespace)
    assert exporter.publisher.flush(15)

    f1 = np.asarray(model.get_metrics_result()["f1_score"])
    samples = scrape()
    assert {dict(labels)["class"] for name, labels in samples if name == "gangplank_train_f1_score"} == {
        str(c) for c in range(10)
    }
    for c in range(10):
        assert value(samples, "gangplank_train_f1_score", **{"class": c}) == pytest.approx(float(f1[c]), rel=1e-6)


def test_f1_score_rejects_the_class_indices_the_example_converts():
    """Why the example converts: the same compile and fit with class indices fails in Keras."""
    x_train, y_train, model = tiny_mnist_like()
    model.compile(
        optimizer="adam", loss="sparse_categorical_crossentropy", metrics=[keras.metrics.F1Score(average=None)]
    )
    with pytest.raises(ValueError, match="FBetaScore expects 2D inputs"):
        model.fit(x_train, y_train, epochs=1, verbose=0)
