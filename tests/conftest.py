"""Shared fixtures: real Pushgateways (and a whole local stack) on 127.0.0.1, from gangplank_devtools."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from gangplank_devtools import read_gateway, start_pushgateway
from gangplank_devtools.localstack import LocalStack

from tests.mnist_models import mnist_models  # noqa: F401  (session fixture: two trained MNIST convnets)
from tests.mnist_streams import mnist_streams  # noqa: F401  (the session fixture of the MNIST scenarios)


@pytest.fixture
def pushgateway(tmp_path):
    """A fresh, empty Pushgateway for one test."""
    with start_pushgateway(workdir=tmp_path) as gateway:
        yield gateway


@pytest.fixture
def scrape(pushgateway):
    """``scrape()`` returns ``{(name, labels): value}`` of the gateway's gangplank metrics."""
    return lambda: read_gateway(pushgateway.url)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory):
    """Pushgateway + Prometheus + Alertmanager configured by deploy/prometheus/prometheus.yml, for the whole session."""
    with LocalStack(workdir=tmp_path_factory.mktemp("stack")) as stack:
        yield stack


@pytest.fixture
def make_exporter():
    """``make_exporter(address, job, **kwargs)``: a TrainTestExporter whose sender is closed after the test.

    Closing (with a short flush) keeps a test's background sender from
    retrying against a dead address, or delaying interpreter exit, after it;
    the exporter's own close also ends a fit the test left raised.
    """
    from gangplank import TrainTestExporter

    made = []

    def make(*args, **kwargs):
        exporter = TrainTestExporter(*args, **kwargs)
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        exporter.close(timeout=0.2)


@pytest.fixture
def make_sender():
    """``make_sender(address, job, **kwargs)``: a PushgatewaySender closed after the test."""
    from gangplank.transport import PushgatewaySender

    made = []

    def make(*args, **kwargs):
        sender = PushgatewaySender(*args, **kwargs)
        made.append(sender)
        return sender

    yield make
    for sender in made:
        sender.close(timeout=0.2)


@pytest.fixture
def data():
    """A few hundred random samples, 8 features, 2 classes (backend-agnostic numpy)."""
    rng = np.random.default_rng(0)
    x = rng.random((256, 8), dtype=np.float32)
    y = (x[:, 0] + x[:, 1] > 1.0).astype("int32")
    return x, y


@pytest.fixture
def make_model():
    """``make_model(metrics=["accuracy"], hidden=8, inputs=8)``: a tiny compiled Dense classifier."""
    import keras

    def make(metrics=("accuracy",), hidden=8, inputs=8, classes=2, seed=0, build=True):
        keras.utils.set_random_seed(seed)
        layers = [keras.layers.Dense(hidden, activation="relu"), keras.layers.Dense(classes, activation="softmax")]
        if build:
            layers.insert(0, keras.Input((inputs,)))
        model = keras.Sequential(layers)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=list(metrics))
        return model

    return make
