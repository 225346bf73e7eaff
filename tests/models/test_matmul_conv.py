"""The bottleneck convolutions as matmuls equal TensorFlow's convolutions, values and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from manga_pix2pix.models import UNetGenerator, matmul_conv
from manga_pix2pix.models.layers import DownBlock, UpBlock


def _random(shape, seed):
    return tf.constant(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


def _value_and_grads(fn, x, kernel):
    kernel = tf.Variable(kernel)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x, kernel)
        # A non-uniform upstream gradient, so that every tap's contribution is checked.
        loss = tf.reduce_sum(y * _random(y.shape, 99))
    dx, dk = tape.gradient(loss, [x, kernel])
    return [np.asarray(t) for t in (y, dx, dk)]


def _assert_close(ours, reference):
    for a, b in zip(ours, reference, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


def _check_against(fn, reference_fn, x_shape, kernel_shape, seed):
    x, kernel = _random(x_shape, seed), _random(kernel_shape, seed + 1)
    _assert_close(_value_and_grads(fn, x, kernel), _value_and_grads(reference_fn, x, kernel))


@pytest.mark.parametrize("height,width", [(1, 1), (2, 2), (3, 5), (4, 4), (7, 6), (8, 8)])
def test_strided_conv_equals_conv2d_same(height, width):
    _check_against(matmul_conv.strided_conv, lambda x, k: tf.nn.conv2d(x, k, 2, "SAME"),
                   (2, height, width, 6), (4, 4, 6, 5), seed=0)


@pytest.mark.parametrize("height,width", [(1, 1), (2, 2), (3, 5), (4, 4), (8, 8)])
def test_transposed_conv_equals_conv2d_transpose_same(height, width):
    def reference_fn(x, k):
        return tf.nn.conv2d_transpose(x, k, [2, 2 * height, 2 * width, 5], 2, "SAME")

    _check_against(matmul_conv.transposed_conv, reference_fn, (2, height, width, 6),
                   (4, 4, 5, 6), seed=2)


@pytest.mark.parametrize("height,width", [(4, 4), (9, 7), (33, 33)])
def test_single_filter_conv_equals_conv2d_valid(height, width):
    _check_against(matmul_conv.single_filter_conv, lambda x, k: tf.nn.conv2d(x, k, 1, "VALID"),
                   (2, height, width, 6), (4, 4, 6, 1), seed=6)


def test_single_filter_conv_runs_on_unknown_sizes():
    fn = tf.function(matmul_conv.single_filter_conv, input_signature=[
        tf.TensorSpec([None, None, None, 6], tf.float32), tf.TensorSpec([4, 4, 6, 1])])
    x, kernel = _random((1, 10, 12, 6), 8), _random((4, 4, 6, 1), 9)
    np.testing.assert_allclose(np.asarray(fn(x, kernel)),
                               np.asarray(tf.nn.conv2d(x, kernel, 1, "VALID")), atol=1e-4)


def test_use_matmul_needs_a_static_small_shape_and_a_large_kernel(monkeypatch):
    monkeypatch.setattr(matmul_conv, "on_cpu", lambda: True)
    paper = (4, 4, 512, 512)  # the paper's bottleneck: 4.2 M weights
    assert matmul_conv.use_matmul((4, 2, 2, 512), paper, 16)
    assert matmul_conv.use_matmul((1, 8, 8, 512), paper, 64)
    assert not matmul_conv.use_matmul((4, 4, 4, 512), paper, 16)
    assert not matmul_conv.use_matmul((None, 2, 2, 512), paper, 16)
    assert not matmul_conv.use_matmul((1, None, None, 512), paper, 16)
    assert not matmul_conv.use_matmul((1, 2, 2, 128), (4, 4, 128, 128), 16)  # small preset


def test_use_matmul_is_off_when_an_accelerator_is_visible(monkeypatch):
    monkeypatch.setattr(matmul_conv, "on_cpu", lambda: True)
    assert matmul_conv.use_matmul((1, 2, 2, 512), (4, 4, 512, 512), 16)
    monkeypatch.setattr(matmul_conv, "on_cpu", lambda: False)
    assert not matmul_conv.use_matmul((1, 2, 2, 512), (4, 4, 512, 512), 16)


@pytest.fixture
def any_kernel_size(monkeypatch):
    """Lets the tiny test models take the matmul path (on any device)."""
    monkeypatch.setattr(matmul_conv, "MIN_WEIGHTS", 0)
    monkeypatch.setattr(matmul_conv, "on_cpu", lambda: True)


@pytest.mark.parametrize("block", [DownBlock(8, norm=None, name="d"), UpBlock(8, norm=None,
                                                                              name="u")])
def test_blocks_give_the_same_output_on_both_paths(block, any_kernel_size):
    """A small static input takes the matmul path; an unknown size takes the Keras layer."""
    x = _random((1, 2, 2, 4), 4)
    block.build(x.shape)
    static = np.asarray(block(x))
    dynamic = tf.function(
        block, input_signature=[tf.TensorSpec([None, None, None, 4], tf.float32)]
    )
    np.testing.assert_allclose(static, np.asarray(dynamic(x)), rtol=1e-5, atol=1e-6)
    assert matmul_conv.use_matmul(x.shape, block.conv.kernel.shape,
                                  matmul_conv.MAX_CONV_POSITIONS)


def test_generator_output_does_not_depend_on_the_path(any_kernel_size):
    """The whole U-Net at 16 px (its bottleneck takes the matmul path) equals the conv path."""
    generator = UNetGenerator(image_size=16, base_filters=4, dropout=0.0)
    x = _random((1, 16, 16, 5), 5)
    generator(x)
    static = np.asarray(generator(x, training=False))
    dynamic = tf.function(
        lambda x: generator(x, training=False),
        input_signature=[tf.TensorSpec([None, None, None, 5], tf.float32)],
    )
    np.testing.assert_allclose(static, np.asarray(dynamic(x)), rtol=1e-4, atol=1e-5)


def test_discriminator_equals_its_layers_applied_in_order():
    """The split first convolution and the matmul logits give the plain layer-by-layer result."""
    from manga_pix2pix.models import PatchDiscriminator

    discriminator = PatchDiscriminator(base_filters=4)
    condition, image = _random((2, 32, 32, 5), 10), _random((2, 32, 32, 3), 11)
    logits = np.asarray(discriminator((condition, image), training=False))
    x = tf.concat([condition, image], axis=-1)
    for block in discriminator.blocks:
        x = block(x, training=False)
    x = discriminator.block_4(discriminator.pad_1(x), training=False)
    plain = np.asarray(discriminator.logits(discriminator.pad_2(x)))
    assert logits.shape == plain.shape == (2, 2, 2, 1)
    np.testing.assert_allclose(logits, plain, rtol=1e-4, atol=1e-5)
    shared = discriminator.condition_features(condition)
    np.testing.assert_allclose(np.asarray(discriminator.judge(shared, image, training=False)),
                               plain, rtol=1e-4, atol=1e-5)


def test_a_paper_sized_bottleneck_block_takes_the_matmul_path_with_the_same_result(
        monkeypatch):
    monkeypatch.setattr(matmul_conv, "on_cpu", lambda: True)
    block = UpBlock(512, norm=None, name="up_paper")
    x = _random((1, 2, 2, 1024), 12)
    block.build(x.shape)
    assert matmul_conv.use_matmul(x.shape, block.conv.kernel.shape,
                                  matmul_conv.MAX_TRANSPOSED_POSITIONS)
    dynamic = tf.function(
        block, input_signature=[tf.TensorSpec([None, None, None, 1024], tf.float32)]
    )
    np.testing.assert_allclose(np.asarray(block(x)), np.asarray(dynamic(x)), rtol=1e-4,
                               atol=1e-5)
