"""``DriftMonitor(worker="process")``: the request path copies rows into shared memory, a child at idle priority
does the rest. Checked against the thread worker on the same stream, a real Pushgateway, real threads, real
processes (a stopped child stands for a saturated CPU), a real Keras model saturating the cores.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from gangplank_devtools import read_gateway, value, wait_for
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gangplank import DriftMonitor, DriftReference
from gangplank._drift.families import PREFIX
from tests.gateway_tools import ROOT
from tests.test_drift_quality import generate

pytestmark = pytest.mark.slow  # forks worker processes, 3-5 s a test

WINDOW = 100


@pytest.fixture(scope="module")
def reference():
    x, p, y = generate(np.random.default_rng(0), 6000)
    return DriftReference.fit(x, p, y, window_size=WINDOW, n_simulations=100)


@pytest.fixture(scope="module")
def stream():
    return generate(np.random.default_rng(5), 4000)


@pytest.fixture
def monitors(reference):
    made = []

    def make(pgw_addr=None, **kwargs):
        kwargs.setdefault("agent", "proc")
        made.append(DriftMonitor(pgw_addr, "process-worker", reference=reference, **kwargs))
        return made[-1]

    yield make
    for monitor in made:
        if monitor.worker.alive:
            monitor.close()


def scraped(monitor) -> dict:
    registry = CollectorRegistry()
    registry.register(monitor)
    samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def observe_in_pieces(monitor, x, p, y=None, ids=None, seed=3, largest=40):
    rng = np.random.default_rng(seed)
    start = 0
    while start < len(p):
        stop = min(len(p), start + int(rng.integers(1, largest)))
        labels = None if y is None else y[start:stop]
        monitor.observe(x[start:stop], p[start:stop], labels, None if ids is None else ids[start:stop])
        start = stop


TIMING = ("interval_seconds", "timestamp")


def comparable(samples: dict) -> dict:
    """A scrape's samples without the ones that depend on when windows closed."""
    return {key: v for key, v in samples.items() if not any(word in key[0] for word in TIMING)}


