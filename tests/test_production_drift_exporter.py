"""ProductionDriftExporter on a real Pushgateway: windows, metrics, threads, Keras, bad input."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
from gangplank_devtools import read_gateway, value, wait_for

from gangplank import DriftReference, ProductionDriftExporter
from gangplank._drift.families import PREFIX, REGRESSION_ONLY
from gangplank.metric_schema import SCHEMA

D, K = 8, 3
WEIGHTS = np.random.default_rng(42).normal(size=(D, K))


def generate(rng, rows, shift=0.0):
    x = rng.normal(size=(rows, D)).astype(np.float32) + shift
    logits = x @ WEIGHTS
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return x, p.astype(np.float32), p.argmax(axis=1)


@pytest.fixture(scope="module")
def reference():
    x, p, y = generate(np.random.default_rng(0), 4000)
    return DriftReference.fit(x, p, y, window_size=100, n_simulations=100)


@pytest.fixture
def make_drift(pushgateway, reference):
    """``make_drift(**kwargs)``: an exporter on the test's gateway; its sender is closed afterwards."""
    made = []

    def make(job="drift", **kwargs):
        kwargs.setdefault("agent", "web")
        exporter = ProductionDriftExporter(
            pushgateway.address, job, reference=kwargs.pop("reference", reference), **kwargs
        )
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        exporter.publisher.close(timeout=0.2)


def random_batches(rng, rows, largest=20):
    start = 0
    while start < rows:
        stop = min(rows, start + int(rng.integers(1, largest + 1)))
        yield slice(start, stop)
        start = stop


def gateway_value(pushgateway, name, **labels):
    """Poll the gateway until ``name{labels}`` is there; its value."""

    def look():
        try:
            return (value(read_gateway(pushgateway.url), name, **labels),)
        except KeyError:
            return None

    found = wait_for(look, timeout=15)
    assert found is not None, (
        f"{name}{labels} never reached the gateway: {sorted({n for n, _ in read_gateway(pushgateway.url)})}"
    )
    return found[0]


def assert_same_report(a, b):
    names = [f.name for f in dataclasses.fields(a) if f.compare] + ["input_js", "input_ks"]
    for name in names:
        left, right = getattr(a, name), getattr(b, name)
        if isinstance(left, np.ndarray):
            np.testing.assert_allclose(left, right, rtol=1e-12, atol=1e-15, err_msg=name)
        elif isinstance(left, float):
            assert left == pytest.approx(right, rel=1e-9, nan_ok=True), name
        else:
            assert left == right, name


# -- windows ----------------------------------------------------------------------
def test_batches_crossing_the_boundary_are_split_into_exact_windows(make_drift, reference, pushgateway):
    rng = np.random.default_rng(1)
    x, p, y = generate(rng, 1000)
    reports = []
    exporter = make_drift(window_size=100, on_window=reports.append)
    for rows in random_batches(rng, 1000):
        exporter.observe(x[rows], p[rows], y[rows])
    assert exporter.flush()
    assert [r.samples for r in reports] == [100] * 10
    assert [r.input_rows for r in reports] == [100] * 10 and [r.labelled for r in reports] == [100] * 10
    for i, report in enumerate(reports):  # each window holds exactly its 100 rows
        rows = slice(100 * i, 100 * (i + 1))
        assert_same_report(report, reference.compare(reference.window_of(x[rows], p[rows], y[rows])))
    exporter.close()
    assert len(reports) == 10  # nothing left to close
    assert gateway_value(pushgateway, PREFIX + "samples_total", agent="web") == 1000
    assert gateway_value(pushgateway, PREFIX + "windows_total", agent="web") == 10


def test_one_batch_larger_than_several_windows(make_drift):
    rng = np.random.default_rng(2)
    x, p, _ = generate(rng, 730)
    reports = []
    exporter = make_drift(window_size=100, on_window=reports.append)
    exporter.observe(x, p)
    assert exporter.flush()
    assert [r.samples for r in reports] == [100] * 7
    exporter.close()
    assert [r.samples for r in reports] == [100] * 7 + [30]
    assert exporter.last_report is reports[-1]


