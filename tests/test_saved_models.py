"""A model compiled with gangplank.ConfusionMatrix, saved, loads in a fresh process that only imported gangplank.

Each step runs in its own interpreter: in the test process the metric is
registered already, which would hide the failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gateway_tools import ROOT

pytestmark = pytest.mark.slow  # trains, saves and loads models in fresh interpreters

TRAIN_AND_SAVE = """
import sys
import keras
import numpy as np
import gangplank

keras.utils.set_random_seed(0)
x = np.random.default_rng(0).random((64, 4), dtype=np.float32)
y = (x[:, 0] * 3).astype("int32")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
model.compile("adam", "sparse_categorical_crossentropy", metrics=[gangplank.ConfusionMatrix(3)])
model.fit(x, y, epochs=2, batch_size=16, verbose=0)
model.save(sys.argv[1])
np.save(sys.argv[2], model.evaluate(x, y, verbose=0, return_dict=True)["confusion_matrix"])
"""

# The model is loaded after the imports of each order, then evaluated on the same data.
LOAD = """
import sys
{imports}
import numpy as np

model = keras.models.load_model(sys.argv[1])
x = np.random.default_rng(0).random((64, 4), dtype=np.float32)
y = (x[:, 0] * 3).astype("int32")
matrix = model.evaluate(x, y, verbose=0, return_dict=True)["confusion_matrix"]
assert np.array_equal(matrix, np.load(sys.argv[2])), (matrix, np.load(sys.argv[2]))
assert isinstance(gangplank.metrics.ConfusionMatrix, type)
print("loaded", type(model.metrics[-1].metrics[0]).__module__)
"""

IMPORT_ORDERS = {
    "gangplank before keras": "import gangplank\nimport keras",
    # examples/mnist/serve.py's imports, in its order
    "keras before gangplank": "import digit_image\nimport keras\nfrom PIL import Image\n\nimport gangplank",
}


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "examples" / "mnist")])}
    return subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300, env=environment, cwd=ROOT
    )


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("saved")
    model, matrix = directory / "cm.keras", directory / "matrix.npy"
    done = run(TRAIN_AND_SAVE, str(model), str(matrix))
    assert done.returncode == 0, done.stderr[-3000:]
    return model, matrix


@pytest.mark.parametrize("order", IMPORT_ORDERS)
def test_a_saved_confusion_matrix_model_loads_after_import_gangplank(saved_model, order):
    done = run(LOAD.format(imports=IMPORT_ORDERS[order]), *map(str, saved_model))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "loaded gangplank.metrics"


def test_without_gangplank_keras_cannot_load_it(saved_model):
    """The control: the registration above is what makes the difference."""
    done = run("import sys, keras\nkeras.models.load_model(sys.argv[1])", str(saved_model[0]))
    assert done.returncode != 0
    assert "Could not locate class 'ConfusionMatrix'" in done.stderr


def test_import_gangplank_does_not_import_keras_and_metrics_is_an_attribute():
    script = (
        "import sys, gangplank\n"
        "assert 'keras' not in sys.modules, 'import gangplank loaded keras'\n"
        "assert 'metrics' in dir(gangplank)\n"
        "from gangplank import metrics\n"
        "assert gangplank.metrics is metrics and gangplank.metrics.ConfusionMatrix is gangplank.ConfusionMatrix\n"
        "print('ok')\n"
    )
    done = run(script)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"
