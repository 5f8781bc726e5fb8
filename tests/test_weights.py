"""The weight histogram: exact counts against numpy computed independently, and what the gateway shows."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from gangplank_devtools import value
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.exposition import generate_latest

from gangplank import HISTOGRAM_WEIGHT_BUCKETS_0_3, HISTOGRAM_WEIGHT_BUCKETS_1_0
from gangplank.weights import WeightHistogram, model_parameters

EDGES_0_3 = [-0.3, -0.25, -0.2, -0.15, -0.1, -0.05, 0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
EDGES_1_0 = [
    -1.0,
    -0.9,
    -0.8,
    -0.7,
    -0.6,
    -0.5,
    -0.4,
    -0.3,
    -0.2,
    -0.1,
    0.0,
    0.1,
    0.2,
    0.3,
    0.4,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    1.0,
]


def go_le(bound: float) -> str:
    """How the Pushgateway renders an ``le`` bound (Go's shortest float format)."""
    if math.isinf(bound):
        return "+Inf" if bound > 0 else "-Inf"
    text = repr(float(bound))
    return text.removesuffix(".0")


def reference(weights, buckets):
    """Independent expectation: np.sum(w <= b) over every weight, in float64."""
    w = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in weights]) if weights else np.zeros(0)
    with np.errstate(invalid="ignore"):
        total = float(np.sum(w))
    return {
        "buckets": {go_le(b): int(np.sum(w <= b)) for b in buckets} | {"+Inf": int(w.size)},
        "count": int(w.size),
        "sum": total,
    }


def trainable_arrays(model):
    return [keras.ops.convert_to_numpy(v) for v in model.trainable_weights]


def scraped_histogram(samples, name):
    buckets = {dict(labels)["le"]: v for (n, labels), v in samples.items() if n == name + "_bucket"}
    return {"buckets": buckets, "count": value(samples, name + "_count"), "sum": value(samples, name + "_sum")}


def test_public_bucket_constants():
    assert HISTOGRAM_WEIGHT_BUCKETS_0_3 == tuple(EDGES_0_3)
    assert HISTOGRAM_WEIGHT_BUCKETS_1_0 == tuple(EDGES_1_0)


