#!/usr/bin/env python
"""Side-by-side benchmarks: gangplank against gangplank 0.5.0 and the drift peers.

Usage (from the repository root, with the project's virtualenv)::

    python benchmarks/run.py                 # every benchmark, full size
    python benchmarks/run.py histogram hook  # some of them
    python benchmarks/run.py --quick         # tiny sizes, for the smoke test

Benchmarks (issue 5):

``histogram``  weight histogram export, 0.5's per-weight ``Histogram.observe`` loop
               against ``WeightHistogram.from_model(...).to_metric(...)``, on the
               104,202-parameter MNIST convnet and a 1.2M-parameter model.
``hook``       what one ``on_epoch_end`` costs the training loop, ours against 0.5,
               with a live gateway, a closed port, a silent gateway and HTTP 500.
``drift``      ``ProductionDriftExporter.observe`` on 200x784 MNIST batches against
               ``scipy.stats.ks_2samp`` per feature (alibi-detect KSDrift's method)
               and a numpy sum over the batch (memory-bandwidth floor); also
               ``DriftReference.fit``.
``memory``     peak RSS of an exporter process after 10k and 1M observed samples
               (child processes).
``detection``  real MNIST, window 200, batches of 1-20: windows until the first
               alarm and false alarms per 100 windows, ours against the
               chi-square rule of 0.5's drift example; correct stream, inverted
               pixels, wrong model.

Every comparison runs both sides in this one process, alternating call by call
(the order flips every repeat), repeated, and reports medians and ratios.

gangplank 0.5.0 is installed on demand with ``pip install --no-deps --target
benchmarks/.vendor/gangplank-0.5.0`` and imported as ``gangplank05`` (a renamed
package; it does not shadow ours). If pip cannot fetch it, the 0.5 side is
reported as skipped. Trained models, predictions and references are cached in
``benchmarks/.cache`` (both directories are git-ignored). Results are printed as
Markdown tables and written as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import importlib.util
import io
import json
import logging
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GANGPLANK_EXIT_FLUSH_SECONDS", "1")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.gateway_tools (SilentServer, StatusServer)

import numpy as np  # noqa: E402

MNIST = Path(os.environ.get("GANGPLANK_MNIST", "/work/shared/data/mnist.npz"))
GP05_VERSION = "0.5.0"
BENCHMARKS = ("histogram", "hook", "drift", "memory", "detection")
PIXELS = 784


# ----------------------------------------------------------------------------- timing
def interleaved(cases, repeats, inner=None, pause=0.0, contexts=None):
    """Time every case ``repeats`` times, alternating: A B C, C B A, A B C, ...

    ``inner[name]`` calls are timed as one block and divided (for sub-ms
    cases); ``pause`` seconds pass (untimed) after every block;
    ``contexts[name]()`` is entered (untimed) around that case's block.
    Returns ``{name: [seconds per call, ...]}``.
    """
    inner = inner or {}
    contexts = contexts or {}
    names = list(cases)
    times = {name: [] for name in names}
    cpu = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            fn, k = cases[name], inner.get(name, 1)
            gc.collect()
            with contexts.get(name, contextlib.nullcontext)():
                cpu_start, start = time.process_time(), time.perf_counter()
                for _ in range(k):
                    fn()
                elapsed, cpu_elapsed = time.perf_counter() - start, time.process_time() - cpu_start
            times[name].append(elapsed / k)
            cpu[name].append(cpu_elapsed / k)
            if pause:
                time.sleep(pause)
    interleaved.cpu = cpu  # process CPU seconds (all threads) per call, for diagnosis
    return times


def summary(seconds):
    values = np.asarray(seconds, dtype=np.float64)
    return {
        "median_ms": float(np.median(values) * 1e3),
        "min_ms": float(values.min() * 1e3),
        "max_ms": float(values.max() * 1e3),
        "n": int(values.size),
    }


def ratio(slow, fast):
    return float(slow["median_ms"] / fast["median_ms"]) if fast["median_ms"] > 0 else float("inf")


def paired_ratios(slow, fast):
    """Ratios of the timings taken in the same repeat (min, median, max)."""
    pairs = np.asarray(slow) / np.asarray(fast)
    return [float(pairs.min()), float(np.median(pairs)), float(pairs.max())]


def fmt_ms(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}"
    if value >= 0.01:
        return f"{value:.3f}"
    return f"{value:.4f}"


def fmt_x(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.0f}x" if value >= 10 else f"{value:.2f}x"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- environment
def machine_info():
    import keras
    import prometheus_client
    import scipy
    import tensorflow as tf

    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        pgw = subprocess.run(["/usr/bin/prometheus-pushgateway", "--version"], capture_output=True, text=True, timeout=10)
        pushgateway = (pgw.stdout or pgw.stderr).splitlines()[0].strip()
    except (OSError, IndexError, subprocess.SubprocessError):
        pushgateway = "?"
    import gangplank

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    return {
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "src_uncommitted_changes": bool(git("status", "--porcelain", "--", "src")),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "prometheus_client": _version("prometheus_client", prometheus_client),
        "pushgateway": pushgateway,
        "gangplank": gangplank.__version__,
        "loadavg_start": _loadavg(),
    }


def _version(name, module):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return getattr(module, "__version__", "?")


def _loadavg():
    with contextlib.suppress(OSError):
        return Path("/proc/loadavg").read_text().split()[:3]
    return None


class BlasThreads:
    """Set numpy's OpenBLAS thread count at run time (ctypes; the library numpy already loaded).

    ``BlasThreads.limit(1)`` is a context manager; ``available`` is False
    when the library or its symbols are not found (then nothing changes).
    """

    _lib = _set = _get = None

    @classmethod
    def _load(cls):
        if cls._lib is not None:
            return cls._set is not None
        import ctypes
        import glob

        cls._lib = False
        paths = glob.glob(str(Path(np.__file__).parent.parent / "numpy.libs" / "libscipy_openblas*.so*"))
        for path in paths:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for setter, getter in (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
                                   ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
                                   ("openblas_set_num_threads", "openblas_get_num_threads")):
                if hasattr(lib, setter) and hasattr(lib, getter):
                    cls._lib, cls._set, cls._get = lib, getattr(lib, setter), getattr(lib, getter)
                    cls._set.argtypes, cls._get.restype = [ctypes.c_int], ctypes.c_int
                    return True
        return False

    @classmethod
    def available(cls):
        return cls._load()

    @classmethod
    def current(cls):
        return cls._get() if cls._load() else None

    @classmethod
    @contextlib.contextmanager
    def limit(cls, threads):
        if not cls._load():
            yield
            return
        before = cls._get()
        cls._set(threads)
        try:
            yield
        finally:
            cls._set(before)


# ----------------------------------------------------------------------------- gangplank 0.5.0
def load_gp05(vendor_dir: Path):
    """gangplank 0.5.0 imported as ``gangplank05`` from ``vendor_dir``, installing it if needed.

    Returns ``(module, None)`` or ``(None, reason)``.
    """
    if "gangplank05" in sys.modules:
        return sys.modules["gangplank05"], None
    target = vendor_dir / f"gangplank-{GP05_VERSION}"
    init = target / "gangplank" / "__init__.py"
    metadata = target / f"gangplank-{GP05_VERSION}.dist-info" / "METADATA"
    if not (init.exists() and metadata.exists()):
        command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--disable-pip-version-check",
                   "--quiet", "--upgrade", "--target", str(target), f"gangplank=={GP05_VERSION}"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            return None, f"pip could not run: {exc}"
        if done.returncode or not (init.exists() and metadata.exists()):
            tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-2:])
            return None, f"pip install gangplank=={GP05_VERSION} failed: {tail}"
    # The 0.5 package imports only keras and prometheus_client (alibi appears in
    # its examples, not in the package), so it loads whole, unmodified.
    spec = importlib.util.spec_from_file_location("gangplank05", init, submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["gangplank05"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # an optional import failing would land here
        del sys.modules["gangplank05"]
        return None, f"gangplank {GP05_VERSION} did not import: {type(exc).__name__}: {exc}"
    module.VERSION = GP05_VERSION
    return module, None


# ----------------------------------------------------------------------------- models and data
def mnist_convnet():
    """gangplank 0.5's example MNIST convnet (104,202 parameters)."""
    import keras
    from keras import layers

    inputs = keras.Input((28, 28, 1))
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(128, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def big_model():
    """Conv2D 32, Conv2D 64, max pooling, Dense 128, Dense 10 on 28x28x1 (1,199,882 parameters)."""
    import keras
    from keras import layers

    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, 3, activation="relu"),
        layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class Data:
    """MNIST, the two trained models, their predictions and the drift reference (cached)."""

    def __init__(self, cache: Path, quick: bool, log):
        import keras

        self.quick = quick
        with np.load(MNIST, allow_pickle=False) as f:
            x_train, y_train, x_test, y_test = f["x_train"], f["y_train"], f["x_test"], f["y_test"]
        n_train = 2000 if quick else 50000
        n_ref = 2000 if quick else 10000
        n_test = 2000 if quick else 10000
        scale = lambda a: (a.astype(np.float32) / 255.0).reshape(-1, 28, 28, 1)  # noqa: E731
        self.n_train = n_train
        self.train_labels = y_train[:n_train]
        self.x_ref = scale(x_train[n_train:n_train + n_ref])  # held out: the models never see it
        self.y_ref = y_train[n_train:n_train + n_ref].astype(np.int64)
        self.x_test = scale(x_test[:n_test])
        self.y_test = y_test[:n_test].astype(np.int64)

        tag = f"n{n_train}-e1-s0"
        self.correct_path = cache / f"convnet-correct-{tag}.keras"
        self.wrong_path = cache / f"convnet-wrong-{tag}.keras"
        rng = np.random.default_rng(0)
        y = y_train[:n_train]
        keep = (y % 2 == 1) | (rng.random(n_train) < 0.03)  # all odd digits, each even one with p = 0.03
        self.wrong_even_share = float(np.mean(y[keep] % 2 == 0))
        self.train_seconds = {}
        for path, rows, name in ((self.correct_path, np.arange(n_train), "correct"), (self.wrong_path, np.nonzero(keep)[0], "wrong")):
            if not path.exists():
                log(f"training the {name} convnet on {rows.size} images (1 epoch), cached as {path}")
                keras.utils.set_random_seed(0)
                model = mnist_convnet()
                start = time.perf_counter()
                model.fit(scale(x_train[rows]), y[rows].astype(np.int64), epochs=1, batch_size=64, verbose=0)
                self.train_seconds[name] = time.perf_counter() - start
                model.save(path)
        self.correct = keras.models.load_model(self.correct_path)
        self.wrong = keras.models.load_model(self.wrong_path)

        predictions = cache / f"predictions-{tag}-r{n_ref}-t{n_test}.npz"
        if predictions.exists() and predictions.stat().st_mtime >= max(self.correct_path.stat().st_mtime, self.wrong_path.stat().st_mtime):
            with np.load(predictions) as f:
                arrays = {k: f[k] for k in f.files}
        else:
            log("predicting reference, test, inverted-test and wrong-model probabilities (cached)")
            predict = lambda m, x: m.predict(x, batch_size=500, verbose=0).astype(np.float32)  # noqa: E731
            arrays = {
                "p_ref": predict(self.correct, self.x_ref),
                "p_test": predict(self.correct, self.x_test),
                "p_inverted": predict(self.correct, 1.0 - self.x_test),
                "p_wrong": predict(self.wrong, self.x_test),
            }
            np.savez(predictions, **arrays)
        self.p_ref, self.p_test, self.p_inverted, self.p_wrong = (arrays[k] for k in ("p_ref", "p_test", "p_inverted", "p_wrong"))
        self.flat_ref = self.x_ref.reshape(-1, PIXELS)
        self.flat_test = self.x_test.reshape(-1, PIXELS)
        self.accuracy = {
            "correct_on_test": float(np.mean(self.p_test.argmax(1) == self.y_test)),
            "correct_on_inverted": float(np.mean(self.p_inverted.argmax(1) == self.y_test)),
            "wrong_on_test": float(np.mean(self.p_wrong.argmax(1) == self.y_test)),
        }
        self.reference_path = cache / f"reference-{tag}-r{n_ref}.npz"
        self._reference = None

    def reference(self):
        """The drift reference fitted on the held-out rows (cached file)."""
        from gangplank import DriftReference

        if self._reference is None:
            if self.reference_path.exists() and self.reference_path.stat().st_mtime >= self.correct_path.stat().st_mtime:
                self._reference = DriftReference.load(self.reference_path)
            else:
                self._reference = DriftReference.fit(self.flat_ref, self.p_ref, self.y_ref)
                self._reference.save(self.reference_path)
        return self._reference


