"""NannyML's CBPE on windows written by bench_estimate.py; runs in NannyML's own venv, not the project's.

Usage: ``<nannyml venv>/bin/python benchmarks/cbpe_child.py IN_DIR``. ``IN_DIR``
holds ``windows.npz`` and ``manifest.json`` (see bench_estimate.py). For each
data set and window size it fits one ``nannyml.CBPE`` (metric accuracy,
``chunk_size`` = the window) on the reference rows, estimates every stream of
that data set, and writes per chunk the estimate, NannyML's realised accuracy
(the labels are passed along only for that check) and its alert flag to
``IN_DIR/cbpe.npz``, with the versions and seconds to ``IN_DIR/cbpe.json``.
Imports only numpy, pandas and nannyml: nothing of gangplank.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # NannyML's usage statistics, off

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def frame(p: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    columns = {f"p{c}": p[:, c].astype(np.float64) for c in range(p.shape[1])}
    return pd.DataFrame({**columns, "y_pred": p.argmax(axis=1), "y_true": y.astype(np.int64)})


def estimator(n_classes: int, window: int):
    import nannyml as nml

    binary = n_classes == 2
    return nml.CBPE(
        y_pred_proba="p1" if binary else {c: f"p{c}" for c in range(n_classes)},
        y_pred="y_pred",
        y_true="y_true",
        problem_type="classification_binary" if binary else "classification_multiclass",
        metrics=["accuracy"],
        chunk_size=window,
    )


def main(directory: Path) -> int:
    import nannyml
    import sklearn

    warnings.filterwarnings("ignore")  # "too few chunks" on --quick sizes; pandas future warnings
    manifest = json.loads((directory / "manifest.json").read_text())
    out, seconds = {}, {}
    with np.load(directory / "windows.npz") as arrays:
        for job in manifest["jobs"]:
            group, window = job["group"], job["window"]
            start = time.perf_counter()
            cbpe = estimator(job["classes"], window)
            cbpe.fit(frame(arrays[f"ref_p__{group}"], arrays[f"ref_y__{group}"]))
            fitted = time.perf_counter()
            for key in job["streams"]:
                result = cbpe.estimate(frame(arrays[f"p__{key}"], arrays[f"y__{key}"])).to_df()
                result = result[result[("chunk", "period")] == "analysis"]
                out[f"estimate__{key}"] = result[("accuracy", "value")].to_numpy(np.float64)
                out[f"realised__{key}"] = result[("accuracy", "realized")].to_numpy(np.float64)
                out[f"alert__{key}"] = result[("accuracy", "alert")].to_numpy(bool)
            seconds[f"{group}/{window}"] = {"fit": fitted - start, "estimate": time.perf_counter() - fitted}
    np.savez(directory / "cbpe.npz", **out)
    versions = {
        "nannyml": nannyml.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "python": sys.version.split()[0],
    }
    (directory / "cbpe.json").write_text(json.dumps({"versions": versions, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
