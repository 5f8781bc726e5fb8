"""What every benchmark shares: alternating timing, medians and ratios, Markdown
formatting, the machine's facts, OpenBLAS thread control, and the gangplank 0.5.0
loader.

Importing this module first sets the environment defaults (TensorFlow's log
level, gangplank's exit flush).
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import importlib.util
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GANGPLANK_EXIT_FLUSH_SECONDS", "1")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

import numpy as np  # noqa: E402

GP05_VERSION = "0.5.0"


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
        pgw = subprocess.run(
            ["/usr/bin/prometheus-pushgateway", "--version"], capture_output=True, text=True, timeout=10
        )
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
        "loadavg_start": loadavg(),
    }


def _version(name, module):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return getattr(module, "__version__", "?")


def loadavg():
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
            for setter, getter in (
                ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
                ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
                ("openblas_set_num_threads", "openblas_get_num_threads"),
            ):
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
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-compile",
            "--disable-pip-version-check",
            "--quiet",
            "--upgrade",
            "--target",
            str(target),
            f"gangplank=={GP05_VERSION}",
        ]
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
