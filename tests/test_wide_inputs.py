"""Wide inputs: input reductions (pool_images, feature_subset, random_projection) and layer_features.

Each reduction is checked against an independent numpy computation, applied
identically at fit and on observed batches, saved and loaded, and the
monitor on a reduction detects a brightness shift of a wide image stream and
stays quiet without one. layer_features runs a real functional Keras model
through ``model.predict`` with the exporter as its callback, given as
``with_inputs(x, features=...)`` or as the exporter's ``feature_layer``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import gangplank
from gangplank import DriftMonitor, DriftReference, ReferenceFormatError
from gangplank._drift import reference_file

SHAPE = (24, 24, 3)  # 1,728 values per row
# Fits that test no detection use false_alarm_rate=0.01: its exact count simulation takes 1/100 of the default's.


def images(rng, rows, brightness=0.0):
    """Natural-ish uint8 images: a smooth per-image gradient, noise, and a brightness offset."""
    ramp = np.linspace(0, 60, SHAPE[0], dtype=np.float32)[None, :, None, None]
    level = rng.normal(100, 15, size=(rows, 1, 1, 1))
    noise = rng.normal(0, 20, size=(rows, *SHAPE))
    return np.clip(level + ramp + noise + brightness, 0, 255).astype(np.uint8)


def probabilities(rng, rows):
    return rng.dirichlet([2, 2, 2], size=rows)


@pytest.fixture(scope="module")
def pooled_reference():
    rng = np.random.default_rng(0)
    x, p = images(rng, 1200), probabilities(rng, 1200)
    reference = DriftReference.fit(
        x, p, window_size=200, n_simulations=60, reduction=gangplank.pool_images((4, 4)), seed=1
    )
    return reference, x, p


# -- each reduction against numpy ---------------------------------------------------
def test_pooling_is_the_mean_of_each_cell_computed_by_hand():
    image = np.arange(16, dtype=np.uint8).reshape(1, 4, 4)
    pooled = gangplank.pool_images((2, 2)).fitted(image).apply(image)
    # cells: rows 0-1 x cols 0-1 = (0 + 1 + 4 + 5) / 4, ...
    assert pooled.tolist() == [[2.5, 4.5, 10.5, 12.5]]
    as_floats = gangplank.pool_images((2, 2)).fitted(image).apply(image.astype(np.float32) - 0.5)
    assert as_floats.tolist() == [[2.0, 4.0, 10.0, 12.0]]


def test_pooling_splits_uneven_sizes_and_keeps_channels():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(3, 5, 7, 2), dtype=np.uint8)
    expected = np.empty((3, 2, 3, 2))
    for i, (top, bottom) in enumerate([(0, 2), (2, 5)]):
        for j, (left, right) in enumerate([(0, 2), (2, 4), (4, 7)]):
            expected[:, i, j, :] = x[:, top:bottom, left:right, :].astype(np.float64).mean(axis=(1, 2))
    pooling = gangplank.pool_images((2, 3)).fitted(x)
    assert pooling.n_features_out == 12
    np.testing.assert_allclose(pooling.apply(x), expected.reshape(3, -1), rtol=1e-6)
    # The same images as float32, flattened per row: the same features (the uint8 path sums in 16 bits).
    np.testing.assert_allclose(pooling.apply(x.reshape(3, -1).astype(np.float32)), expected.reshape(3, -1), rtol=1e-6)


def test_the_projection_is_a_product_with_a_sparse_random_matrix():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 1000)).astype(np.float32)
    projection = gangplank.random_projection(16, seed=3).fitted(x)
    matrix = np.zeros((1000, 16))
    components = np.repeat(np.arange(16), projection.indices.shape[1])
    np.add.at(matrix, (projection.indices.ravel(), components), projection.weights.ravel().astype(np.float64))
    assert projection.indices.shape == (16, round(np.sqrt(1000)))
    assert set(np.unique(np.abs(projection.weights))) == {np.float32(1 / np.sqrt(projection.indices.shape[1]))}
    np.testing.assert_allclose(projection.apply(x), x.astype(np.float64) @ matrix, rtol=1e-4, atol=1e-4)
    again = gangplank.random_projection(16, seed=3).fitted(x)
    other = gangplank.random_projection(16, seed=4).fitted(x)
    assert np.array_equal(again.apply(x), projection.apply(x))
    assert not np.allclose(other.apply(x), projection.apply(x))


def test_a_subset_keeps_the_flat_features_it_names():
    x = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    subset = gangplank.feature_subset([11, 0, 5]).fitted(x)
    assert subset.apply(x).tolist() == [[11, 0, 5], [23, 12, 17]]
    with pytest.raises(ValueError, match=r"indices must be in \[0, 12\)"):
        gangplank.feature_subset([12]).fitted(x)


def test_bad_arguments_are_refused_with_clear_errors():
    with pytest.raises(ValueError, match="two positive whole numbers"):
        gangplank.pool_images((8,))
    with pytest.raises(ValueError, match="at least 8x8 pixels"):
        gangplank.pool_images((8, 8)).fitted(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="positive whole number"):
        gangplank.random_projection(0)
    with pytest.raises(ValueError, match="non-empty list"):
        gangplank.feature_subset([])
    with pytest.raises(ValueError, match="not fitted yet"):
        gangplank.pool_images((2, 2)).apply(np.zeros((1, 4, 4)))


# -- fit and observe apply the same reduction ------------------------------------------
def test_fit_and_observe_reduce_the_raw_rows_the_same_way(pooled_reference):
    reference, x, p = pooled_reference
    assert reference.n_features == 4 * 4 * 3 and reference.reduction.input_shape == SHAPE
    # The reference rows observed raw land in exactly the reference's bins.
    window = reference.window_of(x, p)
    np.testing.assert_array_equal(window.input_counts, reference.profile.input_counts)
    np.testing.assert_array_equal(reference.reduce(x), reference.reduction.apply(x))
    with pytest.raises(ValueError, match="1728 values per row"):
        reference.window_of(np.zeros((2, 10, 10, 3)), p[:2])


def test_fit_refuses_what_a_reduction_cannot_take():
    x = np.zeros((300, 4, 4))
    p = np.full((300, 2), 0.5)
    with pytest.raises(TypeError, match="pool_images, feature_subset or random_projection"):
        DriftReference.fit(x, p, window_size=50, reduction=lambda rows: rows)
    table = np.array([["a", 1.0]] * 300, dtype=object)
    with pytest.raises(ValueError, match="not a table"):
        DriftReference.fit(table, p, window_size=50, reduction=gangplank.feature_subset([1]))


@pytest.mark.parametrize(
    "reduction",
    [gangplank.pool_images((4, 4)), gangplank.feature_subset(range(0, 1728, 9)), gangplank.random_projection(8)],
)
def test_the_reduction_is_saved_and_loaded_without_pickle(reduction, tmp_path):
    rng = np.random.default_rng(3)
    x, p = images(rng, 400), probabilities(rng, 400)
    reference = DriftReference.fit(x, p, window_size=100, n_simulations=10, reduction=reduction, false_alarm_rate=0.01)
    reference.save(tmp_path / "wide.npz")
    loaded = DriftReference.load(tmp_path / "wide.npz")
    header, _ = reference_file.read(tmp_path / "wide.npz")
    assert header["version"] == 4 and header["reduction"]["kind"] == reduction.kind
    assert loaded.reduction == reference.reduction and loaded.get_params() == reference.get_params()
    np.testing.assert_array_equal(loaded.reduce(x[:20]), reference.reduce(x[:20]))
    refit = DriftReference.fit(x, p, **loaded.get_params())
    assert refit.reduction == reference.reduction


def test_a_file_whose_projection_this_numpy_would_draw_differently_is_refused(tmp_path):
    rng = np.random.default_rng(4)
    x, p = images(rng, 300), probabilities(rng, 300)
    DriftReference.fit(
        x, p, window_size=100, n_simulations=10, false_alarm_rate=0.01, reduction=gangplank.random_projection(4)
    ).save(tmp_path / "r.npz")
    header, arrays = reference_file.read(tmp_path / "r.npz")
    header["reduction"]["fingerprint"] += 1
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with open(tmp_path / "tampered.npz", "wb") as handle:
        np.savez_compressed(handle, **arrays)
    with pytest.raises(ReferenceFormatError, match="draws the random projection differently"):
        DriftReference.load(tmp_path / "tampered.npz")


# -- detection on a wide image stream ------------------------------------------------------
def input_signals(reference, stream, p):
    reports = []
    with DriftMonitor(None, "wide", reference=reference, agent="wide", on_window=reports.append) as monitor:
        for at in range(0, stream.shape[0], 25):
            monitor.observe(stream[at : at + 25], p[at : at + 25])
    return [report.signals["input"] for report in reports]


def test_the_pooled_monitor_flags_a_brightness_shift_and_not_its_absence(pooled_reference):
    reference, _, _ = pooled_reference
    rng = np.random.default_rng(5)
    assert input_signals(reference, images(rng, 1000), probabilities(rng, 1000)) == [False] * 5
    assert input_signals(reference, images(rng, 1000, brightness=12), probabilities(rng, 1000)) == [True] * 5


# -- layer_features -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def functional_model():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((20,), name="pixels")
    hidden = keras.layers.Dense(6, activation="relu", name="embedding")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax", name="classes")(hidden)
    return keras.Model(inputs, outputs)


def test_layer_features_is_the_named_layers_output(functional_model):
    x = np.random.default_rng(6).normal(size=(300, 20)).astype(np.float32)
    embed = gangplank.layer_features(functional_model, "embedding", batch_size=64)
    kernel, bias = (np.asarray(w) for w in functional_model.get_layer("embedding").get_weights())
    np.testing.assert_allclose(embed(x), np.maximum(x @ kernel + bias, 0), rtol=1e-5, atol=1e-5)
    assert embed(x).shape == (300, 6) and embed.n_features == 6


def test_layer_features_of_a_sequential_model_and_one_it_cannot_read():
    import keras

    dense = [keras.layers.Dense(4, name="embedding"), keras.layers.Dense(2, activation="softmax")]
    built = keras.Sequential([keras.Input((5,)), *dense])
    x = np.random.default_rng(9).normal(size=(7, 5)).astype(np.float32)
    kernel, bias = (np.asarray(w) for w in built.get_layer("embedding").get_weights())
    np.testing.assert_allclose(gangplank.layer_features(built, "embedding")(x), x @ kernel + bias, rtol=1e-5, atol=1e-5)
    never_built = keras.Sequential([keras.layers.Dense(4, name="embedding"), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="needs a functional model, or a Sequential one built with an Input"):
        gangplank.layer_features(never_built, "embedding")


def test_a_bad_layer_name_is_refused_at_once_with_the_layer_names(functional_model):
    with pytest.raises(
        ValueError, match=r"no layer named 'embeding'; its layers are \['pixels', 'embedding', 'classes'\]"
    ):
        gangplank.layer_features(functional_model, "embeding")


def test_the_exporter_observes_the_layer_through_model_predict(functional_model):
    rng = np.random.default_rng(7)
    x_valid, x = rng.normal(size=(800, 20)).astype(np.float32), rng.normal(size=(400, 20)).astype(np.float32)
    embed = gangplank.layer_features(functional_model, "embedding")
    reference = DriftReference.fit(
        embed(x_valid),
        functional_model.predict(x_valid, verbose=0),
        window_size=200,
        n_simulations=20,
        false_alarm_rate=0.01,
    )
    with gangplank.ProductionDriftExporter(None, "layer", reference=reference, window_size=1000) as drift:
        out = functional_model.predict(
            drift.with_inputs(x, features=embed), batch_size=64, verbose=0, callbacks=[drift]
        )
        drift.flush()
        np.testing.assert_array_equal(drift.window.input_counts, reference.window_of(embed(x), out).input_counts)
        assert drift.window.input_rows == 400 and not any(drift.worker.errors.values())
        # Inputs that do not match the reference (raw pixels, 20 features for 6): logged and counted, never raised.
        functional_model.predict(drift.with_inputs(x), batch_size=100, verbose=0, callbacks=[drift])
        drift.flush()
        assert drift.worker.errors["callback"] == 4 and isinstance(drift.last_error, ValueError)
        assert drift.window.samples == 400


def embedding_reference(model, rng):
    """A reference fitted on the output of ``model``'s layer "embedding" (as a user fits one for feature_layer)."""
    x_valid = rng.normal(size=(800, 20)).astype(np.float32)
    embedded = gangplank.layer_features(model, "embedding")(x_valid)
    p = model.predict(x_valid, verbose=0)
    return DriftReference.fit(embedded, p, window_size=200, n_simulations=20, false_alarm_rate=0.01)


