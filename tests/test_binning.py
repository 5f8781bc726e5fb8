"""FeatureBinner: counts, edges, NaN/Inf, constant and zero-inflated features, and a slow reference."""

from __future__ import annotations

import numpy as np
import pytest

from gangplank._drift import drift_statistics as ds
from gangplank._drift.binning import FeatureBinner


def mixed_data(rng, rows):
    """Columns of different shapes: normal, exponential, zero-inflated, small integers, pixels."""
    return np.column_stack(
        [
            rng.normal(size=rows),
            rng.normal(5, 100, size=rows),
            rng.exponential(size=rows),
            (rng.random(rows) < 0.1) * rng.random(rows),
            rng.integers(0, 5, size=rows),
            np.where(rng.random(rows) < 0.7, 0, rng.integers(1, 256, size=rows)) / 255.0,
        ]
    ).astype(np.float32)


def derived_edges(binner: FeatureBinner, feature: int) -> np.ndarray:
    """The value where each bin of ``feature`` starts (bins 1 .. n_bins-1), from the lookup table."""
    starts = np.flatnonzero(np.diff(binner.lookup[feature].astype(int)) > 0) + 1
    return binner.low[feature].astype(np.float64) + starts / binner.scale[feature].astype(np.float64)


def slow_count(binner: FeatureBinner, x: np.ndarray) -> np.ndarray:
    """Per-feature ``np.searchsorted`` on the derived edges: the independent reference."""
    counts = np.zeros((binner.n_features, binner.n_columns), dtype=np.int64)
    for feature in range(binner.n_features):
        column = x[:, feature].astype(np.float64)
        missing = np.isnan(column)
        bins = np.searchsorted(derived_edges(binner, feature), column[~missing], side="right")
        counts[feature] += np.bincount(bins, minlength=binner.n_columns)
        counts[feature, binner.missing_column] += missing.sum()
    return counts


def away_from_edges(binner: FeatureBinner, x: np.ndarray, margin: float = 1e-4) -> np.ndarray:
    """``x`` with values within ``margin`` grid cells of a bin edge (not on it) moved half a cell up.

    The binner computes cells in float32; a value a rounding error from an
    edge may land on either side of it (consistently, within the binner), which
    float64 ``searchsorted`` cannot reproduce. Values elsewhere are untouched.
    """
    x = x.astype(np.float64)
    for feature in range(binner.n_features):
        edges = derived_edges(binner, feature)
        if edges.size == 0:
            continue
        gap = np.abs(x[:, feature, None] - edges[None, :]).min(axis=1) * binner.scale[feature]
        near = (gap > 0) & (gap < margin)  # values exactly on an edge stay: they must go up
        x[near, feature] += 0.5 / binner.scale[feature]
    return x


# -- totals and shapes -----------------------------------------------------------
def test_counts_sum_to_the_rows_of_every_feature():
    rng = np.random.default_rng(0)
    binner = FeatureBinner.fit(mixed_data(rng, 3000))
    window = mixed_data(rng, 257)
    window[::7, 2] = np.nan
    window[::5, 0] = np.inf
    counts = binner.count(window)
    assert counts.shape == (6, binner.n_columns)
    assert counts.sum(axis=1).tolist() == [257] * 6
    assert np.all(binner.n_bins <= binner.n_columns - 1)
    assert np.all(counts[~binner.valid_columns()] == 0)


def test_count_matches_a_slow_per_feature_searchsorted_on_random_data():
    rng = np.random.default_rng(1)
    for width_bins, quantile_bins in [(10, 10), (1, 20), (20, 1), (7, 3)]:
        binner = FeatureBinner.fit(mixed_data(rng, 5000), width_bins, quantile_bins)
        window = away_from_edges(binner, mixed_data(rng, 2000) * rng.uniform(0.8, 1.2, size=6).astype(np.float32))
        window[rng.random(window.shape) < 0.01] = np.nan
        np.testing.assert_array_equal(
            binner.count(window), slow_count(binner, window), err_msg=f"{width_bins}+{quantile_bins}"
        )


