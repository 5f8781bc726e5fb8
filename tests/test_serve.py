"""examples/mnist/serve.py: MAX-MNIST's API, scoring-id feedback, /metrics, and the hardening, over real HTTP.

The model is the demo's convnet trained for one epoch on 2,000 MNIST images
(a few seconds), with its drift reference fitted on 1,000 images it did not
train on; it is kept for the session. Most tests run the server in this
process (``make_server`` on a free port, a real socket, a real
``DriftMonitor`` registered for /metrics); the command-line tests start
serve.py as a process.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PIL", reason="Pillow is in the examples extra: pip install -e '.[examples]'")
from gangplank_devtools import read_gateway, start_pushgateway, value, wait_for
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples/mnist"
sys.path.append(str(EXAMPLES))  # appended so that nothing else is shadowed

import mnist_common  # noqa: E402
import serve  # noqa: E402

pytestmark = pytest.mark.slow  # starts examples/mnist/serve.py processes

MNIST = Path("/work/shared/data/mnist.npz")
if not MNIST.exists():
    MNIST = ROOT.parent / "shared/data/mnist.npz"
AGENT = "serve_test"
WINDOW = 20
TOKEN = "test-feedback-token-0123456789"  # a test-only secret
AUTH = {"Authorization": f"Bearer {TOKEN}"}


# -- the model, once per session ---------------------------------------------------------------
def training_rows():
    """The first 3,000 MNIST training images as the model takes them, and their labels: 2,000 to train on,
    1,000 for the reference."""
    (x_train, y_train), _ = mnist_common.load_mnist(MNIST)
    return mnist_common.to_model_input(x_train[:3000]), y_train[:3000]


def tiny_model(directory: Path) -> Path:
    """``directory/mnist.keras`` (+ ``mnist.drift.npz``): the demo's convnet, one epoch on 2,000 images; made once."""
    model_path = directory / mnist_common.MODEL_FILE
    if model_path.exists():
        return model_path
    import keras

    import gangplank

    keras.utils.set_random_seed(0)
    x, y_train = training_rows()
    model = mnist_common.build_model()
    model.fit(x[:2000], y_train[:2000], epochs=1, batch_size=64, verbose=0)
    probabilities = model.predict(x[2000:3000], batch_size=500, verbose=0)
    reference = gangplank.DriftReference.fit(x[2000:3000], probabilities, y_train[2000:3000], window_size=WINDOW)
    directory.mkdir(parents=True, exist_ok=True)
    reference.save(mnist_common.reference_path(model_path))
    model.save(model_path)
    return model_path


@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    if not MNIST.exists():
        pytest.skip("no local mnist.npz")
    return tiny_model(tmp_path_factory.getbasetemp() / "serve-model")


@pytest.fixture(scope="session")
def mnist_test():
    _, (x_test, y_test) = mnist_common.load_mnist(MNIST)
    return x_test, y_test


@pytest.fixture(scope="module")
def model(model_path):
    import keras

    return keras.models.load_model(model_path)


class Running:
    """A server on a free port in this process, with its service and drift monitor."""

    def __init__(self, model, model_path, feedback_token: str | None = TOKEN, **server_options):
        import gangplank

        reference = gangplank.DriftReference.load(mnist_common.reference_path(model_path))
        self.drift = gangplank.DriftMonitor(None, "mnist", reference=reference, agent=AGENT, window_size=WINDOW)
        self.service = serve.MnistService(model, self.drift, model_path, instance="in-process")
        self.server = serve.make_server(self.service, "127.0.0.1", 0, feedback_token=feedback_token, **server_options)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.drift.close()


@pytest.fixture
def server(model, model_path):
    running = Running(model, model_path, max_connections=8, request_timeout=5.0)
    yield running
    running.close()


