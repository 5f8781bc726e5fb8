"""The OpenAPI 3.0 document of serve.py, served at ``/swagger.json`` (MAX serves its Swagger there too).

Example:
    >>> doc = document(max_images=256, max_body=4 << 20, n_classes=10)
    >>> sorted(doc["paths"])
    ['/metrics', '/model/feedback', '/model/metadata', '/model/predict']
"""

from __future__ import annotations

ERROR = {"$ref": "#/components/schemas/Error"}


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


def _image_schemas(rows: int = 28) -> dict:
    flat = rows * rows
    grey = {"type": "integer", "minimum": 0, "maximum": 255}
    scaled = {"type": "number", "minimum": 0, "maximum": 1}

    def shapes(pixel):
        row = {"type": "array", "items": pixel, "minItems": rows, "maxItems": rows}
        return [
            {"type": "array", "items": row, "minItems": rows, "maxItems": rows},
            {"type": "array", "items": pixel, "minItems": flat, "maxItems": flat},
        ]

    return {
        "Image": {
            "description": f"{rows} rows of {rows} pixels, or a flat list of {flat}: whole numbers are grey "
            "levels 0-255 (MNIST's own), numbers with a decimal point model-scaled values in [0, 1]",
            "anyOf": shapes(grey) + shapes(scaled),
        },
    }


def document(max_images: int, max_body: int, n_classes: int) -> dict:
    """The OpenAPI document for a server taking ``max_images`` per request and bodies up to ``max_body`` bytes."""
    label = {"type": "integer", "minimum": 0, "maximum": n_classes - 1}
    scoring_id = {"type": "string", "minLength": 1, "maxLength": 200, "description": "a scoring id from /model/predict"}
    one_feedback = {
        "type": "object",
        "required": ["id", "label"],
        "properties": {"id": scoring_id, "label": label},
    }
    predict_errors = {
        "400": _error(
            "not an image: bad JSON, wrong shape or range, not a PNG/JPEG, animated, or over the pixel limit"
        ),
        "403": _error("a cross-site request (the Origin header names another site)"),
        "413": _error(f"no Content-Length, or a body over {max_body} bytes"),
        "415": _error("a Content-Type other than the ones listed"),
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "gangplank MNIST server",
            "version": "1.0",
            "description": "MAX-MNIST's API: classify a handwritten digit; every request is watched for drift by "
            "gangplank, whose metrics are at /metrics. Labels that arrive later go to /model/feedback "
            "with the scoring id of their prediction.",
        },
        "paths": {
            "/model/predict": {
                "post": {
                    "summary": "Classify one uploaded image, or JSON pixel arrays",
                    "operationId": "predict",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["image"],
                                    "properties": {
                                        "image": {
                                            "type": "string",
                                            "format": "binary",
                                            "description": "a PNG or JPEG of any size",
                                        }
                                    },
                                },
                                "encoding": {"image": {"contentType": "image/png, image/jpeg"}},
                            },
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {
                                            "type": "object",
                                            "required": ["image"],
                                            "not": {"required": ["images"]},
                                            "properties": {"image": {"$ref": "#/components/schemas/Image"}},
                                        },
                                        {
                                            "type": "object",
                                            "required": ["images"],
                                            "not": {"required": ["image"]},
                                            "properties": {
                                                "images": {
                                                    "type": "array",
                                                    "minItems": 1,
                                                    "maxItems": max_images,
                                                    "items": {"$ref": "#/components/schemas/Image"},
                                                }
                                            },
                                        },
                                    ]
                                }
                            },
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "one prediction per image",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Predictions"}}},
                        },
                        **predict_errors,
                    },
                }
            },
            "/model/feedback": {
                "post": {
                    "summary": "True labels for earlier predictions, joined by scoring id",
                    "operationId": "feedback",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        one_feedback,
                                        {
                                            "type": "array",
                                            "minItems": 1,
                                            "maxItems": 10 * max_images,
                                            "items": one_feedback,
                                        },
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "how many labels were joined to their prediction",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Feedback"}}},
                        },
                        "400": _error("not a label for a scoring id"),
                        "403": predict_errors["403"],
                        "404": _error("no prediction is known under any of these ids (unknown, or expired)"),
                        "413": predict_errors["413"],
                        "415": predict_errors["415"],
                    },
                }
            },
            "/model/metadata": {
                "get": {
                    "summary": "What the model is (MAX's metadata fields, and the drift agent)",
                    "operationId": "metadata",
                    "responses": {
                        "200": {
                            "description": "the model's metadata",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Metadata"}}},
                        }
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics: the drift monitor's gangplank_predict_* families",
                    "operationId": "metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition format 0.0.4",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": {
                **_image_schemas(),
                "Error": {
                    "type": "object",
                    "required": ["status", "message"],
                    "properties": {"status": {"type": "string", "enum": ["error"]}, "message": {"type": "string"}},
                },
                "Predictions": {
                    "type": "object",
                    "required": ["status", "predictions", "id"],
                    "properties": {
                        "status": {"type": "string", "enum": ["ok"]},
                        "id": {
                            "type": "string",
                            "description": "the request's scoring id; with one image, that image's id",
                        },
                        "predictions": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["prediction", "probability", "id"],
                                "properties": {
                                    "prediction": label,
                                    "probability": {"type": "number", "minimum": 0, "maximum": 1},
                                    "id": {
                                        "type": "string",
                                        "description": "this image's scoring id, for /model/feedback",
                                    },
                                },
                            },
                        },
                    },
                },
                "Feedback": {
                    "type": "object",
                    "required": ["status", "matched", "unmatched"],
                    "properties": {
                        "status": {"type": "string", "enum": ["ok"]},
                        "matched": {"type": "integer", "minimum": 1},
                        "unmatched": {"type": "integer", "minimum": 0},
                    },
                },
                "Metadata": {
                    "type": "object",
                    "required": ["id", "name", "description", "type", "source", "license"],
                    "properties": {
                        key: {"type": "string"} for key in ("id", "name", "description", "type", "source", "license")
                    },
                },
            }
        },
    }
