"""fit and evaluate against gateways that fail: refused, silent, HTTP 500, slow, killed and restarted.

Real sockets and real Pushgateway processes only. No timing assertions: each
test asserts outcomes (fit returned, N epochs ran, what reached the gateway,
which lines were logged); ``run_with_timeout`` is only a hang guard.
"""

from __future__ import annotations

import logging

import keras
import pytest
from gangplank_devtools import (
    SilentServer,
    SlowProxy,
    StatusServer,
    closed_port_address,
    counting_handler,
    read_gateway,
    run_with_timeout,
    start_pushgateway,
    value,
    wait_for,
)

from gangplank import PushError
from tests.gateway_tools import failure_lines, gangplank_warnings, recovery_lines

pytestmark = pytest.mark.slow  # fits models against refusing, failing, silent and restarted gateways

HANG_GUARD = 50  # seconds; a fit here takes about one


@pytest.fixture(autouse=True)
def _warnings(caplog):
    caplog.set_level(logging.WARNING, logger="gangplank")


def fit(model, data, callbacks, epochs=3, **kwargs):
    x, y = data
    return run_with_timeout(
        lambda: model.fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=callbacks, **kwargs),
        HANG_GUARD,
        "fit",
    )


def evaluate(model, data, callbacks):
    x, y = data
    return run_with_timeout(
        lambda: model.evaluate(x, y, verbose=0, return_dict=True, callbacks=callbacks), HANG_GUARD, "evaluate"
    )


def one_warning(caplog, address, *must_contain):
    """The single failure line naming ``address``: one line, no traceback, containing ``must_contain``."""
    lines = failure_lines(caplog, address)
    assert len(lines) == 1, lines
    records = [r for r in gangplank_warnings(caplog, address) if " failed: " in r.getMessage()]
    assert records[0].levelno == logging.WARNING and records[0].exc_info is None
    assert "\n" not in lines[0]
    for text in must_contain:
        assert text in lines[0], lines[0]
    return lines[0]


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)


class AtEpochEnd(keras.callbacks.Callback):
    """Calls ``actions[epoch]()`` at the end of that epoch (placed before the exporter)."""

    def __init__(self, **actions):
        super().__init__()
        self.actions = {int(k[1:]): v for k, v in actions.items()}  # e1=..., e3=...

    def on_epoch_end(self, epoch, logs=None):
        if epoch in self.actions:
            self.actions[epoch]()


# -- refused ---------------------------------------------------------------------------------------------
def test_refused_gateway_fit_completes_warns_once_and_recovers(make_exporter, make_model, data, caplog, tmp_path):
    address = closed_port_address()
    calls = []
    exporter = make_exporter(address, "refused", handler=counting_handler(calls))
    model = make_model()
    history = fit(model, data, [exporter], epochs=4)
    assert len(history.history["loss"]) == 4

    for _ in range(3):  # each flush retries at once: the failure repeats, the warning does not
        assert exporter.publisher.flush(0.2) is False
    assert wait_for(lambda: len(calls) >= 3, timeout=10)
    one_warning(caplog, address, f"push to Pushgateway {address} failed: Connection refused", "'refused'")
    assert not recovery_lines(caplog, address)

    # a gateway appears on that port: the latest state arrives, and one recovery line says so
    with start_pushgateway(port=int(address.rsplit(":", 1)[1]), workdir=tmp_path) as gateway:
        assert exporter.publisher.flush(20)
        samples = read_gateway(gateway.url)
        assert value(samples, "gangplank_train_epochs_count") == 4
        assert value(samples, "gangplank_train_loss") == pytest.approx(history.history["loss"][-1], rel=1e-6)
    assert len(recovery_lines(caplog, address)) == 1
    assert len(failure_lines(caplog, address)) == 1


# -- silent ----------------------------------------------------------------------------------------------
def test_silent_gateway_fit_returns_while_the_push_is_still_held(make_exporter, make_model, data):
    with SilentServer() as server:
        # a 60 s push timeout: a fit that waited for even one push would trip the hang guard
        exporter = make_exporter(server.address, "silent", timeout=60)
        history = fit(make_model(), data, [exporter], epochs=3)
        assert len(history.history["loss"]) == 3
        assert wait_for(lambda: server.accepted >= 1, timeout=10)
        # fit is done; the one push it started is still waiting for an answer
        assert server.accepted == 1
        assert exporter.publisher.pending and exporter.publisher.last_error is None