def test_close_delivers_the_last_partial_window(make_drift, pushgateway):
    rng = np.random.default_rng(3)
    x, p, _ = generate(rng, 250)
    reports = []
    with make_drift(window_size=100, on_window=reports.append) as exporter:
        exporter.observe(x, p)
        assert exporter.flush()
        assert len(reports) == 2
    assert [r.samples for r in reports] == [100, 100, 50]
    assert gateway_value(pushgateway, PREFIX + "window_samples", agent="web") == 50
    assert gateway_value(pushgateway, PREFIX + "samples_total", agent="web") == 250
    assert gateway_value(pushgateway, PREFIX + "windows_total", agent="web") == 3


def test_window_seconds_closes_a_non_empty_window_by_time(make_drift):
    rng = np.random.default_rng(4)
    x, p, _ = generate(rng, 30)
    reports = []
    exporter = make_drift(window_size=10**6, window_seconds=0.3, on_window=reports.append)
    exporter.observe(x, p)
    assert wait_for(lambda: reports, timeout=20), "the window was never closed by time"
    assert [r.samples for r in reports] == [30]
    # A new window's clock starts with its first sample: two batches in quick succession
    # share one window (an idle, empty window is never closed by time: tests/test_window_tracker.py).
    exporter.observe(x[:5], p[:5])
    exporter.observe(x[5:8], p[5:8])
    assert wait_for(lambda: len(reports) == 2, timeout=20)
    assert reports[1].samples == 8
    exporter.close()
    assert len(reports) == 2


def test_constructor_checks_its_arguments(pushgateway, reference, tmp_path):
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="window_size must be a positive whole number"):
            ProductionDriftExporter(pushgateway.address, "j", reference=reference, window_size=bad)
    with pytest.raises(ValueError, match="window_seconds"):
        ProductionDriftExporter(pushgateway.address, "j", reference=reference, window_seconds=0)
    with pytest.raises(ValueError, match="agent"):
        ProductionDriftExporter(pushgateway.address, "j", reference=reference, agent="")
    with pytest.raises(FileNotFoundError):
        ProductionDriftExporter(pushgateway.address, "j", reference=tmp_path / "absent.npz")


def test_reference_can_be_a_saved_file(make_drift, reference, tmp_path):
    reference.save(tmp_path / "ref.npz")
    exporter = make_drift(reference=str(tmp_path / "ref.npz"))
    assert exporter.window_size == reference.window_size == 100
    assert exporter.reference.n_features == D


# -- what reaches the gateway -------------------------------------------------------
def test_every_metric_reaches_the_gateway_with_job_and_agent(make_drift, pushgateway):
    rng = np.random.default_rng(5)
    x, p, y = generate(rng, 150)
    with make_drift(job="shop", agent="replica-a", window_size=100) as exporter:
        exporter.observe(x, p, y)
    samples = read_gateway(pushgateway.url)
    names = {name for name, _ in samples}
    predict = [entry for entry in SCHEMA if entry.source == "predict"]
    for entry in predict:
        regression = entry.name.removeprefix(PREFIX) in REGRESSION_ONLY  # with task="regression" (test_regression)
        assert entry.name in names or "shadow_" in entry.name or regression, entry.name  # shadow: with a shadow model
    for (name, labels), _ in samples.items():
        labels = dict(labels)
        if name.startswith(PREFIX):
            assert labels["job"] == "shop" and labels["agent"] == "replica-a", (name, labels)
    for entry in predict:
        assert entry.name.endswith("_total") == (entry.type == "counter"), entry.name
    shares = [value(samples, PREFIX + "class_share", **{"class": c}) for c in range(K)]
    assert sum(shares) == pytest.approx(1.0)
    assert shares == pytest.approx(np.bincount(p[100:].argmax(axis=1), minlength=K) / 50)
    for signal in ("input", "prediction", "confidence", "estimated_accuracy", "estimated_floor"):
        assert value(samples, PREFIX + "drift_signal", signal=signal) in (0.0, 1.0)
    assert value(samples, PREFIX + "feedback_accuracy") == pytest.approx(1.0)
    assert value(samples, PREFIX + "window_end_timestamp_seconds") > 1.6e9
    assert value(samples, PREFIX + "drift_detected") in (0.0, 1.0)
    assert value(samples, PREFIX + "input_mean") == pytest.approx(float(x[100:].mean()), rel=1e-5, abs=1e-6)
    assert value(samples, PREFIX + "input_std") == pytest.approx(float(x[100:].std()), rel=1e-5)
    assert (
        value(samples, PREFIX + "threshold", statistic="class_chi2_p_value")
        == exporter.reference.thresholds.class_p_value
    )


