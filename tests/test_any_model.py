"""Models users bring (issue 19): binary sigmoid outputs, named and listed inputs, tf.data, a callback that never
breaks ``model.predict``. Real Keras models; the callback tests also run on JAX and torch
(tests/test_train_test_exporter.py::test_callback_tests_pass_on_other_backends)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from gangplank_devtools import read_gateway, value, wait_for

from gangplank import DriftReference, ProductionDriftExporter
from gangplank._drift.families import PREFIX

pytestmark = pytest.mark.slow  # trains and predicts with real Keras models, 3-6 s a test

D = 6


def binary_data(rng, rows, shift=0.0):
    x = rng.normal(size=(rows, D)).astype(np.float32) + shift
    y = (x[:, 0] + 0.5 * x[:, 1] + 0.3 * rng.normal(size=rows) > 0).astype("int32")
    return x, y


@pytest.fixture(scope="module")
def sigmoid_model():
    """A trained binary classifier the usual Keras way: one sigmoid unit."""
    keras.utils.set_random_seed(0)
    layers = [keras.Input((D,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, "sigmoid")]
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    x, y = binary_data(np.random.default_rng(0), 1000)
    model.fit(x, y, epochs=5, batch_size=64, verbose=0)
    return model


@pytest.fixture
def make_drift(pushgateway):
    made = []

    def make(reference, agent="any", **kwargs):
        exporter = ProductionDriftExporter(pushgateway.address, "any", reference=reference, agent=agent, **kwargs)
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        exporter.publisher.close(timeout=0.2)


def on_gateway(pushgateway, name, agent="any", **labels):
    def look():
        try:
            return (value(read_gateway(pushgateway.url), PREFIX + name, agent=agent, **labels),)
        except KeyError:
            return None

    found = wait_for(look, timeout=15)
    assert found is not None, f"{name}{labels} never reached the gateway"
    return found[0]


# -- 1. every classifier output -----------------------------------------------------------
@pytest.mark.parametrize("shape", ["column", "flat"])
def test_sigmoid_output_fits_a_binary_reference(sigmoid_model, shape):
    x, y = binary_data(np.random.default_rng(1), 600)
    p = sigmoid_model.predict(x, verbose=0)
    assert p.shape == (600, 1)
    p = p if shape == "column" else p[:, 0]
    reference = DriftReference.fit(x, p, y, window_size=100, n_simulations=50)
    assert reference.n_classes == 2 and reference.threshold == 0.5
    assert reference.accuracy == pytest.approx(np.mean((p.reshape(-1) >= 0.5) == y))


def test_threshold_is_applied_and_saved(sigmoid_model, tmp_path):
    x, y = binary_data(np.random.default_rng(2), 600)
    p = sigmoid_model.predict(x, verbose=0)[:, 0]
    reference = DriftReference.fit(x, p, y, window_size=100, n_simulations=50, threshold=0.8)
    assert reference.accuracy == pytest.approx(np.mean((p >= 0.8) == y))
    reference.save(tmp_path / "binary.npz")
    loaded = DriftReference.load(tmp_path / "binary.npz")
    assert loaded.threshold == 0.8 and loaded.get_params()["threshold"] == 0.8
    report = loaded.compare(loaded.window_of(x[:100], p[:100], y[:100]))
    assert report.accuracy == pytest.approx(np.mean((p[:100] >= 0.8) == y[:100]))
    with pytest.raises(ValueError, match="threshold is for a binary classifier's single output"):
        DriftReference.fit(x, np.stack([1 - p, p], axis=1), y, window_size=100, n_simulations=50, threshold=0.8)


def test_binary_logits_are_taken_through_the_sigmoid():
    rng = np.random.default_rng(3)
    x, y = binary_data(rng, 500)
    logits = (2 * x[:, 0]).astype(np.float64)
    from_logits = DriftReference.fit(x, logits, y, window_size=100, n_simulations=50)
    from_probabilities = DriftReference.fit(x, 1 / (1 + np.exp(-logits)), y, window_size=100, n_simulations=50)
    np.testing.assert_allclose(from_logits.profile.confidence_counts, from_probabilities.profile.confidence_counts)
    assert from_logits.accuracy == pytest.approx(np.mean((logits >= 0) == y))


def test_sigmoid_model_through_the_callback_and_feedback(sigmoid_model, make_drift, pushgateway):
    rng = np.random.default_rng(4)
    x_ref, y_ref = binary_data(rng, 800)
    p_ref = sigmoid_model.predict(x_ref, verbose=0)
    reference = DriftReference.fit(x_ref, p_ref, y_ref, window_size=100, n_simulations=50)
    x, y = binary_data(rng, 200)
    reports = []
    drift = make_drift(reference, on_window=reports.append)
    p = sigmoid_model.predict(drift.with_inputs(x), batch_size=32, verbose=0, callbacks=[drift])
    drift.feedback(y[:100], p[:100])  # the (rows, 1) output as predictions
    drift.feedback(y[100:], p[100:, 0])  # a flat vector too
    drift.close()
    expected = reference.compare(reference.window_of(x[:100], p[:100]))
    assert [r.samples for r in reports] == [100, 100] and reports[0].input_rows == 100
    np.testing.assert_allclose(reports[0].class_shares, [np.mean(p[:100] < 0.5), np.mean(p[:100] >= 0.5)])
    np.testing.assert_allclose(reports[0].input_psi, expected.input_psi)
    correct = int(np.sum((p[:, 0] >= 0.5) == y))
    assert on_gateway(pushgateway, "feedback_correct_total") == correct
    assert drift.worker.errors["callback"] == 0


# -- the callback never breaks model.predict ----------------------------------------------
def three_class_reference():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(600, D)).astype(np.float32)
    return DriftReference.fit(x, rng.dirichlet([1, 1, 1], size=600), window_size=100, n_simulations=50)


def test_a_failing_batch_is_counted_and_predict_goes_on(sigmoid_model, make_drift, pushgateway, caplog):
    """An output that does not match the reference: predict returns, the failure is logged, counted, reported."""
    drift = make_drift(three_class_reference())
    x, _ = binary_data(np.random.default_rng(6), 96)
    p = sigmoid_model.predict(drift.with_inputs(x), batch_size=32, verbose=0, callbacks=[drift])
    assert p.shape == (96, 1)
    assert drift.worker.errors["callback"] == 3 and isinstance(drift.last_error, ValueError)
    assert "callback" in caplog.text and "ValueError" in caplog.text
    assert drift.flush()
    assert on_gateway(pushgateway, "worker_errors_total", stage="callback") == 3
    drift.close()
    sigmoid_model.predict(x, verbose=0, callbacks=[drift])  # a closed monitor: counted, predict still returns
    assert drift.worker.errors["callback"] == 6


def test_a_failing_batch_is_counted_by_the_worker_process_too(sigmoid_model, make_drift, pushgateway):
    """With worker="process" the counters live in the child: the parent's callback failures reach them."""
    drift = make_drift(three_class_reference(), agent="any-process", worker="process")
    x, _ = binary_data(np.random.default_rng(6), 96)
    p = sigmoid_model.predict(drift.with_inputs(x), batch_size=32, verbose=0, callbacks=[drift])
    assert p.shape == (96, 1)
    assert drift.flush()
    assert drift.worker.errors["callback"] == 3
    assert on_gateway(pushgateway, "worker_errors_total", agent="any-process", stage="callback") == 3
    drift.close()