def test_feature_layer_on_the_callback_observes_the_layers_output(functional_model):
    """The callback builds the sub-model itself: what it observes is the layer's output, counted by hand."""
    import keras

    rng = np.random.default_rng(12)
    reference, x = embedding_reference(functional_model, rng), rng.normal(size=(300, 20)).astype(np.float32)
    retrained = keras.models.clone_model(functional_model)  # same layer names, other weights: another sub-model
    with gangplank.ProductionDriftExporter(
        None, "layer", reference=reference, window_size=1000, feature_layer="embedding"
    ) as drift:
        assert drift.feature_layer == "embedding"
        with pytest.raises(ValueError, match="both choose the features to monitor"):
            drift.with_inputs(x, features=gangplank.layer_features(functional_model, "embedding"))
        out = functional_model.predict(drift.with_inputs(x), batch_size=64, verbose=0, callbacks=[drift])
        drift.flush()
        embedded = gangplank.layer_features(functional_model, "embedding")(x)
        np.testing.assert_array_equal(drift.window.input_counts, reference.window_of(embedded, out).input_counts)
        assert drift.window.input_rows == 300 and not any(drift.worker.errors.values())
        out_b = retrained.predict(drift.with_inputs(x[:100]), batch_size=64, verbose=0, callbacks=[drift])
        drift.flush()
        embedded_b = gangplank.layer_features(retrained, "embedding")(x[:100])
        by_hand = reference.window_of(np.vstack([embedded, embedded_b]), np.vstack([out, out_b]))
        np.testing.assert_array_equal(drift.window.input_counts, by_hand.input_counts)
        stale = reference.window_of(np.vstack([embedded, embedded[:100]]), np.vstack([out, out_b]))
        assert not np.array_equal(stale.input_counts, by_hand.input_counts)  # the sub-model was rebuilt
        assert drift.window.input_rows == 400 and not any(drift.worker.errors.values())


