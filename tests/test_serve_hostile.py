"""examples/mnist/serve.py against a hostile client: the cases of issue 18's probe, over real sockets on 127.0.0.1.

Slow connections that reconnect when cut, uploads that are cheap to send and
costly to decode, multipart bodies of many or nested parts, foreign ``Host``
headers, labels without the key, and aborted connections. Every loop here is
bounded and every socket has a deadline.
"""

from __future__ import annotations

import http.client
import io
import json
import selectors
import socket
import struct
import threading
import time
import zlib

import pytest

from tests.test_serve import AUTH, TOKEN, Running, call, form, start_serve, upload

pytest.importorskip("PIL", reason="Pillow is in the examples extra: pip install -e '.[examples]'")
from PIL import Image  # noqa: E402

pytestmark = pytest.mark.slow  # starts serve.py and hammers it with many connections


@pytest.fixture
def server(model, model_path):
    running = Running(model, model_path)  # the command line's defaults: 512 connections, 10 s per request
    yield running
    running.close()


@pytest.fixture(scope="module")
def model(model_path):
    import keras

    return keras.models.load_model(model_path)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    from tests.test_serve import MNIST, tiny_model

    if not MNIST.exists():
        pytest.skip("no local mnist.npz")
    return tiny_model(tmp_path_factory.getbasetemp() / "serve-model")


def digit_png() -> bytes:
    out = io.BytesIO()
    image = Image.new("L", (56, 56), 255)
    image.paste(0, (24, 8, 32, 48))  # a dark "1" on white
    image.save(out, "PNG")
    return out.getvalue()


