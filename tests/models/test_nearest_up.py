"""The fused nearest-resize + 3x3 convolution against the two ops it replaces."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from manga_pix2pix.models import layers
from manga_pix2pix.models.generator import UNetGenerator
from manga_pix2pix.models.nearest_up import nearest_up_conv


def _resize_then_conv(x, kernel):
    doubled = tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)
    return tf.nn.conv2d(doubled, kernel, strides=1, padding="SAME")


@pytest.mark.parametrize("shape", [(2, 8, 8, 3, 5), (1, 7, 5, 4, 2), (3, 1, 1, 6, 6)])
def test_it_equals_resize_then_conv_with_its_gradients(shape):
    n, h, w, c_in, c_out = shape
    rng = np.random.default_rng(sum(shape))
    x = tf.constant(rng.normal(size=(n, h, w, c_in)), tf.float32)
    kernel = tf.Variable(rng.normal(size=(3, 3, c_in, c_out)).astype(np.float32))
    upstream = tf.constant(rng.normal(size=(n, 2 * h, 2 * w, c_out)), tf.float32)
    results = []
    for fn in (_resize_then_conv, nearest_up_conv):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x, kernel)
            loss = tf.reduce_sum(y * upstream)
        results.append([y, *tape.gradient(loss, [x, kernel])])
    assert results[1][0].shape == (n, 2 * h, 2 * w, c_out)
    for expected, fused in zip(*results, strict=True):
        np.testing.assert_allclose(fused.numpy(), expected.numpy(), rtol=1e-5, atol=1e-4)


def test_it_keeps_static_shapes_and_unknown_sizes_inside_a_function():
    kernel = tf.ones([3, 3, 2, 4])

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 2], tf.float32)])
    def run(x):
        y = nearest_up_conv(x, kernel)
        assert y.shape.as_list() == [None, None, None, 4]
        return y

    assert run(tf.zeros([1, 3, 5, 2])).shape == (1, 6, 10, 4)
    assert nearest_up_conv(tf.zeros([2, 4, 6, 2]), kernel).shape == (2, 8, 12, 4)


def test_the_generator_gives_the_same_output_fused_or_not(monkeypatch):
    generator = UNetGenerator(image_size=32, base_filters=4, upsample="resize")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 64, 5)).astype(np.float32)
    fused = generator(x, training=False).numpy()
    monkeypatch.setattr(layers, "TF_BACKEND", False)  # the plain resize-then-convolve path
    plain = generator(x, training=False).numpy()
    np.testing.assert_allclose(fused, plain, atol=1e-5)
    assert np.abs(fused).max() > 1e-3  # not a zero output that would match anything
