"""Log keys that are not Prometheus names: sanitised by the documented rule, all pushed, none lost."""

from __future__ import annotations

import logging
import math
import re

import keras
import numpy as np
import pytest
from gangplank_devtools import value
from hypothesis import given, settings
from hypothesis import strategies as st
from keras import ops

from gangplank.naming import sanitise_name, unique_names
from tests.gateway_tools import gangplank_warnings

VALID = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


@pytest.mark.parametrize(
    "key, name",
    [
        ("loss", "loss"),
        ("val_accuracy", "val_accuracy"),
        ("f1-score", "f1_score"),
        ("top 5 acc", "top_5_acc"),
        ("précision", "pr_cision"),
        ("准确率", "___"),
        ("5acc", "_5acc"),
        ("", "_"),
        ("a:b", "a:b"),
        ("a.b/c", "a_b_c"),
    ],
)
def test_sanitise_name(key, name):
    assert sanitise_name(key) == name


def test_colliding_keys_get_numbered_suffixes():
    assert unique_names(["f1-score", "f1 score", "f1.score"]) == {
        "f1-score": "f1_score",
        "f1 score": "f1_score_2",
        "f1.score": "f1_score_3",
    }


def test_valid_key_keeps_its_name_whatever_comes_first():
    """A user's "f1_score" must not become f1_score_2 because "f1-score" was logged before it."""
    assert unique_names(["f1-score", "f1_score"]) == {"f1-score": "f1_score_2", "f1_score": "f1_score"}
    assert unique_names(["a b", "a_b_2", "a_b"]) == {"a b": "a_b_3", "a_b_2": "a_b_2", "a_b": "a_b"}


def test_reserved_names_are_avoided():
    assert unique_names(["running", "epochs count"], reserved={"running", "epochs_count"}) == {
        "running": "running_2",
        "epochs count": "epochs_count_2",
    }


@pytest.mark.slow  # 300 generated cases, about 6 s
@settings(max_examples=300, deadline=None)
@given(
    keys=st.lists(st.text(alphabet=st.sampled_from("ab_1 -:é.准"), max_size=6), max_size=12),
    reserved=st.sets(st.sampled_from(["a", "b", "a_2", "running", "_", "a_b"]), max_size=4),
)
def test_unique_names_properties(keys, reserved):
    names = unique_names(keys, reserved=reserved)
    assert set(names) == set(keys)
    assert all(VALID.match(n) for n in names.values())
    assert len(set(names.values())) == len(names)  # distinct
    assert not set(names.values()) & reserved
    for key in set(keys):
        if VALID.match(key) and key not in reserved:
            assert names[key] == key


def constant_metric(name, constant):
    def fn(y_true, y_pred):
        return ops.mean(y_pred) * 0.0 + constant

    return keras.metrics.MeanMetricWrapper(fn, name=name)


def test_awkward_log_keys_and_non_finite_values_all_reach_the_gateway(
    pushgateway, scrape, make_exporter, make_model, data, caplog
):
    caplog.set_level(logging.WARNING, logger="gangplank")
    x, y = data
    metrics = [
        "accuracy",
        constant_metric("f1-score", 0.5),
        constant_metric("f1 score", 0.25),
        constant_metric("f1_score", 0.125),
        constant_metric("top 5 acc", 0.75),
        constant_metric("précision", 0.375),
        constant_metric("准确率", 0.625),
        constant_metric("running", 0.875),  # collides with a built-in name
        constant_metric("model_weights_count", 0.9375),  # collides with a histogram sample
        constant_metric("nan metric", float("nan")),
        constant_metric("inf metric", float("inf")),
        constant_metric("ninf metric", float("-inf")),
    ]
    model = make_model(metrics=metrics)
    exporter = make_exporter(pushgateway.address, "names", histogram_buckets=[-0.1, 0.0, 0.1])
    model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[exporter])
    assert exporter.publisher.flush(15)
    assert exporter.publisher.last_error is None  # no HTTP 400
    assert not gangplank_warnings(caplog, pushgateway.address)

    samples = scrape()

    def get(name):
        return value(samples, "gangplank_train_" + name)

    assert get("f1_score") == 0.125  # the valid key keeps its name
    assert {get("f1_score_2"), get("f1_score_3")} == {0.5, 0.25}
    assert get("top_5_acc") == 0.75
    assert get("pr_cision") == 0.375
    assert get("___") == 0.625
    assert get("running_2") == 0.875 and get("running") == 0  # the built-in keeps its meaning
    assert get("model_weights_count_2") == 0.9375
    assert get("model_weights_count") == model.count_params()
    assert math.isnan(get("nan_metric"))
    assert get("inf_metric") == math.inf
    assert get("ninf_metric") == -math.inf
    assert get("epochs_count") == 2


class AddLogs(keras.callbacks.Callback):
    """Puts extra keys into the epoch logs, as a user callback placed before the exporter may."""

    def __init__(self, extra):
        super().__init__()
        self.extra = extra

    def on_epoch_end(self, epoch, logs=None):
        logs.update(self.extra)


def test_log_values_of_other_types(pushgateway, scrape, make_exporter, make_model, data, caplog):
    caplog.set_level(logging.WARNING, logger="gangplank")
    x, y = data
    extra = {
        "np float": np.float32(0.5),
        "np int": np.int64(3),
        "flag": True,
        "zero-d array": np.array(2.5),
        "one element": np.array([1.5]),
        "vector": np.array([1.0, 2.0]),  # one sample per class
        "matrix": np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64),  # by row and column
        "cube": np.zeros((2, 2, 2)),  # skipped, with one warning
        "empty": np.array([]),  # skipped
        "note": "text",  # skipped
        "none": None,  # skipped
    }
    exporter = make_exporter(pushgateway.address, "types")
    make_model().fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[AddLogs(extra), exporter])
    assert exporter.publisher.flush(15)
    samples = scrape()
    assert value(samples, "gangplank_train_np_float") == 0.5
    assert value(samples, "gangplank_train_np_int") == 3
    assert value(samples, "gangplank_train_flag") == 1
    assert value(samples, "gangplank_train_zero_d_array") == 2.5
    assert value(samples, "gangplank_train_one_element") == 1.5
    assert {dict(lab)["class"]: v for (n, lab), v in samples.items() if n == "gangplank_train_vector"} == {
        "0": 1.0,
        "1": 2.0,
    }
    matrix = {
        (dict(lab)["row"], dict(lab)["column"]): v for (n, lab), v in samples.items() if n == "gangplank_train_matrix"
    }
    assert matrix == {(str(r), str(c)): float(3 * r + c + 1) for r in range(2) for c in range(3)}
    present = {n for n, _ in samples}
    assert not present & {
        "gangplank_train_cube",
        "gangplank_train_empty",
        "gangplank_train_note",
        "gangplank_train_none",
    }
    assert "gangplank_train_loss" in present
    warnings = [r.getMessage() for r in caplog.records if r.name == "gangplank"]
    assert len(warnings) == 1 and "'cube'" in warnings[0] and "(2, 2, 2)" in warnings[0], (
        warnings
    )  # once, over 2 epochs
