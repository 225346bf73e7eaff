"""Metrics against values computed by hand on tiny images."""

import math

import numpy as np
import pytest
import tensorflow as tf

from manga_pix2pix.evaluation.metrics import (
    fast_image_metrics,
    format_metric,
    image_metrics,
    mean_metrics,
)


def constant(value, size=16, batch=None):
    shape = (size, size, 3) if batch is None else (batch, size, size, 3)
    return np.full(shape, value, np.float32)


def test_l1_of_constant_images():
    m = image_metrics(constant(0.25), constant(0.75))
    assert float(m["l1"]) == pytest.approx(0.5)


def test_metrics_are_per_image_in_a_batch():
    pred = np.stack([constant(0.5), constant(0.4)])
    truth = np.stack([constant(0.5), constant(0.5)])
    m = image_metrics(pred, truth)
    for name in ("l1", "psnr", "ssim"):
        assert m[name].shape == (2,)
    np.testing.assert_allclose(m["l1"].numpy(), [0.0, 0.1], atol=1e-6)


def test_psnr_of_a_known_mse():
    truth = constant(0.5, size=32)
    # A checkerboard of +-0.1: every squared error is 0.01, so MSE = 0.01 and PSNR = 20 dB.
    sign = np.where((np.indices((32, 32)).sum(axis=0) % 2) == 0, 1.0, -1.0)[..., None]
    pred = truth + 0.1 * sign.astype(np.float32)
    m = image_metrics(pred, truth)
    assert float(m["psnr"]) == pytest.approx(20.0, abs=1e-3)
    assert float(m["l1"]) == pytest.approx(0.1, abs=1e-6)
    # Half the pixels off by 0.2: MSE = 0.02, PSNR = 10 log10(1 / 0.02).
    pred = truth + 0.2 * (sign > 0).astype(np.float32)
    assert float(image_metrics(pred, truth)["psnr"]) == pytest.approx(
        10 * math.log10(50), abs=1e-3
    )


def test_ssim_of_identical_images_is_one(make_natural_image):
    image = make_natural_image(3, 32, 32).astype(np.float32) / 255.0
    m = image_metrics(image, image)
    assert float(m["ssim"]) == pytest.approx(1.0, abs=1e-6)
    assert float(m["l1"]) == 0.0
    assert math.isinf(float(m["psnr"]))


def test_ssim_of_two_constant_images():
    # Constant windows have no variance, so SSIM is the luminance term alone:
    # (2 a b + C1) / (a^2 + b^2 + C1) with C1 = (0.01 * max_val)^2.
    a, b, c1 = 0.2, 0.6, 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    m = image_metrics(constant(a), constant(b))
    # TensorFlow computes the (zero) variances as float32 differences of window sums, which
    # leaves a contrast term of 1 +- ~1e-4.
    assert float(m["ssim"]) == pytest.approx(expected, abs=5e-4)
    same = image_metrics(constant(0.3), constant(0.3))
    assert float(same["ssim"]) == pytest.approx(1.0, abs=5e-4)


def test_ssim_drops_for_structure_changes(make_natural_image):
    image = make_natural_image(4, 32, 32).astype(np.float32) / 255.0
    noisy = np.clip(image + np.random.default_rng(0).normal(0, 0.2, image.shape), 0, 1)
    assert float(image_metrics(noisy, image)["ssim"]) < 0.8


def test_metrics_accept_tensors_and_work_in_tf_function():
    f = tf.function(lambda p, t: image_metrics(p, t))
    m = f(tf.constant(constant(0.2, batch=2)), tf.constant(constant(0.3, batch=2)))
    np.testing.assert_allclose(m["l1"].numpy(), [0.1, 0.1], atol=1e-6)


def test_mean_metrics_and_formatting():
    means = mean_metrics({"l1": [0.1, 0.3], "psnr": [10.0, 20.0], "ssim": [0.5, 1.0]})
    assert means == pytest.approx({"l1": 0.2, "psnr": 15.0, "ssim": 0.75})
    assert mean_metrics({"l1": [], "psnr": [], "ssim": []}) == {
        "l1": None, "psnr": None, "ssim": None
    }
    assert format_metric("psnr", 15.0) == "15.00"
    assert format_metric("l1", 0.2) == "0.2000"
    assert format_metric("ssim", None) == "n/a"
    assert format_metric("psnr", math.inf) == "inf"


@pytest.mark.parametrize("shape", [(11, 11, 3), (40, 57, 3), (64, 48, 1)])
def test_fast_image_metrics_equal_tensorflows_and_a_direct_sum(shape):
    rng = np.random.default_rng(sum(shape))
    a = rng.uniform(size=shape)
    b = np.clip(a + rng.normal(0, 0.1, shape), 0, 1)
    fast = fast_image_metrics(a, b)
    slow = image_metrics(tf.constant(a, tf.float32), tf.constant(b, tf.float32))
    for name in ("l1", "psnr", "ssim"):
        assert fast[name] == pytest.approx(float(slow[name]), abs=2e-5), name
    # SSIM from its definition, with the 11 x 11 window summed directly ("valid" region).
    taps = np.exp(-0.5 * (np.arange(11) - 5.0) ** 2 / 1.5**2)
    window = np.outer(taps, taps) / np.outer(taps, taps).sum()
    h, w = shape[0] - 10, shape[1] - 10

    def local(x):
        return sum(window[i, j] * x[i : i + h, j : j + w] for i in range(11) for j in range(11))

    mx, my = local(a), local(b)
    luminance = (2 * mx * my + 1e-4) / (mx**2 + my**2 + 1e-4)
    cs = (2 * (local(a * b) - mx * my) + 9e-4) / (local(a * a + b * b) - mx**2 - my**2 + 9e-4)
    assert fast["ssim"] == pytest.approx(float(np.mean(luminance * cs)), abs=1e-12)
    assert fast_image_metrics(a, a)["psnr"] == float("inf")


def test_fast_image_metrics_refuses_mismatched_or_tiny_images():
    with pytest.raises(ValueError, match="prediction, truth"):
        fast_image_metrics(np.zeros((20, 20, 3)), np.zeros((20, 21, 3)))
    with pytest.raises(ValueError, match="prediction, truth"):
        fast_image_metrics(np.zeros((10, 20, 3)), np.zeros((10, 20, 3)))