def test_silent_gateway_warns_once_with_timeout(make_exporter, make_model, data, caplog):
    with SilentServer() as server:
        exporter = make_exporter(server.address, "silent", timeout=0.5)
        history = fit(make_model(), data, [exporter], epochs=2)
        assert len(history.history["loss"]) == 2
        assert wait_for(lambda: server.accepted >= 3, timeout=30)  # three pushes timed out
        assert wait_for(lambda: failure_lines(caplog, server.address), timeout=10)
        one_warning(caplog, server.address, server.address, "timed out")
        assert not recovery_lines(caplog, server.address)


# -- HTTP 500 --------------------------------------------------------------------------------------------
def test_http_500_fit_completes_and_warns_once(make_exporter, make_model, data, caplog):
    with StatusServer(500) as server:
        exporter = make_exporter(server.address, "five00")
        history = fit(make_model(), data, [exporter], epochs=3)
        assert len(history.history["loss"]) == 3
        for _ in range(3):
            assert exporter.publisher.flush(0.2) is False
        assert wait_for(lambda: server.requests >= 3, timeout=10)
        one_warning(caplog, server.address, server.address, "HTTP 500 Internal Server Error")
        assert isinstance(exporter.publisher.last_error, PushError) and exporter.publisher.last_error.status == 500


# -- slow (answers after 2 s) ------------------------------------------------------------------------------
def test_slow_gateway_fit_does_not_wait_and_everything_arrives(
    pushgateway, scrape, make_exporter, make_model, data, caplog
):
    with SlowProxy(pushgateway.port, delay=2.0) as proxy:
        exporter = make_exporter(proxy.address, "slow")  # default timeout: 2 s is slow, not failed
        history = fit(make_model(), data, [exporter], epochs=5)
        answered_during_fit = proxy.answered
        # 7 states were handed over (train begin, 5 epochs, train end): pushing each
        # before going on would have meant 7 answered pushes by now
        assert len(history.history["loss"]) == 5
        assert answered_during_fit < 7
        assert exporter.publisher.flush(30)
        samples = scrape()
        assert value(samples, "gangplank_train_epochs_count") == 5
        assert value(samples, "gangplank_train_running") == 0
        assert value(samples, "gangplank_train_loss") == pytest.approx(history.history["loss"][-1], rel=1e-6)
        assert proxy.accepted < 7  # states that piled up while a push was slow were collapsed
    assert not gangplank_warnings(caplog, proxy.address)


def test_slow_gateway_beyond_the_timeout_warns_once_and_recovers(
    pushgateway, scrape, make_exporter, make_model, data, caplog
):
    with SlowProxy(pushgateway.port, delay=2.0) as proxy:
        exporter = make_exporter(proxy.address, "slow", timeout=0.5)
        history = fit(make_model(), data, [exporter], epochs=2)
        assert len(history.history["loss"]) == 2
        assert wait_for(lambda: proxy.accepted >= 2 and failure_lines(caplog, proxy.address), timeout=30)
        one_warning(caplog, proxy.address, "timed out")

        proxy.delay = 0.0  # the gateway is fast again
        # pushes that timed out on our side still reach the gateway late, with older
        # states; let them land, then the next delivery must bring the final state
        assert wait_for(lambda: proxy.in_flight == 0, timeout=30)
        exporter.publisher.push_now()
        samples = scrape()
        assert value(samples, "gangplank_train_epochs_count") == 2
        assert value(samples, "gangplank_train_running") == 0
        assert wait_for(lambda: recovery_lines(caplog, proxy.address), timeout=10)
    assert len(recovery_lines(caplog, proxy.address)) == 1
    assert len(failure_lines(caplog, proxy.address)) == 1


# -- killed and restarted in the middle of fit -------------------------------------------------------------
def test_gateway_killed_and_restarted_mid_fit(pushgateway, scrape, make_exporter, make_model, data, caplog):
    exporter = make_exporter(pushgateway.address, "restart")

    def restart():
        assert wait_for(lambda: exporter.publisher.last_error is not None, timeout=15)  # a push failed meanwhile
        pushgateway.restart()  # comes back empty

    chaos = AtEpochEnd(e1=pushgateway.stop, e3=restart)
    # fit on this thread, not under the hang guard's: a supervised child dies with the thread that started it
    x, y = data
    history = make_model().fit(
        x, y, epochs=6, batch_size=64, verbose=0, callbacks=[chaos, exporter], validation_split=0.25
    )
    assert len(history.history["loss"]) == 6

    assert exporter.publisher.flush(30)
    samples = scrape()
    assert value(samples, "gangplank_train_epochs_count") == 6
    assert value(samples, "gangplank_train_running") == 0
    assert value(samples, "gangplank_train_val_loss") == pytest.approx(history.history["val_loss"][-1], rel=1e-6)
    one_warning(caplog, pushgateway.address, pushgateway.address)
    recovered = recovery_lines(caplog, pushgateway.address)
    assert len(recovered) == 1 and "\n" not in recovered[0]


