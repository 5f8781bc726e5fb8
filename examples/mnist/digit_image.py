"""An uploaded PNG or JPEG of any size -> the 28x28 grey digit the MNIST convnet expects.

MNIST's own preprocessing, kept simple (``to_mnist``):

1. decode (PNG or JPEG only, one frame, at most ``MAX_PIXELS`` pixels and
   ``MAX_DECODED_BYTES`` bytes as decoded: both are checked on the header,
   before any pixel is decoded), flatten transparency onto white, convert to
   grey (Pillow's ``L``);
2. MNIST digits are light on black: if the image's border is light on
   average, invert it;
3. subtract the background (the border's median) and stretch the brightest
   pixel to 255;
4. crop to the digit's bounding box (pixels above ``INK`` of the brightest),
   fit it into 20x20 keeping its aspect ratio (anti-aliased);
5. place it in a 28x28 field so that its centre of mass is at the centre
   (row 14, column 14), as MNIST did.

Example:
    >>> from PIL import Image, ImageDraw
    >>> page = Image.new("L", (300, 200), 255)  # a black "1" on white paper
    >>> ImageDraw.Draw(page).line([(150, 30), (150, 170)], fill=0, width=12)
    >>> import io; data = io.BytesIO(); page.save(data, "PNG")
    >>> digit = to_mnist(data.getvalue())
    >>> digit.shape, digit.dtype, int(digit.max()), int(digit[0].max())
    ((28, 28), dtype('uint8'), 255, 0)
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

FORMATS = ("PNG", "JPEG")
MAX_PIXELS = (
    4096 * 4096
)  # about 16.8 megapixels, refused above; Pillow's default (Image.MAX_IMAGE_PIXELS) warns at 89 M
MAX_DECODED_BYTES = MAX_PIXELS  # 16 MiB: the pixel bound at one byte a pixel (2048x2048 RGBA, 1448x1448 16-bit RGBA)
WORK_SIZE = 1024  # larger images are shrunk to fit 1024x1024 first: the digit ends up 20 px anyway
INK = 0.1  # share of the brightest pixel above which a pixel counts for the bounding box
FIELD, BOX = 28, 20


class ImageError(ValueError):
    """The upload is not a single-frame PNG or JPEG within the size limit."""


def open_image(data: bytes) -> Image.Image:
    """Decode ``data``; raise :class:`ImageError` for anything but a small, still PNG or JPEG."""
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError:
        raise ImageError(f"the image has more than {MAX_PIXELS} pixels (a decompression bomb?)") from None
    except Exception:  # noqa: BLE001 - whatever a decoder raises on untrusted bytes, it is not an image we take
        raise ImageError(f"not a {' or '.join(FORMATS)} image") from None
    if image.width * image.height > MAX_PIXELS:
        raise ImageError(f"the image is {image.width}x{image.height}, over {MAX_PIXELS} pixels (a decompression bomb?)")
    if getattr(image, "n_frames", 1) > 1:
        raise ImageError(f"the image is animated ({image.n_frames} frames); send a still image")
    if image.format == "JPEG":
        image.draft("L", (WORK_SIZE, WORK_SIZE))  # decode at 1/2, 1/4 or 1/8 of the size where that is enough
    decoded = image.width * image.height * bytes_per_pixel(image)
    if decoded > MAX_DECODED_BYTES:
        raise ImageError(
            f"the image is {image.width}x{image.height} {image.mode} at {bytes_per_pixel(image)} bytes a pixel: "
            f"{decoded / 2**20:.1f} MiB decoded, over the limit of {MAX_DECODED_BYTES / 2**20:g} MiB"
        )
    try:
        image.load()
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt data, in any of the decoder's ways
        raise ImageError(f"the {image.format} data is damaged ({type(exc).__name__})") from None
    return image


def bytes_per_pixel(image: Image.Image) -> int:
    """Bytes a pixel of ``image`` takes to decode, from its header: bands x the larger of 1, 2 (16-bit) or 4 bytes.

    Pillow holds a 16-bit RGBA PNG as 8-bit RGBA but reads 8 bytes a pixel to get there; the larger counts.

    >>> bytes_per_pixel(Image.new("L", (3, 3))), bytes_per_pixel(Image.new("RGBA", (3, 3)))
    (1, 4)
    """
    bands = len(image.getbands())
    in_memory = 4 if image.mode in ("I", "F") else 2 if image.mode.startswith("I;16") else 1
    sixteen_bit = any(";16" in str(tile.args) for tile in getattr(image, "tile", []) or [])
    return bands * max(in_memory, 2 if sixteen_bit else 1)


def grey(image: Image.Image) -> np.ndarray:
    """The image as float32 grey levels 0-255, transparency flattened onto white, at most WORK_SIZE a side."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    image = image.convert("L")
    image.thumbnail((WORK_SIZE, WORK_SIZE), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.float32)


def centre(levels: np.ndarray) -> np.ndarray:
    """Grey levels (light digit on dark) -> the MNIST field: 20x20 box, centre of mass at (14, 14)."""
    border = np.concatenate([levels[0], levels[-1], levels[:, 0], levels[:, -1]])
    levels = np.clip(levels - np.median(border), 0, None)
    peak = levels.max()
    if peak <= 0:
        return np.zeros((FIELD, FIELD), np.uint8)  # a blank image: the model sees a blank field
    levels *= 255.0 / peak
    ink = levels > INK * 255.0
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    crop = levels[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    scale = BOX / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))  # (width, height)
    small = Image.fromarray(crop.astype(np.uint8)).resize(size, Image.Resampling.LANCZOS)
    digit = np.asarray(small, dtype=np.float64)
    digit *= 255.0 / max(digit.max(), 1.0)  # shrinking softens the strokes: the brightest is 255 again, as in MNIST
    ys, xs = np.indices(digit.shape)
    mass = digit.sum()
    top = round(FIELD / 2 - (ys * digit).sum() / mass) if mass else (FIELD - digit.shape[0]) // 2
    left = round(FIELD / 2 - (xs * digit).sum() / mass) if mass else (FIELD - digit.shape[1]) // 2
    top = min(max(top, 0), FIELD - digit.shape[0])
    left = min(max(left, 0), FIELD - digit.shape[1])
    field = np.zeros((FIELD, FIELD), np.uint8)
    field[top : top + digit.shape[0], left : left + digit.shape[1]] = np.rint(digit).astype(np.uint8)
    return field


def to_mnist(data: bytes) -> np.ndarray:
    """PNG or JPEG bytes -> uint8 (28, 28): a light digit on black, as in MNIST. Raises :class:`ImageError`."""
    levels = grey(open_image(data))
    border = np.concatenate([levels[0], levels[-1], levels[:, 0], levels[:, -1]])
    if border.mean() > 127.5:  # dark ink on light paper: MNIST's digits are light on black
        levels = 255.0 - levels
    return centre(levels)
