"""The drift exporter on real MNIST: a correct stream stays quiet, drifted streams are flagged.

Window 200, batches of random size 1..20 through ``observe()`` (with the true
labels, as feedback in the same call), pushed to a real Pushgateway. The
stream of test images is shuffled once: consecutive images of the MNIST test
file come from the same writers, so a stream in file order is not a sample of
the training distribution (the input signal notices it), while production
traffic arrives in no such order.

Drifted streams must be flagged by the label-free signals (inputs,
predictions, confidence) alone, since labels usually come late. Every
scenario runs twice: with every row's inputs binned, and with the reference
fitted at ``input_stride=4`` (inputs of every 4th row binned, the serving
setting): detection must not change.
"""

from __future__ import annotations

import numpy as np
import pytest
from gangplank_devtools import read_gateway, start_pushgateway, value, wait_for

from gangplank import DriftReference, ProductionDriftExporter
from gangplank._drift.families import PREFIX

pytestmark = pytest.mark.slow  # trains two small convnets (~15-30 s on two cores) and fits two references

WINDOW = 200
REFERENCE_ROWS = slice(40_000, 60_000)  # 20k training images the good model did not train on
LABEL_FREE = ("input", "prediction", "confidence")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with start_pushgateway(workdir=tmp_path_factory.mktemp("mnist-pgw")) as service:
        yield service


@pytest.fixture(scope="module")
def summary(request):
    """Lines of the per-scenario summary, written to the terminal when the module ends."""
    lines = []
    yield lines
    text = "\n".join(["", "MNIST drift scenarios (window 200, batches 1..20):"] + ["  " + line for line in lines])
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is None:
        print(text)
        return
    with capture.global_and_fixture_disabled():  # past pytest's capture, into the run log
        print(text, flush=True)


@pytest.fixture(scope="module", params=[1, 4], ids=["stride1", "stride4"])
def stride(request):
    return request.param


@pytest.fixture(scope="module")
def good_reference(mnist_models, stride):
    m = mnist_models
    x, y = m.x_train[REFERENCE_ROWS], m.y_train[REFERENCE_ROWS]
    return DriftReference.fit(x, m.predict(m.good, x), y, window_size=WINDOW, input_stride=stride)


@pytest.fixture(scope="module")
def wrong_reference(mnist_models, stride):
    m = mnist_models
    return DriftReference.fit(
        m.x_wrong_train, m.predict(m.wrong, m.x_wrong_train), m.y_wrong_train, window_size=WINDOW, input_stride=stride
    )


@pytest.fixture(scope="module")
def test_stream(mnist_models):
    order = np.random.default_rng(2024).permutation(mnist_models.x_test.shape[0])
    return mnist_models.x_test[order], mnist_models.y_test[order]


