"""Serve the MNIST convnet over HTTP (like IBM's MAX-MNIST) with every request watched for drift.

    python examples/mnist/serve.py --port 5000
    curl -s http://127.0.0.1:5000/model/predict -H 'Content-Type: application/json' -d @digit.json
    {"status": "ok", "predictions": [{"prediction": 7, "probability": 0.9998}]}

``POST /model/predict`` takes JSON ``{"image": IMAGE}`` or ``{"images": [IMAGE, ...]}``
where an IMAGE is 28 rows of 28 pixels or a flat list of 784 pixels: whole
numbers are grey levels 0-255 (MNIST's own), numbers written with a decimal
point must be model-scaled values in [0, 1]. The answer has one prediction per
image. Anything else gets HTTP 400 with ``{"status": "error", "message": ...}``.
``GET /model/metadata`` describes the model and the drift agent.

Every request's pixels and probabilities go to a ProductionDriftExporter
(``observe`` is thread-safe; the server handles each request on its own
thread), which pushes a window every 200 images or every ``--window-seconds``.
The server listens on 127.0.0.1 only: put a reverse proxy in front of it to
serve other machines.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import mnist_common as common

MAX_BODY = 4 * 1024 * 1024  # bytes; about 250 images of 784 grey levels
MAX_IMAGES = 256


class BadRequest(ValueError):
    """The request cannot be answered; the message goes back to the client."""


def parse_images(payload):
    """The request's images as float32 (n, 28, 28, 1) in [0, 1]."""
    import numpy as np

    if not isinstance(payload, dict) or ("image" in payload) == ("images" in payload):
        raise BadRequest('expected a JSON object with "image" (one image) or "images" (a list of images)')
    images = [payload["image"]] if "image" in payload else payload["images"]
    if not isinstance(images, list) or not images:
        raise BadRequest('"images" must be a non-empty list of images')
    if len(images) > MAX_IMAGES:
        raise BadRequest(f"at most {MAX_IMAGES} images per request, got {len(images)}")
    out = np.empty((len(images), 28, 28, 1), dtype=np.float32)
    for i, image in enumerate(images):
        where = "image" if "image" in payload else f"images[{i}]"
        out[i] = _one_image(image, where)
    return out


def _one_image(image, where):
    import numpy as np

    flat = image
    if isinstance(image, list) and len(image) == 28 and all(isinstance(row, list) for row in image):
        if any(len(row) != 28 for row in image):
            raise BadRequest(f"{where}: every one of the 28 rows must have 28 pixels")
        flat = [value for row in image for value in row]
    if not isinstance(flat, list) or len(flat) != 784:
        raise BadRequest(f"{where}: expected 28 rows of 28 pixels or a flat list of 784 pixels")
    if not all(type(v) in (int, float) for v in flat):  # bool is not a pixel
        raise BadRequest(f"{where}: pixels must be numbers")
    pixels = np.array(flat, dtype=np.float64)
    if not np.isfinite(pixels).all():
        raise BadRequest(f"{where}: pixels must be finite numbers")
    if all(type(v) is int for v in flat):
        if pixels.min() < 0 or pixels.max() > 255:
            raise BadRequest(f"{where}: whole-number pixels are grey levels and must be in 0..255")
        pixels = pixels / 255.0
    elif pixels.min() < 0 or pixels.max() > 1:
        raise BadRequest(f"{where}: pixels with a decimal point must be scaled to [0, 1]; send grey levels 0..255 as whole numbers")
    return pixels.reshape(28, 28, 1)


