"""Regression models (task="regression"): a real Keras regressor, its binned prediction, MAE/RMSE and error charts."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from gangplank_devtools import read_gateway, value, wait_for
from scipy import stats

from gangplank import DriftMonitor, DriftReference, ProductionDriftExporter
from gangplank._drift.families import CLASSIFIER_ONLY, PREFIX, REGRESSION_ONLY
from gangplank._drift.reference_file import read
from gangplank.metric_schema import spec
from tests.gateway_tools import ROOT

D = 4
WEIGHTS = np.array([1.0, -2.0, 0.5, 0.0])


def make_data(rng, rows, shift=0.0):
    """Targets a small network can learn: a linear part, a bend and noise (sd 0.3); ``shift`` moves feature 0."""
    x = rng.normal(size=(rows, D)).astype(np.float32)
    x[:, 0] += shift
    y = x @ WEIGHTS + np.sin(2 * x[:, 0]) + rng.normal(scale=0.3, size=rows)
    return x, y.astype(np.float32)


@pytest.fixture(scope="module")
def regressor():
    """A tiny Dense regression network fitted for a few epochs, and a reference fitted on held-out rows."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, y = make_data(rng, 3000)
    model = keras.Sequential([keras.Input((D,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="mse")
    model.fit(x, y, epochs=8, batch_size=64, verbose=0)
    x_val, y_val = make_data(rng, 3000)
    predictions = model.predict(x_val, verbose=0)
    reference = DriftReference.fit(
        x_val, predictions, y_val, task="regression", window_size=200, n_simulations=200, seed=1
    )
    return model, reference, (x_val, predictions[:, 0].astype(np.float64), y_val.astype(np.float64))


def fresh(model, seed, rows, shift=0.0):
    x, y = make_data(np.random.default_rng(seed), rows, shift)
    return x, model.predict(x, verbose=0)[:, 0].astype(np.float64), y.astype(np.float64)


# -- the reference --------------------------------------------------------------
def test_the_reference_figures_are_the_held_out_rows_own(regressor):
    model, reference, (_, predictions, targets) = regressor
    errors = targets - predictions
    assert reference.is_regression and reference.get_params()["task"] == "regression"
    assert reference.reference_errors.mae == pytest.approx(np.mean(np.abs(errors)), rel=1e-9)
    assert reference.reference_errors.rmse == pytest.approx(np.sqrt(np.mean(errors**2)), rel=1e-9)
    assert reference.reference_errors.quantile == pytest.approx(np.quantile(np.abs(errors), 0.9), rel=1e-9)
    assert reference.reference_errors.rmse < 0.6 < np.std(targets)  # the network learned something
    edges = np.quantile(predictions, np.arange(1, 10) / 10)
    np.testing.assert_allclose(reference.profile.prediction_edges, edges)
    counts = np.bincount(np.searchsorted(edges, predictions, side="right"), minlength=10)
    np.testing.assert_allclose(reference.profile.class_shares, (counts + 0.5) / (counts.sum() + 5))


def test_a_window_chi_square_and_errors_match_scipy_and_numpy(regressor):
    model, reference, _ = regressor
    x, p, y = fresh(model, 5, 200, shift=0.4)
    report = reference.compare(reference.window_of(x, p, y))
    counts = np.bincount(np.searchsorted(reference.profile.prediction_edges, p, side="right"), minlength=10)
    expected = reference.profile.class_shares * 200
    assert report.class_p_value == pytest.approx(stats.chisquare(counts, expected).pvalue, rel=1e-6)
    assert report.error_rows == 200
    assert report.mae == pytest.approx(np.mean(np.abs(y - p)), rel=1e-9)
    assert report.rmse == pytest.approx(np.sqrt(np.mean((y - p) ** 2)), rel=1e-9)
    assert np.isnan(report.confidence_psi) and np.isnan(report.entropy_mean) and not report.signals["confidence"]


def test_save_and_load_keep_the_regression_parts(regressor, tmp_path):
    _, reference, _ = regressor
    path = tmp_path / "regression.drift.npz"
    reference.save(path)
    header, arrays = read(path)
    assert header["version"] == 4 and header["task"] == "regression"
    loaded = DriftReference.load(path)
    assert loaded.is_regression and loaded.reference_errors == reference.reference_errors
    np.testing.assert_array_equal(loaded.profile.prediction_edges, reference.profile.prediction_edges)
    assert loaded.get_params() == reference.get_params()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    untargeted = DriftReference.fit(
        x, x[:, 0], task="regression", window_size=100, n_simulations=20, false_alarm_rate=0.01
    )  # no targets: no error charts
    untargeted.save(tmp_path / "untargeted.npz")
    assert read(tmp_path / "untargeted.npz")[0]["errors"] is None
    assert DriftReference.load(tmp_path / "untargeted.npz").reference_errors.rows == 0
    classifier = DriftReference.fit(
        rng.normal(size=(400, 2)), rng.dirichlet([1, 1], 400), window_size=100, n_simulations=20, false_alarm_rate=0.01
    )
    classifier.save(tmp_path / "classifier.npz")
    assert read(tmp_path / "classifier.npz")[0]["version"] == 3  # older gangplank versions still read it
    assert not DriftReference.load(tmp_path / "classifier.npz").is_regression


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"probabilities": np.zeros((500, 2))}, "one value per row"),
        ({"labels": np.full(500, np.nan)}, "targets contain NaN"),
        ({"shadow": np.zeros(500)}, "for classifiers"),
        ({"probabilities": np.ones(500)}, "all equal"),
        ({"task": "ranking"}, "task must be"),
    ],
)
def test_bad_regression_input_is_refused_clearly(kwargs, message):
    rng = np.random.default_rng(0)
    args = {"inputs": rng.normal(size=(500, 2)), "probabilities": rng.normal(size=500), "labels": rng.normal(size=500)}
    args.update({k: v for k, v in kwargs.items() if k in args})
    options = {k: v for k, v in kwargs.items() if k not in args}
    with pytest.raises(ValueError, match=message):
        DriftReference.fit(**args, **{"task": "regression", "window_size": 100, **options})