class Slowloris:
    """``count`` connections, each sending one header line a second and never ending its head; reconnecting when cut."""

    def __init__(self, port: int, count: int):
        self.port, self.count = port, count
        self.stop = threading.Event()
        self.reconnects = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(30)

    def _connect(self, selector):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.setblocking(False)
        sock.sendall(b"POST /model/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        selector.register(sock, selectors.EVENT_READ)

    def _run(self):
        selector = selectors.DefaultSelector()
        for _ in range(self.count):
            self._connect(selector)
        line = 0
        next_line = time.monotonic() + 1
        while not self.stop.is_set():
            for key, _ in selector.select(timeout=0.1):  # readable: the server answered or cut it off
                selector.unregister(key.fileobj)
                key.fileobj.close()
                self.reconnects += 1
                self._connect(selector)
            if time.monotonic() >= next_line:
                line += 1
                next_line += 1
                for key in list(selector.get_map().values()):
                    try:
                        key.fileobj.send(f"X-Slow-{line}: {line}\r\n".encode())
                    except OSError:
                        pass  # cut off: the selector reports it as readable next round
        for key in list(selector.get_map().values()):
            key.fileobj.close()
        selector.close()


def test_200_slow_connections_reconnecting_do_not_hold_up_an_upload(model, model_path):
    running = Running(model, model_path, request_timeout=3.0)  # short, so that the slow clients reconnect
    try:
        with Slowloris(running.port, 200) as slow:
            time.sleep(4)  # every slow connection is open and trickling; some are cut off and back
            body, content_type = form({"image": ("digit.png", digit_png(), "image/png")})
            for _ in range(3):
                with socket.create_connection(("127.0.0.1", running.port), timeout=2.0) as sock:  # 2 s deadline
                    head = (
                        f"POST /model/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
                        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                    ).encode()
                    sock.sendall(head + body)
                    answer = b""
                    while chunk := sock.recv(65536):  # raises TimeoutError past the 2 s deadline
                        answer += chunk
                assert answer.startswith(b"HTTP/1.1 200 ") and b'"status":"ok"' in answer, answer[:300]
            assert slow.reconnects > 0  # the server did cut the slow ones off, and they came back
    finally:
        running.close()


def png_header_only(width: int, height: int, depth: int, colour_type: int) -> bytes:
    """A PNG whose header declares width x height at ``depth`` bits, with a little real (all-zero) data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    row = b"\0" * (1 + width * channels * depth // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(min(height, 4096))) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "width, height, depth, colour_type",
    [(1, 16_777_216, 16, 6), (4096, 4096, 16, 6), (4096, 4096, 8, 2), (2049, 2049, 8, 6)],
    ids=["1x16M 16-bit RGBA", "4096x4096 16-bit RGBA", "4096x4096 RGB", "2049x2049 RGBA"],
)
def test_uploads_too_large_once_decoded_are_refused_by_their_header(server, width, height, depth, colour_type):
    data = png_header_only(width, height, depth, colour_type)
    assert len(data) < 300_000  # cheap to send
    status, answer, _ = upload(server.url, data)
    assert status == 400 and "MiB decoded, over the limit" in answer["message"], answer


def test_a_body_of_many_tiny_parts_is_refused_with_400(server):
    boundary = "b"
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n'.encode()
    body = part * (4 * 1024 * 1024 // len(part) - 1) + f"--{boundary}--\r\n".encode()
    head = (
        f"POST /model/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary={boundary}"
        f"\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:  # kept alive: the server
        sock.sendall(head + body)  # reads the rest of the body without parsing it, so no reset loses the answer
        response = http.client.HTTPResponse(sock)
        response.begin()
        status, answer = response.status, json.loads(response.read())
    assert status == 400 and "Too many fields" in answer["message"], answer


def test_two_files_are_refused_with_400(server):
    body, content_type = form({"image": ("a.png", digit_png(), "image/png"), "other": ("b.png", b"x", "image/png")})
    status, answer, _ = call(server.url + "/model/predict", body, content_type)
    assert status == 400 and "Too many files" in answer["message"], answer


def nested_multipart(depth: int) -> tuple[bytes, str]:
    """A multipart body whose one part is a multipart body whose one part is ... ``depth`` deep."""
    inner = b"x"
    for level in range(depth, 0, -1):
        boundary = f"n{level}"
        inner = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="d"\r\n'
            f"Content-Type: multipart/mixed; boundary=n{level + 1}\r\n\r\n".encode()
            + inner
            + f"\r\n--{boundary}--\r\n".encode()
        )
    return inner, "multipart/form-data; boundary=n1"


@pytest.mark.parametrize(
    "body, content_type",
    [
        pytest.param(*nested_multipart(3000), id="nested 3000 deep"),
        pytest.param(b"--b\r\nno headers end", "multipart/form-data; boundary=b", id="unterminated part"),
        pytest.param(b"--b\r\n\r\n\r\n--b--\r\n", "multipart/form-data; boundary=b", id="part without a name"),
        pytest.param(b"garbage", "multipart/form-data; boundary=" + "b" * 5000, id="long boundary"),
        pytest.param(b"\xff" * 1000, "multipart/form-data; boundary=b", id="binary"),
    ],
)
def test_malformed_multipart_never_answers_500(server, body, content_type):
    status, answer, _ = call(server.url + "/model/predict", body, content_type)
    assert 400 <= status < 500 and answer["status"] == "error", (status, answer)


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:80", "127.0.0.1.nip.io"])
def test_a_host_the_server_does_not_serve_is_refused(server, mnist_image, host):
    status, _, _ = call(server.url + "/model/predict", mnist_image, headers={"Host": host})
    assert status == 400
    status, _, _ = call(server.url + "/model/predict", mnist_image, headers={"Host": f"localhost:{server.port}"})
    assert status == 200


@pytest.fixture
def mnist_image():
    return {"image": [[0] * 28 for _ in range(28)]}


def test_labels_need_the_token(server, mnist_image):
    _, answer, _ = call(server.url + "/model/predict", mnist_image)
    label = {"id": answer["id"], "label": 1}
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"}):
        status, refused, got = call(server.url + "/model/feedback", label, headers=headers)
        assert status == 401 and got["WWW-Authenticate"] == "Bearer" and refused["status"] == "error", headers
    status, accepted, _ = call(server.url + "/model/feedback", label, headers=AUTH)
    assert (status, accepted["matched"]) == (200, 1)


def test_without_a_token_file_feedback_is_off(model, model_path, mnist_image):
    running = Running(model, model_path, feedback_token=None)
    try:
        _, answer, _ = call(running.url + "/model/predict", mnist_image)
        status, refused, _ = call(running.url + "/model/feedback", {"id": answer["id"], "label": 1}, headers=AUTH)
        assert status == 403 and "--feedback-token-file" in refused["message"]
    finally:
        running.close()


def test_aborted_connections_log_one_line_each_not_a_traceback(model_path, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    process, url, lines = start_serve(model_path, "--feedback-token-file", str(token_file), "--request-timeout", "2")
    try:
        port = int(url.rsplit(":", 1)[1])
        before = len(lines)
        aborts = 40
        body, content_type = form({"image": ("digit.png", digit_png(), "image/png")})
        for i in range(aborts):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = reset
            head = (
                f"POST /model/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            sock.sendall(head + (body if i % 2 else body[: len(body) // 2]))  # whole, or cut in the middle
            sock.close()
        time.sleep(1)
        status, _, _ = call(url + "/model/metadata")
        assert status == 200
    finally:
        process.terminate()
        process.wait(60)
    logged = lines[before:]
    assert not [line for line in logged if "Traceback" in line or "Error" in line], logged
    assert len(logged) <= aborts + 5, logged  # one line per abort at most, and the metadata request's


def test_two_different_content_lengths_are_refused(server):
    request = (
        b"POST /model/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 4\r\nContent-Length: 40\r\n\r\n{}{}"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert 400 <= response.status < 500 and json.loads(response.read())["status"] == "error"


def test_pipelined_requests_are_all_answered_in_order(server):
    one = b"GET /model/metadata HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    missing = b"GET /nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(one + missing + one)
        stream = sock.makefile("rb")  # one reader for the three answers (http.client's would each buffer ahead)
        statuses = []
        for _ in range(3):
            status = int(stream.readline().split()[1])
            headers = dict(line.decode().split(":", 1) for line in iter(stream.readline, b"\r\n"))
            stream.read(int({k.lower(): v for k, v in headers.items()}["content-length"]))
            statuses.append(status)
    assert statuses == [200, 404, 200]
