"""numba kernels compiled once, on first use, with numpy as the fallback.

The drift worker's hot loops (binning inputs, summing predictions) are
plain Python functions over arrays; :func:`lazy_kernel` wraps one so that
its first use imports numba and compiles it (``nogil``: a worker thread
does not hold a request thread's GIL; ``cache``: later processes load it
from disk). Where numba is missing or a kernel does not compile, the
loader logs one warning and returns ``None``, and the caller takes its
numpy path: monitoring never fails over its accelerator.

Example:
    >>> import numpy as np
    >>> def _double(values, out):
    ...     for i in range(values.size):
    ...         out[i] = 2 * values[i]
    >>> double = lazy_kernel(_double, "doubling", warm=lambda k: k(np.zeros(1), np.zeros(1)))
    >>> out = np.zeros(3)
    >>> (double() or _double)(np.arange(3.0), out); out.tolist()
    [0.0, 2.0, 4.0]
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger("gangplank")

_warned: set[str] = set()
_warned_lock = threading.Lock()


def warn_once(message: str) -> None:
    """Log ``message`` at WARNING the first time only (a kernel failing on every batch would flood the log)."""
    with _warned_lock:
        if message in _warned:
            return
        _warned.add(message)
    logger.warning(message)


def lazy_kernel(function: Callable, what: str, warm: Callable[[Callable], None]) -> Callable[[], Callable | None]:
    """A loader of ``function`` compiled by numba: call it for the kernel (``None``: use numpy).

    ``warm`` calls the compiled kernel with the argument types it will see, so
    they compile now (before a worker process is forked, ideally) and not on
    a window's first batch. ``what`` names the kernel in warnings.
    """
    lock = threading.Lock()
    state: dict[str, Callable | None] = {}

    def load() -> Callable | None:
        if "kernel" not in state:
            with lock:
                if "kernel" not in state:
                    state["kernel"] = _compile(function, what, warm)
        return state["kernel"]

    return load


def _compile(function: Callable, what: str, warm: Callable[[Callable], None]) -> Callable | None:
    try:
        import numba
    except ImportError as error:
        warn_once(f"gangplank: numba is not available ({error}); drift {what} runs on numpy, slower")
        return None
    try:
        try:
            compiled = numba.njit(nogil=True, cache=True)(function)
        except RuntimeError:  # no writable cache directory: compile in memory, in every process
            compiled = numba.njit(nogil=True)(function)
        warm(compiled)
    except Exception as error:  # never let monitoring fail over its accelerator
        warn_once(f"gangplank: the drift {what} kernel did not compile ({error!r}); it runs on numpy, slower")
        return None
    return compiled
