"""Pushing through a Pushgateway that requires TLS and HTTP Basic auth (``--web.config.file``)."""

from __future__ import annotations

import base64
import logging
import ssl
import subprocess
import urllib.request

import numpy as np
import pytest
from gangplank_devtools import start_pushgateway
from prometheus_client.parser import text_string_to_metric_families

import gangplank
from gangplank import PushError

USER, PASSWORD = "alice", "correct-horse-battery"
# bcrypt of PASSWORD (cost 10), as the Pushgateway's web config wants it; a test-only secret.
PASSWORD_HASH = "$2b$10$5jPjeFpaL.9UmgI7DQzZ/OFeX.fl5VaqAj9N1VwmlHsITu8IcIqfO"


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A throw-away CA and a server certificate for 127.0.0.1 signed by it."""
    d = tmp_path_factory.mktemp("tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=gangplank test CA",
        cwd=d,
    )
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        cwd=d,
    )
    return d


@pytest.fixture
def secure_gateway(certificates, tmp_path):
    config = tmp_path / "web.yml"
    config.write_text(
        "tls_server_config:\n"
        f"  cert_file: {certificates / 'server.crt'}\n"
        f"  key_file: {certificates / 'server.key'}\n"
        "basic_auth_users:\n"
        f"  {USER}: '{PASSWORD_HASH}'\n"
    )
    with start_pushgateway(workdir=tmp_path, web_config=config) as gateway:
        yield f"https://127.0.0.1:{gateway.port}", str(certificates / "ca.crt")


def read_secure(url, ca_file):
    request = urllib.request.Request(url + "/metrics")
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
    with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=ca_file), timeout=5) as response:
        text = response.read().decode()
    return {
        s.name: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name.startswith("gangplank_")
    }


def tiny_model():
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    return model, rng.normal(size=(64, 4)).astype("float32"), rng.integers(0, 3, 64)


def test_fit_pushes_through_tls_and_basic_auth(secure_gateway):
    url, ca_file = secure_gateway
    model, x, y = tiny_model()
    exporter = gangplank.TrainTestExporter(
        url, "secure", basic_auth=(USER, PASSWORD), ca_file=ca_file, ignore_exceptions=False
    )
    model.fit(x, y, epochs=2, verbose=0, callbacks=[exporter])
    assert read_secure(url, ca_file)["gangplank_train_epochs_count"] == 2


def test_credentials_in_the_address_work_and_stay_secret(secure_gateway, caplog):
    url, ca_file = secure_gateway
    address = url.replace("https://", f"https://{USER}:{PASSWORD}@")
    model, x, y = tiny_model()
    model.evaluate(
        x,
        y,
        verbose=0,
        callbacks=[gangplank.TrainTestExporter(address, "secure-url", ca_file=ca_file, ignore_exceptions=False)],
    )
    assert "gangplank_test_loss" in read_secure(url, ca_file)
    assert PASSWORD not in caplog.text


@pytest.mark.slow  # a TLS gateway, about 4 s
def test_drift_exporter_pushes_through_tls(secure_gateway):
    url, ca_file = secure_gateway
    rng = np.random.default_rng(1)
    x, p = rng.normal(size=(400, 3)), rng.dirichlet([1, 1], size=400)
    reference = gangplank.DriftReference.fit(x, p, window_size=50, n_simulations=50)
    with gangplank.ProductionDriftExporter(
        url,
        "secure-drift",
        reference=reference,
        agent="tls",
        basic_auth=(USER, PASSWORD),
        ca_file=ca_file,
        ignore_exceptions=False,
    ) as drift:
        drift.observe(x[:120], p[:120])
    pushed = read_secure(url, ca_file)
    assert pushed["gangplank_predict_windows_total"] == 3  # two full windows of 50, then close() ends the last 20
    assert pushed["gangplank_predict_samples_total"] == 120


def test_wrong_password_is_a_clear_error_without_the_secret(secure_gateway, caplog):
    url, ca_file = secure_gateway
    model, x, y = tiny_model()
    exporter = gangplank.TrainTestExporter(
        url, "secure", basic_auth=(USER, "not-" + PASSWORD), ca_file=ca_file, ignore_exceptions=False
    )
    with caplog.at_level(logging.WARNING, logger="gangplank"), pytest.raises(PushError) as raised:
        model.evaluate(x, y, verbose=0, callbacks=[exporter])
    exporter.publisher.close(0)
    assert raised.value.status == 401
    assert "401" in str(raised.value) and url in str(raised.value)
    assert PASSWORD not in str(raised.value) and PASSWORD not in caplog.text


def test_untrusted_certificate_is_refused(secure_gateway, caplog):
    url, _ = secure_gateway
    model, x, y = tiny_model()
    exporter = gangplank.TrainTestExporter(url, "secure", basic_auth=(USER, PASSWORD), ignore_exceptions=False)
    with pytest.raises(PushError) as raised:
        model.evaluate(x, y, verbose=0, callbacks=[exporter])
    exporter.publisher.close(0)
    assert raised.value.status is None
    assert "CERTIFICATE_VERIFY_FAILED" in str(raised.value) or "certificate" in str(raised.value).lower()
    assert PASSWORD not in str(raised.value) and PASSWORD not in caplog.text
