"""examples/mnist/digit_image.py: uploaded PNG/JPEG -> the 28x28 MNIST digit, and the uploads it refuses.

Real MNIST digits are drawn as a person would photograph or scan them
(enlarged, dark on light, off centre, in colour, on a transparent
background, as JPEG) and must come back close to the original 28x28 digit.
"""

from __future__ import annotations

import io
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

PIL = pytest.importorskip("PIL", reason="Pillow is in the examples extra: pip install -e '.[examples]'")
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT / "examples/mnist"))  # appended so that nothing else is shadowed

import digit_image  # noqa: E402

MNIST = Path("/work/shared/data/mnist.npz")
if not MNIST.exists():
    MNIST = ROOT.parent / "shared/data/mnist.npz"


@pytest.fixture(scope="module")
def digits():
    if not MNIST.exists():
        pytest.skip("no local mnist.npz")
    with np.load(MNIST, allow_pickle=False) as data:
        return data["x_test"][:60]


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def on_paper(digit: np.ndarray, scale: int = 10, size=(520, 410), at=(40, 90)) -> Image.Image:
    """The digit enlarged ``scale`` times, dark ink on white paper, off centre."""
    big = Image.fromarray(255 - digit).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    page = Image.new("L", size, 255)
    page.paste(big, at)
    return page


def correlation(a, b) -> float:
    return float(np.corrcoef(np.asarray(a, float).ravel(), np.asarray(b, float).ravel())[0, 1])


def centre_of_mass(field):
    ys, xs = np.indices(field.shape)
    mass = field.astype(float).sum()
    return (ys * field).sum() / mass, (xs * field).sum() / mass


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda d: encoded(on_paper(d)), id="png dark on white"),
        pytest.param(lambda d: encoded(on_paper(d).convert("RGB"), "JPEG", quality=85), id="jpeg"),
        pytest.param(lambda d: encoded(Image.fromarray(d).resize((56, 56))), id="png light on black, small"),
        pytest.param(
            lambda d: encoded(Image.merge("RGB", [on_paper(d)] * 2 + [Image.new("L", (520, 410), 200)])),
            id="rgb tinted",
        ),
        pytest.param(
            lambda d: encoded(
                Image.merge("LA", [Image.new("L", (280, 280), 0), Image.fromarray(d).resize((280, 280))])
            ),
            id="black ink on transparent",
        ),
    ],
)
def test_photographed_digits_come_back_as_mnist_digits(digits, make):
    scores = []
    for digit in digits:
        field = digit_image.to_mnist(make(digit))
        assert field.shape == (28, 28) and field.dtype == np.uint8
        assert (
            field.max() == 255 and field[[0, -1]].max() == 0 and field[:, [0, -1]].max() == 0
        )  # light on black, margins
        rows, cols = np.flatnonzero(field.any(1)), np.flatnonzero(field.any(0))
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 22  # the 20x20 box (+ LANCZOS's faint halo)
        cy, cx = centre_of_mass(field)
        assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1
        scores.append(correlation(field, digit))
    assert np.median(scores) > 0.9 and np.percentile(scores, 10) > 0.7, sorted(scores)[:5]


def test_a_blank_image_becomes_a_blank_field():
    assert not digit_image.to_mnist(encoded(Image.new("L", (100, 60), 255))).any()
    assert not digit_image.to_mnist(encoded(Image.new("RGB", (3, 3), "black"))).any()


def png_of_zeros(width: int, height: int) -> bytes:
    """A real grey PNG of width x height black pixels, compressed row by row (a decompression bomb when large)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + pixels
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def animated_png() -> bytes:
    frames = [Image.new("L", (28, 28), level) for level in (0, 255)]
    return encoded(frames[0], save_all=True, append_images=frames[1:], duration=100)


@pytest.mark.parametrize(
    "data, message",
    [
        pytest.param(b"hello, this is text", "not a PNG or JPEG", id="text"),
        pytest.param(b"", "not a PNG or JPEG", id="empty"),
        pytest.param(encoded(Image.new("L", (28, 28)), "GIF"), "not a PNG or JPEG", id="gif"),
        pytest.param(encoded(Image.new("L", (28, 28)), "BMP"), "not a PNG or JPEG", id="bmp"),
        pytest.param(encoded(Image.new("L", (64, 64), 128))[:60], "damaged", id="truncated png"),
        pytest.param(png_of_zeros(6000, 6000), "decompression bomb", id="bomb 36 MP, under Pillow's default limit"),
        pytest.param(png_of_zeros(20000, 20000), "decompression bomb", id="bomb 400 MP, over Pillow's error limit"),
        pytest.param(animated_png(), "animated", id="animated png"),
    ],
)
def test_uploads_that_are_not_one_small_still_png_or_jpeg_are_refused(data, message):
    with pytest.raises(digit_image.ImageError, match=message):
        digit_image.to_mnist(data)


def test_the_bomb_is_small_and_real():
    bomb = png_of_zeros(6000, 6000)
    assert len(bomb) < 100_000  # what makes it a bomb: 36 MB of pixels from a few KB
    with Image.open(io.BytesIO(bomb)) as image:
        assert image.size == (6000, 6000)
    assert 6000 * 6000 > digit_image.MAX_PIXELS
    assert digit_image.to_mnist(png_of_zeros(4000, 4000)).shape == (28, 28)  # 16 MP: under the limit, decoded
