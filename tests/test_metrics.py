"""gangplank.metrics.ConfusionMatrix as a Keras metric, against numpy computed independently.

Backend-agnostic (keras.ops and numpy only): runs on TensorFlow, and in a
subprocess on torch and JAX (see ``test_callback_tests_pass_on_other_backends``).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import gangplank
from gangplank.metrics import ConfusionMatrix


def numpy_confusion(true, predicted, n, weights=None):
    matrix = np.zeros((n, n))
    np.add.at(matrix, (np.asarray(true), np.asarray(predicted)), 1.0 if weights is None else np.asarray(weights))
    return matrix


def result(metric):
    return keras.ops.convert_to_numpy(metric.result())


def test_sparse_labels_and_probabilities_over_several_batches():
    rng = np.random.default_rng(0)
    metric = ConfusionMatrix(4)
    trues, preds = [], []
    for size in (7, 1, 30):
        true = rng.integers(0, 4, size)
        probabilities = rng.dirichlet(np.ones(4), size).astype("float32")
        metric.update_state(true, probabilities)
        trues.append(true)
        preds.append(probabilities.argmax(1))
    expected = numpy_confusion(np.concatenate(trues), np.concatenate(preds), 4)
    np.testing.assert_array_equal(result(metric), expected)
    assert result(metric).sum() == 38
    metric.reset_state()
    np.testing.assert_array_equal(result(metric), np.zeros((4, 4)))


def test_one_hot_labels_logits_and_column_labels_agree():
    rng = np.random.default_rng(1)
    true = rng.integers(0, 3, 50)
    logits = rng.normal(size=(50, 3)).astype("float32")
    expected = numpy_confusion(true, logits.argmax(1), 3)
    for labels in (true, true.reshape(-1, 1), np.eye(3, dtype="float32")[true], true.astype("float32")):
        metric = ConfusionMatrix(3)
        metric.update_state(labels, logits)
        np.testing.assert_array_equal(result(metric), expected)


def test_sample_weights_weigh_the_counts():
    true = np.array([0, 1, 1, 2])
    probabilities = np.eye(3, dtype="float32")[[0, 1, 2, 2]]
    weights = np.array([1.0, 0.5, 2.0, 0.0])
    metric = ConfusionMatrix(3)
    metric.update_state(true, probabilities, sample_weight=weights)
    np.testing.assert_allclose(result(metric), numpy_confusion(true, [0, 1, 2, 2], 3, weights))


def test_binary_sigmoid_output_uses_the_threshold():
    true = np.array([0, 0, 1, 1, 1])
    probability = np.array([[0.1], [0.7], [0.5], [0.2], [0.9]], dtype="float32")
    metric = ConfusionMatrix(2)
    metric.update_state(true, probability)
    np.testing.assert_array_equal(result(metric), [[1, 1], [1, 2]])
    strict = ConfusionMatrix(2, threshold=0.8)
    strict.update_state(true, probability[:, 0])
    np.testing.assert_array_equal(result(strict), [[2, 0], [2, 1]])


def test_labels_outside_the_classes_are_not_counted():
    metric = ConfusionMatrix(3)
    metric.update_state(np.array([0, 3, -1, 2]), np.eye(3, dtype="float32")[[0, 0, 1, 2]])
    np.testing.assert_array_equal(result(metric), numpy_confusion([0, 2], [0, 2], 3))


def test_shapes_that_do_not_fit_raise():
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(1)
    with pytest.raises(ValueError, match="y_pred"):
        ConfusionMatrix(3).update_state(np.array([0, 1]), np.zeros((2, 4), dtype="float32"))
    with pytest.raises(ValueError, match="y_true"):
        ConfusionMatrix(3).update_state(np.zeros((2, 2)), np.zeros((2, 3), dtype="float32"))


def test_result_is_a_copy_that_a_reset_leaves_alone():
    """Keras keeps the epoch's logs while validation resets the metrics: the result must not alias the state."""
    metric = ConfusionMatrix(2)
    metric.update_state(np.array([1]), np.array([[0.0, 1.0]], dtype="float32"))
    kept = metric.result()
    metric.reset_state()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(kept), [[0, 0], [0, 1]])


def test_compiled_in_a_model_and_saved_with_it(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.random((90, 5), dtype=np.float32)
    y = (x[:, :3].argmax(1)).astype("int32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=[gangplank.ConfusionMatrix(3)])
    evaluated = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    predicted = np.asarray(model.predict(x, verbose=0)).argmax(1)
    np.testing.assert_array_equal(np.asarray(evaluated["confusion_matrix"]), numpy_confusion(y, predicted, 3))

    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")  # no custom_objects needed
    again = loaded.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    np.testing.assert_array_equal(np.asarray(again["confusion_matrix"]), np.asarray(evaluated["confusion_matrix"]))
    assert ConfusionMatrix.from_config(ConfusionMatrix(3, name="cm").get_config()).name == "cm"
