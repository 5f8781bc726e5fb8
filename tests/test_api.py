"""The public API shows itself: explicit signatures, keyword-only settings, one name and type per setting,
one meaning for close, settings told from defaults, conflicting options refused, get_params complete."""

from __future__ import annotations

import inspect
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.exposition import default_handler

import gangplank
from gangplank import DriftMonitor, DriftReference, ProductionDriftExporter, PushSettings, TrainTestExporter
from gangplank.transport import DEFAULT_TIMEOUT, PushgatewaySender
from tests.test_drift_quality import generate

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = [DriftMonitor, ProductionDriftExporter, TrainTestExporter, DriftReference, PushSettings]


@pytest.fixture(scope="module")
def reference():
    x, p, y = generate(np.random.default_rng(0), 3000)
    return DriftReference.fit(x, p, y, window_size=100, n_simulations=50, accuracy_tolerance=0.05)


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda cls: cls.__name__)
def test_no_public_method_hides_its_parameters(cls):
    hidden = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    for name, member in inspect.getmembers(cls, callable):
        if name.startswith("_") and name != "__init__" or not getattr(member, "__module__", "").startswith("gangplank"):
            continue
        if name in ("with_thresholds", "__exit__"):  # thresholds by name (each checked); the context protocol
            continue
        parameters = inspect.signature(member).parameters.values()
        assert not [p.name for p in parameters if p.kind in hidden], f"{cls.__name__}.{name}"
    assert "__getattr__" not in vars(cls)


@pytest.mark.parametrize("cls", [DriftMonitor, ProductionDriftExporter])
def test_everything_after_job_is_keyword_only(cls, reference):
    parameters = list(inspect.signature(cls).parameters.values())
    assert [p.name for p in parameters[:2]] == ["pgw_addr", "job"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters[2:])
    with pytest.raises(TypeError):
        cls(None, "j", reference)


CALLBACK_ONLY = ["feature_layer"]  # the exporter's parameters a DriftMonitor (which has no model) cannot have


def test_the_exporter_has_the_monitors_signature_and_api(reference):
    monitor = list(inspect.signature(DriftMonitor).parameters.values())
    exporter = list(inspect.signature(ProductionDriftExporter).parameters.values())
    assert exporter[: len(monitor)] == monitor
    assert [p.name for p in exporter[len(monitor) :]] == CALLBACK_ONLY
    assert all(p.kind is p.KEYWORD_ONLY and p.default is None for p in exporter[len(monitor) :])
    with ProductionDriftExporter(None, "j", reference=reference, agent="api", window_size=50) as exporter:
        x, p, _ = generate(np.random.default_rng(1), 60)
        exporter.observe(x, p, shadow=p)
        assert exporter.flush()
        assert exporter.monitor is exporter and exporter.window_size == 50 and exporter.agent == "api"
        assert exporter.last_report.samples == 50 and exporter.reference.n_classes == p.shape[1]
    assert not hasattr(exporter, "sender")


def test_train_test_exporter_keeps_its_0_5_positional_contract():
    parameters = list(inspect.signature(TrainTestExporter).parameters.values())
    positional = ["pgw_addr", "job", "metrics", "histogram_buckets", "handler", "ignore_exceptions"]
    assert [p.name for p in parameters[:6]] == positional
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters[:6])
    assert [p.default for p in parameters[2:6]] == [None, None, None, True]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters[6:])
    exporter = TrainTestExporter(None, "contract", ["loss"], [0.5, 1.0], None, False)
    assert exporter.metrics == ["loss"] and exporter.histogram_buckets == (0.5, 1.0)
    assert exporter.ignore_exceptions is False


def test_one_name_and_one_type_per_setting_across_classes():
    seen: dict[str, object] = {}
    for function in (DriftMonitor, TrainTestExporter, PushSettings.of):
        for parameter in list(inspect.signature(function).parameters.values()):
            if parameter.name in seen:
                assert parameter.annotation == seen[parameter.name], parameter.name
            seen.setdefault(parameter.name, parameter.annotation)
    assert "min_labelled" not in seen
    for cls in (DriftMonitor, TrainTestExporter):
        assert inspect.signature(cls).parameters["grouping_key"].kind is inspect.Parameter.KEYWORD_ONLY
    source = "\n".join(path.read_text() for path in (ROOT / "src/gangplank").rglob("*.py"))
    assert "min_labelled" not in source


def test_push_settings_tell_an_explicit_timeout_from_the_default():
    settings = PushSettings("127.0.0.1:9091", timeout=2.0)
    assert PushSettings.of(settings) is settings
    with pytest.raises(TypeError, match="timeout in the PushSettings"):
        PushSettings.of(settings, timeout=DEFAULT_TIMEOUT)  # the default's value, but given
    assert PushSettings.of("127.0.0.1:9091").timeout == DEFAULT_TIMEOUT
    assert PushSettings.of("127.0.0.1:9091", timeout=DEFAULT_TIMEOUT).timeout == DEFAULT_TIMEOUT


