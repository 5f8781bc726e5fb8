"""gangplank: Keras callbacks that push training, evaluation and drift metrics to Prometheus.

Example:
    >>> import gangplank
    >>> exporter = gangplank.TrainTestExporter("127.0.0.1:9091", "mnist")
    >>> model.fit(x, y, callbacks=[exporter])  # doctest: +SKIP
"""

from .errors import GangplankError, PushError, ReferenceFormatError
from .train_test_exporter import TrainTestExporter
from .weights import HISTOGRAM_WEIGHT_BUCKETS_0_3, HISTOGRAM_WEIGHT_BUCKETS_1_0

__version__ = "1.0.0.dev0"

__all__ = [
    "GangplankError",
    "HISTOGRAM_WEIGHT_BUCKETS_0_3",
    "HISTOGRAM_WEIGHT_BUCKETS_1_0",
    "PushError",
    "ReferenceFormatError",
    "TrainTestExporter",
    "__version__",
]