# ----------------------------------------------------------------------------- 1. weight histogram
def bench_histogram(ctx):
    import keras

    from gangplank import TrainTestExporter
    from gangplank.weights import HISTOGRAM_WEIGHT_BUCKETS_0_3, WeightHistogram

    gp05 = ctx.gp05
    keras.utils.set_random_seed(1)
    models = [("MNIST convnet (0.5 example)", ctx.data.correct)]
    if not ctx.quick:
        models.append(("Conv32-Conv64-Pool-Dense128-Dense10 (untrained)", big_model()))
    repeats = 2 if ctx.quick else ctx.repeats(9)
    logs = {"accuracy": 0.98, "loss": 0.05}
    rows = []
    for label, model in models:
        params = int(model.count_params())
        ctx.log(f"histogram: {label}, {params:,} parameters, {repeats} repeats")
        name = "gangplank_test_model_weights"

        def ours_histogram():
            return WeightHistogram.from_model(model, HISTOGRAM_WEIGHT_BUCKETS_0_3).to_metric(name, "weights")

        ours_hook = TrainTestExporter(ctx.gateway.address, "bench-histogram-ours", histogram_buckets=HISTOGRAM_WEIGHT_BUCKETS_0_3, ignore_exceptions=False)
        ours_hook.set_model(model)

        def ours_end_hook():  # families incl. the histogram, then a synchronous push (ignore_exceptions=False)
            ours_hook.on_test_begin()
            ours_hook.on_test_end(logs)

        cases = {"ours_histogram": ours_histogram, "ours_end_hook": ours_end_hook}
        fresh = []
        if gp05 is not None:
            # 0.5 registers its Histogram in the exporter's registry: one fresh
            # exporter per call, made before the timing starts.
            def make05():
                exporter = gp05.TrainTestExporter(ctx.gateway.address, "bench-histogram-05", histogram_buckets=gp05.HISTOGRAM_WEIGHT_BUCKETS_0_3, ignore_exceptions=False)
                exporter.set_model(model)
                return exporter

            fresh = [make05() for _ in range(2 * repeats + 1)]
            made = []

            def gp05_histogram():
                exporter = fresh.pop()
                exporter._construct_histogram(name)  # its per-weight Histogram.observe loop
                made.append(exporter)

            def gp05_end_hook():  # histogram + synchronous push of the test metrics
                exporter = fresh.pop()
                exporter.on_test_begin({})
                exporter.on_test_end(logs)

            cases.update({"gp05_histogram": gp05_histogram, "gp05_end_hook": gp05_end_hook})
        times = interleaved(cases, repeats)
        stats = {k: {**summary(v), "process_cpu_median_ms": float(np.median(interleaved.cpu[k]) * 1e3)} for k, v in times.items()}
        row = {"model": label, "parameters": params, **{k: s for k, s in stats.items()}}
        ours_metric = ours_histogram()
        ours_counts = [s.value for s in ours_metric.samples if s.name.endswith("_bucket")]
        row["ours_count"] = ours_counts[-1]
        row["ours_sum"] = next(s.value for s in ours_metric.samples if s.name.endswith("_sum"))
        if gp05 is not None:
            row["ratio_histogram"] = ratio(stats["gp05_histogram"], stats["ours_histogram"])
            row["paired_ratio_histogram"] = paired_ratios(times["gp05_histogram"], times["ours_histogram"])
            row["ratio_end_hook"] = ratio(stats["gp05_end_hook"], stats["ours_end_hook"])
            gp05_exporter = made[-1]
            old_counts = [s.value for m in gp05_exporter.registry.collect() for s in m.samples if s.name.endswith("_bucket")]
            row["gp05_count"] = old_counts[-1]
            row["bucket_count_differences"] = int(sum(abs(a - b) for a, b in zip(ours_counts, old_counts)))
        rows.append(row)
        ours_hook.sender.close(timeout=1)
    return {"status": "ok", "buckets": "HISTOGRAM_WEIGHT_BUCKETS_0_3", "repeats": repeats, "rows": rows,
            "gp05": None if gp05 is None else GP05_VERSION, "gp05_skipped": ctx.gp05_reason}


