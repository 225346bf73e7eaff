"""Helpers for the inference tests: generated line art, cue files and tiny generators."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import tensorflow as tf

from manga_pix2pix.config import Config, ModelConfig
from manga_pix2pix.data.cues import gaussian_blur
from manga_pix2pix.data.sketch import sketch
from manga_pix2pix.data.synthetic import synthetic_image
from manga_pix2pix.models import build_models, generator_inputs

TINY = ModelConfig(image_size=32, base_filters=8)


def line_art(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Grey anti-aliased line art on white paper, as an artist draws it: uint8 `[H, W]`."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width), 255, np.uint8)
    scale = max(1, min(height, width) // 48)
    for _ in range(6):
        p1 = tuple(int(v) for v in rng.integers(0, [width, height]))
        p2 = tuple(int(v) for v in rng.integers(0, [width, height]))
        grey = int(rng.integers(0, 90))
        cv2.line(image, p1, p2, grey, int(rng.integers(1, 3)) * scale, cv2.LINE_AA)
    centre = (width // 2, height // 2)
    axes = (max(2, width // 4), max(2, height // 4))
    cv2.ellipse(image, centre, axes, 20, 0, 360, 30, scale, cv2.LINE_AA)
    return image


def palette_png(index: np.ndarray, palette, alpha=None) -> bytes:
    """An 8-bit palette PNG (colour type 3), with a tRNS transparency chunk if `alpha`."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    height, width = index.shape
    raw = b"".join(b"\x00" + row.astype(np.uint8).tobytes() for row in index)
    out = b"\x89PNG\r\n\x1a\n" + chunk(
        b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    )
    out += chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes())
    if alpha is not None:
        out += chunk(b"tRNS", np.asarray(alpha, np.uint8).tobytes())
    return out + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def encode(image: np.ndarray, suffix: str, *params: int) -> bytes:
    """Encodes a uint8 gray, RGB or RGBA array with OpenCV."""
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(suffix, image, list(params))
    assert ok
    return buf.tobytes()


def write_run_dir(path, generator, config: Config | None = None):
    """A minimal run directory: config.json and generator.keras."""
    path.mkdir(parents=True, exist_ok=True)
    config = config or Config(preset="smoke", model=TINY)
    (path / "config.json").write_text(config.to_json())
    generator.save(path / "generator.keras")
    return path


def train_tiny(steps: int = 60, seed: int = 0):
    """A tiny generator trained for a few dozen L1 steps on synthetic images with full cues.

    Enough for its colours to follow the cues (it learns to pass them through), which is
    what the tests that need a trained model check.
    """
    import keras

    keras.utils.set_random_seed(seed)
    generator, _ = build_models(TINY)
    images = np.stack([synthetic_image(seed + i, 32) for i in range(16)])
    target = tf.constant(images, tf.float32) / 127.5 - 1.0
    lines = tf.cast(sketch(images), tf.float32) / 127.5 - 1.0
    cues = gaussian_blur(images) * 2.0 - 1.0
    x = generator_inputs(lines, cues, tf.ones_like(lines))
    optimizer = keras.optimizers.Adam(2e-3)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.abs(generator(x, training=True) - y))
        grads = tape.gradient(loss, generator.trainable_variables)
        optimizer.apply_gradients(zip(grads, generator.trainable_variables, strict=True))
        return loss

    for i in range(steps):
        batch = slice((i * 4) % 16, (i * 4) % 16 + 4)
        step(x[batch], target[batch])
    return generator