def test_a_bad_feature_layer_is_logged_counted_and_never_breaks_predict(functional_model, caplog):
    rng = np.random.default_rng(13)
    reference, x = embedding_reference(functional_model, rng), rng.normal(size=(200, 20)).astype(np.float32)
    expected = functional_model.predict(x, batch_size=50, verbose=0)
    with gangplank.ProductionDriftExporter(
        None, "layer", reference=reference, window_size=1000, feature_layer="embeding"
    ) as drift:
        out = functional_model.predict(drift.with_inputs(x), batch_size=50, verbose=0, callbacks=[drift])
        drift.flush()
        np.testing.assert_allclose(out, expected, rtol=1e-6)
        assert "feature_layer='embeding'" in caplog.text and "has no layer named 'embeding'" in caplog.text
        assert drift.worker.errors["callback"] == 4 and isinstance(drift.last_error, ValueError)
        assert "no layer named 'embeding'" in str(drift.last_error)
        assert (drift.window.samples, drift.window.input_rows) == (200, 0)  # the outputs are still observed
        out = functional_model.predict(drift.with_inputs(x), batch_size=50, verbose=0, callbacks=[drift])
        drift.flush()
        np.testing.assert_allclose(out, expected, rtol=1e-6)
        assert drift.worker.errors["callback"] == 8 and drift.window.samples == 400
        assert caplog.text.count("ProductionDriftExporter(feature_layer='embeding')") == 1  # once, not per predict
    with pytest.raises(ValueError, match="feature_layer must be a layer's name"):
        gangplank.ProductionDriftExporter(None, "layer", reference=reference, feature_layer="")


@pytest.mark.slow  # forks a worker process
def test_the_process_worker_takes_raw_images_and_rings_only_the_reduced_features(pooled_reference):
    reference, _, _ = pooled_reference
    rng = np.random.default_rng(8)
    with DriftMonitor(None, "wide", reference=reference, agent="ring", worker="process") as monitor:
        assert monitor.worker.ring.n_features == reference.n_features == 48
        for brightness in (0, 12):
            stream, p = images(rng, 200, brightness), probabilities(rng, 200)
            for at in range(0, 200, 25):
                monitor.observe(stream[at : at + 25], p[at : at + 25])
            assert monitor.flush()
            assert monitor.last_report.signals["input"] is bool(brightness)