# -- talking to it -------------------------------------------------------------------------------
def call(url, body=None, content_type="application/json", method=None, headers=None):
    """(status, parsed JSON or text, headers) of one request."""
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    all_headers = {**({"Content-Type": content_type} if content_type and data is not None else {}), **(headers or {})}
    request = urllib.request.Request(url, data=data, headers=all_headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, raw, got = response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        status, raw, got = error.code, error.read(), error.headers
    text = raw.decode()
    return status, json.loads(text) if got.get_content_type() == "application/json" else text, got


def form(fields: dict[str, tuple[str, bytes, str]], boundary: str = "gangplank-test-boundary") -> tuple[bytes, str]:
    """A multipart/form-data body of file fields ``name: (filename, content, content type)``."""
    parts = []
    for name, (filename, content, kind) in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {kind}\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def upload(url, content: bytes, kind="image/png"):
    body, content_type = form({"image": ("digit", content, kind)})
    return call(url + "/model/predict", body, content_type)


def png(image: Image.Image, fmt="PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def photographed(digit: np.ndarray) -> Image.Image:
    """An MNIST digit as a photo of paper: 10 times larger, dark ink on white, off centre, RGB."""
    big = Image.fromarray(255 - digit).resize((280, 280), Image.Resampling.BICUBIC)
    page = Image.new("L", (500, 420), 255)
    page.paste(big, (30, 110))
    return page.convert("RGB")


def raw(port: int, head: bytes, timeout: float = 60.0):
    """Send ``head`` (and no more) on a new connection; (status, JSON answer) of what the server says back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read())


def metrics(url) -> dict:
    """``{(name, labels): value}`` of /metrics, gangplank samples only."""
    status, text, headers = call(url + "/metrics")
    assert status == 200 and headers.get_content_type() == "text/plain"
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("gangplank_")
    }


# -- MAX's API ------------------------------------------------------------------------------------
def test_uploaded_png_and_jpeg_are_classified_like_the_28x28_digit(server, mnist_test):
    x_test, _ = mnist_test
    agree, digits = 0, 40
    for i in range(digits):
        status, from_json, _ = call(server.url + "/model/predict", {"image": x_test[i].tolist()})
        assert status == 200
        for fmt in ("PNG", "JPEG"):
            status, answer, _ = upload(server.url, png(photographed(x_test[i]), fmt), f"image/{fmt.lower()}")
            assert status == 200 and answer["status"] == "ok", answer
            [prediction] = answer["predictions"]
            assert set(prediction) == {"prediction", "probability", "id"} and 0 < prediction["probability"] <= 1
            assert prediction["id"] == answer["id"] and re.fullmatch(r"[0-9a-f]{32}", answer["id"])
            agree += prediction["prediction"] == from_json["predictions"][0]["prediction"]
    assert agree >= 0.85 * 2 * digits, f"{agree} of {2 * digits} uploads classified like the original digit"


def test_json_arrays_still_work_and_every_image_gets_its_own_id(server, mnist_test):
    x_test, _ = mnist_test
    images = (x_test[:3].reshape(3, 784) / 255.0).tolist()
    status, answer, _ = call(server.url + "/model/predict", {"images": images})
    assert status == 200 and answer["status"] == "ok"
    assert [p["id"] for p in answer["predictions"]] == [f"{answer['id']}-{i}" for i in range(3)]
    status, again, _ = call(server.url + "/model/predict", {"images": images})
    assert again["id"] != answer["id"]
    assert [p["prediction"] for p in again["predictions"]] == [p["prediction"] for p in answer["predictions"]]


def test_metadata_has_max_fields(server):
    status, answer, _ = call(server.url + "/model/metadata")
    assert status == 200
    for field in ("id", "name", "description", "type", "source", "license"):
        assert isinstance(answer[field], str) and answer[field], field
    assert answer["type"] == "Image Classification" and answer["parameters"] == 104202
    assert answer["drift_agent"] == AGENT and answer["drift_window_size"] == WINDOW


def test_feedback_is_joined_to_the_prediction_by_id_and_scraped(server, mnist_test):
    x_test, y_test = mnist_test
    ids, predicted = [], []
    for i in range(WINDOW):
        _, answer, _ = call(server.url + "/model/predict", {"image": x_test[i].tolist()})
        ids.append(answer["id"])
        predicted.append(answer["predictions"][0]["prediction"])
    status, answer, _ = call(server.url + "/model/feedback", {"id": ids[0], "label": int(y_test[0])}, headers=AUTH)
    assert (status, answer) == (200, {"status": "ok", "matched": 1, "unmatched": 0})
    batch = [{"id": i, "label": int(y)} for i, y in zip(ids[1:], y_test[1:WINDOW], strict=True)] + [
        {"id": "never-issued", "label": 1}
    ]
    status, answer, _ = call(server.url + "/model/feedback", batch, headers=AUTH)
    assert (status, answer) == (200, {"status": "ok", "matched": WINDOW - 1, "unmatched": 1})

    status, answer, _ = call(
        server.url + "/model/feedback", {"id": ids[0], "label": int(y_test[0])}, headers=AUTH
    )  # labelled already
    assert status == 404 and answer["status"] == "error" and "labelled already" in answer["message"]
    status, answer, _ = call(server.url + "/model/feedback", {"id": "f" * 32, "label": 3}, headers=AUTH)
    assert status == 404 and "never issued" in answer["message"]
    for bad in (
        {"id": ids[1]},
        {"id": 7, "label": 1},
        {"id": ids[1], "label": 10},
        {"id": ids[1], "label": True},
        {"id": ids[1], "label": "3"},
        [],
        "label",
        {"id": ids[1], "label": 10**30},
    ):
        status, answer, _ = call(server.url + "/model/feedback", bad, headers=AUTH)
        assert status == 400 and answer["status"] == "error", bad

    # Labels count in the window they arrive in: the next one, closed by WINDOW more images.
    call(server.url + "/model/predict", {"images": x_test[WINDOW : 2 * WINDOW].tolist()})
    assert server.drift.flush(10)
    scraped = metrics(server.url)
    labels = {"agent": AGENT}
    assert value(scraped, "gangplank_predict_samples_total", **labels) == 2 * WINDOW
    assert value(scraped, "gangplank_predict_windows_total", **labels) == 2
    assert value(scraped, "gangplank_predict_feedback_samples_total", **labels) == WINDOW
    correct = sum(p == y for p, y in zip(predicted, y_test[:WINDOW], strict=True))
    assert value(scraped, "gangplank_predict_feedback_correct_total", **labels) == correct
    assert value(scraped, "gangplank_predict_feedback_unmatched_total", **labels) == 3
    assert all(dict(key[1]).get("agent") == AGENT and "instance" not in dict(key[1]) for key in scraped)


# -- hardening ------------------------------------------------------------------------------------
def head(length: str | None, content_type="application/json", path="/model/predict", extra="") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}"]
    lines += [f"Content-Length: {length}"] if length is not None else []
    return ("\r\n".join(lines) + extra + "\r\n\r\n").encode()


@pytest.mark.parametrize("length", ["-1", None, "abc", "1e3", " ", "99999999999999999999", str(serve.MAX_BODY + 1)])
def test_a_body_of_unknown_or_excessive_length_gets_413_before_it_is_read(server, length):
    # Only the headers and a few bytes are sent; the connection stays open. A server that
    # read to EOF (or to a length over the cap) would wait for the rest and never answer.
    status, answer = raw(server.port, head(length) + b'{"image": [')
    assert status == 413 and answer["status"] == "error"


def test_chunked_bodies_get_413(server):
    status, _ = raw(server.port, head(None, extra="\r\nTransfer-Encoding: chunked") + b"5\r\n")
    assert status == 413


def test_a_body_at_the_cap_is_read(server):
    body = b'{"image": ' + b" " * (serve.MAX_BODY - 20) + b"[0]}"
    body += b" " * (serve.MAX_BODY - len(body))
    status, answer, _ = call(server.url + "/model/predict", body)
    assert status == 400 and "784" in answer["message"]  # read and parsed: the image is wrong, not the size


@pytest.mark.parametrize(
    "path, content_type",
    [
        ("/model/predict", None),
        ("/model/predict", "text/plain"),
        ("/model/predict", "application/x-www-form-urlencoded"),
        ("/model/predict", "image/png"),
        ("/model/feedback", "multipart/form-data; boundary=x"),
        ("/model/feedback", None),
    ],
)
def test_content_type_is_required(server, path, content_type):
    status, answer, _ = call(server.url + path, b'{"image": [0]}', content_type, headers=AUTH)
    assert status == 415 and "Content-Type" in answer["message"]


def test_json_media_type_parameters_are_fine(server, mnist_test):
    status, _, _ = call(
        server.url + "/model/predict", {"image": mnist_test[0][0].tolist()}, "application/json; charset=utf-8"
    )
    assert status == 200


@pytest.mark.parametrize(
    "body",
    [
        b'{"image": [' + b"1" + b"0" * 400 + b"]}",  # OverflowError in float()
        b'{"image": [' + b"1" * 5000 + b"]}",  # over Python's int digit limit
        b'{"image": [' + b",".join([b"1e400"] * 784) + b"]}",  # overflows to infinity
        b'{"image": [NaN]}',
        b'{"image": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # RecursionError
        b"[" * 100_000,
        b'{"images": [' + b"[" * 50_000 + b"]" * 50_000 + b"]}",
        b'{"image": "\xff\xfe"}',
    ],
    ids=["400 digits", "5000 digits", "1e400", "NaN", "nested 100k", "unclosed 100k", "nested images", "not utf-8"],
)
def test_numbers_that_overflow_and_deep_nesting_get_400(server, body):
    status, answer, _ = call(server.url + "/model/predict", body)
    assert status == 400 and answer["status"] == "error"


def test_bad_json_requests_get_400(server):
    good = [[0] * 28 for _ in range(28)]
    cases = {
        "not json": b"{image: 1",
        "no image": {"picture": good},
        "both": {"image": good, "images": [good]},
        "wrong shape": {"image": [[0] * 27 for _ in range(28)]},
        "too few pixels": {"image": [0] * 783},
        "grey level above 255": {"image": [[300] * 28 for _ in range(28)]},
        "scaled above 1": {"image": [0.5] * 783 + [2.5]},
        "text pixels": {"image": ["0"] * 784},
        "bool pixels": {"image": [True] * 784},
        "empty list": {"images": []},
        "too many": {"images": [good] * (serve.MAX_IMAGES + 1)},
    }
    for case, body in cases.items():
        status, answer, _ = call(server.url + "/model/predict", body)
        assert status == 400 and answer["status"] == "error" and answer["message"], case


def test_uploads_that_are_not_still_small_pngs_or_jpegs_get_400(server):
    from tests.test_serve_images import animated_png, png_of_zeros

    cases = {
        "text": (b"this is not an image", "not a PNG or JPEG"),
        "gif": (png(Image.new("L", (28, 28)), "GIF"), "not a PNG or JPEG"),
        "truncated": (png(Image.new("L", (64, 64), 90))[:70], "damaged"),
        "bomb": (png_of_zeros(6000, 6000), "decompression bomb"),
        "animated": (animated_png(), "animated"),
    }
    for case, (content, message) in cases.items():
        status, answer, _ = upload(server.url, content)
        assert status == 400 and message in answer["message"], (case, answer)
    for fields, message in (
        ({"picture": ("a.png", png(Image.new("L", (28, 28))), "image/png")}, "'image'"),
        ({}, "'image'"),
    ):
        body, content_type = form(fields)
        status, answer, _ = call(server.url + "/model/predict", body, content_type)
        assert status == 400 and message in answer["message"]
    status, answer, _ = call(server.url + "/model/predict", b"--x\r\n", "multipart/form-data")
    assert status == 400 and "boundary" in answer["message"]


def test_cross_site_posts_get_403(server, mnist_test):
    image = {"image": mnist_test[0][0].tolist()}
    for headers in ({"Origin": "http://attacker.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        status, answer, _ = call(server.url + "/model/predict", image, headers=headers)
        assert status == 403 and "cross-site" in answer["message"], headers
    status, _, _ = call(server.url + "/model/predict", image, headers={"Origin": server.url})
    assert status == 200


def test_wrong_methods_and_paths_get_json_answers(server):
    status, answer, headers = call(server.url + "/model/predict")
    assert status == 405 and headers["Allow"] == "POST" and answer["status"] == "error"
    status, answer, headers = call(server.url + "/model/metadata", b"{}", method="DELETE")
    assert status == 405 and headers["Allow"] == "GET"
    status, answer, _ = call(server.url + "/nothing")
    assert status == 404 and answer["status"] == "error"
    status, answer = raw(server.port, b"GET /" + b"a" * 70_000)  # a request line that never ends
    assert status == 414 and answer["status"] == "error"
    status, answer = raw(server.port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX: " + b"a" * 70_000)
    assert status == 431 and answer["status"] == "error"


def test_idle_half_sent_connections_cannot_starve_a_real_request(model, model_path, mnist_test):
    running = Running(model, model_path, max_connections=4, request_timeout=1.0)
    idle = []
    try:
        for _ in range(12):  # three times the bound: headers begun, never finished
            sock = socket.create_connection(("127.0.0.1", running.port), timeout=60)
            sock.sendall(b"POST /model/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n")
            idle.append(sock)
        # Over the bound a request is refused at once (503), not queued behind the idle ones; once the
        # request deadline has cut them off, it is served.
        image = {"image": mnist_test[0][0].tolist()}
        assert wait_for(lambda: call(running.url + "/model/predict", image)[0] == 200, 20)
        for sock in idle:  # every idle client was cut off by the server (the request deadline), with no answer
            assert sock.recv(4096) == b""
    finally:
        for sock in idle:
            sock.close()
        running.close()


def test_over_the_connection_bound_requests_get_503_at_once(model, model_path):
    running = Running(model, model_path, max_connections=4, request_timeout=30.0)
    idle = []
    try:
        for _ in range(6):
            sock = socket.create_connection(("127.0.0.1", running.port), timeout=60)
            sock.sendall(b"POST /model/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            idle.append(sock)
        status, _ = raw_status(running.port, b"GET /model/metadata HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert status == 503
    finally:
        for sock in idle:
            sock.close()
        running.close()


def raw_status(port: int, request: bytes, timeout: float = 60.0) -> tuple[int, bytes]:
    """(status, body) of one raw request on a new connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()


def test_a_body_that_stops_arriving_is_cut_off(model, model_path):
    running = Running(model, model_path, max_connections=4, request_timeout=1.0)
    try:
        with socket.create_connection(("127.0.0.1", running.port), timeout=60) as sock:
            sock.sendall(head("100") + b'{"image": [')
            assert sock.recv(4096) == b""  # closed by the server, no answer
        status, _, _ = call(running.url + "/model/metadata")
        assert status == 200
    finally:
        running.close()


def test_the_openapi_document_passes_schemathesis(server, tmp_path):
    status, doc, _ = call(server.url + "/swagger.json")
    assert (
        status == 200
        and doc["openapi"].startswith("3.")
        and set(doc["paths"]) >= {"/model/predict", "/model/feedback", "/model/metadata", "/metrics"}
    )
    cli = Path(sys.executable).with_name("schemathesis")
    if not cli.exists():
        pytest.skip("schemathesis is in the test extra: pip install -e '.[test]'")
    checks = (
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
        "response_headers_conformance,negative_data_rejection,unsupported_method"
    )
    completed = subprocess.run(
        [
            str(cli),
            "run",
            server.url + "/swagger.json",
            "--checks",
            checks,
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--workers",
            "1",
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "30",
            "--suppress-health-check",
            "all",
            "--no-color",
            "--header",
            f"Authorization: Bearer {TOKEN}",  # feedback's own checks are exercised, not only the 401
        ],
        cwd=tmp_path,
        check=False,
        capture_output=True,
        text=True,
        timeout=500,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    assert completed.returncode == 0, completed.stdout[-8000:] + completed.stderr[-2000:]
    assert re.search(r"Tested: +4\b", completed.stdout), completed.stdout[-3000:]  # every operation was exercised


# -- serve.py as a process ---------------------------------------------------------------------------------
def start_serve(model_path, *args) -> tuple[subprocess.Popen, str, list[str]]:
    """serve.py on a free port: (process, base URL, its output lines so far and to come)."""
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "serve.py"), "--model", str(model_path), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True).start()
    url = wait_for(
        lambda: next((m.group(1) for m in map(re.compile(r"on (http://\S+)/model/predict").search, lines) if m), None),
        120,
    )
    if not url:
        process.kill()
        pytest.fail(f"serve.py did not start: {lines}")
    return process, url, lines


@pytest.mark.skipif(
    not (shutil.which("prometheus-pushgateway") or Path("/usr/bin/prometheus-pushgateway").exists()),
    reason="the Debian package prometheus-pushgateway is missing",
)
def test_serve_py_scrapes_and_pushes_under_its_instance_and_stops_on_sigterm(model_path, mnist_test, tmp_path):
    x_test, _ = mnist_test
    with start_pushgateway(workdir=tmp_path) as gateway:
        process, url, lines = start_serve(
            model_path,
            "--pushgateway",
            gateway.address,
            "--instance",
            "replica-7",
            "--agent",
            "serve_cli",
            "--window-size",
            "10",
            "--window-seconds",
            "600",
        )
        try:
            for i in range(13):  # one window of 10, and 3 more images in the next
                status, _, _ = call(url + "/model/predict", {"image": x_test[i].tolist()})
                assert status == 200
            group = {"agent": "serve_cli", "instance": "replica-7", "job": "mnist"}
            assert wait_for(
                lambda: (
                    read_gateway(gateway.url).get(("gangplank_predict_windows_total", tuple(sorted(group.items()))))
                    == 1
                ),
                20,
            )
            scraped = metrics(url)
            assert value(scraped, "gangplank_predict_samples_total", agent="serve_cli") == 10
            assert "instance" not in {k for _, labels in scraped for k, _ in labels}  # the scrape sets instance
            process.send_signal(signal.SIGTERM)
            assert process.wait(60) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        scrape = read_gateway(gateway.url)
        assert value(scrape, "gangplank_predict_windows_total", agent="serve_cli", instance="replica-7") == 2
        assert value(scrape, "gangplank_predict_samples_total", agent="serve_cli", instance="replica-7") == 13
        assert any("stopped" in line for line in lines)


def test_serve_py_does_not_push_by_default(model_path):
    process, url, lines = start_serve(model_path, "--window-size", "5")
    try:
        assert "pushing" not in lines[-1] and f"metrics at {url}/metrics" in lines[-1]
        status, answer, _ = call(url + "/model/metadata")
        assert status == 200 and answer["instance"] is None
        assert call(url + "/swagger.json")[0] == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0


# -- parsing, no server ---------------------------------------------------------------------------------------
def test_parse_images_scales_grey_levels_and_floats_alike():
    grey = np.arange(784).reshape(28, 28) % 256
    from_grey = serve.parse_images({"image": grey.tolist()})
    from_floats = serve.parse_images({"images": [(grey.reshape(784) / 255.0).tolist()]})
    assert from_grey.shape == (1, 28, 28, 1) and from_grey.dtype == np.float32
    np.testing.assert_allclose(from_grey, from_floats, atol=1e-6)
    with pytest.raises(serve.BadRequest, match="0..255"):
        serve.parse_images({"image": [256] * 784})
    with pytest.raises(serve.BadRequest, match="finite"):
        serve.parse_images({"image": [float("nan")] * 784})


# -- a shadow model ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shadowed(model, model_path, tmp_path_factory):
    """The shadow MLP of train.py (one epoch on the same 2,000 images, another seed) and a reference fitted with it."""
    import keras

    import gangplank

    keras.utils.set_random_seed(1)
    x, y_train = training_rows()
    shadow = mnist_common.build_shadow_model()
    shadow.fit(x[:2000], y_train[:2000], epochs=1, batch_size=64, verbose=0)
    probabilities = model.predict(x[2000:3000], batch_size=500, verbose=0)
    second = shadow.predict(x[2000:3000], batch_size=500, verbose=0)
    reference = gangplank.DriftReference.fit(
        x[2000:3000], probabilities, y_train[2000:3000], shadow=second, window_size=WINDOW
    )
    shadow_path = tmp_path_factory.mktemp("shadow") / mnist_common.SHADOW_MODEL_FILE
    shadow.save(shadow_path)
    return shadow, shadow_path, reference


def test_a_shadow_model_answers_beside_the_model_and_its_agreement_is_scraped(model, model_path, shadowed, mnist_test):
    import gangplank

    shadow, _, reference = shadowed
    x_test, _ = mnist_test
    drift = gangplank.DriftMonitor(None, "mnist", reference=reference, agent=AGENT, window_size=WINDOW)
    service = serve.MnistService(model, drift, model_path, instance="shadowed", shadow=shadow, shadow_share=1.0)
    server = serve.make_server(service, "127.0.0.1", 0, feedback_token=TOKEN)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        images = (x_test[:WINDOW].reshape(WINDOW, 784) / 255.0).tolist()
        for half in (images[: WINDOW // 2], images[WINDOW // 2 :]):
            status, _, _ = call(url + "/model/predict", {"images": half})
            assert status == 200
        assert drift.flush()
        scraped = metrics(url)
    finally:
        server.shutdown()
        server.server_close()
        drift.close()
    labels = (("agent", AGENT),)
    assert scraped[("gangplank_predict_shadow_samples_total", labels)] == WINDOW
    flat = x_test[:WINDOW].reshape(WINDOW, 28, 28, 1) / 255.0
    agreed = np.sum(model.predict(flat, verbose=0).argmax(1) == shadow.predict(flat, verbose=0).argmax(1))
    assert scraped[("gangplank_predict_shadow_agreed_total", labels)] == agreed
    assert scraped[("gangplank_predict_reference_shadow_agreement", labels)] == pytest.approx(
        reference.shadow_agreement
    )


def test_serve_py_refuses_a_shadow_model_its_reference_does_not_know(model_path, shadowed):
    _, shadow_path, _ = shadowed
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / "serve.py"), "--model", str(model_path), "--shadow-model", str(shadow_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert completed.returncode != 0
    assert "fitted without a shadow model" in completed.stderr