def test_the_next_predict_works_after_a_failure(sigmoid_model, make_drift):
    """A predict that raised midway leaves no inputs behind; the next one is observed whole."""
    rng = np.random.default_rng(7)
    x_ref, _ = binary_data(rng, 600)
    reference = DriftReference.fit(x_ref, sigmoid_model.predict(x_ref, verbose=0), window_size=50, n_simulations=50)
    reports = []
    drift = make_drift(reference, on_window=reports.append)

    class Interrupt(keras.callbacks.Callback):
        def on_predict_batch_end(self, batch, logs=None):
            if batch == 1:
                raise KeyboardInterrupt("the caller stopped predict")

    x, _ = binary_data(rng, 96)
    interrupted = keras.models.clone_model(sigmoid_model)  # on JAX an interrupted predict leaves its model unusable
    interrupted.set_weights(sigmoid_model.get_weights())
    with pytest.raises(KeyboardInterrupt):
        interrupted.predict(drift.with_inputs(x), batch_size=16, verbose=0, callbacks=[drift, Interrupt()])
    other, _ = binary_data(rng, 34, shift=1.0)
    sigmoid_model.predict(other, batch_size=16, verbose=0, callbacks=[drift])  # no with_inputs: outputs only
    sigmoid_model.predict(drift.with_inputs(x[:50]), batch_size=16, verbose=0, callbacks=[drift])
    drift.close()
    # 32 rows with inputs, 34 without, 50 with: windows of 50, and the last 16 rows
    assert [(r.samples, r.input_rows) for r in reports] == [(50, 32), (50, 34), (16, 16)]
    assert drift.worker.errors["callback"] == 0


def test_several_outputs_are_counted_not_raised(make_drift):
    inputs = keras.Input((D,))
    hidden = keras.layers.Dense(4)(inputs)
    outputs = {"a": keras.layers.Dense(2, activation="softmax")(hidden), "b": keras.layers.Dense(1)(hidden)}
    model = keras.Model(inputs, outputs)
    drift = make_drift(three_class_reference())
    out = model.predict(np.zeros((10, D), np.float32), verbose=0, callbacks=[drift])
    assert set(out) == {"a", "b"} and drift.worker.errors["callback"] == 1
    assert "one output" in str(drift.last_error)


# -- 3. multi-input models ----------------------------------------------------------------
def named_input_model():
    keras.utils.set_random_seed(1)
    price = keras.Input((1,), name="price")
    words = keras.Input((4,), name="words")
    joined = keras.layers.Concatenate()([keras.layers.Dense(3)(price), keras.layers.Dense(3)(words)])
    return keras.Model({"price": price, "words": words}, keras.layers.Dense(3, activation="softmax")(joined))


