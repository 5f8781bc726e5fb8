"""Smoke test of benchmarks/run.py (and the bench_*.py modules it runs): every benchmark runs in --quick mode.

No timing assertions: the figures of a --quick run on a shared machine mean
nothing. It checks that each benchmark ran, that both sides of every
comparison produced numbers, and that the structure RESULTS.md is written
from is there. The gangplank 0.5.0 side is installed by the runner with pip;
where pip cannot fetch it the runner reports it skipped, and so does this test
for that side only.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench_detection import RULE_LABELS

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "benchmarks" / "run.py"

pytestmark = pytest.mark.slow  # trains two tiny convnets


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "results.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "GANGPLANK_EXIT_FLUSH_SECONDS": "0"}
    done = subprocess.run(
        [sys.executable, str(RUNNER), "all", "--quick", "--json", str(out), "--cache-dir", str(tmp / "cache")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,  # a hang guard, not a timing check
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(out.read_text()), done.stdout


def test_help_runs_from_the_repo_root():
    done = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for option in ("--quick", "--json", "BENCHMARK"):
        assert option in done.stdout


def test_every_benchmark_ran_and_printed_its_table(quick_run):
    results, stdout = quick_run
    for name in ("histogram", "hook", "drift", "memory", "detection", "estimate", "alerts", "detectable"):
        assert results[name]["status"] == "ok"
    headings = ("### 1. Weight histogram", "### 2. One epoch-end hook", "### 3. Drift", "### 4. Memory")
    headings += ("### 5. Detection",)
    for heading in (*headings, "#### Sustained signals", "### Estimate:", "### Alerts:", "### Detectable shift"):
        assert heading in stdout
    meta = results["meta"]
    assert meta["quick"] is True
    for key in ("date", "cpu", "numpy", "scipy", "keras", "tensorflow", "prometheus_client", "command"):
        assert meta[key]
    assert meta["gp05"] is not None or meta["gp05_skipped"]


def test_histogram_counts_every_weight_on_both_sides(quick_run):
    results, _ = quick_run
    row = results["histogram"]["rows"][0]
    assert row["parameters"] == 104202
    assert row["ours_count"] == 104202
    assert positive(row["ours_histogram"]["median_ms"]) and positive(row["ours_end_hook"]["median_ms"])
    if results["meta"]["gp05"] is None:
        pytest.skip(f"gangplank 0.5.0 side skipped: {results['meta']['gp05_skipped']}")
    assert row["gp05_count"] == 104202
    assert positive(row["gp05_histogram"]["median_ms"]) and positive(row["ratio_histogram"])
    assert isinstance(row["bucket_count_differences"], int)


def test_hook_ran_against_every_kind_of_gateway(quick_run):
    results, _ = quick_run
    rows = {r["scenario"]: r for r in results["hook"]["rows"]}
    assert set(rows) == {"live gateway", "closed port", "silent gateway", "HTTP 500"}
    for row in rows.values():
        assert row["ours"]["n"] >= 1 and positive(row["ours"]["median_ms"])
        if results["meta"]["gp05"] is not None:
            assert positive(row["gp05"]["median_ms"]) and positive(row["ratio"])
    if results["meta"]["gp05"] is not None:
        assert rows["silent gateway"]["gp05_timeout_s"] > 0  # the shortened 0.5 timeout is reported


def test_drift_compares_observe_with_ks_and_the_floor(quick_run):
    results, _ = quick_run
    drift = results["drift"]
    assert drift["batch"] == [200, 784]
    for key in ("floor", "ours_closing", "ours_accumulating", "ours_10_rows", "ks_per_feature", "ks_one_call"):
        assert positive(drift["stats"][key]["median_ms"]) and positive(drift["stats"][key]["samples_per_s"])
    for key in ("ks_over_ours_closing", "ours_closing_over_floor"):
        assert positive(drift[key])
    assert positive(drift["fit"]["median_ms"])


def test_memory_children_reported_checkpoints(quick_run):
    results, _ = quick_run
    rows = results["memory"]["rows"]
    assert len(rows) >= 2
    for row in rows:
        assert row["marks"][-1]["samples"] == row["samples"]
        assert all(positive(mark["rss_mb"]) and positive(mark["peak_mb"]) for mark in row["marks"])
        assert row["samples_in_windows"] == row["samples"]  # every observed row reached a closed window


def test_detection_covers_every_scenario_and_rule(quick_run):
    results, _ = quick_run
    scenarios = results["detection"]["scenarios"]
    assert set(scenarios) == {"correct", "inverted pixels", "wrong model"}
    for scenario in scenarios.values():
        for rule in RULE_LABELS:
            outcome = scenario["rules"][rule]
            assert outcome["windows"] == outcome["streams"] * scenario["windows_per_stream"] > 0
            assert 0 <= outcome["alarms_per_100_windows"] <= 100


def test_pipeline_times_every_stage_at_both_strides(quick_run):
    results, stdout = quick_run
    pipeline = results["pipeline"]
    assert "### Pipeline: CPU per sample by stage" in stdout
    assert set(pipeline["strides"]) == {"1", "4"}  # JSON keys
    for out in pipeline["strides"].values():
        assert out["windows"] >= 1 and out["exposition_bytes"] > 0
        for stage in (
            "caller: copy into the ring",
            "worker: take the rows",
            "window: binning the inputs",
            "compare",
            "publish: build the families",
        ):
            assert positive(out["us_per_sample"][stage]), stage


def test_estimate_covers_every_stream_and_window(quick_run):
    results, _ = quick_run
    estimate = results["estimate"]
    rows = {(r["group"], r["stream"], r["window"]) for r in estimate["rows"]}
    assert len(rows) == len(estimate["rows"]) == 8 * len(estimate["windows"])  # 5 MNIST + 3 tabular streams per window
    for row in estimate["rows"]:
        assert 0 <= row["ours_mae"] <= 1 and 0 <= row["ours_fired_rate"] <= 1
        assert ("cbpe_mae" in row) == (estimate["cbpe"]["status"] == "ok")
    assert estimate["cbpe"]["status"] == "ok" or estimate["cbpe"]["reason"]  # --quick never installs NannyML


def test_alerts_replayed_every_stream_label_share_and_shadow_setting(quick_run):
    results, _ = quick_run
    alerts = results["alerts"]
    assert "GangplankModelDegraded" in alerts["alerts"] and "GangplankDataDrift" in alerts["alerts"]
    shadows = {False, True} if alerts["shadow_supported"] else {False}
    streams = {("mnist", s) for s in ("clean", "halved", "silently_wrong", "inverted")}
    streams |= {("tabular", s) for s in ("clean", "silently_wrong", "shift_used_feature", "shift_unused_feature")}
    runs = {(r["group"], r["stream"], r["label_share"], r["shadow"]): r for r in alerts["runs"]}
    assert set(runs) == {(*g, share, shadow) for g in streams for share in (1.0, 0.5, 0.1, 0.0) for shadow in shadows}
    for (_, stream, _, _), run in runs.items():
        assert run["windows"] == alerts["clean_windows" if stream == "clean" else "detect_windows"]
        assert run["first_page"] is None or 1 <= run["first_page"] <= run["windows"]
        assert 0 <= run["page_onsets"] <= run["page_windows"] <= run["windows"]
    # Inverted pixels with every label page: the replay reads the rules' answer, not a constant.
    assert all(runs[("mnist", "inverted", 1.0, shadow)]["first_page"] is not None for shadow in shadows)
    cbpe = alerts["cbpe"]
    assert cbpe["status"] == "ok" or cbpe["reason"]
    if cbpe["status"] == "ok":
        assert {(r["group"], r["stream"]) for r in cbpe["rows"]} == streams


def test_sustained_rates_and_delays_for_every_configuration(quick_run):
    results, _ = quick_run
    sustained = results["detection"]["sustained"]
    configurations = {(c["input_stride"], c["labels"]) for c in sustained["configs"]}
    assert configurations == {(1, False), (1, True), (4, False), (4, True)}
    for config in sustained["configs"]:
        assert config["null"]["sustained input"]["windows"] <= sustained["null_windows"]
        assert set(config["delays"]) == {"inverted pixels", "wrong model"}
        for delays in config["delays"].values():
            assert all(len(v) == sustained["delay_streams"] for v in delays.values())


def test_detectable_covers_its_quick_grid_mnist_and_the_alarm_delays(quick_run):
    results, _ = quick_run
    detectable = results["detectable"]
    assert {(c["rows"], c["window"]) for c in detectable["tabular"]} == {(114, 30), (114, 100), (500, 30), (500, 100)}
    for cell in [*detectable["tabular"], detectable["mnist"]]:
        for key in ("shift_all_sd", "shift_some_sd", "class_share_increase", "confidence_drop"):
            assert cell[key] >= 0, (key, cell)  # a size, 0 (fires unshifted) or inf (not caught)
        assert positive(cell["seconds"]) and cell["psi_cut"] > 0
    assert detectable["mnist"]["features"] == 784
    median, p90 = detectable["alarm_windows"]["0.5"]
    assert 3 <= median <= p90  # GangplankDataDrift needs 3 windows at best


def test_wide_measured_every_case_raw_and_reduced(quick_run):
    results, stdout = quick_run
    assert results["wide"]["status"] == "ok" and "### Wide inputs" in stdout
    rows = {row["case"]: row for row in results["wide"]["rows"]}
    reduced = ("pool_images((8, 8))", "feature_subset(every 784th)", "random_projection(64)")
    for case in ("raw 784", "raw 150,528", *reduced):
        for key in ("fit_s", "fit_peak_mb", "us_per_sample", "observe_us_per_sample"):
            assert positive(rows[case][key]), (case, key)
    assert rows["raw 150,528"]["features"] == rows["raw 150,528"]["features_in"]
    assert rows["pool_images((8, 8))"]["features"] == 8 * 8 * 3
    assert rows["random_projection(64)"]["features"] == 64
