"""PushgatewaySender: background delivery to a real Pushgateway, latest state wins, failures and recovery."""

from __future__ import annotations

import base64
import logging
import os
import pickle
import subprocess
import sys
import threading
import urllib.error

import pytest
from gangplank_devtools import (
    SilentServer,
    StatusServer,
    closed_port_address,
    counting_handler,
    read_gateway,
    run_with_timeout,
    value,
    wait_for,
)
from prometheus_client.core import GaugeMetricFamily

from gangplank import GangplankError, PushError, transport
from gangplank.transport import address_credentials, describe_failure, redact_address
from tests.gateway_tools import ROOT, failure_lines, recovery_lines


def gauge(name, v):
    return GaugeMetricFamily(name, "test gauge", value=v)


# -- delivery ---------------------------------------------------------------------------------
def test_submit_then_flush_delivers_with_post(pushgateway, scrape, make_sender):
    calls = []
    sender = make_sender(pushgateway.address, "t", handler=counting_handler(calls))
    sender.submit("train", [gauge("gangplank_train_loss", 0.5)])
    assert sender.flush(15)
    assert not sender.pending and sender.last_error is None
    assert value(scrape(), "gangplank_train_loss", job="t") == 0.5
    assert calls and {m for m, _ in calls} == {"POST"}


def test_latest_state_wins(pushgateway, scrape, make_sender):
    """While one push is in flight, 100 submits collapse into one more push carrying the last state."""
    release = threading.Event()
    calls = []

    def gated(url, method, timeout, headers, data):
        calls.append(method)
        if len(calls) == 1:
            release.wait(30)
        return counting_handler([])(url, method, timeout, headers, data)

    sender = make_sender(pushgateway.address, "latest", handler=gated)
    sender.submit("train", [gauge("gangplank_train_step", 0)])
    assert wait_for(lambda: calls, timeout=10)
    for step in range(1, 101):
        sender.submit("train", [gauge("gangplank_train_step", step)])
    release.set()
    assert sender.flush(15)
    assert value(scrape(), "gangplank_train_step") == 100
    assert len(calls) == 2


def test_many_submits_end_with_the_last_one(pushgateway, scrape, make_sender):
    sender = make_sender(pushgateway.address, "many")
    for step in range(300):
        sender.submit("train", [gauge("gangplank_train_step", step)])
    assert sender.flush(15)
    assert value(scrape(), "gangplank_train_step") == 299


def test_parts_do_not_wipe_each_other(pushgateway, scrape, make_sender):
    sender = make_sender(pushgateway.address, "parts")
    sender.submit("train", [gauge("gangplank_train_loss", 1.0)])
    assert sender.flush(15)
    sender.submit("test", [gauge("gangplank_test_loss", 2.0)])
    assert sender.flush(15)
    sender.submit("train", [gauge("gangplank_train_loss", 3.0)])
    assert sender.flush(15)
    samples = scrape()
    assert value(samples, "gangplank_train_loss") == 3.0
    assert value(samples, "gangplank_test_loss") == 2.0


def test_two_senders_on_one_group_keep_each_others_metrics(pushgateway, scrape, make_sender):
    """POST, not PUT: a second sender on the same job and grouping key replaces only its own names."""
    first = make_sender(pushgateway.address, "shared")
    second = make_sender(pushgateway.address, "shared")
    first.submit("train", [gauge("gangplank_train_loss", 1.0)])
    assert first.flush(15)
    second.submit("test", [gauge("gangplank_test_loss", 2.0)])
    assert second.flush(15)
    samples = scrape()
    assert value(samples, "gangplank_train_loss") == 1.0 and value(samples, "gangplank_test_loss") == 2.0


def test_grouping_key_with_awkward_values(pushgateway, scrape, make_sender):
    sender = make_sender(
        pushgateway.address, "job/with slash", grouping_key={"instance": "w/0", "run": "", "zone": "é"}
    )
    sender.submit("train", [gauge("gangplank_train_loss", 1.0)])
    assert sender.flush(15)
    samples = scrape()
    assert value(samples, "gangplank_train_loss", job="job/with slash", instance="w/0", zone="é") == 1.0


def test_restarted_gateway_is_refilled_with_every_part(pushgateway, scrape, make_sender):
    sender = make_sender(pushgateway.address, "refill")
    sender.submit("train", [gauge("gangplank_train_loss", 1.0)])
    sender.submit("test", [gauge("gangplank_test_loss", 2.0)])
    assert sender.flush(15)
    pushgateway.restart()
    assert scrape() == {}  # comes back empty
    sender.submit("train", [gauge("gangplank_train_loss", 3.0)])
    assert sender.flush(15)
    samples = scrape()
    assert value(samples, "gangplank_train_loss") == 3.0 and value(samples, "gangplank_test_loss") == 2.0


