"""Categorical inputs (issue 19): string, boolean and pandas categorical columns binned by category."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gangplank import DriftMonitor, DriftReference

pytestmark = pytest.mark.slow  # fits references on tabular frames, 3-4 s a module

BANDS = ["low", "mid", "high"]


def table(rng, rows, band_shares=(0.5, 0.3, 0.2), extra=None):
    bands = rng.choice(BANDS, size=rows, p=band_shares).astype(object)
    if extra is not None:
        bands[: int(rows * extra)] = "executive"  # a value the reference never saw
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, size=rows),
            "band": bands,
            "remote": rng.random(rows) < 0.3,
            "region": pd.Categorical(rng.choice(["north", "south"], size=rows)),
        }
    )
    p = rng.dirichlet([1, 1], size=rows)
    return frame, p


@pytest.fixture(scope="module")
def reference():
    frame, p = table(np.random.default_rng(0), 3000)
    return DriftReference.fit(frame, p, window_size=200, n_simulations=200)


def feature_counts(reference, frame, p, feature):
    window = reference.window_of(frame, p)
    return window.input_counts[feature, : reference.binner.n_bins[feature]]


def test_categories_are_learnt_most_frequent_first(reference):
    assert reference.categories.values == {1: ("low", "mid", "high"), 2: ("False", "True"), 3: ("north", "south")}
    assert reference.categories.names == ("age", "band", "remote", "region")
    assert reference.n_features == 4


def test_a_window_counts_each_category_and_unseen_values_apart(reference):
    frame, p = table(np.random.default_rng(1), 200, extra=0.1)
    counts = feature_counts(reference, frame, p, 1)
    expected = frame["band"].value_counts()
    assert counts.tolist() == [expected.get("low", 0), expected.get("mid", 0), expected.get("high", 0), 20]
    assert feature_counts(reference, frame, p, 2).tolist() == [int((~frame.remote).sum()), int(frame.remote.sum()), 0]
    region = frame["region"].astype(str).value_counts()
    assert feature_counts(reference, frame, p, 3).tolist() == [region["north"], region["south"], 0]


def test_missing_values_go_to_the_missing_bin(reference):
    frame, p = table(np.random.default_rng(2), 50)
    frame.loc[:9, "band"] = None
    window = reference.window_of(frame, p)
    assert window.input_counts[1, reference.binner.missing_column] == 10


def test_a_shift_in_category_shares_is_detected_and_no_shift_is_not(reference):
    rng = np.random.default_rng(3)
    same = reference.compare(reference.window_of(*table(rng, 200)))
    shifted = reference.compare(reference.window_of(*table(rng, 200, band_shares=(0.2, 0.3, 0.5))))
    unseen = reference.compare(reference.window_of(*table(rng, 200, extra=0.2)))
    assert not same.signals["input"]
    assert shifted.signals["input"] and int(np.argmax(shifted.input_psi)) == 1
    assert unseen.signals["input"] and int(np.argmax(unseen.input_psi)) == 1


def test_saved_and_loaded_with_its_categories(reference, tmp_path):
    reference.save(tmp_path / "tabular.npz")
    loaded = DriftReference.load(tmp_path / "tabular.npz")
    assert loaded.categories == reference.categories
    frame, p = table(np.random.default_rng(4), 200, extra=0.1)
    np.testing.assert_array_equal(loaded.window_of(frame, p).input_counts, reference.window_of(frame, p).input_counts)


def test_columns_must_match(reference):
    frame, p = table(np.random.default_rng(5), 20)
    with pytest.raises(ValueError, match="reference's columns"):
        reference.window_of(frame[["band", "age", "remote", "region"]], p)
    with pytest.raises(ValueError, match="must have 4 columns, got 3"):
        reference.window_of(frame[["age", "band", "remote"]], p)


def test_an_object_array_without_pandas_and_a_monitor():
    rng = np.random.default_rng(6)
    rows = 1000
    x = np.empty((rows, 2), dtype=object)
    x[:, 0] = rng.choice(["a", "b"], size=rows)
    x[:, 1] = rng.normal(size=rows)
    p = rng.dirichlet([1, 1], size=rows)
    reference = DriftReference.fit(x, p, window_size=100, n_simulations=50)
    assert reference.categories.values == {0: ("a", "b")} or reference.categories.values == {0: ("b", "a")}
    reports = []
    with DriftMonitor(None, "tabular", reference=reference, on_window=reports.append) as drift:
        drift.observe(x[:100], p[:100])
    assert reports[0].input_rows == 100
    a = reference.categories.values[0].index("a")
    assert reference.window_of(x[:100], p[:100]).input_counts[0, a] == int((x[:100, 0] == "a").sum())