def test_continuous_targets_are_still_refused_for_a_classifier():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="labels must be"):
        DriftReference.fit(rng.normal(size=(500, 2)), rng.normal(size=500), rng.normal(size=500), window_size=100)


# -- the monitor -------------------------------------------------------------------
def hand_cusum(design, successes):
    """The Bernoulli CUSUM written out, outcome by outcome (before any alarm)."""
    statistic = 0.0
    for success in successes:
        step = np.log(design.out_of_control / design.in_control)
        if not success:
            step = np.log((1 - design.out_of_control) / (1 - design.in_control))
        statistic = max(0.0, statistic + step)
    return statistic


def test_in_control_targets_by_id_never_page_and_the_chart_is_the_hand_cusum(regressor):
    model, reference, _ = regressor
    x, p, y = fresh(model, 11, 2000)
    ids = [f"r{i}" for i in range(2000)]
    with DriftMonitor(None, "regression", reference=reference) as monitor:
        for start in range(0, 2000, 100):
            rows = slice(start, start + 100)
            monitor.observe(x[rows], p[rows], ids=ids[rows])
            monitor.feedback(y[rows], ids=ids[rows])  # late targets, joined by id
        assert monitor.flush()
        assert not monitor.charts.alarmed
        within = np.abs(y - p) <= reference.reference_errors.quantile
        # In control about 10 % of errors exceed the reference's 90th percentile.
        assert stats.binomtest(int((~within).sum()), within.size, 0.10).pvalue > 1e-3
        for (evidence, chart), cusum in monitor.charts.charts.items():
            assert evidence == "error" and chart in ("small", "large")
            assert cusum.statistic == pytest.approx(hand_cusum(cusum.design, within), abs=1e-9)
        assert sum(r for r in monitor.recent.signal_counts().values()) <= 1
    assert monitor.totals.feedback_samples == 2000
    assert monitor.totals.absolute_error_sum / 2000 == pytest.approx(np.mean(np.abs(y - p)), rel=1e-9)
    assert monitor.totals.squared_error_sum / 2000 == pytest.approx(np.mean((y - p) ** 2), rel=1e-9)