def test_the_finite_fast_path_counts_what_the_slow_per_feature_searchsorted_counts():
    rng = np.random.default_rng(2)
    binner = FeatureBinner.fit(mixed_data(rng, 5000))
    window = away_from_edges(binner, mixed_data(rng, 1000) * rng.uniform(0.5, 1.5, size=6).astype(np.float32))
    assert np.isfinite(window).all()
    np.testing.assert_array_equal(binner.count(window, finite=True), slow_count(binner, window))


@pytest.mark.parametrize("features", [6, 3_300])  # ids fit uint16 / need int32 (3,300 features x 20 columns)
def test_counts_are_the_same_whatever_the_lookup_table_s_id_type(features):
    rng = np.random.default_rng(4)
    binner = FeatureBinner.fit(np.tile(mixed_data(rng, 400), (1, features // 6)))
    window = np.tile(mixed_data(rng, 30), (1, features // 6))
    window[::4, -1] = np.nan
    table = binner._global_table
    assert table.dtype == (np.uint16 if binner.n_features * binner.n_columns <= 65_536 else np.int32)
    wanted = slow_count(binner, away_from_edges(binner, window))
    np.testing.assert_array_equal(binner.count(away_from_edges(binner, window)), wanted)


def test_bins_are_monotone_in_the_value():
    rng = np.random.default_rng(2)
    binner = FeatureBinner.fit(mixed_data(rng, 2000))
    values = np.sort(np.concatenate([mixed_data(rng, 500), np.linspace(-1e3, 1e3, 2001)[:, None].repeat(6, 1)]), axis=0)
    cells = binner.cells(values.astype(np.float32))
    bins = np.take_along_axis(binner.lookup.T, cells, axis=0)
    assert np.all(np.diff(bins.astype(int), axis=0) >= 0)


# -- edges ------------------------------------------------------------------
def test_a_value_on_an_edge_lands_in_the_same_bin_in_reference_and_window():
    # Integer data: the equal-width edges of 0..10 fall on the values themselves.
    rng = np.random.default_rng(3)
    reference = rng.integers(0, 11, size=(4000, 3)).astype(np.float64)
    binner = FeatureBinner.fit(reference)
    edges = [derived_edges(binner, f) for f in range(3)]
    on_edges = np.column_stack([np.resize(e.astype(np.float32), 300) for e in edges])  # exact float32 edge values
    for dtype in (np.float64, np.float32, np.int64):
        window = reference[:500].astype(dtype)
        np.testing.assert_array_equal(binner.count(window), binner.count(reference[:500]))
    # The same edge value, seen in a large reference and in a window of one row, falls in one bin.
    big = binner.count(on_edges)
    single = sum(binner.count(on_edges[i : i + 1]) for i in range(on_edges.shape[0]))
    np.testing.assert_array_equal(big, single)
    # A value exactly on an edge starts the upper bin, as searchsorted(side="right") puts it.
    np.testing.assert_array_equal(big, slow_count(binner, on_edges))
    np.testing.assert_array_equal(binner.count(reference), slow_count(binner, reference))
    # And the reference profile of the data compares as identical to a window of the same rows.
    counts = binner.count(reference)
    assert np.all(ds.psi(counts, counts, binner.valid_columns()) == 0)


@pytest.mark.slow  # fits a reference, about 4 s
def test_edge_values_through_the_reference_and_the_exporter_path_agree():
    from gangplank import DriftReference

    rng = np.random.default_rng(4)
    x = rng.integers(0, 11, size=(2000, 4)).astype(np.float64)
    p = rng.dirichlet([1, 1], size=2000)
    reference = DriftReference.fit(x, p, window_size=100, n_simulations=50)
    window = reference.window_of(x, p)  # float64 in, as_inputs makes float32
    np.testing.assert_array_equal(window.input_counts, reference.profile.input_counts)
    assert np.all(reference.compare(window).input_psi == 0)


# -- NaN, Inf, constants ----------------------------------------------------------
def test_nan_goes_to_the_missing_column_and_inf_to_the_outermost_bins():
    rng = np.random.default_rng(5)
    binner = FeatureBinner.fit(rng.normal(size=(1000, 2)))
    window = np.array([[np.nan, np.inf], [np.nan, -np.inf], [np.inf, np.nan], [-np.inf, 0.0]], dtype=np.float32)
    counts = binner.count(window)
    missing = binner.missing_column
    top = binner.n_bins - 1
    assert counts[0, missing] == 2 and counts[1, missing] == 1
    assert counts[0, top[0]] == 1 and counts[0, 0] == 1
    assert counts[1, top[1]] == 1 and counts[1, 0] == 1 + (binner.count(np.zeros((1, 2)))[1, 0])
    # values beyond the reference range go to the outermost bins too
    far = binner.count(np.array([[1e30, -1e30]], dtype=np.float32))
    assert far[0, top[0]] == 1 and far[1, 0] == 1


def test_reference_never_fills_the_missing_column_and_fit_ignores_non_finite_values():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(1000, 3))
    x[::10, 1] = np.nan
    x[::11, 2] = np.inf
    binner = FeatureBinner.fit(x)
    clean = FeatureBinner.fit(np.where(np.isfinite(x), x, 0.0)[:, :1])
    assert np.isfinite(binner.low).all() and np.isfinite(binner.scale).all()
    assert binner.low[0] == clean.low[0]
    assert binner.count(rng.normal(size=(50, 3)))[:, binner.missing_column].sum() == 0


def test_a_constant_feature_shows_any_change():
    binner = FeatureBinner.fit(np.column_stack([np.full(500, 3.0), np.linspace(0, 1, 500)]))
    same = binner.count(np.array([[3.0, 0.5]] * 10))
    assert same[0].max() == 10
    for other in (3.1, 2.9, 3.01, 2.99):
        moved = binner.count(np.array([[other, 0.5]] * 10))
        assert moved[0].argmax() != same[0].argmax(), other
        assert ds.psi(moved[:1], same[:1])[0] > 1.0


def test_an_all_nan_feature_is_usable():
    x = np.column_stack([np.full(100, np.nan), np.arange(100.0)])
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        binner = FeatureBinner.fit(x)
    counts = binner.count(np.array([[np.nan, 5.0], [1.0, 5.0]]))
    assert counts.sum(axis=1).tolist() == [2, 2]
    assert counts[0, binner.missing_column] == 1


# -- zero-inflated features ---------------------------------------------------------
def test_equal_width_bins_keep_zero_inflated_features_informative():
    rng = np.random.default_rng(7)
    x = (rng.random((5000, 4)) < 0.1).astype(np.float32)  # 90 % zeros, 10 % ones
    pixels = np.where(rng.random((5000, 1)) < 0.8, 0, rng.random((5000, 1))).astype(np.float32)
    x = np.hstack([x, pixels])
    binner = FeatureBinner.fit(x)
    reference = binner.count(x)
    inverted = binner.count(1 - x[:200])
    assert np.all(
        binner.count(np.zeros((1, 5)))[:, :-1].argmax(axis=1) != binner.count(np.ones((1, 5)))[:, :-1].argmax(axis=1)
    )
    assert np.all(ds.psi(inverted, reference, binner.valid_columns()) > 1.0)
    assert np.all(ds.binned_ks(inverted, reference, binner.valid_columns()) > 0.5)
    # quantile bins alone collapse on the zeros; the equal-width bins are what keep 0 and 1 apart
    quantile_only = FeatureBinner.fit(x, width_bins=1, quantile_bins=10)
    assert np.all(quantile_only.n_bins <= binner.n_bins)


def test_fit_rejects_impossible_bin_numbers():
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match="between 1 and grid"):
        FeatureBinner.fit(x, width_bins=0)
    with pytest.raises(ValueError, match="at most 255"):
        FeatureBinner.fit(x, width_bins=200, quantile_bins=200, grid=1024)
