"""Serve the MNIST convnet over HTTP with MAX-MNIST's API, every request watched for drift.

    python examples/mnist/serve.py --port 5000
    curl -s -F image=@digit.png http://127.0.0.1:5000/model/predict
    {"status": "ok", "predictions": [{"prediction": 7, "probability": 0.9998, "id": "5f0c..."}], "id": "5f0c..."}

Endpoints (``GET /swagger.json`` is their OpenAPI document):

* ``POST /model/predict``: a ``multipart/form-data`` upload in the field
  ``image`` (PNG or JPEG of any size; see digit_image.py for how it becomes a
  28x28 MNIST digit), or JSON ``{"image": IMAGE}`` / ``{"images": [IMAGE, ...]}``
  where an IMAGE is 28 rows of 28 pixels or a flat list of 784: whole numbers
  are grey levels 0-255, numbers with a decimal point model-scaled values in
  [0, 1]. The answer has one prediction per image, each with its scoring
  ``id``; the top-level ``id`` names the request (with one image, it is that
  image's id; with n images they are ``<id>-0`` ... ``<id>-<n-1>``).
* ``POST /model/feedback``: ``{"id": ID, "label": L}`` or a list of them: the
  true label of an earlier prediction, joined to it by id
  (``DriftMonitor.feedback(labels, ids=...)``). Ids of no known prediction
  (never issued, or older than the monitor keeps) get 404.
* ``GET /model/metadata``: MAX's fields id, name, description, type, source,
  license, and the drift agent.
* ``GET /metrics``: the drift monitor's ``gangplank_predict_*`` families for
  Prometheus to scrape. ``--pushgateway ADDR`` pushes them as well (do not
  scrape and push one server into the same Prometheus).

Errors are JSON ``{"status": "error", "message": ...}``: 400 bad input, 403
cross-site requests (a browser's ``Origin`` naming another site), 404, 405,
413 a body without Content-Length or over 4 MiB, 415 a Content-Type other
than application/json or multipart/form-data. Each request must arrive
whole within ``--request-timeout`` seconds, and at most
``--max-connections`` connections are served at once (see http_guard.py).
The server listens on 127.0.0.1: put a reverse proxy in front of it to
serve other machines.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import urllib.parse
import uuid
from pathlib import Path

import api_doc
import http_guard
import mnist_common as common
from http_guard import HttpError

MAX_BODY = 4 * 1024 * 1024  # bytes; about 250 images of 784 grey levels, or a large photo
MAX_IMAGES = 256
MAX_FEEDBACK = 10 * MAX_IMAGES
JSON = "application/json"
FORM = "multipart/form-data"
ROUTES = {
    "/model/predict": "POST",
    "/model/feedback": "POST",
    "/model/metadata": "GET",
    "/swagger.json": "GET",
    "/metrics": "GET",
}


class BadRequest(HttpError):
    """HTTP 400; the message goes back to the client."""

    def __init__(self, message: str):
        super().__init__(400, message)


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
        raise BadRequest(
            f"{where}: pixels with a decimal point must be scaled to [0, 1]; send grey levels 0..255 as whole numbers"
        )
    return pixels.reshape(28, 28, 1)


def parse_upload(data: bytes):
    """An uploaded PNG or JPEG as a float32 (1, 28, 28, 1) batch in [0, 1]."""
    import digit_image

    try:
        digit = digit_image.to_mnist(data)
    except digit_image.ImageError as exc:
        raise BadRequest(f"image: {exc}") from None
    return common.to_model_input(digit[None])


def parse_feedback(payload, n_classes: int) -> tuple[list[str], list[int]]:
    """``{"id": ..., "label": ...}`` or a list of them -> (ids, labels)."""
    items = payload if isinstance(payload, list) else [payload]
    if not items or len(items) > MAX_FEEDBACK:
        raise BadRequest(f"send 1 to {MAX_FEEDBACK} labels, got {len(items)}")
    ids, labels = [], []
    for i, item in enumerate(items):
        where = f"[{i}]" if isinstance(payload, list) else "the body"
        if not isinstance(item, dict) or not {"id", "label"} <= set(item):
            raise BadRequest(f'{where}: expected {{"id": SCORING_ID, "label": CLASS}}')
        if not isinstance(item["id"], str) or not 1 <= len(item["id"]) <= 200:
            raise BadRequest(
                f"{where}: the id must be a scoring id (a string) from /model/predict, got {item['id']!r}"[:300]
            )
        if type(item["label"]) is not int or not 0 <= item["label"] < n_classes:
            raise BadRequest(
                f"{where}: the label must be a class from 0 to {n_classes - 1}, got {item['label']!r}"[:300]
            )
        ids.append(item["id"])
        labels.append(item["label"])
    return ids, labels


class MnistService:
    """The model, a lock around it, the drift monitor watching every request, and its metrics registry."""

    def __init__(self, model, drift, model_path, instance: str | None = None):
        import numpy as np
        from prometheus_client import CollectorRegistry

        self.model = model
        self.drift = drift
        self.model_path = Path(model_path)
        self.instance = instance
        self.registry = CollectorRegistry()
        self.registry.register(drift)  # /metrics serves the families the monitor would push
        self._model_lock = threading.Lock()
        model.predict_on_batch(
            np.zeros((1, 28, 28, 1), np.float32)
        )  # build the predict function before the first request

    @property
    def n_classes(self) -> int:
        return self.drift.reference.n_classes

    def predict(self, images) -> dict:
        with self._model_lock:  # one model call at a time; the drift bookkeeping below runs in parallel
            probabilities = self.model.predict_on_batch(images)
        request_id = uuid.uuid4().hex
        ids = [request_id] if len(images) == 1 else [f"{request_id}-{i}" for i in range(len(images))]
        self.drift.observe(images, probabilities, ids=ids)
        best = probabilities.argmax(axis=1)
        predictions = [
            {"prediction": int(c), "probability": round(float(p[c]), 4), "id": i}
            for c, p, i in zip(best, probabilities, ids, strict=True)
        ]
        return {"status": "ok", "predictions": predictions, "id": request_id}

    def feedback(self, ids, labels) -> dict:
        matched = self.drift.feedback(labels, ids=ids)
        if not matched:
            kept = self.drift.scoring_ids
            raise HttpError(
                404,
                f"no prediction is waiting for a label under {'this id' if len(ids) == 1 else 'these ids'}: "
                f"never issued here, labelled already, or expired (the server keeps the last "
                f"{kept.max_ids:,} ids for {kept.max_age_seconds / 3600:g} h)",
            )
        return {"status": "ok", "matched": int(matched), "unmatched": len(ids) - int(matched)}

    def metadata(self) -> dict:
        parameters = int(self.model.count_params())
        return {
            "id": "gangplank-mnist-convnet",
            "name": "gangplank MNIST convnet",
            "description": f"Classifies an image of a handwritten digit (0-9): a convnet of {parameters:,} parameters "
            "trained on MNIST; every request is watched for drift by gangplank",
            "type": "Image Classification",
            "source": "gangplank examples/mnist/train.py",
            "license": "Apache-2.0",
            "model": self.model_path.name,
            "parameters": parameters,
            "drift_agent": self.drift.agent,
            "drift_window_size": self.drift.window_size,
            "instance": self.instance,
        }

    def metrics(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class Handler(http_guard.GuardedHandler):
    server_version = "gangplank-mnist"
    service: MnistService  # set on the class by make_server

    def do_GET(self):
        path = self._route("GET")
        if path is None:
            return
        if path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST

            return self._send(200, self.service.metrics(), CONTENT_TYPE_LATEST)
        if path == "/model/metadata":
            return self._reply(200, self.service.metadata())
        self._reply(200, api_doc.document(MAX_IMAGES, MAX_BODY, self.service.n_classes))

    def do_POST(self):
        path = self._route("POST")
        if path is None:
            return
        try:
            if self._cross_site():
                raise HttpError(403, "cross-site requests are refused (the Origin header names another site)")
            kind = http_guard.content_type(self.headers, (JSON, FORM) if path == "/model/predict" else (JSON,))
            body = http_guard.read_body(self, MAX_BODY)
            if path == "/model/feedback":
                answer = self.service.feedback(*parse_feedback(http_guard.parse_json(body), self.service.n_classes))
            elif kind.get_content_type() == FORM:
                answer = self.service.predict(parse_upload(http_guard.form_file(body, kind, "image")))
            else:
                answer = self.service.predict(parse_images(http_guard.parse_json(body)))
        except HttpError as exc:
            return self._reply(exc.status, {"status": "error", "message": exc.message})
        except TimeoutError:
            self.close_connection = True  # the body did not arrive in time; the base class logs and drops it
            raise
        except Exception as exc:  # noqa: BLE001 - the client gets a 500, the log the details
            self.log_error("request failed: %r", exc)
            return self._reply(500, {"status": "error", "message": "the request failed"})
        self._reply(200, answer)

    def _route(self, method: str) -> str | None:
        """The request's path if it takes ``method``; otherwise the 404/405 answer is sent and None returned."""
        path = urllib.parse.urlsplit(self.path).path
        if path not in ROUTES:
            self._reply(404, {"status": "error", "message": f"no such endpoint: {method} {path}"[:300]})
        elif ROUTES[path] != method:
            self._reply(
                405, {"status": "error", "message": f"{path} takes {ROUTES[path]} only"}, {"Allow": ROUTES[path]}
            )
        else:
            return path
        return None

    def _cross_site(self) -> bool:
        if self.headers.get("Sec-Fetch-Site") == "cross-site":
            return True
        origin = self.headers.get("Origin")
        return origin is not None and urllib.parse.urlsplit(origin).netloc != self.headers.get("Host")

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (bad request line, headers too long, ...) as JSON too."""
        self.close_connection = True
        if code == 501 and self.command:  # a method http.server has no do_* for: 405 on our paths, 404 elsewhere
            self._route(self.command)
            return
        self._reply(code, {"status": "error", "message": message or self.responses.get(code, ("error",))[0]})

    def _reply(self, code, payload, headers=None):
        self._send(code, json.dumps(payload).encode(), JSON, headers)

    def _send(self, code, data: bytes, content_type: str, headers=None):
        self.writing()
        unread = self.command == "POST" and code != 200
        if unread:  # an error answered before (or instead of) reading the whole body: the connection cannot go on
            self.close_connection = True
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def make_server(
    service: MnistService,
    host: str = "127.0.0.1",
    port: int = 5000,
    max_connections: int = 32,
    request_timeout: float = 10.0,
) -> http_guard.GuardedServer:
    handler = type("MnistHandler", (Handler,), {"service": service, "request_timeout": request_timeout})
    return http_guard.GuardedServer((host, port), handler, max_connections=max_connections)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default=str(Path(common.DEFAULT_OUT) / common.MODEL_FILE),
        help="a .keras model; its drift reference is <model>.drift.npz (default artifacts/mnist/mnist.keras)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000; 0 picks a free one)")
    parser.add_argument(
        "--pushgateway",
        "--pgw",
        dest="pushgateway",
        default=None,
        metavar="ADDR",
        help="also push the drift metrics to this Pushgateway (default: no push; scrape /metrics)",
    )
    parser.add_argument("--job", default=common.JOB, help=f"job label when pushing (default {common.JOB})")
    parser.add_argument("--agent", default="MNIST_Multiclass_serve", help="agent label of the drift metrics")
    parser.add_argument(
        "--instance",
        help="this replica's name: the instance label of its pushed group "
        "(scraped, Prometheus sets instance from its target)",
    )
    parser.add_argument("--window-size", type=int, help="images per drift window (default: the reference's, 200)")
    parser.add_argument(
        "--window-seconds",
        type=float,
        default=60.0,
        help="also close a drift window after this many seconds (default 60)",
    )
    parser.add_argument("--max-connections", type=int, default=32, help="connections served at once (default 32)")
    parser.add_argument(
        "--request-timeout", type=float, default=10.0, help="seconds a request may take to arrive whole (default 10)"
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import digit_image
    import keras
    from PIL import Image

    import gangplank

    Image.MAX_IMAGE_PIXELS = digit_image.MAX_PIXELS  # Pillow's own check as strict as ours, wherever it decodes here

    model_path = Path(args.model)
    reference_path = common.reference_path(model_path)
    for path in (model_path, reference_path):
        if not path.exists():
            raise SystemExit(f"{path} not found: run examples/mnist/train.py first")
    drift = gangplank.DriftMonitor(
        args.pushgateway,
        args.job,
        gangplank.DriftReference.load(reference_path),
        agent=args.agent,
        window_size=args.window_size,
        window_seconds=args.window_seconds,
        grouping_key={"instance": args.instance} if args.instance else None,
        max_wait_seconds=0.05,  # a request never waits long for the drift worker: drop (and count) instead
    )
    service = MnistService(keras.models.load_model(model_path), drift, model_path, args.instance)
    server = make_server(service, args.host, args.port, args.max_connections, args.request_timeout)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    host, port = server.server_address[:2]
    where = f"pushing to {args.pushgateway} and " if args.pushgateway else ""
    print(
        f"serving {model_path.name} on http://{host}:{port}/model/predict; drift agent {args.agent!r}"
        f"{f', instance {args.instance!r}' if args.instance else ''}, {where}metrics at http://{host}:{port}/metrics",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        drift.close()  # compares the last, partial window (and pushes it, with --pushgateway)
        print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
