"""Input reductions: monitor a few meaningful, cheap features of wide inputs (images, long vectors).

Binning 150,528 raw pixels per row costs seconds per window and gigabytes
to fit, and per-pixel drift says little about natural images. A reduction
maps every row of the raw inputs to a few features, the same way when the
reference is fitted and on every batch the monitor observes, so the caller
passes raw inputs everywhere (``DriftReference.fit(x, p, reduction=...)``,
``observe(x, p)``). The reference file keeps the reduction's parameters
(no pickle); the thresholds are calibrated on the reduced features like
on any other input.

* :func:`pool_images`: the mean of each cell of a grid over every image
  channel (``(8, 8)`` on a 224x224x3 image: 192 features). Images channels last.
* :func:`feature_subset`: the features at given flat indices.
* :func:`random_projection`: ``n_components`` sums of about √d randomly
  chosen features with random signs, scaled by 1/√m (a very sparse random
  projection, Li, Hastie and Church 2006), for wide vectors without an
  image's layout.

Rows are reduced in chunks of :data:`CHUNK_VALUES` values, in float32, so a
reduction never holds a float copy of more than a chunk of the raw inputs.

Example:
    >>> import numpy as np
    >>> images = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    >>> pool_images((2, 2)).fitted(images).apply(images)[0].tolist()
    [2.5, 4.5, 10.5, 12.5]
    >>> feature_subset([0, 5]).fitted(images).apply(images).tolist()
    [[0.0, 5.0], [16.0, 21.0]]
"""

from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass, field

import numpy as np

from ._drift import model_inputs

CHUNK_VALUES = 1 << 24  # raw values reduced at once (a batch of 111 images of 224x224x3)

__all__ = ["InputReduction", "feature_subset", "pool_images", "random_projection"]


