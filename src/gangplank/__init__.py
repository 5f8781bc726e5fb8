"""gangplank: Keras callbacks that push training, evaluation and drift metrics to Prometheus.

Example:
    >>> import gangplank
    >>> exporter = gangplank.TrainTestExporter("127.0.0.1:9091", "mnist")
    >>> model.fit(x, y, callbacks=[exporter])  # doctest: +SKIP

The callbacks import Keras; they are loaded on first use, so the statistics
load without it. Keras's ``load_model`` still finds gangplank's metrics in any
process that imported gangplank (see :mod:`gangplank.keras_registration`).
"""

from importlib import import_module
from typing import TYPE_CHECKING

from .errors import GangplankError, PushError, ReferenceFormatError
from .keras_registration import register_with_keras
from .weights import HISTOGRAM_WEIGHT_BUCKETS_0_3, HISTOGRAM_WEIGHT_BUCKETS_1_0

__version__ = "1.0.0.dev0"

_LAZY = {
    "TrainTestExporter": ".train_test_exporter",
    "ConfusionMatrix": ".metrics",
    "ProductionDriftExporter": ".production_drift_exporter",
    "DriftMonitor": ".drift_monitor",
    "DriftReference": ".reference",
    "WindowReport": ".reference",
    "PushSettings": ".transport",
    "InputReduction": ".reduction",
    "pool_images": ".reduction",
    "feature_subset": ".reduction",
    "random_projection": ".reduction",
    "layer_features": ".layer_output",
}
_SUBMODULES = {"metrics"}

if TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs (never imported at run time here)
    from . import metrics as metrics
    from .drift_monitor import DriftMonitor
    from .layer_output import layer_features
    from .metrics import ConfusionMatrix
    from .production_drift_exporter import ProductionDriftExporter
    from .reduction import InputReduction, feature_subset, pool_images, random_projection
    from .reference import DriftReference, WindowReport
    from .train_test_exporter import TrainTestExporter
    from .transport import PushSettings

__all__ = [
    "ConfusionMatrix",
    "DriftMonitor",
    "DriftReference",
    "GangplankError",
    "InputReduction",
    "HISTOGRAM_WEIGHT_BUCKETS_0_3",
    "HISTOGRAM_WEIGHT_BUCKETS_1_0",
    "ProductionDriftExporter",
    "PushError",
    "PushSettings",
    "ReferenceFormatError",
    "TrainTestExporter",
    "WindowReport",
    "__version__",
    "feature_subset",
    "layer_features",
    "pool_images",
    "random_projection",
]


register_with_keras()


def __getattr__(name):
    if name in _SUBMODULES:
        return import_module("." + name, __name__)
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gangplank' has no attribute {name!r}")


def __dir__():
    return sorted([*__all__, *_SUBMODULES])
