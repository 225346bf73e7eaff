"""Batched derivation: per-example randomness, vectorised masks, and host = device = one by one."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from manga_pix2pix.data import derive
from manga_pix2pix.data.cues import (
    NO_CUES,
    CueMaskConfig,
    _blur_matrix,
    gaussian_blur,
    masked_median,
)
from manga_pix2pix.data.pipeline import prepare_example
from manga_pix2pix.data.sketch import XDOG_SIGMAS, SketchConfig, pencil, sketch, xdog

SIZE = 48


def _images(make_natural_image, n: int) -> np.ndarray:
    return np.stack([make_natural_image(i, SIZE, SIZE) for i in range(n)])


def _seeds(n: int, seed: int = 7, first: int = 0) -> tf.Tensor:
    index = tf.range(first, first + n, dtype=tf.int64)
    return tf.stack([tf.fill([n], tf.constant(seed, tf.int64)), index], axis=1)


def test_per_example_uniform_depends_on_each_seed_alone():
    seeds = _seeds(6)
    u = derive.per_example_uniform(seeds, 50, stream=3).numpy()
    assert u.shape == (6, 50) and u.dtype == np.float32
    assert u.min() >= 0.0 and u.max() < 1.0
    # The same seed gives the same numbers at any place in any batch.
    shuffled = tf.gather(seeds, [4, 0, 5])
    np.testing.assert_array_equal(derive.per_example_uniform(shuffled, 50, 3).numpy(),
                                  u[[4, 0, 5]])
    # Other seeds, other streams: other numbers.
    assert not np.allclose(u[0], u[1])
    assert not np.allclose(derive.per_example_uniform(seeds, 50, stream=4).numpy(), u)
    big = tf.constant([[2**40 + 1, 5], [1, 5]], tf.int64)
    high = derive.per_example_uniform(big, 8, 3).numpy()
    assert not np.allclose(high[0], high[1])  # the high 32 bits count


def test_per_example_uniform_is_roughly_uniform():
    u = derive.per_example_uniform(_seeds(200), 100, stream=1).numpy().ravel()
    counts, _ = np.histogram(u, bins=10, range=(0, 1))
    assert counts.min() > 0.9 * u.size / 10 and counts.max() < 1.1 * u.size / 10
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.02


def test_partial_masks_are_batched_strokes_and_blobs():
    seeds = _seeds(32)
    masks = derive.partial_masks(SIZE, SIZE, seeds, CueMaskConfig()).numpy()
    assert masks.shape == (32, SIZE, SIZE, 1)
    assert set(np.unique(masks)) <= {0.0, 1.0}
    cover = masks.mean(axis=(1, 2, 3))
    assert cover.min() > 0.0 and cover.max() < 1.0  # never empty, never the whole image
    assert len({m.tobytes() for m in masks}) == 32  # each example its own shapes
    one = derive.partial_masks(SIZE, SIZE, seeds[5:6], CueMaskConfig()).numpy()
    np.testing.assert_array_equal(one[0], masks[5])
    # Strokes only: at most `max_strokes` thick segments, so less cover than with blobs.
    strokes = derive.partial_masks(SIZE, SIZE, seeds, CueMaskConfig(max_blobs=0)).numpy()
    assert np.all(strokes <= masks)


def test_cue_mask_kinds_follow_the_odds():
    seeds = _seeds(400)
    masks = derive.random_cue_masks(16, 16, seeds, CueMaskConfig()).numpy()
    cover = masks.mean(axis=(1, 2, 3))
    full, none = np.mean(cover == 1.0), np.mean(cover == 0.0)
    assert 0.42 < full < 0.58 and 0.05 < none < 0.16
    assert np.all(derive.random_cue_masks(16, 16, seeds, NO_CUES).numpy() == 0.0)


def test_derive_batch_values_and_ranges(make_natural_image):
    images = _images(make_natural_image, 4)
    out = derive.derive_batch(images, _seeds(4), CueMaskConfig())
    assert {k: v.shape for k, v in out.items()} == {
        "image": (4, SIZE, SIZE, 3), "sketch": (4, SIZE, SIZE, 1),
        "cues": (4, SIZE, SIZE, 3), "cue_mask": (4, SIZE, SIZE, 1),
    }
    np.testing.assert_allclose(out["image"], images / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_array_equal(out["sketch"], sketch(images).numpy() / 127.5 - 1.0)
    # The low-rank blur: within 1e-4 of the exact one (1/255 is 4e-3).
    blurred = gaussian_blur(images.astype(np.float32) / 255.0).numpy() * 2.0 - 1.0
    np.testing.assert_allclose(out["cues"], blurred * out["cue_mask"], atol=2e-4)
    with pytest.raises(ValueError, match="images_uint8"):
        derive.derive_batch(images.astype(np.float32), _seeds(4), CueMaskConfig())


def test_derive_batch_in_a_graph_with_unknown_batch_and_size(make_natural_image):
    images = _images(make_natural_image, 3)
    spec = (tf.TensorSpec([None, None, None, 3], tf.uint8), tf.TensorSpec([None, 2], tf.int64))
    graph = tf.function(lambda x, s: derive.derive_batch(x, s, CueMaskConfig()),
                        input_signature=spec)
    eager = derive.derive_batch(images, _seeds(3), CueMaskConfig())
    # Unknown sizes take the general ops (the exact blur): the same to float rounding.
    for key, value in graph(images, _seeds(3)).items():
        np.testing.assert_allclose(value, eager[key], atol=2e-4 if key == "cues" else 1e-6)


@pytest.mark.parametrize("size", [64, 256, 100])
def test_the_batched_sketch_is_the_sketch_bit_for_bit(make_natural_image, size):
    images = np.stack([make_natural_image(i, size, size + 8) for i in range(3)])
    np.testing.assert_array_equal(derive.sketch_batch(tf.constant(images)).numpy(),
                                  sketch(images).numpy())


def test_coarse_mask_fields_keep_the_edges(make_natural_image):
    # At 256 px the fields are computed 4 x coarser and interpolated: against the same
    # fields at full resolution, only pixels at the very edge of a shape may differ.
    seeds = _seeds(8)
    config = CueMaskConfig()
    coarse = derive.partial_masks(256, 256, seeds, config).numpy()
    assert derive._field_factor(256, 256) == 4
    exact = derive.partial_masks(tf.constant(256), tf.constant(256), seeds, config).numpy()
    differ = np.mean(coarse != exact)
    assert differ < 0.01, differ
    assert np.all(coarse.mean(axis=(1, 2, 3)) > 0)


def test_a_batch_gives_what_prepare_example_gives_one_by_one(make_natural_image):
    images = _images(make_natural_image, 5)
    batch = derive.derive_batch(images, _seeds(5), CueMaskConfig())
    for i in range(5):
        one = prepare_example(images[i], seed=_seeds(5)[i], training=False,
                              cue_masks=CueMaskConfig(), image_size=SIZE)
        for key, value in one.items():
            np.testing.assert_allclose(value, batch[key][i], atol=1e-6)


@pytest.mark.parametrize("style", ["xdog", "pencil"])
def test_a_pinned_style_is_the_per_example_op(make_natural_image, style):
    images = _images(make_natural_image, 6)
    out = derive.styled_sketches(tf.constant(images), _seeds(6),
                                 SketchConfig.pinned(style)).numpy()
    sigmas = XDOG_SIGMAS if style == "xdog" else [None]
    used = set()
    for i in range(6):
        # The style's op with one of its sigmas, or (rejected) the adaptive threshold.
        candidates = {s: (xdog(images[i], s) if style == "xdog" else pencil(images[i])).numpy()
                      for s in sigmas}
        candidates["adaptive"] = sketch(images[i]).numpy() / 255.0
        match = [s for s, c in candidates.items() if np.allclose(out[i], c, atol=1e-6)]
        assert match, i
        used.update(match)
    if style == "xdog":
        assert len(used - {"adaptive"}) >= 2  # sigmas drawn per example


def test_masked_medians_by_histogram_are_the_sorted_medians(make_natural_image):
    image = make_natural_image(3, 20, 24)
    rng = np.random.default_rng(0)
    masks = rng.uniform(size=(20, 24, 5)) < np.array([0.0, 0.01, 0.2, 0.5, 1.0])
    expected = masked_median(tf.constant(image, tf.float32) / 255.0,
                             tf.constant(masks, tf.float32)).numpy()
    levels = tf.constant(image.reshape(1, -1, 3), tf.int32)
    got = derive.masked_medians(levels, tf.constant(masks.reshape(1, -1, 5))).numpy()[0]
    np.testing.assert_allclose(got, expected, atol=1e-7)


def test_blur_matrices_for_one_sigma_each_are_the_blur_matrix():
    sigmas = tf.constant([2.0, 7.5, 30.0])
    got = derive._blur_matrices(16, sigmas).numpy()
    for i, sigma in enumerate([2.0, 7.5, 30.0]):
        np.testing.assert_allclose(got[i], _blur_matrix(tf.constant(16), tf.constant(sigma)),
                                   atol=1e-6)


MIXES = [
    (SketchConfig(p_adaptive=0.2, p_xdog=0.3, p_pencil=0.5, augment=True), "artist"),
    (SketchConfig(p_adaptive=0.2, p_xdog=0.3, p_pencil=0.5), "paper"),
]


@pytest.mark.parametrize(("sketches", "cue_style"), MIXES)
def test_styles_and_artist_cues_depend_on_each_examples_seed_alone(make_natural_image,
                                                                   sketches, cue_style):
    images = _images(make_natural_image, 8)
    config = CueMaskConfig(p_full=0.4, p_partial=0.4, p_none=0.2)
    batch = derive.derive_batch(images, _seeds(8), config, sketches=sketches,
                                cue_style=cue_style)
    part = derive.derive_batch(images[[6, 1]], tf.gather(_seeds(8), [6, 1]), config,
                               sketches=sketches, cue_style=cue_style)
    for key, value in part.items():
        np.testing.assert_allclose(value[0], batch[key][6], atol=1e-5)
        np.testing.assert_allclose(value[1], batch[key][1], atol=1e-5)
    assert batch["sketch"].numpy().min() >= -1 and batch["sketch"].numpy().max() <= 1
    cues, mask = batch["cues"].numpy(), batch["cue_mask"].numpy()
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert np.all(cues[np.broadcast_to(mask, cues.shape) == 0] == 0)
    assert np.abs(cues).max() <= 1.0


def test_artist_strokes_are_flat_colours_of_the_truth(make_natural_image):
    images = _images(make_natural_image, 6)
    colours, mask = derive.stroke_cues_batch(tf.constant(images), _seeds(6), max_strokes=8)
    colours, mask = colours.numpy(), mask.numpy()
    truth = images / 255.0
    for i in range(6):
        inside = mask[i, ..., 0] > 0
        assert inside.any()
        # Each painted pixel is within the tolerance of the truth under it.
        assert np.all(np.linalg.norm(colours[i][inside] - truth[i][inside], axis=-1) <= 0.121)
        assert len(np.unique(colours[i][inside], axis=0)) <= 8


def test_highlighter_layers_are_not_the_truth_blurred(make_natural_image):
    images = _images(make_natural_image, 6).astype(np.float32) / 255.0
    layers = derive.highlighter_layers(tf.constant(images), _seeds(6)).numpy()
    exact = gaussian_blur(images).numpy()
    assert layers.shape == images.shape and layers.min() >= 0 and layers.max() <= 1
    differences = np.abs(layers - exact).mean(axis=(1, 2, 3))
    assert np.all(differences > 1e-3) and len(set(np.round(differences, 6))) == 6


def _mosaic_reference(images, i):
    """Images i..i+3 (mod B) shrunk to half by 2 x 2 averages and tiled, in NumPy."""
    n, h, w, _ = images.shape
    halves = [images[(i + k) % n].astype(np.float64).reshape(h // 2, 2, w // 2, 2, 3)
              .mean(axis=(1, 3)) for k in range(4)]
    tiled = np.concatenate([np.concatenate(halves[:2], 1), np.concatenate(halves[2:], 1)], 0)
    return np.round(tiled)


def test_mosaic_tiles_the_batch_at_half_scale_for_the_chosen_examples(make_natural_image):
    images = _images(make_natural_image, 5)[:, :16, :16]
    seeds = tf.constant([[3, s] for s in range(5)], tf.int64)
    every = derive.mosaic_batch(images, seeds, 1.0).numpy()
    assert every.dtype == np.uint8 and every.shape == images.shape
    for i in range(5):
        np.testing.assert_allclose(every[i], _mosaic_reference(images, i), atol=1)
    np.testing.assert_array_equal(derive.mosaic_batch(images, seeds, 0.0).numpy(), images)
    # Half the examples, chosen by each one's seed; the others are left as they were.
    half = derive.mosaic_batch(images, seeds, 0.5).numpy()
    chosen = derive.per_example_uniform(seeds, 1, derive.MOSAIC_STREAM).numpy()[:, 0] < 0.5
    for i in range(5):
        np.testing.assert_array_equal(half[i], every[i] if chosen[i] else images[i])
    with pytest.raises(ValueError, match="share"):
        derive.mosaic_batch(images, seeds, 1.5)


def test_mosaic_in_dataset_map_and_its_share(make_natural_image):
    images = np.tile(_images(make_natural_image, 4)[:, :8, :8], (100, 1, 1, 1))
    seeds = np.stack([np.full(400, 9), np.arange(400)], 1).astype(np.int64)
    eager = derive.mosaic_batch(images, seeds, 0.3).numpy()
    ds = tf.data.Dataset.from_tensors((images, seeds)).map(
        lambda x, s: derive.mosaic_batch(x, s, 0.3))
    np.testing.assert_array_equal(next(iter(ds)).numpy(), eager)
    changed = np.mean([not np.array_equal(a, b) for a, b in zip(eager, images, strict=True)])
    assert 0.22 < changed < 0.38
    other = derive.mosaic_batch(images, seeds + [1, 0], 0.3).numpy()
    assert not np.array_equal(other, eager)
