"""Benchmark: the label-free accuracy estimate against realised accuracy, and NannyML's CBPE on the same windows.

Streams (rows drawn with replacement from a pool, cut into windows of 200 and
of 500): MNIST through the demo convnet (correct; halved intensity x*0.5;
digits 0-4 only; the wrong model; inverted 1-x) and a synthetic tabular set
with a logistic regression (no shift; covariate shift along a feature the
model uses; covariate shift along one it cannot use). Each window goes
through a push-less ``DriftMonitor`` without labels; its
``estimated_accuracy`` is compared with the window's realised accuracy from
the true labels: mean absolute error, mean signed error, and how often the
``estimated_accuracy`` signal fired.

The peer: NannyML's CBPE, fitted on the same reference rows, on the same
windows as chunks (``chunk_size`` = the window). NannyML stays out of the
project: it is installed into its own venv under ``benchmarks/.vendor/`` on a
full run (never by ``--quick``, which uses it only if it is already there) and
runs in a subprocess (``cbpe_child.py``) that reads the windows from an .npz.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import HERE, table
from benchmarks.monitor_windows import monitor_windows, window_rows

NANNYML_VERSION = "0.13.1"
NANNYML_PACKAGES = [f"nannyml=={NANNYML_VERSION}", "statsmodels"]  # 0.13.1 imports statsmodels without requiring it
WINDOWS = {200: 250, 500: 100}  # window size -> windows per stream
QUICK_WINDOWS = {200: 6, 500: 3}

MNIST_STREAMS = ("correct", "halved intensity", "digits 0-4", "wrong model", "inverted")
TABULAR_STREAMS = {
    "no shift": {},
    "shift on a used feature (x0 + 1)": {0: 1.0},
    "shift on an unused feature (x3 + 1.5)": {3: 1.5},
}
TABULAR_FEATURES = 6


# ----------------------------------------------------------------------------- data
def mnist(ctx) -> tuple[dict, dict]:
    """The reference rows and each stream's pool (inputs, probabilities, labels) for MNIST."""
    data = ctx.data
    reference = {"x": data.flat_ref, "p": data.p_ref, "y": data.y_ref}
    digits = np.nonzero(data.y_test < 5)[0]
    pools = {
        "correct": (data.flat_test, data.p_test, data.y_test),
        "halved intensity": (data.flat_test * 0.5, _halved_probabilities(ctx), data.y_test),
        "digits 0-4": (data.flat_test[digits], data.p_test[digits], data.y_test[digits]),
        "wrong model": (data.flat_test, data.p_wrong, data.y_test),
        "inverted": (1.0 - data.flat_test, data.p_inverted, data.y_test),
    }
    return reference, pools


def _halved_probabilities(ctx) -> np.ndarray:
    data = ctx.data
    path = ctx.cache / f"predictions-halved-{data.correct_path.stem}-t{data.x_test.shape[0]}.npz"
    if path.exists() and path.stat().st_mtime >= data.correct_path.stat().st_mtime:
        with np.load(path) as f:
            return f["p"]
    ctx.log("estimate: predicting the halved-intensity test images (cached)")
    p = data.correct.predict(data.x_test * 0.5, batch_size=500, verbose=0).astype(np.float32)
    np.savez(path, p=p)
    return p


def _truth_logit(x: np.ndarray) -> np.ndarray:
    # x3 enters only squared: a linear model cannot use it, and learns a weight of about 0 for it.
    return 1.8 * x[:, 0] - 1.2 * x[:, 1] + 0.8 * x[:, 2] + 0.9 * (x[:, 3] ** 2 - 1)


def _tabular_rows(rng, n: int, shift: dict) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the synthetic set; ``shift`` moves feature means (covariate shift: P(y | x) is unchanged)."""
    x = rng.normal(size=(n, TABULAR_FEATURES))
    for feature, by in shift.items():
        x[:, feature] += by
    y = (rng.random(n) < 1 / (1 + np.exp(-_truth_logit(x)))).astype(np.int64)
    return x.astype(np.float32), y


def _logistic_regression(x: np.ndarray, y: np.ndarray, steps: int = 25, l2: float = 1e-3) -> np.ndarray:
    """Weights (features + intercept) by Newton's method."""
    a = np.hstack([x, np.ones((x.shape[0], 1))]).astype(np.float64)
    w = np.zeros(a.shape[1])
    for _ in range(steps):
        q = 1 / (1 + np.exp(-a @ w))
        hessian = (a * (q * (1 - q))[:, None]).T @ a + l2 * np.eye(a.shape[1])
        w -= np.linalg.solve(hessian, a.T @ (q - y) + l2 * w)
    return w


