"""Reliability of the drift path and the transport: restarts, silence, concurrency, hostile names.

Every test talks to a real Pushgateway process or a real socket.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import urllib.request

import numpy as np
import pytest
from gangplank_devtools import SilentServer, read_gateway, run_with_timeout, start_pushgateway, value
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from prometheus_client.core import GaugeMetricFamily

import gangplank
from gangplank.transport import PushgatewaySender
from tests.gateway_tools import ROOT


@pytest.fixture(scope="module")
def reference():
    rng = np.random.default_rng(0)
    x, p = rng.normal(size=(2000, 8)), rng.dirichlet([1, 1, 1], size=2000)
    return gangplank.DriftReference.fit(x, p, window_size=50, n_simulations=100)


def stream(exporter, rows, seed=1):
    rng = np.random.default_rng(seed)
    done = 0
    while done < rows:
        n = int(min(rng.integers(1, 21), rows - done))
        exporter.observe(rng.normal(size=(n, 8)), rng.dirichlet([1, 1, 1], size=n))
        done += n


def groups(url):
    with urllib.request.urlopen(url + "/api/v1/metrics", timeout=5) as response:
        return [group["labels"] for group in json.load(response)["data"]]


def test_drift_stream_survives_a_gateway_restart(reference, tmp_path):
    with start_pushgateway(workdir=tmp_path) as gateway:
        exporter = gangplank.ProductionDriftExporter(
            gateway.address, "restart", reference=reference, agent="r1", window_size=50
        )
        stream(exporter, 300)
        gateway.stop()
        stream(exporter, 400, seed=2)  # windows close while nobody listens
        gateway.restart()  # comes back empty
        stream(exporter, 300, seed=3)
        exporter.close()
        samples = read_gateway(gateway.url)
        assert value(samples, "gangplank_predict_samples_total", agent="r1") == 1000
        assert value(samples, "gangplank_predict_windows_total", agent="r1") == 20


def test_observe_keeps_going_against_a_silent_gateway(reference):
    with SilentServer() as silent:
        exporter = gangplank.ProductionDriftExporter(
            silent.address, "silent", reference=reference, agent="s1", window_size=50, timeout=30
        )
        reports = []
        exporter.on_window = reports.append
        run_with_timeout(lambda: stream(exporter, 1000), timeout=120, what="observe against a silent gateway")
        run_with_timeout(lambda: exporter.flush(0.5), timeout=30, what="flush against a silent gateway")
        assert len(reports) == 20 and exporter.publisher.pending
        exporter.publisher.close(0)


PRODUCER = textwrap.dedent("""
    import sys, zlib, numpy as np, gangplank
    from tests.test_reliability import stream
    address, job, agent, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    rng = np.random.default_rng(zlib.crc32(agent.encode()))
    x, p = rng.normal(size=(1000, 8)), rng.dirichlet([1, 1, 1], size=1000)
    reference = gangplank.DriftReference.fit(x, p, window_size=50, n_simulations=50)
    exporter = gangplank.ProductionDriftExporter(
        address, job, reference=reference, agent=agent, ignore_exceptions=False
    )
    with exporter as drift:
        stream(drift, rows, seed=zlib.crc32(job.encode()))
