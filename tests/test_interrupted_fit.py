"""A fit that raises mid-epoch ends with gangplank_train_running 0, with no later fit or evaluate to close it.

Keras 3 calls no callback when fit raises. The crash cases run the training
script in its own interpreter and let the exception end it, as a real run
would; the gateway must then say 0, not 1.
"""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from gangplank_devtools import counting_handler, value

from tests.gateway_tools import ROOT

pytestmark = pytest.mark.slow  # kills and restarts training processes

# argv: gateway address, what raises ("callback" or "data"). Epoch 1 completes; epoch 2 raises at its third batch.
CRASHING_FIT = """
import sys
import keras
import numpy as np
import gangplank

address, culprit = sys.argv[1], sys.argv[2]
keras.utils.set_random_seed(0)
x = np.random.default_rng(0).random((64, 4), dtype=np.float32)
y = (x[:, 0] * 3).astype("int32")


class Batches(keras.utils.PyDataset):
    def __init__(self):
        super().__init__()
        self.served = 0

    def __len__(self):
        return 4

    def __getitem__(self, index):
        self.served += 1
        if culprit == "data" and self.served == 4 + 3:
            raise OSError("the data went away")
        return x[index * 16 : (index + 1) * 16], y[index * 16 : (index + 1) * 16]


class FailingCallback(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if culprit == "callback" and self.epoch == 1 and batch == 2:
            raise RuntimeError("a callback failed")

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch


model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
exporter = gangplank.TrainTestExporter(address, "crash")
model.fit(Batches(), epochs=5, verbose=0, callbacks=[exporter, FailingCallback()])
"""


@pytest.mark.parametrize(("culprit", "error"), [("callback", "a callback failed"), ("data", "the data went away")])
def test_a_fit_that_kills_the_process_is_published_as_not_running(pushgateway, scrape, culprit, error):
    run = subprocess.run(
        [sys.executable, "-c", CRASHING_FIT, pushgateway.address, culprit],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert run.returncode != 0 and error in run.stderr, run.stderr[-3000:]
    samples = scrape()
    assert value(samples, "gangplank_train_running", job="crash") == 0
    assert value(samples, "gangplank_train_epochs_count", job="crash") == 1  # the epoch that completed
    assert value(samples, "gangplank_train_loss", job="crash") > 0


def test_a_caught_fit_failure_is_published_as_not_running_at_close(
    pushgateway, scrape, make_exporter, make_model, data
):
    x, y = data
    model = make_model()
    exporter = make_exporter(pushgateway.address, "caught")

    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                assert exporter.publisher.flush(15)
                raise RuntimeError("user code failed")

    with pytest.raises(RuntimeError, match="user code failed"):
        model.fit(x, y, epochs=5, batch_size=64, verbose=0, callbacks=[exporter, Boom()])
    assert value(scrape(), "gangplank_train_running", job="caught") == 1  # the failed fit, as Keras left it
    assert exporter.close()
    samples = scrape()
    assert value(samples, "gangplank_train_running", job="caught") == 0
    assert value(samples, "gangplank_train_epochs_count", job="caught") == 2


def test_a_completed_fit_is_not_republished_at_close(pushgateway, scrape, make_exporter, make_model, data):
    calls: list = []
    x, y = data
    exporter = make_exporter(pushgateway.address, "done", handler=counting_handler(calls))
    make_model().fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[exporter])
    assert exporter.publisher.flush(15)
    pushes = len(calls)
    assert exporter.close()
    assert len(calls) == pushes
    assert value(scrape(), "gangplank_train_running", job="done") == 0
    assert np.isfinite(value(scrape(), "gangplank_train_loss", job="done"))