# -- ignore_exceptions=False --------------------------------------------------------------------------------
def test_evaluate_raises_push_error_on_http_500(make_exporter, make_model, data):
    with StatusServer(500) as server:
        exporter = make_exporter(server.address, "strict", ignore_exceptions=False)
        with pytest.raises(PushError) as info:
            evaluate(make_model(), data, [exporter])
    assert info.value.status == 500
    assert server.address in str(info.value) and "HTTP 500" in str(info.value)


def test_evaluate_raises_push_error_on_refused_connection(make_exporter, make_model, data):
    address = closed_port_address()
    exporter = make_exporter(address, "strict", ignore_exceptions=False)
    with pytest.raises(PushError) as info:
        evaluate(make_model(), data, [exporter])
    assert info.value.status is None
    assert address in str(info.value) and "Connection refused" in str(info.value)


@pytest.mark.parametrize("kind", ["refused", "http500"])
def test_fit_raises_at_the_next_epoch_after_a_failure(kind, make_exporter, make_model, data):
    server = StatusServer(500) if kind == "http500" else None
    address = server.address if server else closed_port_address()
    try:
        exporter = make_exporter(address, "strict", ignore_exceptions=False)
        # the push of on_train_begin fails in the background; make sure it has, before epoch 0 ends
        waiter = AtEpochEnd(e0=lambda: wait_for(lambda: exporter.publisher.last_error is not None, timeout=15))
        after = Recorder()
        with pytest.raises(PushError) as info:
            fit(make_model(), data, [waiter, exporter, after], epochs=5)
    finally:
        if server:
            server.close()
    assert after.epochs == []  # raised at the end of epoch 0, the first hook after the failure
    assert address in str(info.value)
    assert ("HTTP 500" if server else "Connection refused") in str(info.value)


def test_fit_raises_after_the_gateway_dies_then_evaluate_works_again(
    pushgateway, scrape, make_exporter, make_model, data
):
    exporter = make_exporter(pushgateway.address, "strict", ignore_exceptions=False)

    def kill():
        assert exporter.publisher.flush(15)  # epochs so far delivered
        pushgateway.stop()

    chaos = AtEpochEnd(e1=kill, e2=lambda: wait_for(lambda: exporter.publisher.last_error is not None, timeout=15))
    after = Recorder()
    model = make_model()
    with pytest.raises(PushError) as info:
        fit(model, data, [chaos, exporter, after], epochs=6)
    assert after.epochs == [0, 1]  # the epoch-1 push failed; epoch 2 raised
    assert pushgateway.address in str(info.value)

    pushgateway.restart()
    result = evaluate(model, data, [exporter])  # synchronous, raises nothing now
    samples = scrape()
    assert value(samples, "gangplank_test_loss") == pytest.approx(result["loss"], rel=1e-6)
    assert exporter.publisher.flush(15)
    samples = scrape()
    assert value(samples, "gangplank_train_running") == 0  # the aborted fit is closed
    assert value(samples, "gangplank_train_epochs_count") == 2


# -- credentials never shown --------------------------------------------------------------------------------
def test_credentials_never_appear_in_exceptions_or_warnings(make_exporter, make_model, data, caplog):
    with StatusServer(500) as server:
        exporter = make_exporter(f"http://user:secret@{server.address}", "creds", ignore_exceptions=False)
        with pytest.raises(PushError) as info:
            evaluate(make_model(), data, [exporter])
        assert server.requests >= 1  # the push reached the server, credentials as a header
        assert any("Authorization" in headers for _, _, headers in server.seen)
    assert info.value.status == 500
    assert f"http://{server.address}" in str(info.value)

    refused = closed_port_address()
    quiet = make_exporter(f"http://user:secret@{refused}", "creds")
    fit(make_model(), data, [quiet], epochs=2)
    assert wait_for(lambda: failure_lines(caplog, refused), timeout=10)
    one_warning(caplog, refused, "Connection refused")

    shown = [str(info.value), repr(info.value), info.value.gateway, caplog.text]
    shown += [r.getMessage() for r in caplog.records]
    assert not [text for text in shown if "secret" in text or "user:" in text]