class MnistService:
    """The model, a lock around it, and the drift exporter that watches every request."""

    def __init__(self, model, exporter, model_path):
        import numpy as np

        self.model = model
        self.exporter = exporter
        self.model_path = Path(model_path)
        self._model_lock = threading.Lock()
        model.predict_on_batch(np.zeros((1, 28, 28, 1), np.float32))  # build the predict function before the first request

    def predict(self, images):
        with self._model_lock:  # one model call at a time; the drift bookkeeping below runs in parallel
            probabilities = self.model.predict_on_batch(images)
        self.exporter.observe(images, probabilities)
        best = probabilities.argmax(axis=1)
        return [{"prediction": int(c), "probability": round(float(p[c]), 4)} for c, p in zip(best, probabilities)]

    def metadata(self):
        return {
            "id": "mnist-convnet",
            "name": "gangplank MNIST convnet",
            "model": self.model_path.name,
            "parameters": int(self.model.count_params()),
            "drift_agent": self.exporter.agent,
            "drift_window_size": self.exporter.window_size,
        }


class Handler(BaseHTTPRequestHandler):
    server_version = "gangplank-mnist"
    service: MnistService  # set on the class by make_server

    def do_POST(self):
        if self.path.split("?")[0] != "/model/predict":
            return self._reply(404, {"status": "error", "message": f"no such endpoint: POST {self.path}"})
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self._reply(411, {"status": "error", "message": "a Content-Length header is required"})
        if length > MAX_BODY:
            return self._reply(413, {"status": "error", "message": f"request body over {MAX_BODY} bytes"})
        body = self.rfile.read(length)
        try:
            try:
                payload = json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise BadRequest(f"the body is not valid JSON: {exc}") from None
            predictions = self.service.predict(parse_images(payload))
        except BadRequest as exc:
            return self._reply(400, {"status": "error", "message": str(exc)})
        except Exception as exc:  # noqa: BLE001 - the client gets a 500, the log the details
            self.log_error("prediction failed: %r", exc)
            return self._reply(500, {"status": "error", "message": "prediction failed"})
        self._reply(200, {"status": "ok", "predictions": predictions})

    def do_GET(self):
        if self.path.split("?")[0] == "/model/metadata":
            return self._reply(200, self.service.metadata())
        self._reply(404, {"status": "error", "message": f"no such endpoint: GET {self.path}"})

    def _reply(self, code, payload):
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def make_server(service: MnistService, host: str = "127.0.0.1", port: int = 5000) -> ThreadingHTTPServer:
    handler = type("MnistHandler", (Handler,), {"service": service})
    server_class = type("MnistServer", (ThreadingHTTPServer,), {
        "daemon_threads": True,
        "request_queue_size": 128,  # listen backlog; the default 5 resets connections under a burst of clients
    })
    return server_class((host, port), handler)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(Path(common.DEFAULT_OUT) / common.MODEL_FILE),
                        help="a .keras model; its drift reference is <model>.drift.npz (default artifacts/mnist/mnist.keras)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000; 0 picks a free one)")
    parser.add_argument("--pgw", default=common.DEFAULT_PGW, help=f"Pushgateway address (default {common.DEFAULT_PGW})")
    parser.add_argument("--job", default=common.JOB)
    parser.add_argument("--agent", default="MNIST_Multiclass_serve", help="agent label of the drift metrics")
    parser.add_argument("--window-seconds", type=float, default=60.0, help="also close a drift window after this many seconds (default 60)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import keras

    import gangplank

    model_path = Path(args.model)
    reference_path = common.reference_path(model_path)
    for path in (model_path, reference_path):
        if not path.exists():
            raise SystemExit(f"{path} not found: run examples/mnist/train.py first")
    exporter = gangplank.ProductionDriftExporter(
        args.pgw, args.job, gangplank.DriftReference.load(reference_path), agent=args.agent,
        window_seconds=args.window_seconds,
    )
    service = MnistService(keras.models.load_model(model_path), exporter, model_path)
    server = make_server(service, args.host, args.port)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    host, port = server.server_address[:2]
    print(f"serving {model_path.name} on http://{host}:{port}/model/predict; drift agent {args.agent!r} -> {args.pgw}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        exporter.close()  # push the last, partial window
        print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