def test_grouping_key_is_passed_through(make_drift, pushgateway):
    rng = np.random.default_rng(6)
    x, p, _ = generate(rng, 40)
    with make_drift(agent="web", grouping_key={"instance": "pod-7", "zone": "eu"}, window_size=20) as exporter:
        exporter.observe(x, p)
    samples = read_gateway(pushgateway.url)
    labels = dict(next(lab for name, lab in samples if name == PREFIX + "samples_total"))
    assert labels["instance"] == "pod-7" and labels["zone"] == "eu" and labels["agent"] == "web"


def test_two_agents_do_not_clobber_each_other(make_drift, pushgateway):
    rng = np.random.default_rng(7)
    x, p, _ = generate(rng, 300)
    a = make_drift(agent="a", window_size=100)
    b = make_drift(agent="b", window_size=100)
    a.observe(x[:200], p[:200])
    b.observe(x[:100], p[:100])
    a.close()
    b.close()
    assert gateway_value(pushgateway, PREFIX + "samples_total", agent="a") == 200
    assert gateway_value(pushgateway, PREFIX + "samples_total", agent="b") == 100
    assert gateway_value(pushgateway, PREFIX + "windows_total", agent="a") == 2


def test_late_feedback_changes_feedback_accuracy(make_drift, pushgateway):
    rng = np.random.default_rng(8)
    x, p, y = generate(rng, 200)
    reports = []
    exporter = make_drift(window_size=100, on_window=reports.append)
    exporter.observe(x[:60], p[:60])  # no labels yet
    exporter.feedback(y[:50], p[:50])  # right labels for 50 of them, as probability rows
    exporter.feedback((y[50:60] + 1) % K, p[50:60].argmax(axis=1))  # wrong labels, as class indices
    exporter.observe(x[60:100], p[60:100])
    assert exporter.flush()
    assert reports[0].labelled == 60 and reports[0].correct == 50 and reports[0].samples == 100
    assert reports[0].accuracy == pytest.approx(50 / 60)
    assert exporter.publisher.flush(15)
    assert gateway_value(pushgateway, PREFIX + "feedback_accuracy", agent="web") == pytest.approx(50 / 60)
    exporter.observe(x[100:150], p[100:150])
    exporter.feedback((y[100:150] + 1) % K, p[100:150])  # all wrong, in the open window
    exporter.observe(x[150:200], p[150:200])
    assert exporter.flush()
    assert reports[-1].labelled == 50 and reports[-1].accuracy == 0.0
    assert np.all(reports[-1].recall[np.isfinite(reports[-1].recall)] == 0.0)
    assert exporter.publisher.flush(15)
    assert gateway_value(pushgateway, PREFIX + "feedback_accuracy", agent="web") == 0.0
    exporter.feedback((y[150:200] + 1) % K, p[150:200])  # after the last sample: no window of labels alone
    exporter.close()
    assert len(reports) == 2
    last = int(reports[-1].drift_detected)
    assert gateway_value(pushgateway, PREFIX + "drift_detected", agent="web") == last  # the last real window's verdict
    # 100 wrong labels of 160: the large-drop chart on labels is in alarm, and says so
    chart = {"agent": "web", "evidence": "labels", "chart": "large"}
    assert gateway_value(pushgateway, PREFIX + "cusum", **chart) >= gateway_value(
        pushgateway, PREFIX + "cusum_threshold", **chart
    )
    assert gateway_value(pushgateway, PREFIX + "cusum_alarms_total", **chart) == 1
    assert gateway_value(pushgateway, PREFIX + "feedback_samples_total", agent="web") == 160
    assert gateway_value(pushgateway, PREFIX + "feedback_correct_total", agent="web") == 50
    with pytest.raises(ValueError, match=r"labels must be 4 class indices \(one per row\), got shape \(3,\)"):
        exporter.feedback(y[:3], p[:4])