def named_inputs(rng, rows, shift=0.0):
    return {
        "words": rng.normal(size=(rows, 4)).astype(np.float32),
        "price": (rng.lognormal(size=(rows, 1)) + shift).astype(np.float32),
    }


def test_dict_inputs_through_the_callback(make_drift):
    model = named_input_model()
    rng = np.random.default_rng(8)
    x_ref = named_inputs(rng, 600)
    reference = DriftReference.fit(x_ref, model.predict(x_ref, verbose=0), window_size=100, n_simulations=50)
    assert reference.n_features == 5
    reports = []
    drift = make_drift(reference, on_window=reports.append)
    x = named_inputs(rng, 100, shift=3.0)
    p = model.predict(drift.with_inputs(x), batch_size=32, verbose=0, callbacks=[drift])
    drift.close()
    flat = np.concatenate([x["price"], x["words"]], axis=1)  # sorted names: price/0, words/0..3
    expected = reference.compare(reference.window_of(flat, p))
    assert drift.worker.errors["callback"] == 0 and reports[0].input_rows == 100
    np.testing.assert_allclose(reports[0].input_psi, expected.input_psi)
    assert reports[0].input_psi[0] == reports[0].input_psi.max()  # the shifted price drifts, not the words


def test_list_inputs_and_a_features_function(make_drift):
    a, b = keras.Input((2,)), keras.Input((3,))
    model = keras.Model([a, b], keras.layers.Dense(2, activation="softmax")(keras.layers.Concatenate()([a, b])))
    rng = np.random.default_rng(9)
    xa, xb = rng.normal(size=(600, 2)).astype(np.float32), rng.normal(size=(600, 3)).astype(np.float32)
    p = model.predict([xa, xb], verbose=0)
    reference = DriftReference.fit([xa, xb], p, window_size=100, n_simulations=50)
    only_b = DriftReference.fit(xb, p, window_size=100, n_simulations=50)
    drift, drift_b = make_drift(reference, agent="list"), make_drift(only_b, agent="only-b")
    model.predict(drift.with_inputs([xa[:100], xb[:100]]), batch_size=32, verbose=0, callbacks=[drift])
    model.predict(
        drift_b.with_inputs([xa[:100], xb[:100]], features=lambda inputs: inputs[1]), verbose=0, callbacks=[drift_b]
    )
    drift.close(), drift_b.close()
    both = reference.compare(reference.window_of(np.hstack([xa, xb])[:100], p[:100]))
    np.testing.assert_allclose(drift.last_report.input_psi, both.input_psi)
    b_only = only_b.compare(only_b.window_of(xb[:100], p[:100]))
    np.testing.assert_allclose(drift_b.last_report.input_psi, b_only.input_psi)
    assert drift.worker.errors["callback"] == drift_b.worker.errors["callback"] == 0


def test_feature_names():
    from gangplank._drift.model_inputs import feature_names

    assert feature_names({"words": np.zeros((2, 2)), "price": np.zeros((2, 1))}) == ["price/0", "words/0", "words/1"]
    assert feature_names([np.zeros((2, 1)), np.zeros((2, 2, 1))]) == ["0/0", "1/0", "1/1"]


def test_inputs_that_do_not_match_are_refused_clearly():
    rng = np.random.default_rng(10)
    with pytest.raises(ValueError, match=r"every input must have the same rows, got \[3, 4\]"):
        DriftReference.fit({"a": rng.normal(size=(3, 2)), "b": rng.normal(size=(4, 2))}, rng.dirichlet([1, 1], 3))


def test_tf_data_input_is_refused_clearly_and_outputs_still_observed(make_drift):
    import tensorflow as tf

    model = named_input_model()
    rng = np.random.default_rng(11)
    x_ref = named_inputs(rng, 600)
    reference = DriftReference.fit(x_ref, model.predict(x_ref, verbose=0), window_size=100, n_simulations=50)
    drift = make_drift(reference)
    dataset = tf.data.Dataset.from_tensor_slices(named_inputs(rng, 100)).batch(25)
    with pytest.raises(TypeError, match="tf.data.Dataset or a generator cannot be sliced"):
        drift.with_inputs(dataset)
    model.predict(dataset, verbose=0, callbacks=[drift])
    drift.close()
    assert drift.last_report.samples == 100 and drift.last_report.input_rows == 0
    assert drift.worker.errors["callback"] == 0


# -- 7. liveness of an agent that never closes a window -------------------------------------
def test_a_new_agent_pushes_its_start_and_window_seconds(make_drift, pushgateway):
    import time

    before = time.time()
    make_drift(three_class_reference(), agent="new", window_seconds=90)
    make_drift(three_class_reference(), agent="by-size")
    after = time.time()
    assert before <= on_gateway(pushgateway, "start_timestamp_seconds", agent="new") <= after
    assert on_gateway(pushgateway, "window_seconds", agent="new") == 90
    assert on_gateway(pushgateway, "windows_total", agent="new") == 0  # nothing closed: the rule reads the start
    assert before <= on_gateway(pushgateway, "start_timestamp_seconds", agent="by-size") <= after
    assert on_gateway(pushgateway, "window_seconds", agent="by-size") == 0  # by size only
