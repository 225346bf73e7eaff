"""Shared fixtures: tiny generated images, so no test needs files from outside the repository."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def natural_image(seed: int, height: int, width: int) -> np.ndarray:
    """A photo-like uint8 RGB image: smooth random colour fields, soft shading and dark lines.

    Unlike the flat cel-style synthetic source, it has gradients everywhere and lines of many
    widths and contrasts, which is where a re-implemented threshold or blur would disagree.
    """
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (max(2, height // 12), max(2, width // 12), 3)).astype(np.float32)
    img = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0.0, 3.0, img.shape).astype(np.float32)
    for _ in range(max(3, (height + width) // 16)):
        p1 = tuple(int(v) for v in rng.integers(0, [width, height]))
        p2 = tuple(int(v) for v in rng.integers(0, [width, height]))
        shade = float(rng.uniform(0, 90))
        cv2.line(img, p1, p2, (shade, shade, shade), int(rng.integers(1, 4)), cv2.LINE_AA)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


@pytest.fixture
def make_natural_image():
    """The `natural_image(seed, height, width)` generator."""
    return natural_image


def write_encoded(path, image: np.ndarray, *params: int) -> None:
    """Writes an RGB(A) or gray uint8 array with OpenCV in the format of `path`'s suffix."""
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(os.path.splitext(str(path))[1], image, list(params))
    assert ok, path
    with open(path, "wb") as f:
        f.write(buf.tobytes())


@pytest.fixture
def write_encoded_file():
    """The `write_encoded(path, image, *params)` helper.

    A fixture rather than an import: test folders have conftest files of their own, so
    `import conftest` may find another one.
    """
    return write_encoded


def _palette_png(image: np.ndarray) -> bytes:
    """Encodes an RGB image with few colours as an 8-bit palette (colour type 3) PNG."""
    import struct
    import zlib

    colours, index = np.unique(image.reshape(-1, 3), axis=0, return_inverse=True)
    assert len(colours) <= 256
    height, width = image.shape[:2]

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = index.reshape(height, width).astype(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0))
        + chunk(b"PLTE", colours.astype(np.uint8).tobytes())
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def mixed_image_folder(tmp_path):
    """A folder of 8 small images in mixed formats and sizes; returns its path.

    PNG, JPEG, WebP, BMP, grayscale PNG, RGBA PNG, palette PNG, and non-square ones (portrait
    and landscape), plus a text file that must be ignored.
    """
    from manga_pix2pix.data.synthetic import synthetic_image

    folder = tmp_path / "images"
    folder.mkdir()
    write_encoded(folder / "a_rgb.png", synthetic_image(1, (40, 40)))
    write_encoded(folder / "b_photo.jpg", natural_image(2, 48, 64), cv2.IMWRITE_JPEG_QUALITY, 90)
    write_encoded(
        folder / "c_web.webp", synthetic_image(3, (64, 36)), cv2.IMWRITE_WEBP_QUALITY, 101
    )
    write_encoded(
        folder / "d_gray.png", cv2.cvtColor(natural_image(4, 37, 53), cv2.COLOR_RGB2GRAY)
    )
    rgba = np.dstack([synthetic_image(5, (50, 45)), np.full((50, 45), 200, np.uint8)])
    rgba[:10, :, 3] = 0
    write_encoded(folder / "e_alpha.png", rgba)
    flat = (synthetic_image(6, (33, 70)) // 64 * 64).astype(np.uint8)
    (folder / "f_palette.png").write_bytes(_palette_png(flat))
    write_encoded(folder / "g_big.bmp", natural_image(7, 120, 90))
    write_encoded(folder / "h_tiny.png", synthetic_image(8, (8, 12)))
    (folder / "notes.txt").write_text("not an image")
    return folder
