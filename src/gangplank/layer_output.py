"""A named layer's output as the features to monitor: an embedding instead of raw pixels.

:func:`layer_features` builds, once, a Keras sub-model from the model's
inputs to one of its layers and returns a function that maps a batch of the
model's inputs to that layer's output, (rows, features) float32. Fit the
reference on it and give it to the exporter (or call it in serving code):

Example:
    >>> embed = gangplank.layer_features(model, "embedding")  # doctest: +SKIP
    >>> reference = gangplank.DriftReference.fit(embed(x_valid), model.predict(x_valid), y_valid)  # doctest: +SKIP
    >>> model.predict(drift.with_inputs(x, features=embed), callbacks=[drift])  # doctest: +SKIP
    >>> drift.observe(embed(x), probabilities)  # serving code  # doctest: +SKIP

The layers up to the named one run twice per batch (once in the model,
once in the sub-model); pick a layer early enough to be cheap, late enough
to mean something.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from ._drift import model_inputs

__all__ = ["LayerFeatures", "layer_features"]


class LayerFeatures:
    """Maps a batch of a model's inputs to one layer's output; build it with :func:`layer_features`."""

    def __init__(self, model, layer: str, batch_size: int):
        names = [each.name for each in model.layers]
        if layer not in names:
            raise ValueError(f"model {model.name!r} has no layer named {layer!r}; its layers are {names}")
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive whole number, got {batch_size!r}")
        try:
            self.submodel = keras.Model(inputs=_model_inputs(model), outputs=model.get_layer(layer).output)
        except (AttributeError, ValueError) as error:  # a subclassed model, or one never built on its inputs
            raise ValueError(
                f"the output of layer {layer!r} of model {model.name!r} cannot be read: layer_features needs a "
                f"functional model, or a Sequential one built with an Input ({error})"
            ) from error
        self.layer = layer
        self.model_name = model.name
        self.batch_size = int(batch_size)
        self.n_features = math.prod(d or 1 for d in self.submodel.output.shape[1:])

    def __call__(self, inputs) -> np.ndarray:
        """The layer's output for ``inputs`` (what the model takes), one row per input row, float32."""
        first: Any = model_inputs.named_inputs(inputs)[0][1] if model_inputs.is_structured(inputs) else inputs
        rows = int(np.shape(first)[0])
        out = []
        for start in range(0, rows, self.batch_size):
            batch = model_inputs.rows_of(inputs, start, start + self.batch_size)
            values = keras.ops.convert_to_numpy(self.submodel(batch, training=False))
            out.append(np.asarray(values, dtype=np.float32).reshape(values.shape[0], -1))
        return np.concatenate(out) if out else np.zeros((0, self.n_features), dtype=np.float32)

    def __repr__(self) -> str:
        return f"layer_features({self.model_name!r}, {self.layer!r}: {self.n_features} features)"


def layer_features(model, layer: str, *, batch_size: int = 256) -> LayerFeatures:
    """A function from a batch of ``model``'s inputs to the output of its layer named ``layer``,
    flattened per row; ``ValueError`` at once, listing the layers, for a name the model does not have.

    ``batch_size`` rows go through the sub-model at once (fitting a reference on many rows).
    """
    return LayerFeatures(model, layer, batch_size)


def _model_inputs(model):
    """The model's input tensors in the structure it is called with (one tensor for a single input)."""
    try:
        inputs = model.input  # a functional model: as it was built (a dict, a list or one tensor)
    except AttributeError:
        inputs = model.inputs  # a Sequential model built with an Input: a list
    return inputs[0] if isinstance(inputs, list) and len(inputs) == 1 else inputs