def test_ca_file_with_a_handler_is_refused_everywhere(reference, tmp_path):
    ca_file = tmp_path / "ca.pem"
    for make in (
        lambda: PushSettings("https://127.0.0.1:9091", handler=default_handler, ca_file=ca_file),
        lambda: PushgatewaySender("https://127.0.0.1:9091", "j", handler=default_handler, ca_file=ca_file),
        lambda: TrainTestExporter("https://127.0.0.1:9091", "j", handler=default_handler, ca_file=str(ca_file)),
        lambda: DriftMonitor(
            "https://127.0.0.1:9091", "j", reference=reference, handler=default_handler, ca_file=ca_file
        ),
    ):
        with pytest.raises(TypeError, match="ca_file or handler, not both"):
            make()


def test_get_params_is_complete_and_fits_the_same_reference_again(reference):
    params = reference.get_params()
    fit_keywords = [
        p.name for p in inspect.signature(DriftReference.fit).parameters.values() if p.kind is p.KEYWORD_ONLY
    ]
    assert sorted(params) == sorted(set(fit_keywords) - {"shadow"})
    assert params["accuracy_tolerance"] == 0.05 == reference.thresholds.accuracy_tolerance
    x, p, y = generate(np.random.default_rng(0), 3000)
    again = DriftReference.fit(x, p, y, **params)
    assert again.get_params() == params
    assert again.thresholds.class_p_value == reference.thresholds.class_p_value


def test_fit_documents_every_keyword_argument():
    doc = DriftReference.fit.__doc__ or ""
    for parameter in inspect.signature(DriftReference.fit).parameters.values():
        if parameter.kind is parameter.KEYWORD_ONLY:
            assert f"``{parameter.name}``" in doc or f"{parameter.name}:" in doc, parameter.name


def test_a_saved_reference_keeps_its_accuracy_tolerance(reference, tmp_path):
    reference.save(tmp_path / "r.npz")
    assert DriftReference.load(tmp_path / "r.npz").get_params() == reference.get_params()


def test_close_is_final_for_every_exporter(reference, make_model, data):
    monitor = DriftMonitor(None, "final", reference=reference)
    monitor.close()
    monitor.close()  # a second close does nothing more
    with pytest.raises(RuntimeError, match="close\\(\\) is final"):
        monitor.observe(*generate(np.random.default_rng(2), 5)[:2])
    x, y = data
    exporter = TrainTestExporter(None, "final")
    model = make_model()
    model.evaluate(x, y, verbose=0, callbacks=[exporter])
    assert exporter.close() is True
    with pytest.raises(RuntimeError, match="TrainTestExporter is closed"):
        model.evaluate(x, y, verbose=0, callbacks=[exporter])
    with pytest.raises(RuntimeError, match="TrainTestExporter is closed"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[exporter])
    assert any(m.name == "gangplank_test_loss" for m in exporter.collect())  # a scrape still serves the last


@pytest.mark.slow  # a fresh interpreter (imports Keras)
def test_public_names_stay_what_they_are_whichever_class_loads_first():
    """A submodule imported by another, or by the user, must not hide a public name of the package."""
    script = (
        "import types, gangplank\n"
        "gangplank.ProductionDriftExporter, gangplank.TrainTestExporter, gangplank.DriftMonitor\n"
        "import gangplank.layer_output, gangplank.reduction\n"
        "modules = [name for name in gangplank.__all__ if isinstance(getattr(gangplank, name), types.ModuleType)]\n"
        "assert not modules, modules\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]


@pytest.mark.slow  # runs mypy in a fresh process
def test_the_package_ships_its_types_and_type_checkers_see_the_real_classes(tmp_path):
    assert resources.files("gangplank").joinpath("py.typed").is_file()
    snippet = tmp_path / "use.py"
    snippet.write_text(
        "import gangplank\n"
        "reveal_type(gangplank.DriftMonitor)\n"
        "reveal_type(gangplank.TrainTestExporter)\n"
        "reveal_type(gangplank.metrics.ConfusionMatrix)\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--ignore-missing-imports", str(snippet)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "MYPYPATH": str(ROOT / "src")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'Revealed type is "Any"' not in result.stdout
    assert "gangplank.drift_monitor.DriftMonitor" in result.stdout
    assert "gangplank.train_test_exporter.TrainTestExporter" in result.stdout
    assert "gangplank.metrics.ConfusionMatrix" in result.stdout


def test_lazy_exports_are_the_classes_the_type_checker_sees():
    assert gangplank.DriftMonitor.__module__ == "gangplank.drift_monitor"
    assert gangplank.WindowReport.__module__ == "gangplank._drift.comparison"