def report_histogram(result):
    rows = []
    for r in result["rows"]:
        rows.append([f"{r['model']}, {r['parameters']:,} params", "histogram (compute + metric)",
                     fmt_ms(r.get("gp05_histogram", {}).get("median_ms")), fmt_ms(r["ours_histogram"]["median_ms"]),
                     fmt_ms(r["ours_histogram"]["min_ms"]), fmt_x(r.get("ratio_histogram")),
                     "–" if "paired_ratio_histogram" not in r else " / ".join(fmt_x(v) for v in r["paired_ratio_histogram"])])
        rows.append(["", "end hook, live gateway (histogram + synchronous push)",
                     fmt_ms(r.get("gp05_end_hook", {}).get("median_ms")), fmt_ms(r["ours_end_hook"]["median_ms"]),
                     fmt_ms(r["ours_end_hook"]["min_ms"]), fmt_x(r.get("ratio_end_hook")), ""])
    out = [f"### 1. Weight histogram export ({result['buckets']}, median of {result['repeats']} alternating repeats)", "",
           table(["model", "path", "0.5.0 ms", "ours ms", "ours min ms", "0.5 / ours (medians)", "paired ratios min / median / max"], rows)]
    for r in result["rows"]:
        if "bucket_count_differences" in r:
            out.append(f"- {r['model']}: ours counts {r['ours_count']:,.0f} weights (sum {r['ours_sum']:.3f}); 0.5 counts "
                       f"{r['gp05_count']:,.0f}; bucket counts differ by {r['bucket_count_differences']} in total.")
    if result.get("gp05_skipped"):
        out.append(f"- 0.5 side skipped: {result['gp05_skipped']}")
    return "\n".join(out)