def _predict(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    q = 1 / (1 + np.exp(-(x.astype(np.float64) @ w[:-1] + w[-1])))
    return np.stack([1 - q, q], axis=1).astype(np.float32)


def tabular(quick: bool) -> tuple[dict, dict, np.ndarray]:
    """Reference rows and stream pools of the synthetic set, and the model's weights."""
    rng = np.random.default_rng(11)
    x_train, y_train = _tabular_rows(rng, 20000, {})
    w = _logistic_regression(x_train, y_train)
    x_ref, y_ref = _tabular_rows(rng, 2000 if quick else 10000, {})
    pools = {}
    for name, shift in TABULAR_STREAMS.items():
        x, y = _tabular_rows(rng, 2000 if quick else 10000, shift)
        pools[name] = (x, _predict(w, x), y)
    return {"x": x_ref, "p": _predict(w, x_ref), "y": y_ref}, pools, w


# ----------------------------------------------------------------------------- NannyML
def nannyml_python(vendor_dir: Path, install: bool) -> tuple[Path | None, str | None]:
    """The python of NannyML's own venv under ``vendor_dir``, creating it if ``install``; else ``(None, reason)``."""
    env = vendor_dir / f"nannyml-{NANNYML_VERSION}"
    python = env / "bin" / "python"
    ready = env / "gangplank-bench-ready"  # written once the venv imported nannyml
    if ready.exists() and python.exists():
        return python, None
    if not install:
        return None, f"NannyML's venv is not at {env} and --quick never installs it (a full run does)"
    steps = [
        [sys.executable, "-m", "venv", str(env)],
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--quiet", *NANNYML_PACKAGES],
        [str(python), "-c", "import nannyml"],
    ]
    for command in steps:
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=900,
                env={**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"},
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return None, f"{' '.join(command[:3])}… could not run: {exc}"
        if done.returncode:
            lines = [
                line
                for line in (done.stderr or done.stdout).strip().splitlines()
                if not line.startswith("WARNING: Location")
            ]
            return None, f"`{' '.join(command[-2:])}` failed: {' '.join(lines[-3:])}"
    ready.write_text(" ".join(NANNYML_PACKAGES) + "\n")
    return python, None


def run_cbpe(python: Path, groups: dict, streams: list[dict]) -> tuple[dict, dict]:
    """CBPE's per-chunk estimate, realised accuracy and alert for every stream, and its versions/seconds."""
    with tempfile.TemporaryDirectory(prefix="gangplank-cbpe-") as tmp:
        tmp = Path(tmp)
        arrays, jobs = {}, {}
        for group, ref in groups.items():
            arrays[f"ref_p__{group}"], arrays[f"ref_y__{group}"] = ref["p"], ref["y"]
        for s in streams:
            arrays[f"p__{s['key']}"], arrays[f"y__{s['key']}"] = s["p"], s["y"]
            job = jobs.setdefault(
                (s["group"], s["window"]),
                {"group": s["group"], "window": s["window"], "classes": int(s["p"].shape[1]), "streams": []},
            )
            job["streams"].append(s["key"])
        np.savez(tmp / "windows.npz", **arrays)
        (tmp / "manifest.json").write_text(json.dumps({"jobs": list(jobs.values())}))
        env = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        done = subprocess.run(
            [str(python), str(HERE / "cbpe_child.py"), str(tmp)], capture_output=True, text=True, timeout=1800, env=env
        )
        if done.returncode:
            raise RuntimeError(f"cbpe_child.py failed: {done.stderr.strip()[-2000:]}")
        with np.load(tmp / "cbpe.npz") as f:
            out = {k: f[k] for k in f.files}
        return out, json.loads((tmp / "cbpe.json").read_text())


# ----------------------------------------------------------------------------- the benchmark
def bench_estimate(ctx):
    from gangplank import DriftReference

    windows = QUICK_WINDOWS if ctx.quick else WINDOWS
    mnist_ref, mnist_pools = mnist(ctx)
    tab_ref, tab_pools, tab_weights = tabular(ctx.quick)
    groups = {"mnist": mnist_ref, "tabular": tab_ref}
    pools = {"mnist": mnist_pools, "tabular": tab_pools}

    streams = []
    for group, ref in groups.items():
        for window, n_windows in windows.items():
            ctx.log(f"estimate: {group}, fitting the reference for windows of {window}")
            reference = DriftReference.fit(ref["x"], ref["p"], ref["y"], window_size=window)
            for i, (name, (x, p, y)) in enumerate(pools[group].items()):
                rows = window_rows(np.random.default_rng(100 * window + i), x.shape[0], n_windows, window)
                start = time.perf_counter()
                records = monitor_windows(reference, x, p, rows, agent=f"estimate-{group}-{i}-{window}")
                streams.append(
                    {
                        "group": group,
                        "stream": name,
                        "window": window,
                        "key": f"{group}__{i}__{window}",
                        "p": p[rows.ravel()],
                        "y": y[rows.ravel()],
                        "reference_accuracy": reference.accuracy,
                        "realised": (p[rows].argmax(axis=-1) == y[rows]).mean(axis=1),
                        "ours": np.array([r["estimate"] for r in records]),
                        "ours_fired": np.array([r["signals"]["estimated_accuracy"] for r in records]),
                        "ours_seconds": time.perf_counter() - start,
                    }
                )
    cbpe = {"status": "skipped"}
    python, reason = nannyml_python(Path(ctx.args.vendor_dir), install=not ctx.quick)
    if python is None:
        cbpe["reason"] = reason
        ctx.log(f"estimate: CBPE skipped: {reason}")
    else:
        ctx.log(f"estimate: NannyML CBPE on the same windows ({python})")
        try:
            estimates, meta = run_cbpe(python, groups, streams)
            cbpe = {"status": "ok", **meta}
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            cbpe = {"status": "skipped", "reason": str(exc)}
        if cbpe["status"] == "ok":
            for s in streams:
                s["cbpe"] = estimates[f"estimate__{s['key']}"]
                s["cbpe_alert"] = estimates[f"alert__{s['key']}"]
                # The chunks must be our windows: NannyML's realised accuracy per chunk equals ours.
                if not np.allclose(estimates[f"realised__{s['key']}"], s["realised"]):
                    raise RuntimeError(
                        f"CBPE's chunks are not our windows for {s['group']} / {s['stream']} / {s['window']}"
                    )
    rows = [_summary(s) for s in streams]
    return {
        "status": "ok",
        "windows": {str(k): v for k, v in windows.items()},
        "reference_rows": {g: int(r["y"].size) for g, r in groups.items()},
        "reference_accuracy": {g: next(s["reference_accuracy"] for s in streams if s["group"] == g) for g in groups},
        "tabular_weights": [float(v) for v in tab_weights],
        "cbpe": cbpe,
        "rows": rows,
    }


def _summary(s: dict) -> dict:
    realised = s["realised"]
    out = {k: s[k] for k in ("group", "stream", "window")}
    out.update(
        {
            "windows": int(realised.size),
            "realised_mean": float(realised.mean()),
            "constant_mae": float(
                np.abs(realised - realised.mean()).mean()
            ),  # a constant at the stream's pooled accuracy
            "ours_mean": float(s["ours"].mean()),
            "ours_mae": float(np.abs(s["ours"] - realised).mean()),
            "ours_bias": float((s["ours"] - realised).mean()),
            "ours_fired_rate": float(s["ours_fired"].mean()),
            "ours_seconds": s["ours_seconds"],
        }
    )
    if "cbpe" in s:
        cbpe = s["cbpe"]
        out.update(
            {
                "cbpe_mean": float(cbpe.mean()),
                "cbpe_mae": float(np.abs(cbpe - realised).mean()),
                "cbpe_bias": float((cbpe - realised).mean()),
                "cbpe_alert_rate": float(s["cbpe_alert"].mean()),
                "ours_closer_share": float(np.mean(np.abs(s["ours"] - realised) <= np.abs(cbpe - realised))),
            }
        )
        # Windows are independent draws: the paired difference of absolute errors has this standard error.
        difference = np.abs(s["ours"] - realised) - np.abs(cbpe - realised)
        out["mae_difference"] = float(difference.mean())
        out["mae_difference_se"] = (
            float(difference.std(ddof=1) / np.sqrt(difference.size)) if difference.size > 1 else float("nan")
        )
        out["goal_met"] = out["ours_mae"] <= out["cbpe_mae"]
        out["missed_by"] = max(out["ours_mae"] - out["cbpe_mae"], 0.0)
        out["within_noise"] = abs(out["mae_difference"]) <= 2 * out["mae_difference_se"]
    return out


def report_estimate(result):
    cbpe = result["cbpe"]
    ref = result["reference_accuracy"]
    out = [
        "### Estimate: label-free accuracy against realised accuracy, ours and NannyML's CBPE "
        "(python benchmarks/run.py estimate)",
        "",
        f"Windows per stream: {', '.join(f'{v} of {k}' for k, v in result['windows'].items())}, rows drawn with "
        f"replacement. Reference: MNIST {result['reference_rows']['mnist']:,} held-out training images (accuracy "
        f"{ref['mnist']:.4f}); tabular {result['reference_rows']['tabular']:,} rows (accuracy {ref['tabular']:.4f}). "
        "Errors in accuracy points (0.01 = 1 %).",
        "",
    ]
    if cbpe["status"] == "ok":
        versions = ", ".join(f"{k} {v}" for k, v in cbpe["versions"].items())
        out += [f"CBPE: {versions}, in its own venv; the same reference rows, chunk = window.", ""]
    else:
        out += [f"**CBPE skipped**: {cbpe['reason']}", ""]
    header = [
        "data / stream",
        "window",
        "realised",
        "ours: mean",
        "ours: MAE",
        "ours: bias",
        "CBPE: MAE",
        "CBPE: bias",
        "constant",
        "ours − CBPE (± 2 s.e.)",
        "goal (MAE ≤ CBPE)",
        "ours fired",
        "CBPE alert",
    ]
    rows = []
    for r in result["rows"]:
        has = "cbpe_mae" in r
        missed = "< 0.0001" if has and r["missed_by"] < 5e-5 else f"{r.get('missed_by', 0):.4f}"
        verdict = "–" if not has else ("met" if r["goal_met"] else f"missed by {missed}")
        if has and r["within_noise"]:
            verdict += " (within noise)"
        rows.append(
            [
                f"{r['group']} / {r['stream']}",
                r["window"],
                f"{r['realised_mean']:.4f}",
                f"{r['ours_mean']:.4f}",
                f"{r['ours_mae']:.4f}",
                f"{r['ours_bias']:+.4f}",
                f"{r['cbpe_mae']:.4f}" if has else "–",
                f"{r['cbpe_bias']:+.4f}" if has else "–",
                f"{r['constant_mae']:.4f}",
                f"{r['mae_difference']:+.4f} ± {2 * r['mae_difference_se']:.4f}" if has else "–",
                verdict,
                f"{100 * r['ours_fired_rate']:.0f} %",
                f"{100 * r['cbpe_alert_rate']:.0f} %" if has else "–",
            ]
        )
    out.append(table(header, rows))
    out += [
        "",
        "- MAE: mean over windows of |estimate − realised accuracy of the window|; bias: mean of "
        "(estimate − realised). Constant: the MAE of a constant at the stream's pooled realised accuracy, which "
        "knows the stream's accuracy but nothing of the window (an estimate that reads the window's confidences "
        "can beat it). ours − CBPE: the mean paired difference of absolute errors, ± twice its standard error.",
        "- ours fired: windows where `estimated_accuracy` fired (estimate significantly below reference − "
        "tolerance 0.02). CBPE alert: NannyML's own alert (estimate outside its reference-chunk thresholds, "
        "either side).",
    ]
    if cbpe["status"] == "ok":
        met = sum(r["goal_met"] for r in result["rows"])
        beyond = sum(not r["goal_met"] and not r["within_noise"] for r in result["rows"])
        out.append(
            f"- goal met on {met} of {len(result['rows'])} stream × window rows; missed beyond 2 s.e. on {beyond}."
        )
    return "\n".join(out)