def test_the_process_worker_publishes_what_the_thread_worker_publishes(monitors, stream):
    x, p, y = stream
    ids = [f"r{i}" for i in range(len(p))]
    results = []
    for kind in ("thread", "process"):
        monitor = monitors(worker=kind, agent="same")
        observe_in_pieces(monitor, x[:2550], p[:2550], ids=ids[:2550])
        observe_in_pieces(monitor, x[2550:], p[2550:], y[2550:], seed=4)
        assert monitor.feedback(y[:2000:3], ids=ids[:2000:3]) == len(range(0, 2000, 3))
        assert monitor.feedback(y[:10], predictions=p[:10]) == 10
        assert monitor.flush(30)
        results.append(comparable(scraped(monitor)))
        monitor.close()
        results.append(comparable(scraped(monitor)))
    thread_flushed, thread_closed, process_flushed, process_closed = results
    for process, thread in ((process_flushed, thread_flushed), (process_closed, thread_closed)):
        assert process.keys() == thread.keys()
        assert process == pytest.approx(thread, rel=1e-12, nan_ok=True)  # sums of the same floats, joined differently
    assert value(process_closed, PREFIX + "samples_total", agent="same") == len(p)
    assert value(process_closed, PREFIX + "windows_total", agent="same") == -(-len(p) // WINDOW)


def test_plain_batches_in_float32_publish_what_the_thread_worker_publishes(monitors, stream):
    """The request path's one call (no labels, ids or shadow), float32 probabilities and image-shaped inputs, across
    the ring's end many times (97 rows): the same figures as the thread worker's."""
    x, p, _ = stream
    p32 = p.astype(np.float32)
    images = x.reshape(len(x), -1, 1)
    results = []
    for kind in ("thread", "process"):
        monitor = monitors(worker=kind, agent="plain", max_pending_samples=97, max_wait_seconds=60)
        observe_in_pieces(monitor, x[:2000], p32[:2000])
        observe_in_pieces(monitor, images[2000:], p[2000:], seed=5)  # float64
        monitor.close()
        results.append(comparable(scraped(monitor)))
    thread, process = results
    assert process.keys() == thread.keys()
    assert process == pytest.approx(thread, rel=1e-12, nan_ok=True)
    assert value(process, PREFIX + "samples_total", agent="plain") == len(p)
    assert value(process, PREFIX + "samples_dropped_total", agent="plain") == 0


def test_at_input_stride_4_the_ring_copies_a_quarter_of_the_inputs_and_publishes_what_the_thread_worker_does(stream):
    """Only the inputs of rows numbered a multiple of 4 reach the ring on the one-call path; the windows (stream
    rows 0..99, 100..199, ...) bin exactly those, as the thread worker's do."""
    x, p, _ = stream
    x4, p4, _ = generate(np.random.default_rng(0), 6000)
    reference = DriftReference.fit(x4, p4, window_size=WINDOW, n_simulations=50, input_stride=4)
    results = []
    for kind in ("thread", "process"):
        with DriftMonitor(
            None, "stride", reference=reference, agent="s4", worker=kind, max_pending_samples=97, max_wait_seconds=60
        ) as monitor:
            observe_in_pieces(monitor, x[:2450], p[:2450].astype(np.float32))
        results.append(comparable(scraped(monitor)))
    thread, process = results
    assert process.keys() == thread.keys()
    assert process == pytest.approx(thread, rel=1e-12, nan_ok=True)
    assert value(process, PREFIX + "samples_total", agent="s4") == 2450
    assert value(process, PREFIX + "input_sampling_rate", agent="s4") == 0.25


def test_scrape_equals_push_and_the_child_runs_at_idle_priority(monitors, stream, pushgateway):
    x, p, y = stream
    monitor = monitors(pushgateway.address, worker="process")
    pid = monitor.worker.pid
    assert pid != os.getpid()
    threads = os.listdir(f"/proc/{pid}/task")
    assert len(threads) >= 2  # the child's main loop and its worker thread (and a push thread)
    assert {os.sched_getscheduler(int(tid)) for tid in threads} == {os.SCHED_IDLE}
    observe_in_pieces(monitor, x[:1234], p[:1234], y[:1234])
    assert monitor.flush(30)
    pushed = comparable({k: v for k, v in read_gateway(pushgateway.url).items() if dict(k[1]).get("agent") == "proc"})
    here = comparable(scraped(monitor))
    drift = {k: v for k, v in pushed.items() if k[0].startswith(PREFIX)}
    pushed_here = {
        (name, tuple(x for x in labels if x[0] not in ("job", "instance"))): v for (name, labels), v in drift.items()
    }
    assert pushed_here.keys() == here.keys()
    assert pushed_here == pytest.approx(here, rel=0, abs=0, nan_ok=True)
    assert value(here, PREFIX + "samples_total", agent="proc") == 1200


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_coalesced_pushes_lose_no_window_flush_and_close_deliver_exact_counts(monitors, stream, pushgateway, kind):
    """Pushes go at most once a second; a flush and close() still bring every window and sample to the gateway."""
    x, p, _ = stream
    monitor = monitors(pushgateway.address, worker=kind, agent=f"coalesce-{kind}")
    observe_in_pieces(monitor, x[:3050], p[:3050])
    assert monitor.flush(30)
    pushed = read_gateway(pushgateway.url)
    windows = {
        signal: value(pushed, PREFIX + "drift_signal_windows_total", agent=f"coalesce-{kind}", signal=signal)
        for signal in monitor.totals.signal_windows
    }
    assert value(pushed, PREFIX + "windows_total", agent=f"coalesce-{kind}") == 30
    assert value(pushed, PREFIX + "samples_total", agent=f"coalesce-{kind}") == 3000
    assert windows == monitor.totals.signal_windows
    observe_in_pieces(monitor, x[3050:], p[3050:])
    monitor.close()
    pushed = read_gateway(pushgateway.url)
    assert value(pushed, PREFIX + "windows_total", agent=f"coalesce-{kind}") == monitor.totals.windows == 40
    assert value(pushed, PREFIX + "samples_total", agent=f"coalesce-{kind}") == len(p)


def test_bad_input_raises_in_the_caller_and_records_nothing(monitors, stream):
    x, p, _ = stream
    monitor = monitors(worker="process")
    monitor.observe(x[:7], p[:7])
    with pytest.raises(ValueError, match="features"):
        monitor.observe(x[:5, :-1], p[:5])
    with pytest.raises(ValueError, match="NaN"):
        monitor.observe(x[:5], np.full_like(p[:5], np.nan))
    with pytest.raises(ValueError, match="ids"):
        monitor.observe(x[:5], p[:5], ids=["a"])
    monitor.close()
    samples = scraped(monitor)
    assert value(samples, PREFIX + "samples_total", agent="proc") == 7
    assert value(samples, PREFIX + "samples_dropped_total", agent="proc") == 0
    with pytest.raises(RuntimeError, match="closed"):
        monitor.observe(x[:1], p[:1])


@pytest.mark.slow  # 40,000 samples from 8 threads
def test_many_threads_observe_exactly(monitors, stream):
    x, p, _ = stream
    threads, per_thread = 8, 5_000
    monitor = monitors(worker="process", max_wait_seconds=60)  # wait for room: drop nothing
    errors = []

    def work(seed):
        rng = np.random.default_rng(seed)
        try:
            left = per_thread
            while left:
                rows = min(left, int(rng.integers(1, 40)))
                first = int(rng.integers(0, len(p) - rows))
                monitor.observe(x[first : first + rows], p[first : first + rows])
                left -= rows
        except BaseException as error:  # reported below
            errors.append(error)

    workers = [threading.Thread(target=work, args=(seed,)) for seed in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(300)
    assert not errors and not any(worker.is_alive() for worker in workers)
    monitor.close()
    samples = scraped(monitor)
    assert value(samples, PREFIX + "samples_total", agent="proc") == threads * per_thread
    assert value(samples, PREFIX + "windows_total", agent="proc") == threads * per_thread // WINDOW
    assert value(samples, PREFIX + "samples_dropped_total", agent="proc") == 0


def test_a_stalled_worker_makes_the_request_path_drop_and_count_exactly(monitors, stream):
    """A child that gets no CPU (stopped here, as on a saturated machine): the ring fills, callers drop at once."""
    x, p, y = stream
    monitor = monitors(worker="process", max_pending_samples=250, max_wait_seconds=0)
    ids = [f"s{i}" for i in range(len(p))]
    os.kill(monitor.worker.pid, signal.SIGSTOP)
    try:
        observe_in_pieces(monitor, x[:1000], p[:1000], y[:1000], ids=ids[:1000])
        accepted = monitor.worker.ring.written
    finally:
        os.kill(monitor.worker.pid, signal.SIGCONT)
    assert 0 < accepted <= 250
    assert monitor.dropped == 1000 - accepted
    with pytest.raises(ValueError, match="NaN"):  # checked in the caller, full ring or not
        monitor.observe(x[:5], np.full_like(p[:5], np.nan))
    assert monitor.dropped == 1000 - accepted and monitor.worker.ring.written == accepted
    joined = monitor.feedback(y[:1000], ids=ids[:1000])
    assert joined == accepted  # labels of dropped samples are counted apart
    monitor.close()
    samples = scraped(monitor)
    assert value(samples, PREFIX + "samples_total", agent="proc") == accepted
    assert value(samples, PREFIX + "samples_dropped_total", agent="proc") == 1000 - accepted
    assert value(samples, PREFIX + "feedback_dropped_total", agent="proc") == 2 * (1000 - accepted)
    assert value(samples, PREFIX + "windows_total", agent="proc") == -(-accepted // WINDOW)
    assert monitor.totals.samples == accepted


@pytest.mark.slow  # Keras inference on every core
def test_a_saturated_model_counts_add_up():
    """Keras inference on every core and monitoring at once: every observed row is a sample or a drop."""
    from tests.mnist_models import load_mnist, make_model

    images = load_mnist()[0][:4000]
    flat = images.reshape(len(images), -1)
    model = make_model(seed=0)  # untrained: the CPU it burns is what matters here
    probabilities = model.predict_on_batch(images[2000:])
    reference = DriftReference.fit(flat[2000:], probabilities, window_size=200, n_simulations=50)
    monitor = DriftMonitor(None, "saturated", reference=reference, agent="busy", worker="process", max_wait_seconds=0)
    stop = threading.Event()

    def burn():
        while not stop.is_set():
            model.predict_on_batch(images[:256])

    burners = [threading.Thread(target=burn) for _ in range(2)]
    for burner in burners:
        burner.start()
    observed = 0
    try:
        for i in range(300):
            rows = slice(32 * (i % 60), 32 * (i % 60 + 1))
            monitor.observe(flat[rows], model.predict_on_batch(images[rows]))
            observed += 32
    finally:
        stop.set()
        for burner in burners:
            burner.join(60)
    monitor.close()
    samples = scraped(monitor)
    taken = value(samples, PREFIX + "samples_total", agent="busy")
    dropped = value(samples, PREFIX + "samples_dropped_total", agent="busy")
    assert taken + dropped == observed == 9600
    assert value(samples, PREFIX + "windows_total", agent="busy") == -(-taken // 200)


def test_a_monitor_that_cannot_start_its_worker_process_says_so(reference):
    with pytest.raises(RuntimeError, match="could not start.*worker='thread'"):
        DriftMonitor(None, "j", reference=reference, worker="process", max_pending_samples=10**15)
    with pytest.raises(ValueError, match="worker='thread'"):
        DriftMonitor(None, "j", reference=reference, worker="process", on_window=print)
    with pytest.raises(ValueError, match="'thread' or 'process'"):
        DriftMonitor(None, "j", reference=reference, worker="fork")


CHILD_OF_A_KILLED_PARENT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from gangplank import DriftMonitor, DriftReference
    rng = np.random.default_rng(0)
    reference = DriftReference.fit(rng.normal(size=(500, 3)), rng.dirichlet([1, 1], 500), window_size=50,
                                   n_simulations=20)
    monitor = DriftMonitor(None, "orphan", reference=reference, worker="process")
    print(monitor.worker.pid, flush=True)
    time.sleep(600)
    """
)


@pytest.mark.slow  # a fresh interpreter
def test_the_worker_process_ends_with_its_parent():
    parent = subprocess.Popen(
        [sys.executable, "-c", CHILD_OF_A_KILLED_PARENT], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        child = int(parent.stdout.readline())
        assert os.path.exists(f"/proc/{child}")
    finally:
        parent.kill()
        parent.wait(30)
    assert wait_for(lambda: not _running(child), timeout=30), "the orphaned worker process is still running"


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