# -- threads and memory ------------------------------------------------------------------
def test_eight_threads_observe_100k_samples_exactly(make_drift, pushgateway):
    window, total, threads = 100, 100_000, 8
    x, p, _ = generate(np.random.default_rng(9), 2000)
    reports, report_lock = [], threading.Lock()

    def collect(report):
        with report_lock:
            reports.append(report.samples)

    exporter = make_drift(window_size=window, on_window=collect, max_wait_seconds=60)  # wait for room, drop nothing
    errors = []
    start = threading.Barrier(threads)

    def work(seed):
        rng = np.random.default_rng(seed)
        try:
            start.wait()
            left = total // threads
            while left:
                rows = min(left, int(rng.integers(1, 40)))
                first = int(rng.integers(0, 2000 - rows))
                exporter.observe(x[first : first + rows], p[first : first + rows])
                left -= rows
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(seed,)) for seed in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert not errors and not any(w.is_alive() for w in workers)
    exporter.close()
    assert reports == [window] * (total // window)
    assert gateway_value(pushgateway, PREFIX + "samples_total", agent="web") == total
    assert gateway_value(pushgateway, PREFIX + "windows_total", agent="web") == total // window


def window_footprint(window):
    """Sizes of everything a Window holds; fails on any container that could grow."""
    sizes = {}
    for name, held in vars(window).items():
        if name == "binner":
            continue  # the reference's, shared
        if isinstance(held, np.ndarray):
            sizes[name] = (held.shape, held.nbytes)
        else:
            assert isinstance(held, (int, float, tuple)), f"Window.{name} is a {type(held).__name__}"
            sizes[name] = type(held).__name__
    return sizes


def test_memory_is_bounded_by_features_and_bins(make_drift):
    rng = np.random.default_rng(10)
    x, p, y = generate(rng, 1000)
    exporter = make_drift(window_size=10**9)
    exporter.observe(x[:10], p[:10], y[:10])
    assert exporter.flush()
    small = window_footprint(exporter.window)
    for _ in range(50):
        exporter.observe(x, p, y)
        exporter.feedback(y, p)
    assert exporter.flush()
    assert exporter.window.samples == 50_010 and exporter.window.labelled == 100_010
    assert window_footprint(exporter.window) == small
    binner = exporter.reference.binner
    assert exporter.window.input_counts.shape == (D, binner.n_columns)


# -- the Keras path -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_classifier():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((D,)), keras.layers.Dense(6, activation="relu"), keras.layers.Dense(K, activation="softmax")]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, _, y = generate(np.random.default_rng(11), 256)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    return model


def test_keras_predict_observes_inputs_and_equals_observe(make_drift, tiny_classifier, pushgateway):
    x, _, _ = generate(np.random.default_rng(12), 300)
    keras_reports, direct_reports = [], []
    via_keras = make_drift(agent="keras", window_size=1000, on_window=keras_reports.append)
    out = tiny_classifier.predict(via_keras.with_inputs(x), batch_size=32, verbose=0, callbacks=[via_keras])
    assert out.shape == (300, K)
    via_keras.close()
    direct = make_drift(agent="direct", window_size=1000, on_window=direct_reports.append)
    direct.observe(x, tiny_classifier.predict(x, batch_size=32, verbose=0))
    direct.close()
    (k,), (d,) = keras_reports, direct_reports
    assert k.samples == k.input_rows == 300
    assert_same_report(k, d)
    assert gateway_value(pushgateway, PREFIX + "samples_total", agent="keras") == 300
    # A second predict without with_inputs observes the outputs only.
    reports = []
    outputs_only = make_drift(agent="outputs", window_size=1000, on_window=reports.append)
    tiny_classifier.predict(x[:50], batch_size=16, verbose=0, callbacks=[outputs_only])
    outputs_only.close()
    assert reports[0].samples == 50 and reports[0].input_rows == 0


def test_keras_predict_splits_windows_across_batches(make_drift, tiny_classifier):
    x, _, _ = generate(np.random.default_rng(13), 250)
    reports = []
    exporter = make_drift(window_size=100, on_window=reports.append)
    tiny_classifier.predict(exporter.with_inputs(x), batch_size=32, verbose=0, callbacks=[exporter])
    exporter.close()
    assert [(r.samples, r.input_rows) for r in reports] == [(100, 100), (100, 100), (50, 50)]


# -- bad input ------------------------------------------------------------------------------------
BAD_BATCHES = [
    (lambda x, p, y: (x[:, :7], p, None), r"inputs must have 8 features per row, got 7"),
    (lambda x, p, y: (np.zeros((5, 3, 3)), p, None), r"inputs must have 8 features per row, got 9"),
    (lambda x, p, y: (x, np.hstack([p, p[:, :1]]), None), r"probabilities must have 3 classes per row, got 4"),
    (lambda x, p, y: (x[:4], p, None), r"same rows, got 4 and 5"),
    (lambda x, p, y: (x, p[:, :, None], None), r"probabilities must be 2-D \(rows, 3\), got shape \(5, 3, 1\)"),
    (lambda x, p, y: (x.astype(str), p, None), r"inputs must be numeric, got dtype <U"),
    (lambda x, p, y: (x, p.astype(str), None), r"probabilities must be numeric"),
    (lambda x, p, y: (x, p, np.arange(5) % K + 3), r"labels must be in \[0, 3\), got values from 3 to 5"),
    (lambda x, p, y: (x, p, -np.ones(5)), r"labels must be in \[0, 3\), got values from -1 to -1"),
    (lambda x, p, y: (x, p, y + 0.5), r"labels must be whole class indices"),
    (lambda x, p, y: (x, p, y[:3]), r"labels must be 5 class indices \(one per row\), got shape \(3,\)"),
    (lambda x, p, y: (x, np.where(np.eye(5, 3) > 0, np.nan, p), None), r"NaN"),
    (lambda x, p, y: (x, np.where(np.eye(5, 3) > 0, np.inf, p), None), r"infinity"),
    (lambda x, p, y: (x, p[0, 0], None), r"probabilities must be 2-D"),
    (lambda x, p, y: ([[1, 2], [3]], p, None), r"inputs must be a numeric array"),
]


@pytest.mark.parametrize("make_bad, message", BAD_BATCHES, ids=range(len(BAD_BATCHES)))
def test_bad_input_raises_a_clear_value_error(make_drift, make_bad, message):
    rng = np.random.default_rng(14)
    exporter = make_drift(window_size=100)
    x, p, y = generate(rng, 5)
    with pytest.raises(ValueError, match=message):
        exporter.observe(*make_bad(x, p, y))
    assert exporter.window.samples == 0 and exporter.window.input_rows == 0 and exporter.window.labelled == 0


def test_nothing_observed_before_a_bad_batch_is_lost(make_drift, pushgateway):
    rng = np.random.default_rng(15)
    reports = []
    exporter = make_drift(window_size=64, on_window=reports.append)
    good = 0
    for i, rows in enumerate(random_batches(rng, 1000, largest=13)):
        x, p, y = generate(rng, rows.stop - rows.start)
        exporter.observe(x, p, y)
        good += x.shape[0]
        make_bad, message = BAD_BATCHES[i % len(BAD_BATCHES)]
        with pytest.raises(ValueError, match=message):
            exporter.observe(*make_bad(*generate(rng, 5)))
    exporter.close()
    assert good == 1000
    assert sum(r.samples for r in reports) == 1000 and sum(r.input_rows for r in reports) == 1000
    assert sum(r.labelled for r in reports) == 1000
    assert all(r.samples == 64 for r in reports[:-1])
    assert gateway_value(pushgateway, PREFIX + "samples_total", agent="web") == 1000


def test_nan_and_inf_inputs_are_counted_and_do_not_corrupt_the_window(make_drift, reference, pushgateway):
    rng = np.random.default_rng(16)
    x, p, y = generate(rng, 100)
    dirty = x.copy()
    dirty[::10, 0] = np.nan
    dirty[::25, 3] = np.inf
    dirty[1, 5] = -np.inf
    bad_values = int((~np.isfinite(dirty)).sum())
    reports = []
    with make_drift(window_size=100, on_window=reports.append) as exporter:
        exporter.observe(dirty, p, y)
    (report,) = reports
    assert report.samples == report.input_rows == 100 and report.input_nonfinite_values == bad_values == 15
    finite = dirty[np.isfinite(dirty)]
    assert report.input_mean == pytest.approx(float(finite.mean()), rel=1e-6)
    assert report.input_std == pytest.approx(float(finite.std()), rel=1e-5)
    assert np.all(np.isfinite(report.input_psi)) and np.all(np.isfinite(report.input_js))
    clean = reference.compare(reference.window_of(x, p, y))
    untouched = [1, 2, 4, 6, 7]  # features without NaN/Inf compare exactly as on clean data
    np.testing.assert_array_equal(report.input_psi[untouched], clean.input_psi[untouched])
    assert report.input_psi[0] > clean.input_psi[0]  # 10 % missing shows on feature 0
    assert report.class_p_value == clean.class_p_value
    assert gateway_value(pushgateway, PREFIX + "input_nonfinite_total", agent="web") == 15
    assert np.isfinite(gateway_value(pushgateway, PREFIX + "input_mean", agent="web"))


def test_logits_are_softmaxed_and_counted(make_drift, reference, pushgateway):
    rng = np.random.default_rng(17)
    x, p, y = generate(rng, 100)
    logits = np.log(p.astype(np.float64)) * 2.0 + 5.0  # negative and > 1 values: logits of sharper shares
    unnormalised = p[:10] * 3.0 / 3.0 * 0.5  # non-negative, sums 0.5: divided by their sum
    reports = []
    with make_drift(window_size=110, on_window=reports.append) as exporter:
        exporter.observe(x, logits, y)
        exporter.observe(x[:10], unnormalised, y[:10])
    (report,) = reports
    softmaxed = np.exp(logits - logits.max(axis=1, keepdims=True))
    softmaxed /= softmaxed.sum(axis=1, keepdims=True)
    predicted = np.concatenate([softmaxed.argmax(axis=1), p[:10].argmax(axis=1)])
    np.testing.assert_allclose(report.class_shares, np.bincount(predicted, minlength=K) / 110)
    expected_conf = (softmaxed.max(axis=1).sum() + p[:10].max(axis=1).sum()) / 110
    assert report.confidence_mean == pytest.approx(expected_conf, rel=1e-5)
    assert gateway_value(pushgateway, PREFIX + "probabilities_normalised_total", agent="web") == 110


def test_inputs_may_be_images_and_labels_one_hot(make_drift):
    rng = np.random.default_rng(18)
    x, p, y = generate(rng, 20)
    reports = []
    with make_drift(window_size=20, on_window=reports.append) as exporter:
        exporter.observe(x.reshape(20, 2, 4), p, np.eye(K)[y])
    assert reports[0].input_rows == 20 and reports[0].accuracy == 1.0


def test_an_empty_batch_is_a_no_op(make_drift):
    exporter = make_drift(window_size=10)
    exporter.observe(np.zeros((0, D)), np.zeros((0, K)))
    exporter.observe(np.zeros((0, 2, 4)), np.zeros((0, K)), np.zeros(0, dtype=int))
    assert exporter.window.samples == 0 and exporter.last_report is None


def test_single_samples_with_plain_number_labels(make_drift):
    rng = np.random.default_rng(19)
    x, p, y = generate(rng, 3)
    reports = []
    with make_drift(window_size=10, on_window=reports.append) as exporter:
        exporter.observe(x[0], p[0], int(y[0]))  # one request: a feature row, a probability row, a label
        exporter.observe(x[1:2], p[1:2], np.int64(y[1]))
        exporter.observe(x[2], p[2])
        exporter.feedback(int(y[2]), int(p[2].argmax()))
    assert reports[0].samples == reports[0].input_rows == 3 and reports[0].labelled == 3 and reports[0].accuracy == 1.0
    with pytest.raises(ValueError, match=r"labels must be 2 class indices \(one per row\), got shape \(\)"):
        exporter.observe(x[:2], p[:2], 1)


@pytest.mark.slow  # a fresh interpreter that must not import Keras
def test_drift_monitor_works_without_importing_keras(pushgateway):
    """Serving code that does not load Keras pays nothing for it."""
    import subprocess
    import sys

    script = (
        "import sys, numpy as np, gangplank\n"
        "rng = np.random.default_rng(0)\n"
        "x, p = rng.normal(size=(600, 4)), rng.dirichlet([1, 1], size=600)\n"
        "reference = gangplank.DriftReference.fit(x, p, window_size=100, n_simulations=50)\n"
        f"with gangplank.DriftMonitor({pushgateway.address!r}, 'no-keras', reference=reference, agent='bare', "
        f"ignore_exceptions=False) as drift:\n"
        "    drift.observe(x[:250], p[:250])\n"
        "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules, 'keras was imported'\n"
        "assert 'pandas' not in sys.modules, 'pandas was imported'\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert gateway_value(pushgateway, PREFIX + "samples_total", agent="bare") == 250