# -- flush, close, push_now --------------------------------------------------------------------
def test_flush_is_false_while_the_gateway_is_down_and_true_after(pushgateway, scrape, make_sender, caplog):
    caplog.set_level(logging.WARNING, logger="gangplank")
    sender = make_sender(pushgateway.address, "down")
    pushgateway.stop()
    sender.submit("train", [gauge("gangplank_train_loss", 1.0)])
    assert run_with_timeout(lambda: sender.flush(0.5), 30, "flush") is False
    assert run_with_timeout(lambda: sender.flush(0.5), 30, "flush") is False  # a second forced retry
    assert sender.pending and isinstance(sender.last_error, PushError)
    pushgateway.restart()
    assert run_with_timeout(lambda: sender.flush(15), 30, "flush") is True
    assert value(scrape(), "gangplank_train_loss") == 1.0
    assert len(failure_lines(caplog, pushgateway.address)) == 1
    assert len(recovery_lines(caplog, pushgateway.address)) == 1


def test_flush_returns_within_its_timeout_on_a_silent_gateway(make_sender):
    with SilentServer() as server:
        sender = make_sender(server.address, "silent", timeout=60)
        sender.submit("train", [gauge("gangplank_train_loss", 1.0)])
        assert run_with_timeout(lambda: sender.flush(0.5), 30, "flush") is False
        assert wait_for(lambda: server.accepted >= 1, timeout=10)
        assert server.accepted == 1 and sender.last_error is None  # the push is still waiting for an answer


def test_flush_with_nothing_submitted():
    sender = transport.PushgatewaySender(closed_port_address(), "nothing")
    assert sender.flush(0) is True and not sender.pending
    assert sender.close(0) is True


def test_close_flushes_stops_the_thread_and_is_final(pushgateway, scrape, make_sender):
    sender = make_sender(pushgateway.address, "close")
    sender.submit("train", [gauge("gangplank_train_loss", 1.0)])
    assert sender.close(15) is True
    assert value(scrape(), "gangplank_train_loss") == 1.0
    assert wait_for(lambda: not any(t.name == "gangplank-push-close" for t in threading.enumerate()), timeout=10)
    with pytest.raises(RuntimeError, match="close\\(\\) is final"):
        sender.submit("train", [gauge("gangplank_train_loss", 2.0)])
    assert value(scrape(), "gangplank_train_loss") == 1.0 and sender.close(0) is True


def test_min_interval_coalesces_pushes_and_flush_and_close_deliver_the_latest(pushgateway, scrape, make_sender):
    """With a long ``min_interval`` the first state goes at once, later ones wait for it (or a flush, or close)."""
    calls = []
    sender = make_sender(pushgateway.address, "coalesce", handler=counting_handler(calls), min_interval=3600)
    sender.submit("predict", [gauge("gangplank_predict_step", 0)])
    assert wait_for(lambda: not sender.pending, timeout=10)
    for step in range(1, 101):
        sender.submit("predict", [gauge("gangplank_predict_step", step)])
    assert sender.pending and len(calls) == 1  # held back: the interval has not passed
    assert value(scrape(), "gangplank_predict_step") == 0
    assert sender.flush(15)
    assert len(calls) == 2 and value(scrape(), "gangplank_predict_step") == 100
    sender.submit("predict", [gauge("gangplank_predict_step", 101)])
    assert sender.close(15) is True
    assert len(calls) == 3 and value(scrape(), "gangplank_predict_step") == 101


def test_min_interval_refuses_a_negative_value():
    with pytest.raises(ValueError, match="min_interval"):
        transport.PushgatewaySender("127.0.0.1:9091", "negative", min_interval=-1)


def test_close_on_a_dead_gateway_gives_up_in_time_and_skips_the_exit_flush():
    sender = transport.PushgatewaySender(closed_port_address(), "closed")
    sender.submit("train", [gauge("gangplank_train_loss", 1.0)])
    assert run_with_timeout(lambda: sender.close(0.3), 30, "close") is False
    assert sender not in transport._live_senders
    assert wait_for(lambda: not any(t.name == "gangplank-push-closed" for t in threading.enumerate()), timeout=10)


def test_push_now_delivers_synchronously(pushgateway, scrape, make_sender):
    sender = make_sender(pushgateway.address, "now")
    sender.submit("test", [gauge("gangplank_test_loss", 4.0)])
    sender.push_now()
    assert value(scrape(), "gangplank_test_loss") == 4.0
    assert not sender.pending and sender.last_error is None


def test_push_now_raises_push_error_with_status(make_sender):
    with StatusServer(500) as server:
        sender = make_sender(server.address, "now500")
        sender.submit("test", [gauge("gangplank_test_loss", 4.0)])
        with pytest.raises(PushError) as info:
            sender.push_now()
    error = info.value
    assert error.status == 500 and error.reason == "Internal Server Error"
    assert error.gateway == server.address
    assert str(error) == f"push to Pushgateway {server.address} failed: HTTP 500 Internal Server Error"
    assert sender.last_error is not None and sender.pending


