"""TrainTestExporter against a real Pushgateway: the metric contract of DESIGN.md, read from a live scrape.

Backend-agnostic on purpose (no TensorFlow calls): the same tests run with
``KERAS_BACKEND=torch`` (see ``test_callback_tests_pass_on_torch_backend``).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import gangplank
from gangplank import HISTOGRAM_WEIGHT_BUCKETS_0_3, PushError, TrainTestExporter
from gangplank_devtools import counting_handler, value
from tests.gateway_tools import ROOT

BUILTIN_TRAIN = {"epochs_count", "elapsed_time_seconds", "model_parameters_count", "running"}
BUILTIN_TEST = {"elapsed_time_seconds", "model_parameters_count"}


def names(samples, prefix):
    return {n[len(prefix):] for n, _ in samples if n.startswith(prefix)}


def labels_of(samples, prefix):
    return {lab for n, lab in samples if n.startswith(prefix)}


class Probe(keras.callbacks.Callback):
    """Runs ``check(epoch)`` after every epoch (placed after the exporter)."""

    def __init__(self, check):
        super().__init__()
        self.check = check
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(self.check(epoch))


# -- 1. the contract after fit and evaluate ----------------------------------------
def test_fit_pushes_exactly_the_contract_metrics(pushgateway, scrape, make_exporter, make_model, data):
    x, y = data
    model = make_model()
    exporter = make_exporter(pushgateway.address, "mnist")
    history = model.fit(x, y, epochs=3, batch_size=64, validation_split=0.25, verbose=0, callbacks=[exporter])
    assert exporter.sender.flush(15)

    samples = scrape()
    assert names(samples, "gangplank_train_") == {"accuracy", "loss", "val_accuracy", "val_loss"} | BUILTIN_TRAIN
    assert not names(samples, "gangplank_test_")
    assert labels_of(samples, "gangplank_") == {(("instance", ""), ("job", "mnist"))}
    for key in ("accuracy", "loss", "val_accuracy", "val_loss"):
        assert value(samples, f"gangplank_train_{key}") == pytest.approx(history.history[key][-1], rel=1e-6)
    assert value(samples, "gangplank_train_epochs_count") == 3
    assert value(samples, "gangplank_train_model_parameters_count") == model.count_params()
    assert value(samples, "gangplank_train_running") == 0
    assert value(samples, "gangplank_train_elapsed_time_seconds") > 0


def test_evaluate_adds_the_test_set_and_keeps_the_train_set(pushgateway, scrape, make_exporter, make_model, data):
    x, y = data
    model = make_model()
    first_exporter = make_exporter(pushgateway.address, "mnist")
    model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[first_exporter])
    assert first_exporter.sender.flush(15)
    train_exporter = make_exporter(pushgateway.address, "mnist")  # a second instance, same job
    model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[train_exporter])
    assert train_exporter.sender.flush(15)
    train_before = {k: v for k, v in scrape().items() if k[0].startswith("gangplank_train_")}

    test_exporter = make_exporter(pushgateway.address, "mnist")
    result = model.evaluate(x, y, verbose=0, return_dict=True, callbacks=[test_exporter])
    assert test_exporter.sender.flush(15)

    samples = scrape()
    assert names(samples, "gangplank_test_") == {"accuracy", "loss"} | BUILTIN_TEST
    assert value(samples, "gangplank_test_loss") == pytest.approx(result["loss"], rel=1e-6)
    assert value(samples, "gangplank_test_accuracy") == pytest.approx(result["accuracy"], rel=1e-6)
    assert value(samples, "gangplank_test_model_parameters_count") == model.count_params()
    assert labels_of(samples, "gangplank_test_") == {(("instance", ""), ("job", "mnist"))}
    # POST, not PUT: the evaluate push left the training metrics alone
    assert {k: v for k, v in samples.items() if k[0].startswith("gangplank_train_")} == train_before


def test_metrics_argument_restricts_the_exported_keys(pushgateway, scrape, make_exporter, make_model, data):
    x, y = data
    model = make_model()
    exporter = make_exporter(pushgateway.address, "restricted", metrics=["loss"])
    history = model.fit(x, y, epochs=2, batch_size=64, validation_split=0.25, verbose=0, callbacks=[exporter])
    model.evaluate(x, y, verbose=0, callbacks=[exporter])
    assert exporter.sender.flush(15)

    samples = scrape()
    assert names(samples, "gangplank_train_") == {"loss"} | BUILTIN_TRAIN
    assert names(samples, "gangplank_test_") == {"loss"} | BUILTIN_TEST
    assert value(samples, "gangplank_train_loss") == pytest.approx(history.history["loss"][-1], rel=1e-6)


def test_metrics_argument_may_name_validation_keys(pushgateway, scrape, make_exporter, make_model, data):
    x, y = data
    exporter = make_exporter(pushgateway.address, "valonly", metrics=["val_loss", "not_logged"])
    make_model().fit(x, y, epochs=1, batch_size=64, validation_split=0.25, verbose=0, callbacks=[exporter])
    assert exporter.sender.flush(15)
    assert names(scrape(), "gangplank_train_") == {"val_loss"} | BUILTIN_TRAIN


def test_metrics_must_be_a_list_not_a_string():
    with pytest.raises(TypeError):
        TrainTestExporter("127.0.0.1:9091", "job", metrics="loss")


def test_grouping_key_is_passed_through_and_keeps_runs_apart(pushgateway, scrape, make_exporter, make_model, data):
    x, y = data
    for worker, epochs in (("w0", 2), ("w1", 3)):
        exporter = make_exporter(pushgateway.address, "mnist", grouping_key={"instance": worker})
        make_model().fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=[exporter])
        assert exporter.sender.flush(15)

    samples = scrape()
    assert labels_of(samples, "gangplank_train_") == {(("instance", "w0"), ("job", "mnist")), (("instance", "w1"), ("job", "mnist"))}
    assert value(samples, "gangplank_train_epochs_count", instance="w0") == 2
    assert value(samples, "gangplank_train_epochs_count", instance="w1") == 3


def test_handler_is_passed_through_and_pushes_are_posts(pushgateway, scrape, make_exporter, make_model, data):
    x, y = data
    calls = []
    # positional arguments as in gangplank 0.5: pgw_addr, job, metrics, histogram_buckets, handler, ignore_exceptions
    exporter = make_exporter(pushgateway.address, "handled", None, None, counting_handler(calls), True)
    make_model().fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[exporter])
    assert exporter.sender.flush(15)

    assert calls, "the handler given to the exporter was never called"
    assert {method for method, _ in calls} == {"POST"}
    assert all(url.startswith(pushgateway.url + "/metrics/job/handled") for _, url in calls)
    assert value(scrape(), "gangplank_train_epochs_count", job="handled") == 2


@pytest.mark.parametrize("form", ["host:port", "http://host:port", "http://host:port/"])
def test_address_forms(form, pushgateway, scrape, make_exporter, make_model, data):
    x, y = data
    address = form.replace("host:port", pushgateway.address)
    exporter = make_exporter(address, "forms", ignore_exceptions=False)
    make_model().evaluate(x, y, verbose=0, callbacks=[exporter])
    assert "gangplank_test_loss" in names(scrape(), "")


def test_evaluate_with_ignore_exceptions_false_pushes_synchronously(pushgateway, scrape, make_exporter, make_model, data):
    x, y = data
    exporter = make_exporter(pushgateway.address, "sync", ignore_exceptions=False)
    result = make_model().evaluate(x, y, verbose=0, return_dict=True, callbacks=[exporter])
    # no flush: evaluate returned only after the gateway had the test set
    assert value(scrape(), "gangplank_test_loss") == pytest.approx(result["loss"], rel=1e-6)
    assert not exporter.sender.pending


def test_histogram_is_pushed_at_the_end_of_fit_and_evaluate(pushgateway, scrape, make_exporter, make_model, data):
    x, y = data
    model = make_model()
    exporter = make_exporter(pushgateway.address, "hist", histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_0_3)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[exporter])
    model.evaluate(x, y, verbose=0, callbacks=[exporter])
    assert exporter.sender.flush(15)
    samples = scrape()
    for phase in ("train", "test"):
        assert value(samples, f"gangplank_{phase}_model_weights_count") == model.count_params()
        assert value(samples, f"gangplank_{phase}_model_weights_bucket", le="+Inf") == model.count_params()
        assert len([n for n, _ in samples if n == f"gangplank_{phase}_model_weights_bucket"]) == len(HISTOGRAM_WEIGHT_BUCKETS_0_3) + 1


def test_no_histogram_unless_asked(pushgateway, scrape, make_exporter, make_model, data):
    x, y = data
    exporter = make_exporter(pushgateway.address, "nohist")
    make_model().fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[exporter])
    assert exporter.sender.flush(15)
    assert not any("model_weights" in n for n, _ in scrape())


# -- 4. one instance, many runs ---------------------------------------------------------
def test_one_instance_for_fit_fit_evaluate(pushgateway, scrape, make_exporter, make_model, data):
    x, y = data
    model = make_model()
    exporter = make_exporter(pushgateway.address, "reuse")

    def gateway_state(epoch):
        assert exporter.sender.flush(15)
        samples = scrape()
        return value(samples, "gangplank_train_epochs_count"), names(samples, "gangplank_test_")

    first = Probe(gateway_state)
    model.fit(x, y, epochs=3, batch_size=64, validation_split=0.25, verbose=0, callbacks=[exporter, first])
    second = Probe(gateway_state)
    history = model.fit(x, y, epochs=2, batch_size=64, validation_split=0.25, verbose=0, callbacks=[exporter, second])

    # epochs_count counts each fit from 1, and validation inside fit pushed no gangplank_test_*
    assert first.seen == [(1, set()), (2, set()), (3, set())]
    assert second.seen == [(1, set()), (2, set())]
    assert exporter.sender.flush(15)
    samples = scrape()
    assert value(samples, "gangplank_train_epochs_count") == 2
    assert value(samples, "gangplank_train_loss") == pytest.approx(history.history["loss"][-1], rel=1e-6)
    assert value(samples, "gangplank_train_running") == 0
    assert not names(samples, "gangplank_test_")

    result = model.evaluate(x, y, verbose=0, return_dict=True, callbacks=[exporter])
    assert exporter.sender.flush(15)
    samples = scrape()
    assert value(samples, "gangplank_test_loss") == pytest.approx(result["loss"], rel=1e-6)
    assert value(samples, "gangplank_train_epochs_count") == 2  # still there

    # and a fit after the evaluate still works
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[exporter])
    assert exporter.sender.flush(15)
    assert value(scrape(), "gangplank_train_epochs_count") == 1


def test_evaluate_after_an_aborted_fit_pushes_the_test_metrics(pushgateway, scrape, make_exporter, make_model, data):
    """A fit that raises never calls on_train_end; the exporter must not stay in 'train' mode."""
    x, y = data
    model = make_model()
    exporter = make_exporter(pushgateway.address, "aborted")

    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("user code failed")

    with pytest.raises(RuntimeError, match="user code failed"):
        model.fit(x, y, epochs=5, batch_size=64, verbose=0, callbacks=[exporter, Boom()])
    result = model.evaluate(x, y, verbose=0, return_dict=True, callbacks=[exporter])
    assert exporter.sender.flush(15)

    samples = scrape()
    assert value(samples, "gangplank_test_loss") == pytest.approx(result["loss"], rel=1e-6)
    assert value(samples, "gangplank_train_epochs_count") == 2
    assert value(samples, "gangplank_train_running") == 0  # the aborted fit does not read as running


def test_unbuilt_sequential_model(pushgateway, scrape, make_exporter, make_model, data):
    """A Sequential without Input is built by its first batch, after on_train_begin."""
    x, y = data
    model = make_model(build=False)
    exporter = make_exporter(pushgateway.address, "unbuilt", histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_0_3)
    model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[exporter])
    assert exporter.sender.flush(15)
    samples = scrape()
    assert value(samples, "gangplank_train_model_parameters_count") == model.count_params()
    assert value(samples, "gangplank_train_model_weights_count") == model.count_params()


def test_predict_does_not_push(pushgateway, scrape, make_exporter, make_model, data):
    x, _ = data
    exporter = make_exporter(pushgateway.address, "predict")
    make_model().predict(x, verbose=0, callbacks=[exporter])
    exporter.sender.flush(2)
    assert scrape() == {}


def test_public_api():
    assert gangplank.__version__
    assert issubclass(PushError, gangplank.GangplankError)
    assert issubclass(TrainTestExporter, keras.callbacks.Callback)


# -- 7. backends -------------------------------------------------------------------------
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
@pytest.mark.skipif(os.environ.get("KERAS_BACKEND") == "torch", reason="already running on torch")
def test_callback_tests_pass_on_torch_backend():
    env = dict(os.environ, KERAS_BACKEND="torch")
    files = ["tests/test_train_test_exporter.py", "tests/test_naming.py", "tests/test_weights.py", "tests/test_faults_training.py",
             "tests/test_production_drift_exporter.py::test_keras_predict_observes_inputs_and_equals_observe",
             "tests/test_production_drift_exporter.py::test_keras_predict_splits_windows_across_batches"]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *files],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "passed" in run.stdout



def test_close_delivers_before_returning(pushgateway, scrape, make_model, data):
    x, y = data
    exporter = TrainTestExporter(pushgateway.address, "closing")
    make_model().fit(x, y, epochs=1, verbose=0, callbacks=[exporter])
    assert exporter.close() is True
    assert value(scrape(), "gangplank_train_epochs_count", job="closing") == 1
    assert not exporter.sender.pending
