"""gangplank's development tools, kept out of the library: the test-support API that tests and benchmarks share.

The names below are the test-support API (imported from their modules):

- servers in this process (:mod:`~gangplank_devtools.servers`): ``SilentServer``, ``StatusServer``,
  ``SlowProxy``, ``WebhookSink``, ``closed_port_address``;
- real servers in child processes (:mod:`~gangplank_devtools.processes`): ``start_pushgateway``, ``Service``;
- reading a Pushgateway (:mod:`~gangplank_devtools.gateway`): ``read_gateway``, ``value``, ``counting_handler``;
- waiting (:mod:`~gangplank_devtools.waiting`): ``wait_for``, ``wait_until``, ``run_with_timeout``;
- ports (:mod:`~gangplank_devtools.ports`): ``free_port``.

The whole stack is :mod:`gangplank_devtools.localstack` (``python -m gangplank_devtools.localstack up``);
its Prometheus configuration comes from :mod:`gangplank_devtools.prometheus_config`.

Example:
    >>> from gangplank_devtools import StatusServer, wait_for
    >>> with StatusServer(status=503) as failing:
    ...     wait_for(lambda: failing.address).startswith("127.0.0.1:")
    True
"""

from .gateway import counting_handler, read_gateway, value
from .ports import free_port
from .processes import Service, start_pushgateway
from .servers import SilentServer, SlowProxy, StatusServer, WebhookSink, closed_port_address
from .waiting import run_with_timeout, wait_for, wait_until

__all__ = [
    "SilentServer",
    "SlowProxy",
    "StatusServer",
    "WebhookSink",
    "closed_port_address",
    "Service",
    "start_pushgateway",
    "counting_handler",
    "read_gateway",
    "value",
    "run_with_timeout",
    "wait_for",
    "wait_until",
    "free_port",
]