def test_push_now_raises_on_refused_connection(make_sender):
    address = closed_port_address()
    sender = make_sender(address, "refused")
    sender.submit("test", [gauge("gangplank_test_loss", 4.0)])
    with pytest.raises(PushError) as info:
        sender.push_now()
    assert info.value.status is None and "Connection refused" in str(info.value) and address in str(info.value)


# -- credentials in the address -----------------------------------------------------------------
def test_credentials_in_the_address_become_basic_auth_and_stay_secret(make_sender, caplog):
    caplog.set_level(logging.WARNING, logger="gangplank")
    with StatusServer(500) as server:
        sender = make_sender(f"http://alice:s%40cret-pw@{server.address}", "auth")
        sender.submit("train", [gauge("gangplank_train_loss", 1.0)])
        with pytest.raises(PushError) as info:
            sender.push_now()
        assert server.seen, "the push never reached the server"
        method, path, headers = server.seen[-1]
    assert method == "POST" and path.startswith("/metrics/job/auth")
    assert base64.b64decode(headers["Authorization"].split()[1]).decode() == "alice:s@cret-pw"
    assert info.value.status == 500
    texts = [str(info.value), repr(info.value), info.value.gateway, sender.display_address, caplog.text]
    assert not [t for t in texts if "cret" in t or "alice" in t]
    assert info.value.gateway == f"http://{server.address}"


@pytest.mark.parametrize(
    "address, redacted",
    [
        ("127.0.0.1:9091", "127.0.0.1:9091"),
        ("http://127.0.0.1:9091", "http://127.0.0.1:9091"),
        ("https://alice:s3cret@gw.example:9091/", "https://gw.example:9091/"),
        ("alice:s3cret@gw.example:9091", "http://gw.example:9091"),
        ("http://alice@gw.example", "http://gw.example"),
        ("http://alice:pw@[::1]:9091", "http://[::1]:9091"),
    ],
)
def test_redact_address(address, redacted):
    assert redact_address(address) == redacted


def test_address_credentials():
    assert address_credentials("127.0.0.1:9091") is None
    assert address_credentials("https://a%3Ab:p%2Fw@gw:1") == ("a:b", "p/w")


# -- errors ----------------------------------------------------------------------------------
def test_describe_failure():
    gw = "127.0.0.1:1"
    http_error = urllib.error.HTTPError("http://x", 503, "Service Unavailable", {}, None)
    assert (describe_failure(gw, http_error).status, describe_failure(gw, http_error).reason) == (
        503,
        "Service Unavailable",
    )
    refused = describe_failure(gw, urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")))
    assert (refused.status, refused.reason) == (None, "Connection refused")
    assert describe_failure(gw, TimeoutError("timed out")).reason == "timed out"
    assert describe_failure(gw, ValueError("bad")).reason == "ValueError: bad"
    same = PushError(gw, 500, "x")
    assert describe_failure(gw, same) is same


def test_push_error_type():
    error = PushError("127.0.0.1:9091", None, "Connection refused")
    assert isinstance(error, GangplankError) and isinstance(error, OSError)
    assert str(error) == "push to Pushgateway 127.0.0.1:9091 failed: Connection refused"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.gateway, copy.status, copy.reason, str(copy)) == (
        error.gateway,
        error.status,
        error.reason,
        str(error),
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pgw_addr": "", "job": "j"},
        {"pgw_addr": "  ", "job": "j"},
        {"pgw_addr": "127.0.0.1:9091", "job": ""},
        {"pgw_addr": "127.0.0.1:9091", "job": "j", "timeout": 0},
    ],
)
def test_constructor_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        transport.PushgatewaySender(**kwargs)


# -- interpreter exit ------------------------------------------------------------------------------
EXIT_SCRIPT = """
import sys
from prometheus_client.core import GaugeMetricFamily
from gangplank.transport import PushgatewaySender
sender = PushgatewaySender(sys.argv[1], "atexit", timeout=float(sys.argv[2]))
sender.submit("train", [GaugeMetricFamily("gangplank_train_loss", "loss", value=0.25)])
"""


def run_exit_script(address, timeout="5", flush_seconds="5"):
    env = dict(os.environ, GANGPLANK_EXIT_FLUSH_SECONDS=flush_seconds, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, address, timeout],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_exit_flush_delivers_what_is_pending(pushgateway, scrape):
    run = run_exit_script(pushgateway.address)
    assert run.returncode == 0, run.stderr[-2000:]
    assert value(scrape(), "gangplank_train_loss", job="atexit") == 0.25


def test_exit_flush_is_bounded_on_a_silent_gateway():
    with SilentServer() as server:
        run = run_exit_script(server.address, timeout="60", flush_seconds="1")  # hang guard: subprocess timeout
    assert run.returncode == 0
    assert "could not be delivered before exit" in run.stderr
    assert server.accepted >= 1


def test_read_gateway_sees_only_gangplank_metrics(pushgateway):
    assert read_gateway(pushgateway.url) == {}
