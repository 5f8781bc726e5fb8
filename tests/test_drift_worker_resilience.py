"""The drift worker never dies and never loses data silently: exceptions in every step, a dead worker,
close() racing observe from many threads, counters published between windows, labels of dropped samples.

Every test runs the real worker thread; deliveries go to a real Pushgateway.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
from gangplank_devtools import read_gateway, run_with_timeout, value, wait_for
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gangplank import DriftMonitor, DriftReference
from gangplank._drift.families import PREFIX
from tests.test_drift_quality import D, K, calibrated_reference, generate

UNIFORM = np.full((10, K), 1 / K)


@pytest.fixture(scope="module")
def reference():
    return calibrated_reference()


@pytest.fixture
def monitor(reference):
    made = []

    def make(pgw_addr=None, **kwargs):
        kwargs.setdefault("agent", "resilience")
        made.append(DriftMonitor(pgw_addr, "resilience", reference=reference, **kwargs))
        return made[-1]

    yield make
    for m in made:
        m.publisher.close(0.2)


def on_gateway(pushgateway, name, **labels):
    return value(read_gateway(pushgateway.url), PREFIX + name, agent="resilience", **labels)


def scraped(drift, name, **labels):
    registry = CollectorRegistry()
    registry.register(drift)
    samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return value(samples, PREFIX + name, **labels)


class FailingReference(DriftReference):
    """A reference whose comparison fails, or yields a report the families cannot be built from, on chosen windows."""

    def __init__(self, reference, fail_on=(), unbuildable_on=()):
        super().__init__(reference.profile, reference.thresholds, reference.window_size, reference.settings)
        object.__setattr__(self, "calls", [0])
        object.__setattr__(self, "fail_on", set(fail_on))
        object.__setattr__(self, "unbuildable_on", set(unbuildable_on))

    def compare(self, window):
        self.calls[0] += 1
        if self.calls[0] in self.fail_on:
            raise ArithmeticError(f"comparison {self.calls[0]} failed")
        report = super().compare(window)
        if self.calls[0] in self.unbuildable_on:
            return dataclasses.replace(report, precision=None)  # families() calls precision.tolist()
        return report


def failing(drift, **kwargs):
    # The monitor derives its own reference (thresholds); the fault goes into the one its windows use.
    drift.tracker.reference = FailingReference(drift.tracker.reference, **kwargs)
    return drift


# -- 1. exceptions in the worker ------------------------------------------------------------------
def test_an_on_window_that_raises_is_counted_logged_once_and_monitoring_goes_on(monitor, pushgateway, caplog):
    def on_window(report):
        raise ValueError(f"callback broke on {report.samples} samples")

    drift = monitor(pushgateway.address, window_size=100, on_window=on_window)
    x, p, y = generate(np.random.default_rng(1), 500)
    with caplog.at_level("ERROR", logger="gangplank"):
        for start in range(0, 500, 50):
            drift.observe(x[start : start + 50], p[start : start + 50], y[start : start + 50])
        assert drift.flush()
    assert on_gateway(pushgateway, "worker_errors_total", stage="on_window") == 5
    assert on_gateway(pushgateway, "windows_total") == 5
    assert on_gateway(pushgateway, "samples_total") == 500
    assert on_gateway(pushgateway, "feedback_samples_total") == 500
    assert on_gateway(pushgateway, "samples_dropped_total") == 0
    assert isinstance(drift.last_error, ValueError) and "100 samples" in str(drift.last_error)
    logged = [r for r in caplog.records if "ValueError" in r.getMessage() and "on_window" in r.getMessage()]
    assert len(logged) == 1
    drift.close()


def test_a_failed_comparison_loses_only_its_window_and_counts_it(monitor, pushgateway):
    drift = failing(monitor(pushgateway.address, window_size=100), fail_on={2})
    x, p, y = generate(np.random.default_rng(2), 300)
    drift.observe(x, p, y)
    assert drift.flush()
    assert on_gateway(pushgateway, "worker_errors_total", stage="compare") == 1
    assert on_gateway(pushgateway, "windows_total") == 2
    assert on_gateway(pushgateway, "samples_total") == 200
    assert on_gateway(pushgateway, "samples_dropped_total") == 100
    assert on_gateway(pushgateway, "feedback_samples_total") == 200
    assert on_gateway(pushgateway, "feedback_dropped_total") == 100
    assert isinstance(drift.last_error, ArithmeticError)
    drift.close()


def test_families_that_cannot_be_built_are_counted_and_the_counters_still_go_out(monitor, pushgateway):
    drift = failing(monitor(pushgateway.address, window_size=100), unbuildable_on={1})
    x, p, _ = generate(np.random.default_rng(3), 100)
    drift.observe(x, p)
    assert drift.flush()

    def counted():
        drift.flush()
        try:
            return on_gateway(pushgateway, "worker_errors_total", stage="publish") == 1
        except KeyError:
            return False

    assert wait_for(counted, timeout=15)
    assert on_gateway(pushgateway, "samples_total") == 100 and on_gateway(pushgateway, "windows_total") == 1
    assert scraped(drift, "worker_errors_total", stage="publish") == 1
    assert isinstance(drift.last_error, AttributeError)
    x, p, _ = generate(np.random.default_rng(4), 100)
    drift.observe(x, p)  # the next window's report builds again
    assert drift.flush()
    assert on_gateway(pushgateway, "window_samples") == 100 and on_gateway(pushgateway, "windows_total") == 2


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("ignore_exceptions", [True, False])
def test_observe_never_waits_on_a_dead_worker(monitor, pushgateway, caplog, ignore_exceptions):
    def on_window(report):
        raise SystemExit("a callback that ends the thread")

    drift = monitor(
        pushgateway.address,
        window_size=100,
        on_window=on_window,
        max_pending_samples=100,
        max_wait_seconds=600,  # a caller waiting on the dead worker would hang here
        ignore_exceptions=ignore_exceptions,
    )
    x, p, y = generate(np.random.default_rng(5), 2100)
    drift.observe(x[:100], p[:100])
    assert not drift.flush()  # the worker died on the first window

    def after_death():
        for start in range(100, 2100, 100):
            drift.observe(x[start : start + 100], p[start : start + 100], y[start : start + 100])
        drift.feedback(y[:10], p[:10])

    run_with_timeout(after_death, timeout=60, what="observe on a dead worker")
    assert not drift.flush()
    assert isinstance(drift.last_error, SystemExit)
    with caplog.at_level("ERROR", logger="gangplank"):
        if ignore_exceptions:
            drift.close()
            assert "had died" in caplog.text
        else:
            with pytest.raises(RuntimeError, match="had died"):
                drift.close()
    assert on_gateway(pushgateway, "samples_total") == 100
    assert on_gateway(pushgateway, "samples_dropped_total") == 2000
    assert on_gateway(pushgateway, "feedback_dropped_total") == 2010
    assert scraped(drift, "samples_dropped_total") == 2000


# -- 2. close() racing observe ---------------------------------------------------------------------
def test_close_racing_observe_from_16_threads_loses_no_row(monitor, pushgateway):
    drift = monitor(pushgateway.address, window_size=100)
    x, p, _ = generate(np.random.default_rng(6), 128)
    sent = [0] * 16  # rows of every observe that returned normally, per thread

    def observe_until_closed(i):
        while True:
            try:
                drift.observe(x, p)
            except RuntimeError:  # closed: this call returned abnormally, its rows are nobody's
                return
            sent[i] += 128

    threads = [threading.Thread(target=observe_until_closed, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    assert wait_for(lambda: sum(sent) >= 20_000, timeout=120)
    drift.close()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    samples, dropped = on_gateway(pushgateway, "samples_total"), on_gateway(pushgateway, "samples_dropped_total")
    assert samples + dropped == sum(sent)
    assert scraped(drift, "samples_total") == samples and scraped(drift, "samples_dropped_total") == dropped


# -- 3. counters current between windows ----------------------------------------------------------
def test_unmatched_feedback_is_published_without_a_window_closing(monitor, pushgateway):
    drift = monitor(pushgateway.address, window_size=100)
    for i in range(100):
        assert drift.feedback([i % K], ids=[f"unknown-{i}"]) == 0
    assert drift.flush()
    assert on_gateway(pushgateway, "feedback_unmatched_total") == 100
    assert on_gateway(pushgateway, "windows_total") == 0
    assert scraped(drift, "feedback_unmatched_total") == 100
    for i in range(50):
        drift.feedback([0], ids=[f"later-{i}"])
    # No flush: the worker publishes changed counters on its own.
    assert wait_for(lambda: on_gateway(pushgateway, "feedback_unmatched_total") == 150, timeout=15)
    assert scraped(drift, "feedback_unmatched_total") == 150


def blocked_worker(monitor, pushgateway, **kwargs):
    """A monitor whose worker is held in ``on_window`` of its first 100-row window until ``release`` is set.

    Its queue holds 150 samples, the 100 being worked on included: 50 more fit.
    """
    entered, release = threading.Event(), threading.Event()

    def hold(report):
        entered.set()
        release.wait(60)

    drift = monitor(pushgateway.address, window_size=100, on_window=hold, max_pending_samples=150, **kwargs)
    x, p, _ = generate(np.random.default_rng(7), 100)
    drift.observe(x, p, ids=[f"first-{i}" for i in range(100)])
    assert entered.wait(60)
    return drift, release


def test_dropped_samples_are_published_without_a_window_closing(monitor, pushgateway):
    drift, release = blocked_worker(monitor, pushgateway, max_wait_seconds=0)
    for _ in range(5):
        drift.observe(np.zeros((10, D)), UNIFORM)  # 50 rows fill the queue
    for _ in range(3):
        drift.observe(np.zeros((10, D)), UNIFORM)  # no room, no wait: dropped
    release.set()
    assert drift.flush()
    assert on_gateway(pushgateway, "samples_dropped_total") == 30
    assert on_gateway(pushgateway, "windows_total") == 1
    drift.close()
    assert on_gateway(pushgateway, "samples_total") == 150


# -- 4. labels of dropped samples ----------------------------------------------------------------
def test_labels_of_dropped_samples_are_counted_apart(monitor, pushgateway):
    drift, release = blocked_worker(monitor, pushgateway, max_wait_seconds=0)
    kept = [f"kept-{i}" for i in range(50)]
    lost = [f"lost-{i}" for i in range(10)]
    drift.observe(np.zeros((50, D)), np.full((50, K), 1 / K), ids=kept)  # fills the queue
    drift.observe(np.zeros((10, D)), UNIFORM, ids=lost)  # dropped
    drift.observe(np.zeros((10, D)), UNIFORM, labels=np.zeros(10, dtype=int))  # dropped, with its labels
    release.set()
    assert drift.feedback(np.zeros(50, dtype=int), ids=kept) == 50
    assert drift.feedback(np.zeros(10, dtype=int), ids=lost) == 0
    assert drift.flush()
    assert on_gateway(pushgateway, "feedback_dropped_total") == 20
    assert on_gateway(pushgateway, "feedback_unmatched_total") == 0
    drift.close()
    assert on_gateway(pushgateway, "feedback_samples_total") == 50
    assert on_gateway(pushgateway, "samples_dropped_total") == 20
    assert on_gateway(pushgateway, "samples_total") == 150