class InputReduction:
    """What every reduction does; build one with :func:`pool_images`, :func:`feature_subset` or
    :func:`random_projection`, bind it to the inputs' shape with :meth:`fitted`."""

    kind = ""
    input_shape: tuple[int, ...] | None = None  # one row's shape, set by fitted()

    @property
    def n_features_in(self) -> int:
        return math.prod(self._bound_shape())

    @property
    def n_features_out(self) -> int:
        raise NotImplementedError

    def fitted(self, inputs) -> InputReduction:
        """This reduction bound to the shape of one row of ``inputs`` (checked if already bound)."""
        shape = tuple(int(n) for n in _rows_array(inputs).shape[1:])
        if self.input_shape is not None:
            if math.prod(shape) != math.prod(self.input_shape):
                raise ValueError(f"the reduction was fitted on rows of shape {self.input_shape}, got {shape}")
            return self
        return self._bind(shape)

    def apply(self, inputs) -> np.ndarray:
        """The (rows, :attr:`n_features_out`) float32 features of raw ``inputs`` (rows first)."""
        x = _rows_array(inputs)
        if x.ndim < 2 or math.prod(x.shape[1:]) != self.n_features_in:
            raise ValueError(
                f"inputs must have {self.n_features_in} values per row (rows of shape {self._bound_shape()}) "
                f"for the {self.kind} reduction, got shape {x.shape}"
            )
        if x.dtype.kind not in "biuf":
            raise ValueError(f"the {self.kind} reduction needs numeric inputs, got dtype {x.dtype}")
        rows = x.shape[0]
        out = np.empty((rows, self.n_features_out), dtype=np.float32)
        step = max(1, CHUNK_VALUES // max(self.n_features_in, 1))
        for start in range(0, rows, step):
            chunk = x[start : start + step]
            out[start : start + chunk.shape[0]] = self._reduce(chunk)
        return out

    def as_header(self) -> dict:
        """The parameters saved in a reference file (JSON)."""
        return {"kind": self.kind, "input_shape": list(self._bound_shape()), **self._parameters()}

    def _bound_shape(self) -> tuple[int, ...]:
        if self.input_shape is None:
            raise ValueError(f"the {self.kind} reduction is not fitted yet: call fitted(inputs) first")
        return self.input_shape

    def _bind(self, shape: tuple[int, ...]) -> InputReduction:
        raise NotImplementedError

    def _parameters(self) -> dict:
        raise NotImplementedError

    def _reduce(self, chunk: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True, eq=True)
class ImagePooling(InputReduction):
    """The mean of each cell of a ``size`` grid over images (rows, height, width[, channels])."""

    size: tuple[int, int] = (8, 8)
    input_shape: tuple[int, ...] | None = None
    kind = "pool_images"

    def __post_init__(self):
        size = tuple(int(n) for n in self.size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"pool_images size must be two positive whole numbers (rows, columns), got {self.size}")
        object.__setattr__(self, "size", size)
        if self.input_shape is not None:
            shape = tuple(int(n) for n in self.input_shape)
            if len(shape) not in (2, 3) or shape[0] < size[0] or shape[1] < size[1]:
                raise ValueError(
                    f"pool_images{size} needs images of at least {size[0]}x{size[1]} pixels, "
                    f"(height, width) or (height, width, channels) per row; got rows of shape {shape}"
                )
            object.__setattr__(self, "input_shape", shape)

    @property
    def n_features_out(self) -> int:
        shape = self._bound_shape()
        return self.size[0] * self.size[1] * (shape[2] if len(shape) == 3 else 1)

    def _bind(self, shape):
        return ImagePooling(self.size, shape)

    def _parameters(self):
        return {"size": list(self.size)}

    def _reduce(self, chunk):
        height, width = self._bound_shape()[:2]
        image = chunk.reshape(chunk.shape[0], height, width, -1)
        starts_h, counts_h = _cells(height, self.size[0])
        starts_w, counts_w = _cells(width, self.size[1])
        # Sum the pixel rows of each cell first (contiguous runs: fast), then the columns; bytes add
        # up exactly in 16 bits (twice as fast as float32) while a cell is at most 257 rows high.
        exact16 = image.dtype == np.uint8 and counts_h.max() <= 257
        accumulator = np.uint16 if exact16 else np.float32
        lines = image.reshape(image.shape[0], height, -1)  # (rows, height, width * channels)
        if height % self.size[0] == 0:
            cells = lines.reshape(image.shape[0], self.size[0], height // self.size[0], -1)
            rows = cells.sum(axis=2, dtype=accumulator).reshape(image.shape[0], self.size[0], width, -1)
        else:
            rows = np.empty((image.shape[0], self.size[0], width, image.shape[3]), accumulator)
            for i, (start, count) in enumerate(zip(starts_h, counts_h, strict=True)):
                np.sum(image[:, start : start + count], axis=1, dtype=accumulator, out=rows[:, i])
        sums = np.add.reduceat(rows, starts_w, axis=2, dtype=np.float32)
        sums /= np.outer(counts_h, counts_w).astype(np.float32)[None, :, :, None]
        return sums.reshape(chunk.shape[0], -1)


@dataclass(frozen=True, eq=True)
class FeatureSubset(InputReduction):
    """The features at ``indices`` of each row flattened (C order)."""

    indices: tuple[int, ...] = ()
    input_shape: tuple[int, ...] | None = None
    kind = "feature_subset"

    def __post_init__(self):
        indices = np.asarray(self.indices)
        if indices.ndim != 1 or not indices.size or indices.dtype.kind not in "iu":
            raise ValueError(f"feature_subset needs a non-empty list of whole-number indices, got {self.indices!r}")
        object.__setattr__(self, "indices", tuple(int(i) for i in indices))
        if self.input_shape is not None:
            shape = tuple(int(n) for n in self.input_shape)
            width = math.prod(shape)
            if min(self.indices) < 0 or max(self.indices) >= width:
                raise ValueError(f"feature_subset indices must be in [0, {width}) for rows of shape {shape}")
            object.__setattr__(self, "input_shape", shape)

    @property
    def n_features_out(self) -> int:
        return len(self.indices)

    def _bind(self, shape):
        return FeatureSubset(self.indices, shape)

    def _parameters(self):
        return {"indices": list(self.indices)}

    def _reduce(self, chunk):
        flat = chunk.reshape(chunk.shape[0], -1)
        return np.take(flat, self._index_array, axis=1).astype(np.float32, copy=False)

    @functools.cached_property
    def _index_array(self) -> np.ndarray:
        return np.asarray(self.indices, dtype=np.intp)


@dataclass(frozen=True, eq=True)
class RandomProjection(InputReduction):
    """``n_components`` signed sums of about √d random features each (see the module docstring)."""

    n_components: int = 64
    seed: int = 0
    input_shape: tuple[int, ...] | None = None
    indices: np.ndarray | None = field(default=None, compare=False, repr=False)  # (components, m) features
    weights: np.ndarray | None = field(default=None, compare=False, repr=False)  # (components, m) ±1/√m
    kind = "random_projection"

    def __post_init__(self):
        if isinstance(self.n_components, bool) or int(self.n_components) != self.n_components or self.n_components < 1:
            raise ValueError(f"random_projection n_components must be a positive whole number, got {self.n_components}")
        if self.input_shape is not None and self.indices is None:
            shape = tuple(int(n) for n in self.input_shape)
            d = math.prod(shape)
            per_component = max(1, round(math.sqrt(d)))
            rng = np.random.default_rng(self.seed)
            indices = rng.integers(0, d, size=(self.n_components, per_component))
            signs = rng.integers(0, 2, size=(self.n_components, per_component)) * 2 - 1
            order = np.argsort(indices, axis=1, kind="stable")  # gathered in memory order: twice as fast
            indices, signs = np.take_along_axis(indices, order, 1), np.take_along_axis(signs, order, 1)
            object.__setattr__(self, "input_shape", shape)
            object.__setattr__(self, "indices", indices.astype(np.intp))
            object.__setattr__(self, "weights", (signs / math.sqrt(per_component)).astype(np.float32))

    @property
    def n_features_out(self) -> int:
        return int(self.n_components)

    @property
    def fingerprint(self) -> int:
        """A checksum of the drawn features and signs: a file whose projection this numpy draws
        differently is refused on load rather than compared on other features."""
        assert self.indices is not None and self.weights is not None
        return zlib.crc32(self.indices.astype(np.int64).tobytes() + np.sign(self.weights).astype(np.int8).tobytes())

    def _bind(self, shape):
        return RandomProjection(self.n_components, self.seed, shape)

    def _parameters(self):
        return {"n_components": int(self.n_components), "seed": int(self.seed), "fingerprint": self.fingerprint}

    def _reduce(self, chunk):
        assert self.indices is not None and self.weights is not None
        flat = chunk.reshape(chunk.shape[0], -1)
        picked = np.take(flat, self.indices.ravel(), axis=1).astype(np.float32, copy=False)
        return np.einsum("rcm,cm->rc", picked.reshape(chunk.shape[0], *self.indices.shape), self.weights)


def pool_images(size: tuple[int, int] = (8, 8)) -> ImagePooling:
    """Average-pool images to a ``size`` grid per channel: ``pool_images((8, 8))`` turns a
    224x224x3 image into 192 features (cells of 28x28 pixels; uneven sizes split as evenly as possible).

    Example:
        >>> import numpy as np
        >>> pool_images((2, 2)).fitted(np.ones((1, 6, 6, 3))).n_features_out
        12
    """
    return ImagePooling(tuple(size))  # type: ignore[arg-type]  # its length is checked there, with a clear error


def feature_subset(indices) -> FeatureSubset:
    """Keep the features at ``indices`` (flat, C order, per row), e.g. ``feature_subset(range(0, 784, 7))``.

    Example:
        >>> import numpy as np
        >>> feature_subset([2]).fitted(np.zeros((1, 3))).n_features_out
        1
    """
    return FeatureSubset(tuple(np.asarray(list(indices)).tolist()))


def random_projection(n_components: int = 64, seed: int = 0) -> RandomProjection:
    """Project each row onto ``n_components`` sparse random directions (drawn from ``seed`` once the
    input width is known); for wide vectors that are not images.

    Example:
        >>> import numpy as np
        >>> random_projection(8).fitted(np.zeros((1, 1000))).apply(np.ones((2, 1000))).shape
        (2, 8)
    """
    return RandomProjection(int(n_components), int(seed))


def from_header(header: dict) -> InputReduction:
    """The reduction a reference file saved (``ValueError`` for one this gangplank does not know)."""
    kind, shape = header["kind"], tuple(int(n) for n in header["input_shape"])
    if kind == ImagePooling.kind:
        height, width = header["size"]
        return ImagePooling((int(height), int(width)), shape)
    if kind == FeatureSubset.kind:
        return FeatureSubset(tuple(header["indices"]), shape)
    if kind == RandomProjection.kind:
        projection = RandomProjection(int(header["n_components"]), int(header["seed"]), shape)
        if projection.fingerprint != int(header["fingerprint"]):
            raise ValueError("this numpy draws the random projection differently from the one the file was fitted with")
        return projection
    raise ValueError(f"unknown input reduction {kind!r}")


def _rows_array(inputs) -> np.ndarray:
    """Raw inputs as an array, rows first, without a copy where possible (several inputs side by side)."""
    if model_inputs.is_structured(inputs):
        return model_inputs.flatten(inputs)
    return model_inputs.to_numpy(inputs)


def _cells(length: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and size of ``cells`` near-equal consecutive cells over ``length`` pixels."""
    edges = (np.arange(cells + 1) * length) // cells
    return edges[:-1], np.diff(edges)
