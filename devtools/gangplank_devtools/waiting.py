"""Polling and hang guards for tests, benchmarks and the local stack.

Example:
    >>> wait_for(lambda: 42, timeout=1.0)
    42
    >>> run_with_timeout(lambda: "done", timeout=5.0)
    'done'
"""

from __future__ import annotations

import threading
import time


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.05):
    """Poll ``predicate()`` until it returns something truthy; that value, or its last (falsy) value at ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    return predicate()


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition") -> None:
    """Poll ``predicate()`` until it is truthy (``OSError`` counts as not yet); ``TimeoutError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def run_with_timeout(fn, timeout: float = 60.0, what: str = "call"):
    """Run ``fn()`` in a thread; its result or exception, or an ``AssertionError`` if it hangs.

    A hang guard, not a timing assertion: ``timeout`` is far above what the
    call should ever take.
    """
    outcome = {}

    def target():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"hang-guard: {what}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise AssertionError(f"{what} still running after {timeout:.0f} s (hang guard)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")
