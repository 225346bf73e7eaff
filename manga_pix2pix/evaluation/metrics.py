"""Image quality metrics: L1, PSNR and SSIM, per image, and their means over a set.

All three compare a colour prediction with the true colour image, both float RGB in [0, 1]
(`[..., H, W, 3]`), and are computed by TensorFlow itself:
    l1: mean absolute error over pixels and channels (lower is better, 0 for equal images).
    psnr: `tf.image.psnr(..., max_val=1)`, in dB (higher is better; infinite for equal images).
    ssim: `tf.image.ssim(..., max_val=1)` with TensorFlow's defaults (11-tap Gaussian window,
        sigma 1.5, k1 0.01, k2 0.03), averaged over channels (1 for equal images). Images must
        be at least 11 x 11.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import tensorflow as tf

#: The metrics, in the order tables show them, with the direction that is better.
METRICS = ("l1", "psnr", "ssim")
HIGHER_IS_BETTER = {"l1": False, "psnr": True, "ssim": True}


def image_metrics(prediction: tf.Tensor, truth: tf.Tensor) -> dict[str, tf.Tensor]:
    """Per-image L1, PSNR and SSIM.

    Args:
        prediction: float RGB in [0, 1], `[..., H, W, 3]`.
        truth: the same shape and range.

    Returns:
        `{"l1", "psnr", "ssim"}`, float32 tensors of shape `[...]` (one value per image).
    """
    prediction = tf.cast(tf.convert_to_tensor(prediction), tf.float32)
    truth = tf.cast(tf.convert_to_tensor(truth), tf.float32)
    return {
        "l1": tf.reduce_mean(tf.abs(prediction - truth), axis=[-3, -2, -1]),
        "psnr": tf.image.psnr(prediction, truth, max_val=1.0),
        "ssim": tf.image.ssim(prediction, truth, max_val=1.0),
    }


def mean_metrics(per_image: Mapping[str, Iterable[float]]) -> dict[str, float | None]:
    """Means of per-image metrics; None for a metric with no images.

    The PSNR mean is infinite when an image is reproduced exactly (its PSNR is infinite).
    """
    out: dict[str, float | None] = {}
    for name in METRICS:
        values = np.asarray(list(per_image[name]), np.float64)
        out[name] = float(values.mean()) if values.size else None
    return out


def format_metric(name: str, value: float | None) -> str:
    """A metric for a table: L1 and SSIM to 4 decimals, PSNR in dB to 2; `n/a` for None."""
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "inf"
    return f"{value:.2f}" if name == "psnr" else f"{value:.4f}"
