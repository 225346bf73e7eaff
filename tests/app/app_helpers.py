"""Helpers for the app tests: flat-colour drawings and a tiny generator that follows strokes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf

from manga_pix2pix.config import Config, ModelConfig
from manga_pix2pix.data.sketch import sketch
from manga_pix2pix.models import build_models, generator_inputs

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: Set (to 1) where the browser tests must run, as CI does: a missing browser then fails them.
REQUIRE_BROWSER = "MANGA_PIX2PIX_REQUIRE_BROWSER"
#: A path to write the page's screenshot to (docs/images/serve.png is made this way).
SCREENSHOT = "MANGA_PIX2PIX_SCREENSHOT"

TINY = ModelConfig(image_size=32, base_filters=8)
#: The size the stroke model is trained and served at (a multiple of TINY's 32).
WORK_SIZE = 64


def flat_drawing(rng: np.random.Generator, height: int, width: int):
    """A flat-colour drawing: regions split by outlines, each in one colour.

    Returns:
        `(colour, line_art, regions)`: uint8 RGB `[H, W, 3]`, uint8 gray line art `[H, W]`
        (black outlines on white) and an int label map `[H, W]` of the regions.
    """
    regions = np.zeros((height, width), np.int32)
    x = int(rng.uniform(0.35, 0.65) * width)
    regions[:, x:] = 1
    if rng.uniform() < 0.7:
        centre = (int(rng.uniform(0.25, 0.75) * width), int(rng.uniform(0.25, 0.75) * height))
        radius = int(rng.uniform(0.12, 0.25) * min(height, width))
        disc = np.zeros((height, width), np.uint8)
        cv2.circle(disc, centre, radius, 1, -1)
        regions[disc > 0] = 2
    palette = rng.integers(30, 256, (3, 3)).astype(np.uint8)
    colour = palette[regions]
    edges = np.zeros((height, width), np.uint8)
    edges[:, 1:] |= (regions[:, 1:] != regions[:, :-1]).astype(np.uint8)
    edges[1:, :] |= (regions[1:, :] != regions[:-1, :]).astype(np.uint8)
    thick = max(1, min(height, width) // 64)
    edges = cv2.dilate(edges, np.ones((2 * thick + 1, 2 * thick + 1), np.uint8))
    colour[edges > 0] = 20
    line_art = np.where(edges > 0, 20, 255).astype(np.uint8)
    return colour, line_art, regions


def stroke_cues(rng: np.random.Generator, colour: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A few thick random strokes holding the drawing's colours: (cues [-1, 1], mask 0/1)."""
    height, width = colour.shape[:2]
    mask = np.zeros((height, width), np.uint8)
    for _ in range(int(rng.integers(1, 5))):
        p1 = tuple(int(v) for v in rng.integers(0, [width, height]))
        p2 = tuple(int(v) for v in rng.integers(0, [width, height]))
        cv2.line(mask, p1, p2, 1, int(rng.integers(2, max(3, width // 10))))
    mask = mask[..., None].astype(np.float32)
    cues = (colour.astype(np.float32) / 127.5 - 1.0) * mask
    return cues, mask


def train_stroke_model(steps: int = 300, seed: int = 0):
    """A tiny generator trained briefly (L1) to fill regions with the colours of the strokes."""
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    generator, _ = build_models(TINY)
    samples = [flat_drawing(rng, WORK_SIZE, WORK_SIZE) for _ in range(64)]
    images = np.stack([s[0] for s in samples])
    lines = tf.cast(sketch(images), tf.float32) / 127.5 - 1.0
    target = tf.constant(images, tf.float32) / 127.5 - 1.0
    optimizer = keras.optimizers.Adam(3e-3)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.abs(generator(x, training=True) - y))
        grads = tape.gradient(loss, generator.trainable_variables)
        optimizer.apply_gradients(zip(grads, generator.trainable_variables, strict=True))
        return loss

    batch = 8
    for _ in range(steps):
        index = rng.choice(len(samples), batch, replace=False)
        cues, masks = zip(*(stroke_cues(rng, images[j]) for j in index), strict=True)
        x = generator_inputs(tf.gather(lines, index), np.stack(cues), np.stack(masks))
        loss = step(x, tf.gather(target, index))
    return generator, float(loss)


def write_run_dir(path, generator):
    """A minimal run directory: config.json and generator.keras."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(Config(preset="smoke", model=TINY).to_json())
    generator.save(path / "generator.keras")
    return path
