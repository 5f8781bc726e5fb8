"""TrainTestExporter against a real Pushgateway: the metric contract of DESIGN.md, read from a live scrape.

Backend-agnostic on purpose (no TensorFlow calls): the same tests run with
``KERAS_BACKEND=torch`` and ``KERAS_BACKEND=jax`` (see
``test_callback_tests_pass_on_other_backends``).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import urllib.request

import keras
import numpy as np
import pytest
from gangplank_devtools import counting_handler, value
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

import gangplank
from gangplank import HISTOGRAM_WEIGHT_BUCKETS_0_3, ConfusionMatrix, PushError, TrainTestExporter
from gangplank.transport import PushSettings
from tests.gateway_tools import ROOT

BUILTIN_TRAIN = {"epochs_count", "elapsed_time_seconds", "model_parameters_count", "running"}
BUILTIN_TEST = {"elapsed_time_seconds", "model_parameters_count"}


def names(samples, prefix):
    return {n[len(prefix) :] for n, _ in samples if n.startswith(prefix)}


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
    assert exporter.publisher.flush(15)

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
    assert first_exporter.publisher.flush(15)
    train_exporter = make_exporter(pushgateway.address, "mnist")  # a second instance, same job
    model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[train_exporter])
    assert train_exporter.publisher.flush(15)
    train_before = {k: v for k, v in scrape().items() if k[0].startswith("gangplank_train_")}

    test_exporter = make_exporter(pushgateway.address, "mnist")
    result = model.evaluate(x, y, verbose=0, return_dict=True, callbacks=[test_exporter])
    assert test_exporter.publisher.flush(15)

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
    assert exporter.publisher.flush(15)

    samples = scrape()
    assert names(samples, "gangplank_train_") == {"loss"} | BUILTIN_TRAIN
    assert names(samples, "gangplank_test_") == {"loss"} | BUILTIN_TEST
    assert value(samples, "gangplank_train_loss") == pytest.approx(history.history["loss"][-1], rel=1e-6)


def test_metrics_argument_may_name_validation_keys(pushgateway, scrape, make_exporter, make_model, data):
    x, y = data
    exporter = make_exporter(pushgateway.address, "valonly", metrics=["val_loss", "not_logged"])
    make_model().fit(x, y, epochs=1, batch_size=64, validation_split=0.25, verbose=0, callbacks=[exporter])
    assert exporter.publisher.flush(15)
    assert names(scrape(), "gangplank_train_") == {"val_loss"} | BUILTIN_TRAIN


def test_metrics_must_be_a_list_not_a_string():
    with pytest.raises(TypeError):
        TrainTestExporter("127.0.0.1:9091", "job", metrics="loss")


def test_grouping_key_is_passed_through_and_keeps_runs_apart(pushgateway, scrape, make_exporter, make_model, data):
    x, y = data
    for worker, epochs in (("w0", 2), ("w1", 3)):
        exporter = make_exporter(pushgateway.address, "mnist", grouping_key={"instance": worker})
        make_model().fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=[exporter])
        assert exporter.publisher.flush(15)

    samples = scrape()
    assert labels_of(samples, "gangplank_train_") == {
        (("instance", "w0"), ("job", "mnist")),
        (("instance", "w1"), ("job", "mnist")),
    }
    assert value(samples, "gangplank_train_epochs_count", instance="w0") == 2
    assert value(samples, "gangplank_train_epochs_count", instance="w1") == 3


def test_handler_is_passed_through_and_pushes_are_posts(pushgateway, scrape, make_exporter, make_model, data):
    x, y = data
    calls = []
    # positional arguments as in gangplank 0.5: pgw_addr, job, metrics, histogram_buckets, handler, ignore_exceptions
    exporter = make_exporter(pushgateway.address, "handled", None, None, counting_handler(calls), True)
    make_model().fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[exporter])
    assert exporter.publisher.flush(15)

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


def test_evaluate_with_ignore_exceptions_false_pushes_synchronously(
    pushgateway, scrape, make_exporter, make_model, data
):
    x, y = data
    exporter = make_exporter(pushgateway.address, "sync", ignore_exceptions=False)
    result = make_model().evaluate(x, y, verbose=0, return_dict=True, callbacks=[exporter])
    # no flush: evaluate returned only after the gateway had the test set
    assert value(scrape(), "gangplank_test_loss") == pytest.approx(result["loss"], rel=1e-6)
    assert not exporter.publisher.pending


def test_histogram_is_pushed_at_the_end_of_fit_and_evaluate(pushgateway, scrape, make_exporter, make_model, data):
    x, y = data
    model = make_model()
    exporter = make_exporter(pushgateway.address, "hist", histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_0_3)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[exporter])
    model.evaluate(x, y, verbose=0, callbacks=[exporter])
    assert exporter.publisher.flush(15)
    samples = scrape()
    for phase in ("train", "test"):
        assert value(samples, f"gangplank_{phase}_model_weights_count") == model.count_params()
        assert value(samples, f"gangplank_{phase}_model_weights_bucket", le="+Inf") == model.count_params()
        assert (
            len([n for n, _ in samples if n == f"gangplank_{phase}_model_weights_bucket"])
            == len(HISTOGRAM_WEIGHT_BUCKETS_0_3) + 1
        )


def test_no_histogram_unless_asked(pushgateway, scrape, make_exporter, make_model, data):
    x, y = data
    exporter = make_exporter(pushgateway.address, "nohist")
    make_model().fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[exporter])
    assert exporter.publisher.flush(15)
    assert not any("model_weights" in n for n, _ in scrape())


# -- 4. one instance, many runs ---------------------------------------------------------
def test_one_instance_for_fit_fit_evaluate(pushgateway, scrape, make_exporter, make_model, data):
    x, y = data
    model = make_model()
    exporter = make_exporter(pushgateway.address, "reuse")

    def gateway_state(epoch):
        assert exporter.publisher.flush(15)
        samples = scrape()
        return value(samples, "gangplank_train_epochs_count"), names(samples, "gangplank_test_")

    first = Probe(gateway_state)
    model.fit(x, y, epochs=3, batch_size=64, validation_split=0.25, verbose=0, callbacks=[exporter, first])
    second = Probe(gateway_state)
    history = model.fit(x, y, epochs=2, batch_size=64, validation_split=0.25, verbose=0, callbacks=[exporter, second])

    # epochs_count counts each fit from 1, and validation inside fit pushed no gangplank_test_*
    assert first.seen == [(1, set()), (2, set()), (3, set())]
    assert second.seen == [(1, set()), (2, set())]
    assert exporter.publisher.flush(15)
    samples = scrape()
    assert value(samples, "gangplank_train_epochs_count") == 2
    assert value(samples, "gangplank_train_loss") == pytest.approx(history.history["loss"][-1], rel=1e-6)
    assert value(samples, "gangplank_train_running") == 0
    assert not names(samples, "gangplank_test_")

    result = model.evaluate(x, y, verbose=0, return_dict=True, callbacks=[exporter])
    assert exporter.publisher.flush(15)
    samples = scrape()
    assert value(samples, "gangplank_test_loss") == pytest.approx(result["loss"], rel=1e-6)
    assert value(samples, "gangplank_train_epochs_count") == 2  # still there

    # and a fit after the evaluate still works
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[exporter])
    assert exporter.publisher.flush(15)
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
    assert exporter.publisher.flush(15)

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
    assert exporter.publisher.flush(15)
    samples = scrape()
    assert value(samples, "gangplank_train_model_parameters_count") == model.count_params()
    assert value(samples, "gangplank_train_model_weights_count") == model.count_params()


def test_predict_does_not_push(pushgateway, scrape, make_exporter, make_model, data):
    x, _ = data
    exporter = make_exporter(pushgateway.address, "predict")
    make_model().predict(x, verbose=0, callbacks=[exporter])
    exporter.publisher.flush(2)
    assert scrape() == {}


def test_public_api():
    assert gangplank.__version__
    assert issubclass(PushError, gangplank.GangplankError)
    assert issubclass(TrainTestExporter, keras.callbacks.Callback)


# -- 5. per-class metrics and confusion matrices --------------------------------------------
CLASSES = 3


def three_classes(rows, seed):
    """Learnable 3-class data: the class is the largest of the first three features."""
    rng = np.random.default_rng(seed)
    x = rng.random((rows, 6), dtype=np.float32)
    return x, x[:, :CLASSES].argmax(1).astype("int32")


def three_class_model(metrics, loss="sparse_categorical_crossentropy"):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(CLASSES, activation="softmax")]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss, metrics=list(metrics))
    return model


def per_class(samples, name, **labels):
    return {
        dict(lab)["class"]: v
        for (n, lab), v in samples.items()
        if n == name and all(dict(lab).get(k) == w for k, w in labels.items())
    }


def matrix_of(samples, name):
    """The exported matrix as numpy (rows true_class, columns predicted_class), checking every cell is there once."""
    cells = {
        (int(dict(lab)["true_class"]), int(dict(lab)["predicted_class"])): v
        for (n, lab), v in samples.items()
        if n == name
    }
    assert sorted(cells) == [(i, j) for i in range(CLASSES) for j in range(CLASSES)], sorted(cells)
    assert {tuple(sorted(dict(lab))) for (n, lab), _ in samples.items() if n == name} == {
        ("instance", "job", "predicted_class", "true_class")
    }
    matrix = np.zeros((CLASSES, CLASSES))
    for (i, j), v in cells.items():
        matrix[i, j] = v
    return matrix


def numpy_confusion(model, x, y):
    predicted = np.asarray(model.predict(x, verbose=0)).argmax(1)
    matrix = np.zeros((CLASSES, CLASSES))
    np.add.at(matrix, (y, predicted), 1)
    return matrix


def test_vector_metric_is_exported_per_class(pushgateway, scrape, make_exporter):
    x, y = three_classes(120, seed=0)
    x_val, y_val = three_classes(40, seed=1)
    one_hot = np.eye(CLASSES, dtype="float32")
    model = three_class_model([keras.metrics.F1Score(average=None), "accuracy"], loss="categorical_crossentropy")
    exporter = make_exporter(pushgateway.address, "perclass")
    history = model.fit(
        x, one_hot[y], epochs=2, batch_size=32, validation_data=(x_val, one_hot[y_val]), verbose=0, callbacks=[exporter]
    )
    result = model.evaluate(x_val, one_hot[y_val], verbose=0, return_dict=True, callbacks=[exporter])
    assert exporter.publisher.flush(15)

    samples = scrape()
    for name, expected in (
        ("gangplank_train_f1_score", history.history["f1_score"][-1]),
        ("gangplank_train_val_f1_score", history.history["val_f1_score"][-1]),
        ("gangplank_test_f1_score", result["f1_score"]),
    ):
        exported = per_class(samples, name, job="perclass", instance="")
        expected = np.asarray(expected, dtype=np.float64)
        assert expected.shape == (CLASSES,)
        assert exported.keys() == {str(i) for i in range(CLASSES)}, name
        np.testing.assert_allclose([exported[str(i)] for i in range(CLASSES)], expected, rtol=1e-6)
    assert value(samples, "gangplank_test_accuracy") == pytest.approx(result["accuracy"], rel=1e-6)  # scalars as before


def test_confusion_matrix_under_fit_and_evaluate(pushgateway, scrape, make_exporter):
    x, y = three_classes(150, seed=2)  # 150 = 4 batches of 32 + 22: a short last batch
    x_val, y_val = three_classes(50, seed=3)
    x_test, y_test = three_classes(70, seed=4)
    model = three_class_model(["accuracy", ConfusionMatrix(CLASSES)])
    exporter = make_exporter(pushgateway.address, "confusion", histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_0_3)
    history = model.fit(x, y, epochs=3, batch_size=32, validation_data=(x_val, y_val), verbose=0, callbacks=[exporter])
    assert exporter.publisher.flush(15)
    samples = scrape()

    # validation runs with the weights at the end of the epoch: the model's predictions now
    val = matrix_of(samples, "gangplank_train_val_confusion_matrix")
    assert val.sum() == len(x_val)
    np.testing.assert_array_equal(val, numpy_confusion(model, x_val, y_val))
    # training counts the last epoch's batches as they went, with the weights of the moment
    train = matrix_of(samples, "gangplank_train_confusion_matrix")
    assert train.sum() == len(x)
    np.testing.assert_array_equal(train.sum(axis=1), np.bincount(y, minlength=CLASSES))  # rows are the true classes
    assert np.trace(train) / len(x) == pytest.approx(history.history["accuracy"][-1], rel=1e-6)
    assert not any(n.startswith("gangplank_test_") for n, _ in samples)

    result = model.evaluate(x_test, y_test, batch_size=32, verbose=0, return_dict=True, callbacks=[exporter])
    assert exporter.publisher.flush(15)
    samples = scrape()
    test = matrix_of(samples, "gangplank_test_confusion_matrix")
    assert test.sum() == len(x_test)
    np.testing.assert_array_equal(test, numpy_confusion(model, x_test, y_test))
    np.testing.assert_array_equal(test, np.asarray(result["confusion_matrix"]))
    assert np.trace(test) / len(x_test) == pytest.approx(result["accuracy"], rel=1e-6)
    np.testing.assert_array_equal(
        matrix_of(samples, "gangplank_train_val_confusion_matrix"), val
    )  # the train set stays


def test_a_confusion_matrix_of_another_name_keeps_its_labels(pushgateway, scrape, make_exporter):
    x, y = three_classes(60, seed=5)
    model = three_class_model([ConfusionMatrix(CLASSES, name="cm")])
    exporter = make_exporter(pushgateway.address, "named", ignore_exceptions=False)
    model.evaluate(x, y, verbose=0, callbacks=[exporter])
    samples = scrape()
    np.testing.assert_array_equal(matrix_of(samples, "gangplank_test_cm"), numpy_confusion(model, x, y))


# -- 6. scrape mode -------------------------------------------------------------------------
def served(exporter):
    """What a Prometheus scrape of ``exporter`` reads: a real HTTP /metrics of a registry holding it."""
    registry = CollectorRegistry()
    registry.register(exporter)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("gangplank_")
    }


def without(samples, *labels):
    return {(n, tuple((k, v) for k, v in lab if k not in labels)): v for (n, lab), v in samples.items()}


def test_a_scrape_serves_exactly_what_is_pushed(pushgateway, scrape, make_exporter):
    x, y = three_classes(90, seed=6)
    model = three_class_model(
        ["accuracy", ConfusionMatrix(CLASSES), keras.metrics.F1Score(average=None)], loss="categorical_crossentropy"
    )
    y = np.eye(CLASSES, dtype="float32")[y]
    exporter = make_exporter(
        pushgateway.address,
        "both",
        histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_0_3,
        grouping_key={"instance": "w0", "run": "r1"},
    )
    model.fit(x, y, epochs=2, batch_size=32, validation_split=0.3, verbose=0, callbacks=[exporter])
    model.evaluate(x, y, verbose=0, callbacks=[exporter])
    assert exporter.publisher.flush(15)

    pushed, scraped = scrape(), served(exporter)
    assert {n for n, _ in scraped} >= {
        "gangplank_train_confusion_matrix",
        "gangplank_test_f1_score",
        "gangplank_test_model_weights_sum",
    }
    # the same families, samples and values; the scrape adds job and instance itself
    assert without(scraped) == without(pushed, "job", "instance")
    assert {dict(lab).get("run") for _, lab in scraped} == {"r1"}


def test_without_an_address_nothing_is_pushed_and_everything_is_served(pushgateway, scrape):
    x, y = three_classes(60, seed=7)
    model = three_class_model(["accuracy", ConfusionMatrix(CLASSES)])
    exporter = TrainTestExporter(None, "scraped-only")
    assert served(exporter) == {}  # registering before any run is fine
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[exporter])
    result = model.evaluate(x, y, verbose=0, return_dict=True, callbacks=[exporter])

    samples = served(exporter)
    assert samples[("gangplank_train_epochs_count", ())] == 2
    assert samples[("gangplank_train_loss", ())] == pytest.approx(history.history["loss"][-1], rel=1e-6)
    assert samples[("gangplank_test_loss", ())] == pytest.approx(result["loss"], rel=1e-6)
    cells = {lab: v for (n, lab), v in samples.items() if n == "gangplank_test_confusion_matrix"}
    assert len(cells) == CLASSES**2 and sum(cells.values()) == len(x)
    assert exporter.close() is True and not exporter.publisher.pending and exporter.publisher.last_error is None
    assert scrape() == {}  # the test's gateway heard nothing


def test_push_settings_carry_the_transport_keywords(pushgateway, scrape, make_exporter, make_model, data):
    x, y = data
    calls = []
    settings = PushSettings(pushgateway.address, handler=counting_handler(calls), timeout=3.0)
    exporter = make_exporter(settings, "settings", ignore_exceptions=False)
    make_model().evaluate(x, y, verbose=0, callbacks=[exporter])
    assert calls and {method for method, _ in calls} == {"POST"}
    assert "gangplank_test_loss" in {n for n, _ in scrape()}
    with pytest.raises(TypeError, match="PushSettings"):
        TrainTestExporter(settings, "settings", timeout=1.0)


# -- 7. backends -------------------------------------------------------------------------
BACKEND_FILES = [
    "tests/test_train_test_exporter.py",
    "tests/test_metrics.py",
    "tests/test_naming.py",
    "tests/test_weights.py",
    "tests/test_faults_training.py",
    "tests/test_production_drift_exporter.py::test_keras_predict_observes_inputs_and_equals_observe",
    "tests/test_production_drift_exporter.py::test_keras_predict_splits_windows_across_batches",
    "tests/test_any_model.py::test_sigmoid_model_through_the_callback_and_feedback",
    "tests/test_any_model.py::test_a_failing_batch_is_counted_and_predict_goes_on",
    "tests/test_any_model.py::test_the_next_predict_works_after_a_failure",
    "tests/test_any_model.py::test_several_outputs_are_counted_not_raised",
    "tests/test_any_model.py::test_dict_inputs_through_the_callback",
    "tests/test_any_model.py::test_list_inputs_and_a_features_function",
    # a features function that runs the model's layers: on JAX predict keeps the variables aside
    "tests/test_wide_inputs.py::test_the_exporter_observes_the_layer_through_model_predict",
    "tests/test_wide_inputs.py::test_feature_layer_on_the_callback_observes_the_layers_output",
    "tests/test_wide_inputs.py::test_a_bad_feature_layer_is_logged_counted_and_never_breaks_predict",
    "tests/test_regression.py::test_the_keras_callback_exports_regression_families_and_never_raises",
]


@pytest.mark.slow  # reruns the callback tests in a fresh interpreter per backend (about a minute each)
@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="the other backends are run from the TensorFlow run"
)
def test_callback_tests_pass_on_other_backends(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (scripts/test.sh installs it)")
    env = dict(os.environ, KERAS_BACKEND=backend)
    probe = subprocess.run(
        [sys.executable, "-c", "import keras; print(keras.backend.backend())"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert probe.stdout.split()[-1:] == [backend], probe.stdout + probe.stderr[-2000:]  # Keras really takes it
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *BACKEND_FILES],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "passed" in run.stdout


def test_close_delivers_before_returning(pushgateway, scrape, make_model, data):
    x, y = data
    exporter = TrainTestExporter(pushgateway.address, "closing")
    make_model().fit(x, y, epochs=1, verbose=0, callbacks=[exporter])
    assert exporter.close() is True
    assert value(scrape(), "gangplank_train_epochs_count", job="closing") == 1
    assert not exporter.publisher.pending