def run_stream(gateway, reference, probabilities, x, y, agent, seed=0):
    """Feed whole windows of the stream through ``observe`` in batches of 1..20; the window reports."""
    reports = []
    rows = (x.shape[0] // WINDOW) * WINDOW
    rng = np.random.default_rng(seed)
    agent = f"{agent}-stride{reference.input_stride}"
    with ProductionDriftExporter(
        gateway.address,
        "mnist-drift",
        reference=reference,
        agent=agent,
        window_size=WINDOW,
        on_window=reports.append,
        max_wait_seconds=60,
    ) as exporter:  # wait, drop nothing
        start = 0
        while start < rows:
            stop = min(rows, start + int(rng.integers(1, 21)))
            exporter.observe(x[start:stop], probabilities[start:stop], y[start:stop])
            start = stop
    exporter.publisher.close(timeout=5)
    assert [r.samples for r in reports] == [WINDOW] * (rows // WINDOW)
    input_rows = -(-WINDOW // reference.input_stride)
    assert all(r.input_rows == input_rows and r.labelled == WINDOW for r in reports)
    return reports


def describe(name, reports):
    alarms = sum(r.drift_detected for r in reports)
    signals = {s: sum(r.signals[s] for r in reports) for s in reports[0].signals}
    accuracy = np.mean([r.accuracy for r in reports])
    estimate = np.mean([r.estimated_accuracy for r in reports])
    stride = reports[0].samples // reports[0].input_rows
    return (
        f"{name:<24} stride {stride}: {alarms:>2}/{len(reports)} windows drifted; signals "
        + ", ".join(f"{s} {n}" for s, n in signals.items())
        + f"; accuracy {accuracy:.3f}, estimated {estimate:.3f}, "
        f"max input PSI {np.mean([np.max(r.input_psi) for r in reports]):.2f} (mean over windows)"
    )


def label_free_alarms(reports):
    return [any(r.signals[s] for s in LABEL_FREE) for r in reports]


def pushed(gateway, agent, name, expected=None):
    """The gateway's value of ``name`` for ``agent``; with ``expected``, the first read equal to it (the last
    windows' pushes may still be on their way), else the last value read."""
    last = []

    def look():
        try:
            found = value(read_gateway(gateway.url), PREFIX + name, agent=agent)
        except KeyError:
            return None
        last[:] = [found]
        return (found,) if expected is None or found == expected else None

    found = wait_for(look, timeout=30)
    assert last, f"{name} of {agent} not on the gateway"
    return found[0] if found else last[0]


# -- the correct stream -----------------------------------------------------------------
def test_correct_stream_raises_no_sustained_signal_in_40_windows(
    mnist_models, good_reference, test_stream, gateway, summary
):
    """No output signal fires; the input signal, calibrated at the rate its simulations can reach (2 % of windows),
    fires in a window now and then but never in 3 of 5 (what GangplankDataDrift asks for)."""
    x, y = test_stream
    x, y = x[: 40 * WINDOW], y[: 40 * WINDOW]
    reports = run_stream(gateway, good_reference, mnist_models.predict(mnist_models.good, x), x, y, agent="correct")
    summary.append(describe("correct stream", reports))
    assert len(reports) == 40
    outputs = [r.signals for r in reports if any(v for k, v in r.signals.items() if k != "input")]
    assert outputs == []
    inputs = [int(r.signals["input"]) for r in reports]
    assert sum(inputs) <= 3 and max(sum(inputs[i : i + 5]) for i in range(36)) < 3, inputs
    assert np.mean([r.accuracy for r in reports]) > 0.9
    # The label-free estimate follows the realised accuracy of a healthy model.
    estimated, realised = np.mean([r.estimated_accuracy for r in reports]), np.mean([r.accuracy for r in reports])
    assert abs(estimated - realised) < 0.02, (estimated, realised)
    agent = f"correct-stride{good_reference.input_stride}"
    assert pushed(gateway, agent, "windows_total", 40) == 40
    drifted = sum(r.drift_detected for r in reports)
    assert pushed(gateway, agent, "drift_detected_total", drifted) == drifted
    assert pushed(gateway, agent, "samples_total", 40 * WINDOW) == 40 * WINDOW
    assert pushed(gateway, agent, "input_sampling_rate") == 1 / good_reference.input_stride


# -- the two drifts of the issue ---------------------------------------------------------------
def test_inverted_pixels_are_flagged_in_every_window(mnist_models, good_reference, test_stream, gateway, summary):
    x, y = test_stream
    x, y = 1.0 - x[: 40 * WINDOW], y[: 40 * WINDOW]
    reports = run_stream(gateway, good_reference, mnist_models.predict(mnist_models.good, x), x, y, agent="inverted")
    summary.append(describe("inverted pixels 1-x", reports))
    assert len(reports) == 40 and all(label_free_alarms(reports))
    assert all(r.signals["input"] for r in reports)
    agent = f"inverted-stride{good_reference.input_stride}"
    assert pushed(gateway, agent, "drift_detected_total", 40) == 40
    assert pushed(gateway, agent, "drift_detected") == 1
    # The convnet's confidence falls on inverted digits, and the estimate with it.
    assert np.mean([r.estimated_accuracy for r in reports]) < good_reference.accuracy - 0.1


def test_wrong_model_is_flagged_in_every_window(mnist_models, wrong_reference, test_stream, gateway, summary):
    m = mnist_models
    assert (m.y_wrong_train % 2 == 0).mean() < 0.05
    x, y = test_stream
    x, y = x[: 40 * WINDOW], y[: 40 * WINDOW]
    reports = run_stream(gateway, wrong_reference, m.predict(m.wrong, x), x, y, agent="wrong-model")
    summary.append(describe("wrong model (<5% even)", reports))
    assert len(reports) == 40 and all(label_free_alarms(reports))
    assert pushed(gateway, f"wrong-model-stride{wrong_reference.input_stride}", "drift_detected_total", 40) == 40


# -- other drifts a user expects caught ---------------------------------------------------------
def shift_down(x, rows=4):
    out = np.zeros_like(x)
    out[:, rows:] = x[:, :-rows]
    return out


def centre_blacked_out(x):
    out = x.copy()
    out[:, 11:17, 11:17] = 0.0
    return out


OTHER_DRIFTS = {
    "halved intensity x/2": lambda x, y: (x * 0.5, y),
    "shifted down 4 rows": lambda x, y: (shift_down(x), y),
    "only digits 0-4": lambda x, y: (x[y < 5], y[y < 5]),
    "centre 6x6 blacked out": lambda x, y: (centre_blacked_out(x), y),
    "bright pixels >0.9 set 0": lambda x, y: (np.where(x > 0.9, 0.0, x).astype(np.float32), y),
}


@pytest.mark.parametrize("name", list(OTHER_DRIFTS))
def test_other_drifts_are_flagged_in_most_windows(name, mnist_models, good_reference, test_stream, gateway, summary):
    x, y = OTHER_DRIFTS[name](*test_stream)
    windows = min(40, x.shape[0] // WINDOW)
    x, y = x[: windows * WINDOW], y[: windows * WINDOW]
    agent = name.split()[0]
    reports = run_stream(gateway, good_reference, mnist_models.predict(mnist_models.good, x), x, y, agent=agent)
    summary.append(describe(name, reports))
    flagged = label_free_alarms(reports)
    assert len(reports) >= 25
    assert sum(flagged) >= 0.9 * len(reports), describe(name, reports)