# ----------------------------------------------------------------------------- 2. epoch-end hook
class _CountRecords(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = 0

    def emit(self, record):
        self.lines += len(self.format(record).splitlines())


def _short_timeout_handler(seconds):
    """A prometheus_client push handler identical to the default except for the socket timeout."""
    from prometheus_client.exposition import default_handler

    def handler(url, method, timeout, headers, data):
        return default_handler(url, method, seconds, headers, data)

    return handler


def bench_hook(ctx):
    import keras

    from gangplank import TrainTestExporter
    from tests.gateway_tools import SilentServer, StatusServer, closed_port_address

    gp05 = ctx.gp05
    keras.utils.set_random_seed(2)
    model = mnist_convnet()
    logs = {"accuracy": 0.9448703527450562, "loss": 0.18397289514541626, "val_accuracy": 0.9835000038146973, "val_loss": 0.05415859818458557}
    repeats = 3 if ctx.quick else ctx.repeats(15)
    silent_timeout_05 = 0.2 if ctx.quick else 2.0
    pause = 0.05  # untimed gap after every call: epochs are never back to back
    logger = logging.getLogger("gangplank")
    rows = []
    servers = []
    try:
        scenarios = [("live gateway", ctx.gateway.address), ("closed port", closed_port_address())]
        silent = SilentServer()
        servers.append(silent)
        scenarios.append(("silent gateway", silent.address))
        status = StatusServer(500)
        servers.append(status)
        scenarios.append(("HTTP 500", status.address))
        for scenario, address in scenarios:
            n = min(repeats, 5) if scenario == "silent gateway" else repeats
            ctx.log(f"hook: {scenario}, {n} repeats")
            counter = _CountRecords()
            logger.addHandler(counter)
            ours = TrainTestExporter(address, f"bench-hook-ours-{scenario.split()[0]}")
            ours.set_model(model)
            ours.on_train_begin()
            epoch = {"ours": 0, "gp05": 0}

            def run_ours():
                ours.on_epoch_end(epoch["ours"], logs)
                epoch["ours"] += 1

            cases = {"ours": run_ours}
            stderr = io.StringIO()
            if gp05 is not None:
                handler = _short_timeout_handler(silent_timeout_05) if scenario == "silent gateway" else None
                old = gp05.TrainTestExporter(address, f"bench-hook-05-{scenario.split()[0]}", handler=handler)
                old.set_model(model)
                old.on_train_begin({})

                def run_old():
                    with contextlib.redirect_stderr(stderr):  # 0.5 prints a traceback per failed push
                        old.on_epoch_end(epoch["gp05"], logs)
                    epoch["gp05"] += 1

                cases["gp05"] = run_old
            times = interleaved(cases, n, pause=pause)
            logger.removeHandler(counter)
            row = {"scenario": scenario, "repeats": n, "ours": {**summary(times["ours"]), "process_cpu_median_ms": float(np.median(interleaved.cpu["ours"]) * 1e3)},
                   "ours_log_lines": counter.lines,
                   "ours_pending": bool(ours.sender.pending)}
            if gp05 is not None:
                row["gp05"] = summary(times["gp05"])
                row["gp05_stderr_lines_per_epoch"] = len(stderr.getvalue().splitlines()) / n
                row["ratio"] = ratio(row["gp05"], row["ours"])
                if scenario == "silent gateway":
                    row["gp05_timeout_s"] = silent_timeout_05
            rows.append(row)
            ours.sender.close(timeout=0.5 if scenario == "live gateway" else 0)
        one_call = None
        if gp05 is not None and not ctx.quick and not ctx.args.skip_30s:
            ctx.log("hook: one 0.5 epoch end against the silent gateway with its real default timeout (about 30 s)")
            old = gp05.TrainTestExporter(silent.address, "bench-hook-05-default-timeout")
            old.set_model(model)
            old.on_train_begin({})
            stderr = io.StringIO()
            start = time.perf_counter()
            with contextlib.redirect_stderr(stderr):
                old.on_epoch_end(0, logs)
            one_call = {"seconds": time.perf_counter() - start, "stderr_lines": len(stderr.getvalue().splitlines())}
    finally:
        for server in servers:
            server.close()
    return {"status": "ok", "rows": rows, "gp05_silent_default_timeout_call": one_call, "pause_s": pause,
            "gp05": None if gp05 is None else GP05_VERSION, "gp05_skipped": ctx.gp05_reason,
            "ours_timeout_s": 5.0}


def report_hook(result):
    rows = []
    for r in result["rows"]:
        note = ""
        if "gp05_timeout_s" in r:
            note = f"0.5 with a {r['gp05_timeout_s']:g} s socket timeout (its default is 30 s)"
        rows.append([r["scenario"], fmt_ms(r.get("gp05", {}).get("median_ms")), fmt_ms(r["ours"]["median_ms"]),
                     fmt_ms(r["ours"]["max_ms"]), fmt_x(r.get("ratio")),
                     "–" if "gp05" not in r else f"{r['gp05_stderr_lines_per_epoch']:.0f}", r["ours_log_lines"], note])
    out = [f"### 2. One epoch-end hook (median of {result['rows'][0]['repeats']} alternating calls; silent: {result['rows'][2]['repeats']})", "",
           table(["gateway", "0.5.0 ms", "ours ms", "ours max ms", "0.5 / ours", "0.5 stderr lines per epoch", "ours log lines (whole run)", "note"], rows)]
    one = result.get("gp05_silent_default_timeout_call")
    if one:
        out.append(f"- 0.5.0, silent gateway, its real default timeout, one epoch end: {one['seconds']:.2f} s "
                   f"({one['stderr_lines']} traceback lines).")
    if result.get("gp05_skipped"):
        out.append(f"- 0.5 side skipped: {result['gp05_skipped']}")
    return "\n".join(out)


# ----------------------------------------------------------------------------- 3. drift observe
def bench_drift(ctx):
    from scipy.stats import ks_2samp

    from gangplank import DriftReference, ProductionDriftExporter

    data = ctx.data
    x_ref, p_ref, y_ref = data.flat_ref, data.p_ref, data.y_ref
    fit_repeats = 1 if ctx.quick else 3
    blas = BlasThreads.available()
    ctx.log(f"drift: DriftReference.fit on {x_ref.shape[0]:,}x{x_ref.shape[1]} ({fit_repeats} runs"
            f"{', alternating with one OpenBLAS thread' if blas else ''})")
    fitted = {}

    def fit():
        fitted["reference"] = DriftReference.fit(x_ref, p_ref, y_ref)

    fit_cases = {"fit": fit}
    fit_contexts = {}
    if blas:
        fit_cases["fit_blas1"] = fit
        fit_contexts["fit_blas1"] = lambda: BlasThreads.limit(1)
    fit_times = interleaved(fit_cases, fit_repeats, contexts=fit_contexts)
    reference = fitted["reference"]
    data._reference = reference
    reference.save(data.reference_path)

    rows = 200
    n_batches = data.flat_test.shape[0] // rows
    batches = [(np.ascontiguousarray(data.flat_test[i * rows:(i + 1) * rows]), data.p_test[i * rows:(i + 1) * rows]) for i in range(n_batches)]
    small = [(x[:10], p[:10]) for x, p in batches]
    closing = ProductionDriftExporter(ctx.gateway.address, "bench-drift", reference, agent="closing")
    accumulating = ProductionDriftExporter(ctx.gateway.address, "bench-drift", reference, agent="accumulating", window_size=10**9)
    accumulating_small = ProductionDriftExporter(ctx.gateway.address, "bench-drift", reference, agent="accumulating-10", window_size=10**9)
    assert closing.window_size == rows
    i = {"n": 0}

    def batch():
        i["n"] += 1
        return batches[i["n"] % n_batches]

    def floor():
        batch()[0].sum()

    def ours_closing():
        x, p = batch()
        closing.observe(x, p)

    def ours_accumulating():
        x, p = batch()
        accumulating.observe(x, p)

    def ours_small():
        x, p = small[i["n"] % n_batches]
        i["n"] += 1
        accumulating_small.observe(x, p)

    def ks_per_feature():  # alibi-detect KSDrift.feature_score: one ks_2samp per feature, asymptotic p
        x = batch()[0]
        p_values = np.empty(PIXELS, dtype=np.float32)
        for f in range(PIXELS):
            p_values[f] = ks_2samp(x_ref[:, f], x[:, f], method="asymp")[1]

    def ks_one_call():
        ks_2samp(x_ref, batch()[0], axis=0, method="asymp")

    repeats = 2 if ctx.quick else ctx.repeats(9)
    cases = {"floor": floor, "ours_closing": ours_closing, "ours_accumulating": ours_accumulating,
             "ours_10_rows": ours_small, "ks_per_feature": ks_per_feature, "ks_one_call": ks_one_call}
    inner = {"floor": 200, "ours_closing": 20, "ours_accumulating": 20, "ours_10_rows": 50,
             "ours_closing_blas1": 20, "ours_accumulating_blas1": 20}
    contexts = {}
    if blas:  # the same calls with numpy's OpenBLAS limited to one thread (a diagnosis, see RESULTS.md)
        cases.update({"ours_closing_blas1": ours_closing, "ours_accumulating_blas1": ours_accumulating})
        contexts = {k: (lambda: BlasThreads.limit(1)) for k in ("ours_closing_blas1", "ours_accumulating_blas1")}
    ctx.log(f"drift: observe vs ks_2samp vs floor, {repeats} alternating repeats (OpenBLAS threads: {BlasThreads.current()})")
    times = interleaved(cases, repeats, inner=inner, contexts=contexts)
    for exporter in (closing, accumulating, accumulating_small):
        exporter._closed.set()
        exporter.sender.close(timeout=1)
    stats = {k: summary(v) for k, v in times.items()}
    for key, s in stats.items():
        s["process_cpu_median_ms"] = float(np.median(interleaved.cpu[key]) * 1e3)
        s["samples_per_s"] = (10 if key == "ours_10_rows" else rows) / (s["median_ms"] / 1e3)
    return {
        "status": "ok", "batch": [rows, PIXELS], "reference_rows": int(x_ref.shape[0]), "repeats": repeats, "inner": inner,
        "fit": summary(fit_times["fit"]), "fit_blas1": summary(fit_times["fit_blas1"]) if blas else None,
        "fit_window_size": reference.window_size, "stats": stats, "openblas_threads": BlasThreads.current(),
        "ks_over_ours_closing": ratio(stats["ks_per_feature"], stats["ours_closing"]),
        "ks_over_ours_accumulating": ratio(stats["ks_per_feature"], stats["ours_accumulating"]),
        "ours_closing_over_floor": ratio(stats["ours_closing"], stats["floor"]),
        "ours_accumulating_over_floor": ratio(stats["ours_accumulating"], stats["floor"]),
        **({} if not blas else {
            "ks_over_ours_closing_blas1": ratio(stats["ks_per_feature"], stats["ours_closing_blas1"]),
            "ks_over_ours_accumulating_blas1": ratio(stats["ks_per_feature"], stats["ours_accumulating_blas1"]),
            "ours_closing_blas1_over_floor": ratio(stats["ours_closing_blas1"], stats["floor"]),
            "ours_accumulating_blas1_over_floor": ratio(stats["ours_accumulating_blas1"], stats["floor"]),
        }),
    }


def report_drift(result):
    s = result["stats"]
    labels = {
        "ours_closing": "ours: `observe`, window of 200 closes on every batch (statistics + push hand-off)",
        "ours_accumulating": "ours: `observe`, window still open (bin counts only)",
        "ours_10_rows": "ours: `observe`, batch of 10 rows, window open",
        "ours_closing_blas1": "ours: `observe`, window closes on every batch — OpenBLAS limited to 1 thread",
        "ours_accumulating_blas1": "ours: `observe`, window open — OpenBLAS limited to 1 thread",
        "ks_per_feature": "`ks_2samp` per feature, 784 calls, `method='asymp'` (KSDrift)",
        "ks_one_call": "`ks_2samp(ref, batch, axis=0)`, one call",
        "floor": "`batch.sum()` (memory-bandwidth floor)",
    }
    rows = [[labels[k], fmt_ms(s[k]["median_ms"]), fmt_ms(s[k]["min_ms"]), fmt_ms(s[k].get("process_cpu_median_ms")),
             f"{s[k]['samples_per_s']:,.0f}"] for k in labels if k in s]
    fit, fit1 = result["fit"], result.get("fit_blas1")
    blas_lines = []
    if "ks_over_ours_closing_blas1" in result:
        blas_lines = [
            f"- with OpenBLAS limited to 1 thread (default here: {result['openblas_threads']}): per-feature KS / ours "
            f"{fmt_x(result['ks_over_ours_closing_blas1'])} closing, {fmt_x(result['ks_over_ours_accumulating_blas1'])} accumulating; "
            f"ours / floor {fmt_x(result['ours_closing_blas1_over_floor'])} closing, {fmt_x(result['ours_accumulating_blas1_over_floor'])} accumulating.",
        ]
    if fit1:
        blas_lines.append(f"- `DriftReference.fit` with OpenBLAS limited to 1 thread, alternating with the default: median "
                          f"{fit1['median_ms'] / 1e3:.2f} s (min {fit1['min_ms'] / 1e3:.2f}, max {fit1['max_ms'] / 1e3:.2f}).")
    return "\n".join([
        f"### 3. Drift on {result['batch'][0]}x{result['batch'][1]} MNIST batches (reference {result['reference_rows']:,} rows; "
        f"median of {result['repeats']} alternating repeats)", "",
        table(["method", "ms per batch", "min ms", "process CPU ms (all threads)", "samples/s"], rows), "",
        f"- per-feature KS / ours: {fmt_x(result['ks_over_ours_closing'])} with the window closing on every batch, "
        f"{fmt_x(result['ks_over_ours_accumulating'])} while it accumulates (goal ≥ 100x).",
        f"- ours / floor: {fmt_x(result['ours_closing_over_floor'])} closing, {fmt_x(result['ours_accumulating_over_floor'])} "
        f"accumulating (goal ≤ 10x).",
        f"- `DriftReference.fit` on {result['reference_rows']:,}x784 (window {result['fit_window_size']}, defaults incl. 400 "
        f"calibration windows): median {fit['median_ms'] / 1e3:.2f} s (min {fit['min_ms'] / 1e3:.2f}, max {fit['max_ms'] / 1e3:.2f}, n={fit['n']}).",
        *blas_lines,
    ])


# ----------------------------------------------------------------------------- 4. memory
def memory_child(args):
    """Child process: observe ``--samples`` rows in batches of 200, report RSS at checkpoints (JSON on stdout).

    After the setup (imports, reference, exporter) the kernel's peak-RSS mark
    is reset (``/proc/self/clear_refs``), so the peak at each checkpoint is the
    peak *while observing*, not the import spike of TensorFlow.
    """
    def status_mb(field):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
        return None

    def peak_mb():
        # VmHWM is the kernel's peak RSS of this address space (what clear_refs
        # resets); ru_maxrss also keeps the peaks of exited threads and does not reset.
        hwm = status_mb("VmHWM")
        return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    def current_mb():
        value = status_mb("VmRSS")
        return float("nan") if value is None else value

    stages = {"python + numpy": current_mb()}
    import prometheus_client  # noqa: F401
    import scipy.stats  # noqa: F401

    from gangplank import DriftReference

    stages["+ scipy, prometheus_client, gangplank.reference"] = current_mb()
    from gangplank import ProductionDriftExporter  # imports keras, and with it TensorFlow

    stages["+ ProductionDriftExporter (keras, TensorFlow)"] = current_mb()
    reference = DriftReference.load(args.reference)
    with np.load(args.pool) as f:
        x, p = f["x"], f["p"]
    exporter = ProductionDriftExporter(args.gateway, "bench-memory", reference, agent=f"memory-{args.samples}")
    stages["+ reference, 2,000-row batch pool, exporter"] = current_mb()
    setup_peak = peak_mb()
    setup_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    try:
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    marks = [{"samples": 0, "peak_mb": peak_mb(), "rss_mb": current_mb()}]
    checkpoints = sorted({c for c in (10_000, 100_000, args.samples) if c <= args.samples})
    observed, rows, start = 0, 200, time.perf_counter()
    while observed < args.samples:
        at = observed % x.shape[0]
        take = min(rows, args.samples - observed, x.shape[0] - at)
        exporter.observe(x[at:at + take], p[at:at + take])
        observed += take
        if checkpoints and observed >= checkpoints[0]:
            checkpoints.pop(0)
            marks.append({"samples": observed, "peak_mb": peak_mb(), "rss_mb": current_mb(),
                          "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0})
    seconds = time.perf_counter() - start
    exporter.close()
    totals = exporter._totals
    print(json.dumps({"stages_rss_mb": stages, "setup_peak_mb": setup_peak, "setup_ru_maxrss_mb": setup_maxrss, "peak_reset": reset, "marks": marks,
                      "seconds": seconds, "windows": totals.windows, "samples_in_windows": totals.samples}))


def bench_memory(ctx):
    data = ctx.data
    reference = data.reference()
    reference.save(data.reference_path)
    pool = ctx.cache / "memory-pool.npz"
    np.savez(pool, x=data.flat_test[:2000], p=data.p_test[:2000])
    sizes = [2_000, 20_000] if ctx.quick else [10_000, 1_000_000]
    runs = 1 if ctx.quick else 2
    rows = []
    for run in range(runs):
        for n in sizes if run % 2 == 0 else sizes[::-1]:
            ctx.log(f"memory: child process observing {n:,} samples (run {run + 1}/{runs})")
            command = [sys.executable, str(Path(__file__).resolve()), "memory-child", "--samples", str(n),
                       "--reference", str(data.reference_path), "--pool", str(pool), "--gateway", ctx.gateway.address]
            done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
            if done.returncode:
                raise RuntimeError(f"memory child failed: {done.stderr[-2000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append({"samples": n, "run": run + 1, **result})
    return {"status": "ok", "batch_rows": 200, "rows": rows}


def report_memory(result):
    rows = []
    for r in result["rows"]:
        base = r["marks"][0]
        for mark in r["marks"][1:]:
            rows.append([f"{r['samples']:,}", r["run"], f"{r['setup_peak_mb']:.1f}", f"{base['rss_mb']:.1f}", f"{mark['samples']:,}",
                         f"{mark['peak_mb']:.1f}", f"{mark['peak_mb'] - base['rss_mb']:+.1f}", f"{mark['rss_mb']:.1f}"])
    by_size = {}
    for r in result["rows"]:
        by_size.setdefault(r["samples"], []).append(r["marks"][-1]["peak_mb"])
    peak = {n: float(np.median(v)) for n, v in by_size.items()}
    sizes = sorted(peak)
    speed = [r["samples"] / r["seconds"] for r in result["rows"] if r["samples"] == sizes[-1]]
    stages = result["rows"][0]["stages_rss_mb"]
    reset = all(r["peak_reset"] for r in result["rows"])
    return "\n".join([
        f"### 4. Memory of an exporter process (batches of {result['batch_rows']}, window 200, live gateway; peak = VmHWM, reset after setup)", "",
        table(["child observes", "run", "setup peak MB", "RSS after setup MB", "at samples", "peak MB while observing", "peak − setup RSS MB", "RSS MB here"], rows), "",
        f"- peak RSS while observing, median: " + ", ".join(f"after {n:,} samples {peak[n]:.1f} MB" for n in sizes) +
        f"; {sizes[-1]:,} minus {sizes[0]:,}: {peak[sizes[-1]] - peak[sizes[0]]:+.1f} MB." +
        ("" if reset else " (the peak could not be reset after setup: peaks include the import spike)"),
        "- RSS during setup (first child): " + "; ".join(f"{k} {v:.0f} MB" for k, v in stages.items()) + ".",
        f"- the largest child observed {np.median(speed):,.0f} samples/s (window statistics and pushes included).",
    ])


# ----------------------------------------------------------------------------- 5. detection
def _stream(rng, n_windows, window, batch_low, batch_high, pool):
    """Row indices (drawn with replacement) cut into batches of ``batch_low..batch_high`` rows."""
    total = n_windows * window
    sizes = []
    while sum(sizes) < total:
        sizes.append(int(rng.integers(batch_low, batch_high + 1)))
    sizes[-1] -= sum(sizes) - total  # end exactly on a window boundary
    if sizes[-1] == 0:
        sizes.pop()
    rows = rng.integers(0, pool, size=total)
    return rows, sizes


def _windows_summary(alarms, per_window_signals=None):
    alarms = np.asarray(alarms, dtype=bool)
    first = int(np.argmax(alarms)) + 1 if alarms.any() else None
    out = {"windows": int(alarms.size), "alarmed": int(alarms.sum()), "first_alarm_window": first}
    if per_window_signals is not None:
        out["signals"] = {k: int(sum(s[k] for s in per_window_signals)) for k in per_window_signals[0]} if per_window_signals else {}
    return out


def bench_detection(ctx):
    from scipy import stats

    from gangplank import ProductionDriftExporter

    data = ctx.data
    reference = data.reference()
    window = reference.window_size
    classes = data.p_test.shape[1]
    train_shares = np.bincount(data.train_labels, minlength=classes) / data.train_labels.size
    scenarios = {
        "correct": (data.flat_test, data.p_test),
        "inverted pixels": (1.0 - data.flat_test, data.p_inverted),
        "wrong model": (data.flat_test, data.p_wrong),
    }
    seeds = 1 if ctx.quick else 5
    n_windows = {"correct": 10 if ctx.quick else 200, "inverted pixels": 5 if ctx.quick else 20, "wrong model": 5 if ctx.quick else 20}
    results = {}
    for scenario, (x_all, p_all) in scenarios.items():
        predicted_all = p_all.argmax(axis=1)
        per_rule = {k: [] for k in ("ours", "ours_with_labels", "gp05_faithful", "gp05_window_uniform", "gp05_window_train_shares", "gp05_own_batches")}
        batches_total = batches_tested = 0
        for seed in range(seeds):
            ctx.log(f"detection: {scenario}, stream {seed + 1}/{seeds}, {n_windows[scenario]} windows of {window}")
            rng = np.random.default_rng(1000 * seed + 7)
            rows, sizes = _stream(rng, n_windows[scenario], window, 1, 20, x_all.shape[0])
            for key, with_labels in (("ours", False), ("ours_with_labels", True)):
                reports = []
                exporter = ProductionDriftExporter(ctx.gateway.address, "bench-detection", reference,
                                                   agent=f"{scenario.split()[0]}-{key}-{seed}", on_window=reports.append)
                at = 0
                for size in sizes:
                    batch = rows[at:at + size]
                    exporter.observe(x_all[batch], p_all[batch], data.y_test[batch] if with_labels else None)
                    at += size
                exporter._closed.set()
                exporter.sender.close(timeout=1)
                assert len(reports) == n_windows[scenario], (len(reports), n_windows[scenario])
                per_rule[key].append(_windows_summary([r.drift_detected for r in reports], [r.signals for r in reports]))
            # gangplank 0.5's drift example rule, faithfully: on each predict() batch of at least
            # 50 rows, scipy.stats.chisquare of the predicted-class counts against a uniform
            # distribution; p < 0.05 counts as drift. Smaller batches give no p-value at all.
            alarms = np.zeros(n_windows[scenario], dtype=bool)
            at = 0
            for size in sizes:
                batches_total += 1
                if size >= 50:
                    batches_tested += 1
                    counts = np.bincount(predicted_all[rows[at:at + size]], minlength=classes)
                    if stats.chisquare(counts).pvalue < 0.05:
                        alarms[at // window] = True
                at += size
            per_rule["gp05_faithful"].append(_windows_summary(alarms))
            # The same test applied to each closed window of 200 (the most favourable adaptation).
            predicted = predicted_all[rows].reshape(n_windows[scenario], window)
            counts = np.stack([np.bincount(w, minlength=classes) for w in predicted])
            uniform = np.array([stats.chisquare(c).pvalue for c in counts])
            shares = np.array([stats.chisquare(c, f_exp=train_shares * c.sum()).pvalue for c in counts])
            per_rule["gp05_window_uniform"].append(_windows_summary(uniform < 0.05))
            per_rule["gp05_window_train_shares"].append(_windows_summary(shares < 0.05))
            # The rule on its own example's stream: batches of 1-200 (predict calls), same test.
            rows200, sizes200 = _stream(np.random.default_rng(1000 * seed + 8), n_windows[scenario], window, 1, 200, x_all.shape[0])
            alarms = np.zeros(n_windows[scenario], dtype=bool)
            at = 0
            for size in sizes200:
                if size >= 50:
                    c = np.bincount(predicted_all[rows200[at:at + size]], minlength=classes)
                    if stats.chisquare(c).pvalue < 0.05:
                        alarms[at // window] = True
                at += size
            per_rule["gp05_own_batches"].append(_windows_summary(alarms))
        results[scenario] = {"seeds": seeds, "windows_per_stream": n_windows[scenario], "batches": batches_total,
                             "batches_with_p_value_gp05": batches_tested, "rules": {k: _aggregate(v) for k, v in per_rule.items()}}
    return {"status": "ok", "window": window, "batch_sizes": [1, 20], "accuracy": data.accuracy, "wrong_model_even_share": data.wrong_even_share,
            "reference_rows": int(data.flat_ref.shape[0]), "thresholds": {
                "drifted_features_ratio": reference.thresholds.drifted_features_ratio,
                "confidence_psi": reference.thresholds.confidence_psi,
                "class_p_value": reference.thresholds.class_p_value},
            "scenarios": results}


def _aggregate(streams):
    windows = sum(s["windows"] for s in streams)
    alarmed = sum(s["alarmed"] for s in streams)
    firsts = [s["first_alarm_window"] for s in streams]
    out = {"streams": len(streams), "windows": windows, "alarmed": alarmed, "alarms_per_100_windows": 100.0 * alarmed / windows,
           "first_alarm_window": firsts,
           "median_first_alarm_window": None if any(f is None for f in firsts) else float(np.median(firsts))}
    if streams and "signals" in streams[0]:
        out["signals"] = {k: sum(s["signals"].get(k, 0) for s in streams) for k in streams[0]["signals"]}
    return out


RULE_LABELS = {
    "ours": "ours (inputs + probabilities)",
    "ours_with_labels": "ours, with feedback labels",
    "gp05_faithful": "0.5 example rule as written (per batch, ≥ 50 rows, χ² vs uniform, p < 0.05)",
    "gp05_window_uniform": "0.5 rule per window of 200, χ² vs uniform",
    "gp05_window_train_shares": "0.5 rule per window of 200, χ² vs training class shares",
    "gp05_own_batches": "0.5 rule as written, on its own example's batches of 1–200",
}


def report_detection(result):
    out = [f"### 5. Detection on real MNIST (window {result['window']}, batches of {result['batch_sizes'][0]}–{result['batch_sizes'][1]})", "",
           f"Test-set accuracy: correct model {result['accuracy']['correct_on_test']:.4f}, on inverted pixels "
           f"{result['accuracy']['correct_on_inverted']:.4f}; wrong model {result['accuracy']['wrong_on_test']:.4f} "
           f"(trained on {100 * result['wrong_model_even_share']:.1f}% even digits). Reference: {result['reference_rows']:,} held-out training images.", ""]
    header = ["rule", "correct: false alarms / 100 windows", "inverted: first alarm (window)", "inverted: alarms / 100",
              "wrong model: first alarm (window)", "wrong model: alarms / 100"]
    rows = []
    sc = result["scenarios"]
    for key, label in RULE_LABELS.items():
        def first(s):
            r = sc[s]["rules"][key]
            f = r["first_alarm_window"]
            if all(v is None for v in f):
                return f"never ({r['windows']} windows)"
            shown = ", ".join("–" if v is None else str(v) for v in f)
            return f"{shown}" if len(f) > 1 else shown
        rows.append([label, f"{sc['correct']['rules'][key]['alarms_per_100_windows']:.1f} ({sc['correct']['rules'][key]['alarmed']}/{sc['correct']['rules'][key]['windows']})",
                     first("inverted pixels"), f"{sc['inverted pixels']['rules'][key]['alarms_per_100_windows']:.0f}",
                     first("wrong model"), f"{sc['wrong model']['rules'][key]['alarms_per_100_windows']:.0f}"])
    out.append(table(header, rows))
    out.append("")
    out.append(f"- first-alarm columns list one value per stream ({sc['correct']['seeds']} streams per scenario); "
               f"streams: correct {sc['correct']['windows_per_stream']} windows, corrupted {sc['wrong model']['windows_per_stream']} windows each.")
    c = sc["correct"]
    out.append(f"- 0.5's rule as written computed a p-value for {c['batches_with_p_value_gp05']} of {c['batches']} batches of the correct stream "
               f"(it skips batches under 50 rows).")
    for key in ("ours", "ours_with_labels"):
        parts = []
        for s in sc:
            sig = sc[s]["rules"][key].get("signals")
            if sig:
                parts.append(f"{s}: " + ", ".join(f"{k} {v}" for k, v in sig.items()) + f" of {sc[s]['rules'][key]['windows']}")
        out.append(f"- {RULE_LABELS[key]}, windows per signal — " + "; ".join(parts) + ".")
    return "\n".join(out)


# ----------------------------------------------------------------------------- main
class Context:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.cache = Path(args.cache_dir)
        self.cache.mkdir(parents=True, exist_ok=True)
        self.started = time.perf_counter()
        self.gp05, self.gp05_reason = (None, "--no-gp05 given") if args.no_gp05 else load_gp05(Path(args.vendor_dir))
        self.gateway = None
        self._data = None

    def log(self, message):
        print(f"[{time.perf_counter() - self.started:7.1f} s] {message}", file=sys.stderr, flush=True)

    def repeats(self, default):
        return self.args.repeats or default

    @property
    def data(self):
        if self._data is None:
            self._data = Data(self.cache, self.quick, self.log)
        return self._data


RUNNERS = {
    "histogram": (bench_histogram, report_histogram),
    "hook": (bench_hook, report_hook),
    "drift": (bench_drift, report_drift),
    "memory": (bench_memory, report_memory),
    "detection": (bench_detection, report_detection),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmarks", nargs="*", metavar="BENCHMARK",
                        help=f"which to run: {', '.join(BENCHMARKS)} or all (default all)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (smoke test); figures are not representative")
    parser.add_argument("--repeats", type=int, default=None, help="override the number of alternating repeats")
    parser.add_argument("--json", default=str(HERE / ".cache" / "last-run.json"), help="where to write the raw results")
    parser.add_argument("--cache-dir", default=str(HERE / ".cache"), help="trained models, predictions, references")
    parser.add_argument("--vendor-dir", default=str(HERE / ".vendor"), help="where gangplank 0.5.0 is installed with pip --target")
    parser.add_argument("--no-gp05", action="store_true", help="skip the gangplank 0.5.0 side")
    parser.add_argument("--skip-30s", action="store_true", help="skip the one 0.5 call with its real 30 s timeout")
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "memory-child":
        child = argparse.ArgumentParser()
        for name in ("--samples", "--reference", "--pool", "--gateway"):
            child.add_argument(name, required=True, type=int if name == "--samples" else str)
        return memory_child(child.parse_args(argv[1:]))
    args = parser.parse_args(argv)
    unknown = set(args.benchmarks) - {*BENCHMARKS, "all"}
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {', '.join(BENCHMARKS)} or all")
    chosen = [b for b in BENCHMARKS if not args.benchmarks or "all" in args.benchmarks or b in args.benchmarks]

    from gangplank.localstack import start_pushgateway

    ctx = Context(args)
    if ctx.gp05 is None:
        ctx.log(f"gangplank {GP05_VERSION} side skipped: {ctx.gp05_reason}")
    info = machine_info()
    command = "python benchmarks/run.py " + " ".join(argv)
    results = {"meta": {**info, "command": command.strip(), "quick": args.quick,
                        "gp05": None if ctx.gp05 is None else {"version": GP05_VERSION, "path": str(Path(ctx.gp05.__file__).parent)},
                        "gp05_skipped": ctx.gp05_reason}}
    sections = []
    with start_pushgateway() as gateway:
        ctx.gateway = gateway
        for name in chosen:
            bench, report = RUNNERS[name]
            start, load = time.perf_counter(), _loadavg()
            results[name] = bench(ctx)
            results[name]["wall_s"] = time.perf_counter() - start
            results[name]["loadavg"] = [load, _loadavg()]
            sections.append(report(results[name]) + f"\n- 1-minute load average (2 cores) at start / end of this benchmark: "
                            f"{(load or ['?'])[0]} / {(_loadavg() or ['?'])[0]}; wall time {results[name]['wall_s']:.0f} s.")
            print(sections[-1] + "\n", flush=True)
    if ctx._data is not None:
        results["meta"]["training_seconds_this_run"] = ctx._data.train_seconds
        results["meta"]["model_accuracy"] = ctx._data.accuracy
    results["meta"]["loadavg_end"] = _loadavg()
    results["meta"]["wall_s"] = time.perf_counter() - ctx.started
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    ctx.log(f"done in {results['meta']['wall_s']:.0f} s; raw results in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
