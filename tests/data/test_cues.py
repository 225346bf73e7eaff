"""Cue blur and cue masks: eager, in Dataset.map, against OpenCV, probabilities and seeds."""

import cv2
import numpy as np
import pytest
import tensorflow as tf

from manga_pix2pix.data.cues import (
    NO_CUES,
    CueMaskConfig,
    apply_mask,
    cue_sigma,
    gaussian_blur,
    partial_mask,
    random_cue_mask,
)
from manga_pix2pix.data.synthetic import synthetic_image

TOLERANCE = 2.0 / 255.0


def as_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0


def cv2_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma)


def test_sigma_scales_with_the_short_side():
    assert float(cue_sigma(256, 256)) == pytest.approx(20.0)
    assert float(cue_sigma(512, 1024)) == pytest.approx(40.0)
    assert float(cue_sigma(64, 37)) == pytest.approx(20.0 * 37 / 256)


@pytest.mark.parametrize("size", [(64, 64), (37, 53), (256, 256)])
def test_matches_opencv_with_the_default_sigma(make_natural_image, size):
    for image in (make_natural_image(0, *size), synthetic_image(1, size)):
        image = as_float(image)
        sigma = 20.0 * min(size) / 256.0
        ours = gaussian_blur(image).numpy()
        assert ours.shape == image.shape and ours.dtype == np.float32
        assert np.abs(ours - cv2_blur(image, sigma)).max() <= TOLERANCE


def test_matches_opencv_when_the_kernel_is_wider_than_the_image(make_natural_image):
    image = as_float(make_natural_image(2, 37, 53))
    ours = gaussian_blur(image, sigma=20.0).numpy()
    assert np.abs(ours - cv2_blur(image, 20.0)).max() <= TOLERANCE


def test_large_image_takes_the_reduced_path_and_stays_within_tolerance():
    # 900 px short side > 512: blurred at half resolution, then resized back.
    image = as_float(synthetic_image(3, (1200, 900)))
    sigma = 20.0 * 900 / 256.0
    ours = gaussian_blur(image).numpy()
    assert ours.shape == image.shape
    reference = cv2_blur(image, sigma)
    assert np.abs(ours - reference).max() <= TOLERANCE
    exact = gaussian_blur(image, max_exact_size=1024).numpy()
    assert np.abs(exact - reference).max() < 1e-4
    assert not np.allclose(exact, ours, atol=1e-5), "the reduced path was not taken"


def test_uint8_input_is_scaled(make_natural_image):
    image = make_natural_image(4, 32, 40)
    np.testing.assert_allclose(
        gaussian_blur(image, 3.0).numpy(), gaussian_blur(as_float(image), 3.0).numpy(), atol=1e-6
    )


def test_normalised_and_in_range(make_natural_image):
    flat = np.full((30, 40, 3), 0.6, np.float32)
    np.testing.assert_allclose(gaussian_blur(flat).numpy(), 0.6, atol=1e-5)
    out = gaussian_blur(as_float(make_natural_image(5, 40, 40))).numpy()
    assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-6


def test_batched_equals_one_by_one_and_inside_dataset_map(make_natural_image):
    images = np.stack([as_float(make_natural_image(s, 37, 53)) for s in range(3)])
    batched = gaussian_blur(images).numpy()
    assert batched.shape == images.shape
    for i in range(3):
        np.testing.assert_allclose(batched[i], gaussian_blur(images[i]).numpy(), atol=1e-6)
    mapped = tf.data.Dataset.from_tensor_slices(images).map(gaussian_blur)
    np.testing.assert_allclose(np.stack(list(mapped.as_numpy_iterator())), batched, atol=1e-6)
    mapped_batches = tf.data.Dataset.from_tensor_slices(images).batch(3).map(gaussian_blur)
    np.testing.assert_allclose(next(iter(mapped_batches)).numpy(), batched, atol=1e-6)


