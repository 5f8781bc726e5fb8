"""DriftReference: save/load round trip, hostile files, calibration and overrides."""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
import zipfile

import numpy as np
import pytest

import gangplank
from gangplank import DriftReference, ReferenceFormatError
from gangplank._drift.reference_file import FORMAT, VERSION
from gangplank.reference import Thresholds

D, K = 20, 4
WEIGHTS = np.random.default_rng(99).normal(size=(D, K))


def generate(rng, rows, shift=0.0, scale=1.0):
    """Tabular data of mixed shapes and a fixed softmax classifier's probabilities on it."""
    x = np.column_stack(
        [
            rng.normal(size=(rows, D // 2)),
            rng.exponential(size=(rows, D // 4)),
            (rng.random((rows, D - D // 2 - D // 4)) < 0.2) * rng.random((rows, D - D // 2 - D // 4)),
        ]
    )
    x = x * scale + shift
    logits = x @ WEIGHTS
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(K, p=row) for row in p])
    return x.astype(np.float32), p, labels


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    x, p, y = generate(rng, 5000)
    return DriftReference.fit(x, p, y, window_size=100, n_simulations=1000)


def windows(reference, rng, count, **shift):
    for _ in range(count):
        x, p, y = generate(rng, reference.window_size, **shift)
        yield reference.compare(reference.window_of(x, p, y))


def assert_reports_equal(a, b):
    names = [f.name for f in dataclasses.fields(a) if f.compare] + ["input_js", "input_ks"]
    for name in names:
        left, right = getattr(a, name), getattr(b, name)
        if isinstance(left, np.ndarray):
            np.testing.assert_array_equal(left, right, err_msg=name)
        elif isinstance(left, float) and np.isnan(left):
            assert np.isnan(right), name
        else:
            assert left == right, name


# -- save / load ----------------------------------------------------------------
def test_save_load_round_trip_gives_identical_comparisons(fitted, tmp_path):
    path = tmp_path / "reference.npz"
    fitted.save(path)
    loaded = DriftReference.load(path)
    assert loaded.n_features == D and loaded.n_classes == K and loaded.window_size == 100
    assert loaded.accuracy == fitted.accuracy and loaded.n_samples == fitted.n_samples
    np.testing.assert_array_equal(loaded.thresholds.feature_psi, fitted.thresholds.feature_psi)
    rng = np.random.default_rng(1)
    for shift in (0.0, 0.3):
        x, p, y = generate(rng, 150, shift=shift)
        x[0, 0] = np.nan
        assert_reports_equal(fitted.compare(fitted.window_of(x, p, y)), loaded.compare(loaded.window_of(x, p, y)))


def test_save_load_without_labels_keeps_accuracy_nan(tmp_path):
    rng = np.random.default_rng(2)
    x, p, _ = generate(rng, 400)
    reference = DriftReference.fit(x, p, window_size=50, n_simulations=30)
    reference.save(tmp_path / "r.npz")
    loaded = DriftReference.load(str(tmp_path / "r.npz"))
    assert np.isnan(loaded.accuracy)
    report = loaded.compare(loaded.window_of(x[:50], p[:50], np.zeros(50, int)))
    assert np.isnan(report.estimated_accuracy) and not report.signals["estimated_accuracy"]


def test_the_file_is_an_npz_of_plain_arrays_with_a_json_header(fitted, tmp_path):
    path = tmp_path / "r.npz"
    fitted.save(path)
    with np.load(path, allow_pickle=False) as archive:
        header = json.loads(archive["header"].tobytes())
        assert all(archive[name].dtype != object for name in archive.files)
    assert header["format"] == FORMAT == "gangplank-drift-reference" and header["version"] == VERSION == 3
    settings = {k: v for k, v in fitted.get_params().items() if k != "reduction"}  # a reduction has its own key
    assert header["settings"] == settings and header["settings"]["n_simulations"] > 0


def rewrite(source, target, header=None, **arrays):
    """Copy a saved reference, replacing the header (a dict) and/or some arrays."""
    with np.load(source, allow_pickle=False) as archive:
        content = {name: archive[name] for name in archive.files}
    if header is not None:
        content["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    content.update(arrays)
    np.savez(target, **content)
    return target


@pytest.fixture
def saved(fitted, tmp_path):
    path = tmp_path / "good.npz"
    fitted.save(path)
    with np.load(path) as archive:
        header = json.loads(archive["header"].tobytes())
    return path, header


def assert_format_error(path, *words):
    with pytest.raises(ReferenceFormatError) as caught:
        DriftReference.load(path)
    message = str(caught.value)
    assert str(path) in message
    for word in words:
        assert word in message, message
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, gangplank.GangplankError)
    return message


def test_truncated_file(saved, tmp_path):
    path, _ = saved
    data = path.read_bytes()
    for keep in (0, 10, len(data) // 2, len(data) - 30):
        bad = tmp_path / f"truncated-{keep}.npz"
        bad.write_bytes(data[:keep])
        assert_format_error(bad, "not a readable gangplank drift reference")


def test_random_bytes(tmp_path):
    bad = tmp_path / "random.npz"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    assert_format_error(bad, "not a readable")


def test_corrupted_compressed_bytes(saved, tmp_path):
    # Flipped bytes inside the compressed members make zlib (or zipfile) fail, not numpy.
    path, _ = saved
    data = path.read_bytes()
    spots = []
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            start = info.header_offset
            name_length, extra_length = np.frombuffer(data[start + 26 : start + 30], dtype="<u2")
            spots.append(start + 30 + int(name_length) + int(extra_length) + info.compress_size // 2)
    for i, spot in enumerate(spots + [len(data) - 40]):
        damaged = bytearray(data)
        damaged[spot] ^= 0xFF
        bad = tmp_path / f"flipped-{i}.npz"
        bad.write_bytes(bytes(damaged))
        assert_format_error(bad)


def test_other_version_and_other_format(saved, tmp_path):
    path, header = saved
    newer = rewrite(path, tmp_path / "v5.npz", {**header, "version": 5})
    assert_format_error(newer, "version 5", "reads versions 1, 2, 3 and 4")
    other = rewrite(path, tmp_path / "other.npz", {**header, "format": "something-else"})
    assert_format_error(other, "something-else", FORMAT)
    no_header = tmp_path / "no-header.npz"
    np.savez(no_header, low=np.zeros(3))
    assert_format_error(no_header, "header")
    not_json = rewrite(path, tmp_path / "not-json.npz", header=None, header_=np.zeros(1))
    with np.load(not_json) as archive:
        content = {name: archive[name] for name in archive.files}
    content["header"] = np.frombuffer(b"{not json", dtype=np.uint8)
    np.savez(not_json, **content)
    assert_format_error(not_json, "not a readable")
    a_list = rewrite(path, tmp_path / "list.npz", header=[1, 2])
    assert_format_error(a_list, "not a gangplank drift reference")


def test_a_version_1_file_still_loads(saved, fitted, tmp_path):
    path, header = saved
    # A version-1 header, as gangplank wrote it then: the accuracy test's own p-value and label minimum.
    thresholds = {
        k: v
        for k, v in header["thresholds"].items()
        if k not in ("estimated_accuracy_p_value", "accuracy_tolerance", "quality_floor")
    }
    thresholds |= {"accuracy_p_value": 2e-5, "min_labelled": 10}
    old_header = {k: v for k, v in header.items() if k not in ("settings", "shadow_agreement", "shadow_rows")}
    old_header |= {"version": 1, "thresholds": thresholds}
    with np.load(path, allow_pickle=False) as archive:
        skip = ("header", "confidence_accuracy", "confidence_labelled")
        arrays = {name: archive[name] for name in archive.files if name not in skip}
    old = tmp_path / "v1.npz"
    np.savez_compressed(old, header=np.frombuffer(json.dumps(old_header).encode(), dtype=np.uint8), **arrays)
    loaded = DriftReference.load(old)
    assert loaded.get_params() == {} and loaded.settings is None
    assert loaded.thresholds.accuracy_tolerance == 0.0  # version 1 tested against the reference accuracy itself
    assert loaded.thresholds.estimated_accuracy_p_value == 2e-5  # the accuracy test's, as version 1 had no other
    assert np.isnan(loaded.profile.confidence_accuracy).all()
    x, p, y = generate(np.random.default_rng(3), 100)
    report = loaded.compare(loaded.window_of(x, p, y))
    assert np.isnan(report.estimated_accuracy) and not report.signals["estimated_accuracy"]


def test_pickle_files_are_refused_without_unpickling(fitted, tmp_path):
    marker = tmp_path / "pickle-ran"

    class Boom:
        def __reduce__(self):
            return (marker.write_text, ("ran",))

    bad = tmp_path / "reference.pkl"
    bad.write_bytes(pickle.dumps({"reference": fitted, "boom": Boom()}))
    assert_format_error(bad)
    # An .npz whose member is a pickled object array
    object_member = tmp_path / "object.npz"
    np.savez(object_member, header=np.array([Boom()], dtype=object))
    assert_format_error(object_member)
    assert not marker.exists()


def test_a_single_npy_array_is_not_a_reference(tmp_path):
    bad = tmp_path / "array.npz"
    with open(bad, "wb") as handle:
        np.save(handle, np.arange(10))
    assert_format_error(bad, "npz")


@pytest.mark.parametrize(
    "change",
    [
        {"input_counts": np.zeros((3, 4), dtype=np.int64)},
        {"scale": np.ones(D + 1, dtype=np.float32)},
        {"feature_psi": np.ones(2)},
        {"confidence_counts": np.ones(3, dtype=np.int64)},
        {"class_shares": np.array([1.0])},
        {"class_shares": np.ones((2, 2))},
        {"low": np.float32(0.0)},
        {"low": np.zeros((D, 2), dtype=np.float32)},
        {"lookup": np.zeros(D, dtype=np.uint8)},
        {"lookup": np.zeros((D, 0), dtype=np.uint8)},
        {"lookup": np.full((D, 256), 250, dtype=np.uint8)},
        {"lookup": np.zeros((D, 256), dtype=np.int64)},
        {"confidence_edges": np.array(["a", "b"])},
    ],
)
def test_wrong_array_shapes_and_types(saved, tmp_path, change):
    path, _ = saved
    bad = rewrite(path, tmp_path / "bad.npz", **change)
    assert_format_error(bad, "damaged")


@pytest.mark.parametrize(
    "header_change",
    [
        {"n_columns": None},
        {"n_columns": 1},
        {"n_columns": 1000},
        {"thresholds": "high"},
        {"window_size": "two hundred"},
        {"thresholds": {"class_p_value": 0.1}},
    ],
)
def test_damaged_header_values(saved, tmp_path, header_change):
    path, header = saved
    bad = rewrite(path, tmp_path / "bad.npz", {**header, **header_change})
    assert_format_error(bad, "damaged")


def test_missing_member(saved, tmp_path):
    path, _ = saved
    with np.load(path) as archive:
        content = {name: archive[name] for name in archive.files if name != "lookup"}
    bad = tmp_path / "bad.npz"
    np.savez(bad, **content)
    assert_format_error(bad, "lookup")


def test_an_archive_claiming_too_much_unpacked_is_refused_before_reading(saved, monkeypatch):
    from gangplank._drift import reference_file

    monkeypatch.setattr(reference_file, "MAX_UNPACKED_BYTES", 1000)  # any real file claims more than this
    assert_format_error(saved[0], "unpacked")


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        DriftReference.load(tmp_path / "absent.npz")


def test_save_writes_to_a_file_object_path_string(fitted, tmp_path):
    fitted.save(str(tmp_path / "s.npz"))
    buffer = io.BytesIO((tmp_path / "s.npz").read_bytes())
    assert zipfile.is_zipfile(buffer)


# -- calibration ---------------------------------------------------------------------
def test_few_false_alarms_on_fresh_samples_from_the_reference_distribution(fitted):
    """Output signals at their (tiny) calibrated rate; the input signal at the rate its simulations can reach,
    ``10 / (n_simulations / 2)`` = 2 % of windows here (input drift warns only when sustained)."""
    reports = list(windows(fitted, np.random.default_rng(10), 1000))
    outputs = [r.signals for r in reports if any(v for k, v in r.signals.items() if k != "input")]
    assert len(outputs) <= 2, outputs
    input_alpha = 10 / (fitted.get_params()["n_simulations"] // 2)
    assert sum(r.signals["input"] for r in reports) <= 2 * input_alpha * len(reports)


@pytest.mark.parametrize("change", [{"shift": 0.5}, {"scale": 1.6}])
def test_a_shift_is_detected(fitted, change):
    reports = list(windows(fitted, np.random.default_rng(11), 30, **change))
    assert sum(r.drift_detected for r in reports) >= 27
    assert sum(r.signals["input"] for r in reports) >= 27


def test_a_prediction_only_shift_is_detected_without_inputs(fitted):
    rng = np.random.default_rng(12)
    alarms = 0
    for _ in range(20):
        _, p, _ = generate(rng, 400)
        p = p[np.argsort(p[:, 0])[-100:]]  # the quarter of the rows leaning most to class 0
        report = fitted.compare(fitted.window_of(None, p))
        assert report.input_rows == 0 and np.isnan(report.drifted_features_ratio)
        alarms += report.signals["prediction"]
    assert alarms == 20


def test_wrong_labels_are_measured_but_left_to_the_sequential_charts(fitted):
    rng = np.random.default_rng(13)
    x, p, y = generate(rng, 100)
    wrong = (p.argmax(axis=1) + 1) % K
    report = fitted.compare(fitted.window_of(x, p, wrong))
    assert report.accuracy == 0.0 and report.labelled == 100
    assert not report.drift_detected  # one window's labels decide nothing: the charts weigh them (test_sequential)


def test_thresholds_scale_with_the_window_size(fitted):
    rng = np.random.default_rng(14)
    x, p, y = generate(rng, 400)
    report = fitted.compare(fitted.window_of(x, p, y))  # 4x the calibrated size
    assert report.samples == 400 and not report.drift_detected


def test_small_windows_never_alarm(fitted):
    rng = np.random.default_rng(15)
    x, p, y = generate(rng, 10, shift=5.0)
    report = fitted.compare(fitted.window_of(x, p, y))
    assert report.samples < fitted.thresholds.min_window_samples
    assert not (report.signals["input"] or report.signals["prediction"] or report.signals["confidence"])


def test_fit_checks_its_arguments():
    rng = np.random.default_rng(16)
    x, p, y = generate(rng, 300)
    with pytest.raises(ValueError, match="same rows, got 300 and 299"):
        DriftReference.fit(x, p[:-1])
    with pytest.raises(ValueError, match="window_size must be between 2 and the 300 reference rows, got 500"):
        DriftReference.fit(x, p, window_size=500)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 4\)"):
        DriftReference.fit(x, p, y + 1, window_size=50)
    with pytest.raises(ValueError, match="false_alarm_rate"):
        DriftReference.fit(x, p, window_size=50, false_alarm_rate=0)


@pytest.mark.slow  # fits several references (>5 s on two cores)
def test_fit_is_deterministic_for_a_seed():
    rng = np.random.default_rng(17)
    x, p, y = generate(rng, 1000)
    a = DriftReference.fit(x, p, y, window_size=50, n_simulations=50, seed=3)
    b = DriftReference.fit(x, p, y, window_size=50, n_simulations=50, seed=3)
    np.testing.assert_array_equal(a.thresholds.feature_psi, b.thresholds.feature_psi)
    assert a.thresholds.drifted_features_ratio == b.thresholds.drifted_features_ratio


# -- overrides ---------------------------------------------------------------------------------
def test_with_thresholds_overrides_and_leaves_the_original_alone(fitted, tmp_path):
    rng = np.random.default_rng(18)
    x, p, y = generate(rng, 100)
    window = fitted.window_of(x, p, y)
    assert not fitted.compare(window).drift_detected
    strict = fitted.with_thresholds(class_p_value=1.0, drifted_features_ratio=-1.0)
    report = strict.compare(window)
    assert report.signals["prediction"] and report.signals["input"]
    assert not fitted.compare(window).drift_detected  # frozen original unchanged
    assert strict.thresholds.confidence_psi == fitted.thresholds.confidence_psi
    strict.save(tmp_path / "strict.npz")
    assert DriftReference.load(tmp_path / "strict.npz").thresholds.class_p_value == 1.0
    deaf = fitted.with_thresholds(
        feature_psi=np.full(D, np.inf), confidence_psi=np.inf, class_p_value=0.0, estimated_accuracy_p_value=0.0
    )
    x, p, y = generate(rng, 100, shift=3.0)
    assert not deaf.compare(deaf.window_of(x, p, y)).drift_detected
    with pytest.raises(TypeError):
        fitted.with_thresholds(no_such_threshold=1)
    assert isinstance(fitted.thresholds, Thresholds)


@pytest.mark.slow  # calibrates and compares many windows
@pytest.mark.parametrize("d", [1, 3])
def test_input_signal_can_fire_with_few_features(d):
    # With a handful of features the share of features over their cut can never
    # exceed a calibrated share threshold of 1 or more; the largest scaled PSI is
    # tested instead (a max statistic) so a shifted feature still alarms.
    rng = np.random.default_rng(20 + d)
    probabilities = lambda rows: rng.dirichlet([1, 1, 1], size=rows)  # noqa: E731 - unrelated to x: no prediction drift
    reference = DriftReference.fit(rng.normal(size=(4000, d)), probabilities(4000), window_size=100, n_simulations=1000)
    assert reference.thresholds.drifted_features_ratio < 1
    null = [reference.compare(reference.window_of(rng.normal(size=(100, d)), probabilities(100))) for _ in range(1000)]
    assert sum(r.signals["input"] for r in null) <= 2 * 0.02 * len(null)  # the reachable rate: 10 / 500
    shifted = rng.normal(size=(100, d))
    shifted[:, 0] += 1.5  # one feature moves by 1.5 standard deviations
    assert reference.compare(reference.window_of(shifted, probabilities(100))).signals["input"]


@pytest.mark.slow  # calibrates and compares many windows
def test_a_small_reference_still_calibrates_windows_that_vary():
    """600 rows and windows of 200: the held-out quarter is one window of rows, drawn with replacement."""
    rng = np.random.default_rng(21)
    x, p, y = generate(rng, 600)
    reference = DriftReference.fit(x, p, y, window_size=200, n_simulations=200)
    alarms = sum(reference.compare(reference.window_of(*generate(rng, 200))).drift_detected for _ in range(15))
    assert alarms <= 1