# -- against a real model, through a real gateway -----------------------------------------
def test_histogram_of_a_real_model_matches_numpy(pushgateway, scrape, make_exporter, data):
    """An MNIST-sized Dense model (~100k weights), trained one epoch, histogram read back from the gateway."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(1)
    x = rng.random((256, 784), dtype=np.float32)
    y = rng.integers(0, 10, 256)
    exporter = make_exporter(pushgateway.address, "mnist", histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_0_3)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[exporter])
    evaluator = make_exporter(pushgateway.address, "mnist", histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_1_0)
    model.evaluate(x, y, verbose=0, callbacks=[evaluator])
    assert exporter.publisher.flush(15) and evaluator.publisher.flush(15)

    samples = scrape()
    weights = trainable_arrays(model)
    for name, buckets in (("gangplank_train_model_weights", EDGES_0_3), ("gangplank_test_model_weights", EDGES_1_0)):
        expected = reference(weights, buckets)
        got = scraped_histogram(samples, name)
        assert got["buckets"] == expected["buckets"]
        assert got["count"] == expected["count"] == model.count_params() == 101_770
        assert got["sum"] == pytest.approx(expected["sum"], rel=1e-9, abs=1e-9)
        assert got["sum"] != 0  # gangplank 0.5 showed 0 here
    train = scraped_histogram(samples, "gangplank_train_model_weights")["buckets"]
    assert "-0.3" in train and "0" in train and "0.05" in train  # Go format of the bounds
    assert train["0"] >= 128 + 10  # zero-initialised biases sit exactly on the le="0" edge


def test_weights_on_edges_nan_and_inf_through_the_gateway(pushgateway, scrape, make_exporter, data):
    """A float64 model with weights exactly on edges, a NaN and -Inf: counted, and read back from the gateway."""
    x, _ = data
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, dtype="float64")])
    model.compile(loss="mse")
    if keras.ops.convert_to_numpy(model.weights[0]).dtype != np.float64:
        pytest.skip("this backend has no float64 weights (JAX without x64); float32 edges: test_float32_*")
    kernel = np.array([[0.05, -0.3, 0.3], [np.nan, -np.inf, 0.0]], dtype=np.float64)
    bias = np.array([-0.05, 0.25, 7.0], dtype=np.float64)
    model.set_weights([kernel, bias])
    exporter = make_exporter(pushgateway.address, "edges", histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_0_3)
    model.evaluate(x[:, :2], np.zeros((len(x), 3)), verbose=0, callbacks=[exporter])
    assert exporter.publisher.flush(15)

    got = scraped_histogram(scrape(), "gangplank_test_model_weights")
    assert got["buckets"]["-0.3"] == 2  # -Inf and -0.3
    assert got["buckets"]["-0.05"] == 3
    assert got["buckets"]["0"] == 4
    assert got["buckets"]["0.05"] == 5  # 0.05 sits on its edge
    assert got["buckets"]["0.25"] == 6
    assert got["buckets"]["0.3"] == 7
    assert got["buckets"]["+Inf"] == 9  # 7.0 and the NaN
    assert got["count"] == 9
    assert math.isnan(got["sum"])
    assert math.isnan(value(scrape(), "gangplank_test_loss"))


def test_model_without_weights(pushgateway, scrape, make_exporter, data):
    x, y = data
    model = keras.Sequential([keras.Input((8,)), keras.layers.Activation("softmax")])
    model.compile(loss="sparse_categorical_crossentropy")
    exporter = make_exporter(pushgateway.address, "empty", histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_0_3)
    model.evaluate(x, y, verbose=0, callbacks=[exporter])
    assert exporter.publisher.flush(15)
    samples = scrape()
    got = scraped_histogram(samples, "gangplank_test_model_weights")
    assert got["buckets"] == {go_le(b): 0 for b in EDGES_0_3} | {"+Inf": 0}
    assert got["count"] == 0 and got["sum"] == 0
    assert value(samples, "gangplank_test_model_parameters_count") == 0


def test_bounds_are_written_as_the_gateway_writes_them(pushgateway, make_sender):
    """The gateway (Go) rewrites every ``le``; ours must already read the same, so a scrape shows the same series."""
    import urllib.request

    from gangplank.weights import go_float

    bounds = [-1234567.0, -0.3, 0.0, 1e-5, 0.00015, 0.05, 1.0, 100.0, 999999.0, 1e6, 2.5e7, 0.30000000000000004]
    histogram = WeightHistogram.from_arrays([np.zeros(3)], bounds)
    ours = [s.labels["le"] for s in histogram.to_metric("gangplank_test_bounds", "b").samples if "le" in s.labels]
    sender = make_sender(pushgateway.address, "bounds")
    sender.submit("test", [histogram.to_metric("gangplank_test_bounds", "b")])
    assert sender.flush(15)
    with urllib.request.urlopen(pushgateway.url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    gateways = [
        line.split('le="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("gangplank_test_bounds_bucket")
    ]
    assert sorted(ours) == sorted(gateways) and len(ours) == len(bounds) + 1
    assert ours == [go_float(b) for b in sorted(bounds)] + ["+Inf"]


# -- which variables are "the weights" ------------------------------------------------------
@pytest.mark.parametrize("freeze", ["after_build", "at_construction"])
def test_batchnorm_statistics_excluded_frozen_layers_included(freeze, data):
    x, y = data
    keras.utils.set_random_seed(2)
    first = keras.layers.Dense(16, trainable=(freeze != "at_construction"))
    model = keras.Sequential(
        [keras.Input((8,)), first, keras.layers.BatchNormalization(), keras.layers.Dense(2, activation="softmax")]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)  # moves the BatchNorm statistics away from 0 and 1
    # independent list: every variable except BatchNorm's moving statistics
    expected = [
        keras.ops.convert_to_numpy(v)
        for layer in model.layers
        for v in layer.weights
        if not (isinstance(layer, keras.layers.BatchNormalization) and "moving" in v.path)
    ]
    if freeze == "after_build":
        first.trainable = False
    assert not first.trainable_weights  # frozen either way

    params = model_parameters(model)
    assert (
        sum(int(np.prod(v.shape)) for v in params) == model.count_params() - 2 * 16 == 8 * 16 + 16 + 2 * 16 + 16 * 2 + 2
    )
    histogram = WeightHistogram.from_model(model, HISTOGRAM_WEIGHT_BUCKETS_1_0)
    want = reference(expected, EDGES_1_0)
    buckets = [go_le(b) for b in EDGES_1_0] + ["+Inf"]
    assert dict(zip(buckets, histogram.cumulative_counts.tolist(), strict=True)) == want["buckets"]
    assert histogram.count == want["count"]
    assert histogram.sum == pytest.approx(want["sum"], rel=1e-12)
    moving = {id(v) for v in model.layers[1].non_trainable_weights}
    assert moving and not moving & {id(v) for v in params}


def test_shared_layer_counted_once():
    shared = keras.layers.Dense(4)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, shared(shared(inputs)))
    assert len(model_parameters(model)) == 2
    assert WeightHistogram.from_model(model, HISTOGRAM_WEIGHT_BUCKETS_0_3).count == model.count_params() == 20


def test_nested_model_weights_included():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    outer = keras.Sequential([keras.Input((4,)), inner, keras.layers.Dense(2)])
    assert WeightHistogram.from_model(outer, HISTOGRAM_WEIGHT_BUCKETS_0_3).count == outer.count_params() == 15 + 8


# -- from_arrays edge cases -------------------------------------------------------------------
def test_values_on_edges_counted_in_that_edge():
    values = np.array([-0.3, 0.05, 0.0, -0.0, 0.3, -0.05, 0.25], dtype=np.float64)
    h = WeightHistogram.from_arrays([values], HISTOGRAM_WEIGHT_BUCKETS_0_3)
    got = dict(zip([go_le(b) for b in EDGES_0_3] + ["+Inf"], h.cumulative_counts.tolist(), strict=False))
    assert got["-0.3"] == 1
    assert got["-0.05"] == 2
    assert got["0"] == 4  # 0.0 and -0.0
    assert got["0.05"] == 5
    assert got["0.25"] == 6
    assert got["0.3"] == 7 == got["+Inf"]
    assert got == reference([values], EDGES_0_3)["buckets"]


def test_float32_weights_compared_exactly():
    """float32 values are compared by their exact value (as float64), never with float32-rounded edges.

    float32(0.05) is 0.0500000007..., above the edge 0.05, so it is not in le="0.05";
    float32(-0.3) is -0.3000000119..., below -0.3, so it is in le="-0.3"; 0.25 and
    -0.25 are exact in float32 and sit on their edges.
    """
    values = np.array([0.05, -0.3, 0.25, -0.25, 0.0, 0.1, 0.3, 1.5], dtype=np.float32)
    h = WeightHistogram.from_arrays([values], HISTOGRAM_WEIGHT_BUCKETS_0_3)
    got = dict(zip([go_le(b) for b in EDGES_0_3] + ["+Inf"], h.cumulative_counts.tolist(), strict=False))
    assert got == reference([values], EDGES_0_3)["buckets"]
    assert got["-0.3"] == 1 and got["-0.25"] == 2 and got["0"] == 3
    assert got["0.05"] == 3  # float32(0.05) > 0.05
    assert h.sum == pytest.approx(float(np.sum(values.astype(np.float64))), rel=1e-15)


def test_nan_and_infinities():
    values = np.array([np.nan, 0.1, np.nan, -np.inf, np.inf], dtype=np.float32)
    h = WeightHistogram.from_arrays([values], [-1.0, 0.0, 1.0])
    assert h.cumulative_counts.tolist() == [1, 1, 2, 5]
    assert h.count == 5
    assert math.isnan(h.sum)
    only_inf = WeightHistogram.from_arrays([np.array([np.inf, 0.5])], [0.0])
    assert only_inf.cumulative_counts.tolist() == [0, 2] and only_inf.sum == math.inf


def test_no_arrays_and_empty_arrays():
    for arrays in ([], [np.zeros(0, dtype=np.float32)], [np.zeros((0, 3))]):
        h = WeightHistogram.from_arrays(arrays, HISTOGRAM_WEIGHT_BUCKETS_0_3)
        assert h.cumulative_counts.tolist() == [0] * 14 and h.count == 0 and h.sum == 0.0


def test_bucket_bounds_normalised():
    unsorted = WeightHistogram.from_arrays([np.array([0.5, -0.5])], [1.0, 0.0, 0.0, float("inf")])
    assert unsorted.upper_bounds == (0.0, 1.0)
    assert unsorted.cumulative_counts.tolist() == [1, 2, 2]
    with pytest.raises(ValueError):
        WeightHistogram.from_arrays([np.zeros(2)], [0.0, float("nan")])


def test_exposition_has_sum_and_count_with_negative_bounds():
    h = WeightHistogram.from_arrays([np.array([-0.4, 0.1, 0.2])], HISTOGRAM_WEIGHT_BUCKETS_0_3)

    class One:
        def collect(self):
            return [h.to_metric("gangplank_test_model_weights", "weights")]

    text = generate_latest(One()).decode()
    assert 'gangplank_test_model_weights_bucket{le="-0.3"} 1.0' in text
    assert 'gangplank_test_model_weights_bucket{le="+Inf"} 3.0' in text
    assert "gangplank_test_model_weights_count 3.0" in text
    sum_line = [line for line in text.splitlines() if line.startswith("gangplank_test_model_weights_sum ")]
    assert len(sum_line) == 1 and float(sum_line[0].split()[1]) == pytest.approx(-0.1)
    assert "# TYPE gangplank_test_model_weights histogram" in text


finite = st.floats(min_value=-2.0, max_value=2.0, allow_nan=False, width=64)
special = st.sampled_from([float("nan"), float("inf"), -float("inf"), *EDGES_0_3, *EDGES_1_0, -0.0])


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.one_of(finite, special), max_size=60),
    dtype=st.sampled_from([np.float64, np.float32, np.float16]),
    buckets=st.sampled_from([EDGES_0_3, EDGES_1_0, [0.0], []]),
    split=st.integers(0, 60),
)
def test_counts_match_numpy_reference(values, dtype, buckets, split):
    array = np.array(values, dtype=np.float64).astype(dtype)
    parts = [array[:split], array[split:]]
    h = WeightHistogram.from_arrays(parts, buckets)
    want = reference(parts, buckets)
    assert h.cumulative_counts.tolist() == [want["buckets"][go_le(b)] for b in buckets] + [want["count"]]
    assert h.count == want["count"]
    if math.isnan(want["sum"]):
        assert math.isnan(h.sum)
    else:
        assert h.sum == pytest.approx(want["sum"], rel=1e-12, abs=1e-12)
