"""Sketch styles (XDoG, pencil, line jitter, the style mix): eager, in Dataset.map, seeds."""

import cv2
import numpy as np
import pytest
import tensorflow as tf

from manga_pix2pix.data.sketch import (
    PAPER_SKETCHES,
    XDOG_SIGMAS,
    SketchConfig,
    adaptive,
    augment_lines,
    line_share,
    pencil,
    styled_sketch,
    xdog,
)
from manga_pix2pix.data.synthetic import synthetic_image


def xdog_reference(image: np.ndarray, sigma: float) -> np.ndarray:
    """XDoG with OpenCV's blur and NumPy, AlacGAN's values, binarised: 1 paper, 0 line."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    u = cv2.GaussianBlur(gray, (0, 0), sigma) - 0.95 * cv2.GaussianBlur(gray, (0, 0), 4.5 * sigma)
    soft = np.where(u >= -0.1, 1.0, 1.0 + np.tanh(1e9 * (u + 0.1)))
    return (soft >= 0.5).astype(np.float32)


@pytest.mark.parametrize("sigma", XDOG_SIGMAS)
@pytest.mark.parametrize("size", [(64, 64), (45, 70)])
def test_xdog_matches_opencv_and_numpy(make_natural_image, sigma, size):
    for image in (make_natural_image(4, *size), synthetic_image(5, size)):
        ours = xdog(image, sigma).numpy()
        assert ours.shape == (*size, 1) and ours.dtype == np.float32
        assert set(np.unique(ours)) <= {0.0, 1.0}
        reference = xdog_reference(image, sigma)
        assert (ours[..., 0] == reference).mean() >= 0.999
        # The op draws lines at all: a synthetic drawing has outlines.
        assert (reference == 0).mean() > 0.005


def test_xdog_and_pencil_work_batched_like_one_by_one():
    images = np.stack([synthetic_image(i, 48) for i in range(3)])
    for op in (lambda x: xdog(x, 0.4), pencil, adaptive):
        batched = op(images).numpy()
        assert batched.shape == (3, 48, 48, 1)
        for i in range(3):
            np.testing.assert_allclose(batched[i], op(images[i]).numpy(), atol=1e-6)


def test_pencil_is_grey_and_keeps_flat_areas_as_paper():
    image = np.full((64, 64, 3), 90, np.uint8)  # a dark flat area...
    cv2.circle(image, (32, 32), 16, (230, 200, 180), -1)  # ...with a light disc on it
    out = pencil(image).numpy()[..., 0]
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert out[5, 5] == pytest.approx(1.0) and out[32, 32] == pytest.approx(1.0)
    ring = out[32, 32 - 17:32 - 14]  # just outside the disc's edge, on the dark side
    assert ring.min() < 0.8  # a visible grey stroke
    # Grey, anti-aliased: levels between ink and paper occur.
    assert ((out > 0.05) & (out < 0.95)).sum() > 10


def test_line_jitter_is_seeded_bounded_and_varies():
    sketch = xdog(synthetic_image(2, 64), 0.5)
    outs = [augment_lines(sketch, tf.constant([s, 1], tf.int64)).numpy() for s in range(6)]
    again = augment_lines(sketch, tf.constant([0, 1], tf.int64)).numpy()
    np.testing.assert_array_equal(outs[0], again)
    for out in outs:
        assert out.shape == (64, 64, 1) and out.min() >= 0.0 and out.max() <= 1.0
    shares = {round(float(line_share(o)), 4) for o in outs}
    assert len(shares) > 1  # thickness changes the share of line pixels


def test_style_mix_draws_every_style_with_its_probability():
    image = tf.constant(synthetic_image(7, 64), tf.float32) / 255.0
    config = SketchConfig(p_adaptive=0.2, p_xdog=0.3, p_pencil=0.5)
    refs = {
        "adaptive": adaptive(image).numpy(),
        "pencil": pencil(image).numpy(),
        **{f"xdog{s}": xdog(image, s).numpy() for s in XDOG_SIGMAS},
    }
    counts = dict.fromkeys(refs, 0)
    n = 200
    for i in range(n):
        out = styled_sketch(image, tf.constant([i, 3], tf.int64), config).numpy()
        match = [k for k, v in refs.items() if np.array_equal(out, v)]
        assert match, "each sketch is one of the styles"
        counts[match[0]] += 1
    assert abs(counts["adaptive"] / n - 0.2) < 0.08
    assert abs(counts["pencil"] / n - 0.5) < 0.1
    assert all(counts[f"xdog{s}"] > 0 for s in XDOG_SIGMAS)


def test_rejected_sketches_fall_back_to_the_adaptive_threshold():
    flat = tf.fill([32, 32, 3], 0.6)  # XDoG and pencil draw nothing here
    out = styled_sketch(flat, tf.constant([1, 1], tf.int64), SketchConfig.pinned("xdog"))
    np.testing.assert_array_equal(out.numpy(), adaptive(flat).numpy())


def test_styles_in_dataset_map_equal_eager():
    images = np.stack([synthetic_image(i, 32) for i in range(4)]).astype(np.float32) / 255.0
    config = SketchConfig(p_adaptive=0.2, p_xdog=0.3, p_pencil=0.5, augment=True)

    def make(i, image):
        return styled_sketch(image, tf.stack([tf.constant(9, tf.int64), i]), config)

    ds = tf.data.Dataset.from_tensor_slices(images).enumerate().map(make)
    for i, mapped in enumerate(ds):
        eager = make(tf.constant(i, tf.int64), tf.constant(images[i]))
        np.testing.assert_allclose(mapped.numpy(), eager.numpy(), atol=1e-6)
        assert mapped.shape == (32, 32, 1)
        assert float(tf.reduce_min(mapped)) >= 0.0 and float(tf.reduce_max(mapped)) <= 1.0


def test_the_paper_config_is_the_adaptive_threshold_and_bad_mixes_are_refused():
    image = synthetic_image(1, 32)
    np.testing.assert_array_equal(
        styled_sketch(tf.constant(image), tf.constant([0, 0], tf.int64), PAPER_SKETCHES),
        adaptive(image),
    )
    with pytest.raises(ValueError, match="p_adaptive"):
        SketchConfig(p_adaptive=0.5, p_xdog=0.1, p_pencil=0.1)
    with pytest.raises(ValueError, match="style"):
        SketchConfig.pinned("charcoal")