""")


@pytest.mark.slow  # three producer processes, each importing gangplank and fitting a reference
def test_three_producer_processes_share_one_gateway(pushgateway):
    agents = [
        ("prod-a", "MNIST_Multiclass", 1000),
        ("prod-b", "MNIST_Multiclass_wrong_inputs", 1200),
        ("prod-c", "MNIST_Multiclass_wrong_model", 1400),
    ]
    processes = [
        subprocess.Popen([sys.executable, "-c", PRODUCER, pushgateway.address, job, agent, str(rows)], cwd=ROOT)
        for job, agent, rows in agents
    ]
    assert [process.wait(timeout=300) for process in processes] == [0, 0, 0]
    samples = read_gateway(pushgateway.url)
    for job, agent, rows in agents:
        assert value(samples, "gangplank_predict_samples_total", job=job, agent=agent) == rows
        assert value(samples, "gangplank_predict_windows_total", job=job, agent=agent) == -(-rows // 50)


def test_eight_threads_pushing_many_groups_at_once(pushgateway):
    senders = [PushgatewaySender(pushgateway.address, "threads", {"instance": f"t{i}"}) for i in range(8)]

    def work(i):
        for step in range(50):
            senders[i].submit("main", [GaugeMetricFamily("gangplank_step", "step", value=step)])

    import threading

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(sender.flush(10) for sender in senders)
    samples = read_gateway(pushgateway.url)
    assert all(value(samples, "gangplank_step", instance=f"t{i}") == 49 for i in range(8))


label_values = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)


@pytest.fixture(scope="module")
def shared_gateway(tmp_path_factory):
    with start_pushgateway(workdir=tmp_path_factory.mktemp("pgw")) as gateway:
        yield gateway


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(job=label_values, instance=st.one_of(st.just(".."), st.just("../victim"), st.just("a/b c"), label_values))
def test_hostile_job_and_grouping_values_land_in_their_own_group(shared_gateway, job, instance):
    victim = PushgatewaySender(shared_gateway.address, "victim")
    victim.submit("main", [GaugeMetricFamily("gangplank_victim", "untouched", value=1)])
    assert victim.flush(5)
    sender = PushgatewaySender(shared_gateway.address, job, {"instance": instance})
    sender.submit("main", [GaugeMetricFamily("gangplank_hostile", "pushed", value=7)])
    assert sender.flush(5), sender.last_error
    present = groups(shared_gateway.url)
    assert {"job": job, "instance": instance} in present
    assert {"job": "victim", "instance": ""} in present or {"job": "victim"} in present
    samples = read_gateway(shared_gateway.url)
    assert value(samples, "gangplank_victim", job="victim") == 1
    assert value(samples, "gangplank_hostile", job=job, instance=instance) == 7


@pytest.mark.parametrize("key", [{"bad-name": "x"}, {"job": "x"}, {"0start": "x"}])
def test_invalid_grouping_label_names_are_refused_up_front(key):
    with pytest.raises(ValueError, match="label"):
        PushgatewaySender("127.0.0.1:9091", "job", key)


# -- bad input, property-based: a clear ValueError or an accepted batch, never a corrupted window --
from hypothesis.extra import numpy as hnp  # noqa: E402

dtypes = st.sampled_from(["float32", "float64", "int64", "uint8", "bool", "complex64", "U3", "O"])
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=9)


@st.composite
def hostile_arrays(draw):
    dtype = draw(dtypes)
    shape = draw(shapes)
    if dtype == "O":
        return np.empty(shape, dtype=object)
    return draw(hnp.arrays(dtype, shape))


@pytest.fixture(scope="module")
def offline_exporter(reference):
    # No gateway (pgw_addr=None): these tests are about the window, not delivery.
    exporter = gangplank.ProductionDriftExporter(None, "bad-input", reference=reference, agent="hyp", window_size=50)
    yield exporter
    exporter.publisher.close(0)


def right_shape(columns, dtype="float64"):
    """Arrays of the expected width and a shared row count, with any values (NaN, ±Inf, huge)."""
    return hnp.arrays(dtype, st.tuples(st.just(4), st.just(columns)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    inputs=st.one_of(st.none(), hostile_arrays(), right_shape(8), right_shape(8, "float32")),
    probabilities=st.one_of(hostile_arrays(), right_shape(3), hnp.arrays("float64", (4, 3), elements=st.floats(0, 1))),
    labels=st.one_of(st.none(), hostile_arrays(), hnp.arrays("int64", (4,), elements=st.integers(-2, 4))),
)
def test_any_array_is_accepted_whole_or_refused_with_value_error(offline_exporter, inputs, probabilities, labels):
    exporter = offline_exporter
    seen_before = exporter.totals.samples + exporter.window.samples
    try:
        exporter.observe(inputs, probabilities, labels)
        assert exporter.flush(10)
    except ValueError as error:
        event("refused")
        assert str(error)
        assert exporter.totals.samples + exporter.window.samples == seen_before
        return
    event("accepted")
    rows = np.asarray(probabilities).reshape(-1, 3).shape[0]
    assert exporter.totals.samples + exporter.window.samples == seen_before + rows
    assert 0 <= exporter.window.samples < exporter.window_size
    window = exporter.window
    assert window.class_counts.sum() == window.samples == window.confidence_counts.sum()
    assert window.input_rows <= window.samples
