"""The compiled binning kernel counts exactly what the numpy path counts and sums what numpy sums, and the
numpy path takes over where the kernel is not available."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from gangplank import DriftMonitor, DriftReference
from gangplank._drift import binning_kernel
from gangplank._drift.binning import FeatureBinner
from gangplank._drift.compiled import lazy_kernel
from gangplank._drift.window import Window
from tests.test_binning import away_from_edges, mixed_data, slow_count
from tests.test_drift_quality import generate


@pytest.fixture(scope="module")
def binner():
    return FeatureBinner.fit(mixed_data(np.random.default_rng(0), 3000))


@pytest.fixture
def without_kernel(monkeypatch):
    """The state of a process where numba could not be imported: :func:`count_and_sum` returns None."""
    monkeypatch.setattr(binning_kernel, "kernel", lambda: None)


def kernel_counts(binner, x):
    counts = np.zeros((binner.n_features, binner.n_columns), dtype=np.int64)
    sums = binning_kernel.count_and_sum(binner, x, counts)
    assert sums is not None, "the kernel did not compile"
    return counts, sums


def hostile(rng, rows):
    """Mixed data stretched beyond the reference range, with NaN, +Inf and -Inf sprinkled in."""
    x = mixed_data(rng, rows) * rng.uniform(0.5, 3.0, size=6).astype(np.float32) - 1.0
    for value, share in ((np.nan, 0.03), (np.inf, 0.01), (-np.inf, 0.01)):
        x[rng.random(x.shape) < share] = value
    return x


def plain_sums(x):
    """Sum, sum of squares, count of the finite values and count of the others, written out in numpy."""
    values = np.asarray(x, dtype=np.float64).ravel()
    finite = values[np.isfinite(values)]
    return finite.sum(), (finite * finite).sum(), finite.size, values.size - finite.size


def assert_sums_equal(got, wanted):
    np.testing.assert_allclose(got[:2], wanted[:2], rtol=1e-12)
    assert got[2:] == wanted[2:]


# -- counts, bit for bit -----------------------------------------------------------------
@pytest.mark.parametrize("rows", [1, 31, 32, 33, 257])  # the kernel takes 32 rows at a time
def test_counts_equal_the_numpy_path_with_nan_inf_and_values_outside_the_range(binner, rows):
    x = hostile(np.random.default_rng(rows), rows)
    counts, sums = kernel_counts(binner, x)
    np.testing.assert_array_equal(counts, binner.count(x))
    assert_sums_equal(sums, plain_sums(x))


def test_counts_equal_the_slow_per_feature_searchsorted(binner):
    x = away_from_edges(binner, mixed_data(np.random.default_rng(1), 500)).astype(np.float32)
    x[::9, 3] = np.nan
    np.testing.assert_array_equal(kernel_counts(binner, x)[0], slow_count(binner, x))


def test_values_on_cell_boundaries_land_where_the_numpy_path_puts_them(binner):
    # Every cell boundary of every feature, and the float32 neighbours on both sides of it.
    cells = np.arange(binner.grid + 1, dtype=np.float32)
    edges = binner.low[None, :] + cells[:, None] / binner.scale[None, :]
    x = np.concatenate([edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf)]).astype(np.float32)
    np.testing.assert_array_equal(kernel_counts(binner, x)[0], binner.count(x))


def test_strided_rows_as_a_window_with_an_input_stride_hands_them_over(binner):
    x = hostile(np.random.default_rng(2), 400)
    counts, sums = kernel_counts(binner, x[3::4])
    np.testing.assert_array_equal(counts, binner.count(x[3::4]))
    assert_sums_equal(sums, plain_sums(x[3::4]))


@pytest.mark.parametrize("dtype", [np.float64, np.uint8, np.int64])
def test_other_dtypes_are_binned_and_summed_as_numpy_converts_them(binner, dtype):
    rng = np.random.default_rng(3)
    if dtype == np.float64:  # float64 values that are no float32, and some beyond float32's range
        x = mixed_data(rng, 300).astype(np.float64) * (1 + 1e-9)
        x[::50, 1] = 1e100
        x[::70, 2] = np.nan
    else:
        x = rng.integers(0, 256, size=(300, 6)).astype(dtype)
    counts, sums = kernel_counts(binner, x)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(counts, binner.count(x))
    assert_sums_equal(sums, plain_sums(x))


def test_wide_inputs_of_more_features_than_uint16_bin_ids_allow():
    rng = np.random.default_rng(4)
    binner = FeatureBinner.fit(np.tile(mixed_data(rng, 300), (1, 600)))  # 3,600 features x 21 columns > 65,536
    assert binner._global_table.dtype == np.int32
    x = np.tile(hostile(rng, 40), (1, 600))
    counts, sums = kernel_counts(binner, x)
    np.testing.assert_array_equal(counts, binner.count(x))
    assert_sums_equal(sums, plain_sums(x))


def test_counts_are_added_to_what_the_array_holds(binner):
    x = hostile(np.random.default_rng(5), 50)
    counts = binner.count(x)
    binning_kernel.count_and_sum(binner, x, counts)
    np.testing.assert_array_equal(counts, 2 * binner.count(x))


def test_bad_shapes_are_refused(binner):
    counts = np.zeros((binner.n_features, binner.n_columns), dtype=np.int64)
    with pytest.raises(ValueError, match=r"expected \(rows, 6\) inputs"):
        binning_kernel.count_and_sum(binner, np.zeros((3, 5), dtype=np.float32), counts)
    with pytest.raises(ValueError, match="counts must be"):
        binning_kernel.count_and_sum(binner, np.zeros((3, 6), dtype=np.float32), counts[:, 1:])


# -- the window: kernel and numpy path agree ----------------------------------------------
def test_a_window_sums_as_the_numpy_path_whether_the_batch_is_finite_or_not(binner):
    rng = np.random.default_rng(6)
    for x in (mixed_data(rng, 5000), hostile(rng, 5000)):  # 5,000 rows: more than one chunk of 4,096
        compiled, numpy_path = Window(binner, np.array([0.5]), 2), Window(binner, np.array([0.5]), 2)
        for part in np.array_split(x, 3):
            compiled._add_inputs(part)
            numpy_path._add_inputs_numpy(part)
        np.testing.assert_array_equal(compiled.input_counts, numpy_path.input_counts)
        np.testing.assert_allclose(
            [compiled.input_sum, compiled.input_sum_squares],
            [numpy_path.input_sum, numpy_path.input_sum_squares],
            rtol=1e-12,
        )
        assert (compiled.input_finite_values, compiled.input_nonfinite_values, compiled.input_rows) == (
            numpy_path.input_finite_values,
            numpy_path.input_nonfinite_values,
            numpy_path.input_rows,
        )


def test_without_the_kernel_the_window_takes_the_numpy_path(binner, without_kernel):
    x = away_from_edges(binner, hostile(np.random.default_rng(7), 100)).astype(np.float32)
    counts = np.zeros((binner.n_features, binner.n_columns), dtype=np.int64)
    assert binning_kernel.count_and_sum(binner, x, counts) is None and not counts.any()
    window = Window(binner, np.array([0.5]), 2)
    window._add_inputs(x)
    np.testing.assert_array_equal(window.input_counts, slow_count(binner, x))
    assert (window.input_sum, window.input_finite_values) == pytest.approx(plain_sums(x)[::2], rel=1e-12)


def test_a_kernel_that_does_not_compile_is_logged_once_and_the_numpy_path_used(monkeypatch, caplog):
    def broken(x, low, scale, lookup, counts):
        return undefined_name  # noqa: F821 - numba cannot type it

    monkeypatch.setattr(binning_kernel, "kernel", lazy_kernel(broken, "input binning", binning_kernel._warm))
    caplog.set_level(logging.WARNING, logger="gangplank")
    binner = FeatureBinner.fit(np.arange(10.0).reshape(5, 2))
    window = Window(binner, np.array([0.5]), 2)
    for _ in range(2):
        window._add_inputs(np.array([[1.0, np.nan]], dtype=np.float32))
    warnings = [r.getMessage() for r in caplog.records if r.name == "gangplank"]
    assert len(warnings) == 1 and "input binning kernel did not compile" in warnings[0]
    assert window.input_counts.sum() == 4 and window.input_nonfinite_values == 2 and window.input_sum == 2.0


# -- end to end ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference():
    x, p, y = generate(np.random.default_rng(0), 2000)
    return DriftReference.fit(x, p, y, window_size=100, n_simulations=50, input_stride=3)


def last_report(reference):
    x, p, _ = generate(np.random.default_rng(8), 250, shift=0.3)
    x[::7, 2] = np.nan
    x[::11, 4] = np.inf
    with DriftMonitor(None, "kernel", reference=reference, window_size=100) as monitor:
        monitor.observe(x, p)
        assert monitor.flush()
        return monitor.last_report


def test_a_monitor_reports_the_same_window_with_and_without_the_kernel(reference, monkeypatch):
    compiled = last_report(reference)
    with monkeypatch.context() as patch:
        patch.setattr(binning_kernel, "kernel", lambda: None)
        numpy_path = last_report(reference)
    # The second window, stream rows 100..199: the inputs of rows 102, 105, ..., 198 (multiples of the stride 3).
    assert compiled.input_rows == 33 and compiled.input_nonfinite_values > 0
    np.testing.assert_allclose(
        [compiled.input_mean, compiled.input_std], [numpy_path.input_mean, numpy_path.input_std], rtol=1e-12
    )
    for field in dataclasses.fields(compiled):
        if field.name not in ("input_mean", "input_std"):
            got, wanted = getattr(compiled, field.name), getattr(numpy_path, field.name)
            np.testing.assert_equal(got, wanted, err_msg=field.name)