def test_cue_mask_config_validates():
    with pytest.raises(ValueError, match="p_full"):
        CueMaskConfig(p_full=0.5, p_partial=0.6, p_none=0.0)
    with pytest.raises(ValueError, match="p_full"):
        CueMaskConfig(p_full=-0.1, p_partial=1.0, p_none=0.1)


def _classify(masks: np.ndarray) -> np.ndarray:
    """0 = none, 1 = partial, 2 = full, for masks `[N, H, W, 1]`."""
    share = masks.reshape(len(masks), -1).mean(axis=1)
    return np.where(share == 0.0, 0, np.where(share == 1.0, 2, 1))


def _masks(config: CueMaskConfig, n: int, size: int = 24, base: int = 0) -> np.ndarray:
    ds = tf.data.Dataset.range(n).map(
        lambda i: random_cue_mask(size, size, tf.stack([tf.constant(base, tf.int64), i]), config)
    )
    return np.stack(list(ds.as_numpy_iterator()))


def test_mask_kinds_follow_their_probabilities():
    config = CueMaskConfig(p_full=0.3, p_partial=0.5, p_none=0.2)
    masks = _masks(config, 400)
    assert masks.shape == (400, 24, 24, 1) and masks.dtype == np.float32
    assert set(np.unique(masks)) <= {0.0, 1.0}
    counts = np.bincount(_classify(masks), minlength=3) / len(masks)
    # 400 draws: a standard error of at most 2.5 points; allow about 3 of them.
    np.testing.assert_allclose(counts, [0.2, 0.5, 0.3], atol=0.075)


def test_partial_masks_are_neither_empty_nor_full():
    config = CueMaskConfig(p_full=0.0, p_partial=1.0, p_none=0.0)
    for size in (16, 48):
        share = _masks(config, 100, size).reshape(100, -1).mean(axis=1)
        assert share.min() > 0.0 and share.max() < 1.0, size
        # Each mask has its own shape.
        assert len(np.unique(share)) > 50


def test_masks_are_deterministic_by_seed_and_eager_equals_map():
    config = CueMaskConfig(p_full=0.0, p_partial=1.0, p_none=0.0)
    a = _masks(config, 5, base=7)
    np.testing.assert_array_equal(a, _masks(config, 5, base=7))
    assert not np.array_equal(a, _masks(config, 5, base=8))
    eager = random_cue_mask(24, 24, tf.constant([7, 3], tf.int64), config).numpy()
    np.testing.assert_array_equal(eager, a[3])


def test_partial_mask_on_a_non_square_image():
    mask = partial_mask(37, 53, tf.constant([1, 2], tf.int64), CueMaskConfig())
    assert mask.shape == (37, 53, 1)
    assert 0.0 < float(tf.reduce_mean(mask)) < 1.0


def test_no_cues_never_gives_a_cue():
    assert not _masks(NO_CUES, 50).any()


def test_apply_mask_puts_zero_outside_the_mask():
    cues = tf.fill([4, 4, 3], -0.7)
    mask = tf.constant(np.tri(4, dtype=np.float32)[..., None])
    out = apply_mask(cues, mask).numpy()
    np.testing.assert_allclose(out[np.tri(4) == 1], -0.7)
    np.testing.assert_array_equal(out[np.tri(4) == 0], 0.0)


# -- The artist cue style ----------------------------------------------------------------------

from manga_pix2pix.data.cues import (  # noqa: E402
    artist_cues,
    highlighter_layer,
    masked_median,
    stroke_cues,
)


