"""The original project's sketch, and its complexity metric, as TensorFlow ops.

The sketch is OpenCV's
`adaptiveThreshold(gray, 255, ADAPTIVE_THRESH_GAUSSIAN_C, THRESH_BINARY, blockSize=7, C=2)`
re-done in TensorFlow so that it runs inside `tf.data.Dataset.map`, eagerly, batched or not,
at any size. It follows OpenCV's integer arithmetic: the fixed-point RGB -> gray conversion,
the 7-tap binomial kernel OpenCV uses when sigma is 0 (8, 28, 56, 72, 56, 28, 8) / 256,
replicated borders, and rounding of the local mean to an integer.

Value ranges:
    input image: `uint8` RGB (or one gray channel) in [0, 255], or a float RGB in [0, 1];
        shape `[..., H, W, C]`.
    sketch: `uint8`, one channel, 0 (line) or 255 (paper); shape `[..., H, W, 1]`.
    complexity: `float32` percent of line (0) pixels, in [0, 100]; shape `[...]`.
"""

from __future__ import annotations

import tensorflow as tf

BLOCK_SIZE = 7
THRESHOLD_C = 2
#: OpenCV's kernel for a 7-tap Gaussian with sigma <= 0, in 1/256 units (sums to 256).
_KERNEL_7 = (8.0, 28.0, 56.0, 72.0, 56.0, 28.0, 8.0)


def to_uint8(image: tf.Tensor) -> tf.Tensor:
    """Converts a float image in [0, 1] to uint8 (rounded); passes uint8 through."""
    image = tf.convert_to_tensor(image)
    if image.dtype == tf.uint8:
        return image
    scaled = tf.clip_by_value(tf.cast(image, tf.float32), 0.0, 1.0) * 255.0
    return tf.cast(tf.round(scaled), tf.uint8)


def to_gray(image: tf.Tensor) -> tf.Tensor:
    """RGB -> gray exactly as OpenCV's `COLOR_RGB2GRAY` on uint8; int32 `[..., H, W, 1]`."""
    image = tf.cast(to_uint8(image), tf.int32)
    if image.shape[-1] == 1:
        return image
    r, g, b = image[..., 0:1], image[..., 1:2], image[..., 2:3]
    return tf.bitwise.right_shift(r * 4899 + g * 9617 + b * 1868 + 8192, 14)


def _replicate_pad(x: tf.Tensor, pad: int, axis: int) -> tf.Tensor:
    size = tf.shape(x)[axis]
    index = tf.clip_by_value(tf.range(-pad, size + pad), 0, size - 1)
    return tf.gather(x, index, axis=axis)


def _local_mean(gray: tf.Tensor) -> tf.Tensor:
    """OpenCV's bit-exact 7x7 Gaussian mean of an int gray image `[N, H, W, 1]`, as int32."""
    x = tf.cast(gray, tf.float32)
    pad = BLOCK_SIZE // 2
    x = _replicate_pad(_replicate_pad(x, pad, 1), pad, 2)
    k = tf.constant(_KERNEL_7, tf.float32)
    # Integer sums below 2**24 are exact in float32: 255 * 256 * 256 < 2**24.
    x = tf.nn.conv2d(x, tf.reshape(k, [1, BLOCK_SIZE, 1, 1]), 1, "VALID")
    x = tf.nn.conv2d(x, tf.reshape(k, [BLOCK_SIZE, 1, 1, 1]), 1, "VALID")
    return tf.bitwise.right_shift(tf.cast(x, tf.int32) + 32768, 16)


def sketch(image: tf.Tensor) -> tf.Tensor:
    """The binary sketch of a colour image (see the module docstring for ranges and shapes)."""
    image = tf.convert_to_tensor(image)
    gray = to_gray(image)
    batched = gray.shape.rank == 4
    if not batched:
        gray = gray[None]
    mean = _local_mean(gray)
    # OpenCV's THRESH_BINARY with integer C: paper where src - mean > -C.
    paper = (gray - mean) > -THRESHOLD_C
    out = tf.where(paper, tf.constant(255, tf.uint8), tf.constant(0, tf.uint8))
    return out if batched else out[0]


def complexity(binary_sketch: tf.Tensor) -> tf.Tensor:
    """Percent of line pixels in a sketch: `(N - sum(sketch / 255)) / N * 100`."""
    s = tf.cast(tf.convert_to_tensor(binary_sketch), tf.float32) / 255.0
    paper_share = tf.reduce_mean(s, axis=[-3, -2, -1])
    return (1.0 - paper_share) * 100.0


def image_complexity(image: tf.Tensor) -> tf.Tensor:
    """The complexity of a colour image's sketch; shorthand for `complexity(sketch(image))`."""
    return complexity(sketch(image))