def test_a_prediction_of_minus_one_is_not_taken_for_a_dropped_batch(regressor):
    model, reference, _ = regressor
    x, p, y = fresh(model, 13, 3)
    p[1] = -1.0  # the scoring-id store marks dropped batches with the integer -1
    with DriftMonitor(None, "regression", reference=reference) as monitor:
        monitor.observe(x, p, ids=["a", "b", "c"])
        assert monitor.feedback(y[[1, 2]], ids=["b", "c"]) == 2
        assert monitor.flush()
        assert monitor.window.error_rows == 2
        assert monitor.window.absolute_error_sum == pytest.approx(abs(y[1] + 1.0) + abs(y[2] - p[2]))


def test_a_model_whose_errors_grow_pages_on_the_error_charts(regressor):
    model, reference, _ = regressor
    x, p, y = fresh(model, 12, 2000)
    worse = p + np.random.default_rng(3).normal(scale=0.4, size=p.size)  # a noisier model, same inputs
    with DriftMonitor(None, "regression", reference=reference) as monitor:
        monitor.observe(x, worse, y)  # targets with the predictions
        assert monitor.flush()
        assert monitor.charts.alarmed
        report = monitor.last_report
        assert report.mae > 1.2 * reference.reference_errors.mae
        assert report.reference_mae == reference.reference_errors.mae
        assert not report.signals["input"]  # the inputs did not move: only the errors tell


def test_shifted_inputs_move_the_binned_prediction(regressor):
    model, reference, _ = regressor
    same = [fresh(model, 20 + i, 200) for i in range(5)]
    moved = [fresh(model, 30 + i, 200, shift=1.5) for i in range(5)]
    fired = [reference.compare(reference.window_of(x, p)).signals["prediction"] for x, p, _ in same]
    shifted = [reference.compare(reference.window_of(x, p)).signals["prediction"] for x, p, _ in moved]
    assert not any(fired) and all(shifted)


def test_the_keras_callback_exports_regression_families_and_never_raises(regressor, pushgateway):
    model, reference, _ = regressor
    x, p, y = fresh(model, 40, 400)
    drift = ProductionDriftExporter(pushgateway.address, "regression", reference=reference, agent="reg")
    with drift:
        outputs = model.predict(drift.with_inputs(x), callbacks=[drift], verbose=0, batch_size=50)
        drift.feedback(y, outputs)
        two_outputs = keras.Sequential([keras.Input((D,)), keras.layers.Dense(2)])
        two_outputs.predict(x[:10], callbacks=[drift], verbose=0)  # not this reference's: counted, not raised
        assert drift.flush()
        assert drift.worker.errors["callback"] >= 1
    assert drift.totals.samples == 400 and drift.totals.feedback_samples == 400

    def gauges():
        found = read_gateway(pushgateway.url)
        return found if any(name == PREFIX + "feedback_absolute_error_total" for name, _ in found) else None

    found = wait_for(gauges, timeout=15)
    assert found is not None
    mae = value(found, PREFIX + "feedback_absolute_error_total") / value(found, PREFIX + "feedback_samples_total")
    assert mae == pytest.approx(np.mean(np.abs(y - outputs[:, 0])), rel=1e-5)
    assert value(found, PREFIX + "reference_rmse") == pytest.approx(reference.reference_errors.rmse)
    assert value(found, PREFIX + "cusum_threshold", evidence="error", chart="small") > 0
    names = {name for name, _ in found}
    assert {PREFIX + name for name in REGRESSION_ONLY} <= names
    assert not {PREFIX + name for name in CLASSIFIER_ONLY} & names
    assert all(spec(name) for name in names if name.startswith(PREFIX))


def test_a_regression_reference_needs_the_thread_worker(regressor):
    _, reference, _ = regressor
    with pytest.raises(ValueError, match="worker='thread'"):
        DriftMonitor(None, "regression", reference=reference, worker="process")


@pytest.mark.slow  # trains the README's Keras regressor
def test_the_readme_regression_example_runs_as_printed(pushgateway, capsys):
    readme = (ROOT / "README.md").read_text()
    block = readme.split("A self-contained run with a small Keras regressor")[1].split("```python\n")[1].split("```")[0]
    code, printed = block.split("\n# ", 1)
    exec(compile(code.replace('"127.0.0.1:9091"', repr(pushgateway.address)), "README.md", "exec"), {})
    assert capsys.readouterr().out.strip() == printed.strip()