def flat_regions(seed: int, size: int = 64) -> np.ndarray:
    """Flat-colour rectangles and discs, float RGB in [0, 1]."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), 255, np.uint8)
    for _ in range(5):
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        x, y = (int(v) for v in rng.integers(0, size, 2))
        cv2.rectangle(image, (x, y), (x + size // 3, y + size // 4), colour, -1)
    return as_float(image)


def test_masked_median_is_numpys_lower_median():
    rng = np.random.default_rng(0)
    values = rng.random((9, 11, 3)).astype(np.float32)
    masks = (rng.random((9, 11, 4)) < 0.3).astype(np.float32)
    masks[..., 3] = 0.0  # an empty mask gives 0
    ours = masked_median(tf.constant(values), tf.constant(masks)).numpy()
    for k in range(3):
        picked = np.sort(values[masks[..., k] > 0], axis=0)
        np.testing.assert_allclose(ours[k], picked[(len(picked) - 1) // 2], atol=0)
    np.testing.assert_array_equal(ours[3], 0.0)


@pytest.mark.parametrize("seed", range(4))
def test_stroke_colours_are_the_median_true_colour_under_them(seed):
    image = flat_regions(seed)
    colours, mask = stroke_cues(tf.constant(image), tf.constant([seed, 2], tf.int64))
    colours, mask = colours.numpy(), mask.numpy()[..., 0]
    assert mask.sum() > 0 and set(np.unique(mask)) <= {0.0, 1.0}
    np.testing.assert_array_equal(colours[mask == 0], 0.0)
    # Each stroke is one flat colour that the image really has (its median under the
    # stroke), and pixels are kept only where the image is close to it: in flat regions
    # the cue equals the true colour under it.
    painted = colours[mask > 0]
    assert np.abs(painted - image[mask > 0]).max() <= 0.12 + 1e-6
    image_colours = {tuple(c) for c in image.reshape(-1, 3)}
    assert {tuple(c) for c in painted} <= image_colours


def test_stroke_cues_are_seeded_and_vary():
    image = tf.constant(flat_regions(1))
    a = stroke_cues(image, tf.constant([5, 5], tf.int64))[1].numpy()
    b = stroke_cues(image, tf.constant([5, 5], tf.int64))[1].numpy()
    c = stroke_cues(image, tf.constant([6, 5], tf.int64))[1].numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_highlighter_layer_is_not_the_blurred_truth():
    image = tf.constant(flat_regions(3))
    blurred = gaussian_blur(image).numpy()
    layers = [highlighter_layer(image, tf.constant([s, 0], tf.int64)).numpy() for s in range(4)]
    for layer in layers:
        assert layer.shape == (64, 64, 3) and layer.min() >= 0.0 and layer.max() <= 1.0
        assert np.abs(layer - blurred).mean() > 0.003
        # Still a layer of the image's colours: close to the blur on average.
        assert np.abs(layer - blurred).mean() < 0.15
    assert not np.array_equal(layers[0], layers[1])


def test_artist_cues_in_dataset_map_equal_eager_and_mix_the_kinds():
    images = np.stack([flat_regions(i, 32) for i in range(30)])
    config = CueMaskConfig(p_full=0.4, p_partial=0.4, p_none=0.2)

    def make(i, image):
        return artist_cues(image, tf.stack([tf.constant(3, tf.int64), i]), config)

    ds = tf.data.Dataset.from_tensor_slices(images).enumerate().map(make)
    kinds = set()
    for i, (cues, mask) in enumerate(ds):
        eager_cues, eager_mask = make(tf.constant(i, tf.int64), tf.constant(images[i]))
        np.testing.assert_allclose(cues.numpy(), eager_cues.numpy(), atol=1e-6)
        np.testing.assert_array_equal(mask.numpy(), eager_mask.numpy())
        assert cues.shape == (32, 32, 3) and mask.shape == (32, 32, 1)
        assert float(tf.reduce_min(cues)) >= -1.0 and float(tf.reduce_max(cues)) <= 1.0
        np.testing.assert_array_equal(cues.numpy()[mask.numpy()[..., 0] == 0], 0.0)
        share = float(tf.reduce_mean(mask))
        kinds.add("none" if share == 0 else "full" if share == 1 else "strokes")
    assert kinds == {"none", "full", "strokes"}
