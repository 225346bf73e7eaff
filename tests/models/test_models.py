"""UNetGenerator and PatchDiscriminator: shapes, parameter counts, config and file round trips."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from manga_pix2pix.config import ModelConfig, preset
from manga_pix2pix.models import (
    PatchDiscriminator,
    UNetGenerator,
    build_models,
    generator_inputs,
)


def _inputs(batch: int, size: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (batch, size, size, channels)).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def smoke_models():
    return build_models(preset("smoke").model)


def test_generator_output_shape_and_range(smoke_models):
    generator, _ = smoke_models
    out = np.asarray(generator(_inputs(2, 32, 5), training=True))
    assert out.shape == (2, 32, 32, 3)
    assert out.dtype == np.float32
    assert -1.0 <= out.min() and out.max() <= 1.0


def test_generator_runs_on_sizes_divisible_by_its_depth(smoke_models):
    generator, _ = smoke_models
    out = generator(_inputs(1, 64, 5), training=False)
    assert tuple(out.shape) == (1, 64, 64, 3)


@pytest.mark.parametrize("size, logits", [(32, 2), (64, 6)])
def test_discriminator_gives_a_grid_of_patch_logits(smoke_models, size, logits):
    _, discriminator = smoke_models
    out = discriminator((_inputs(2, size, 5), _inputs(2, size, 3, seed=1)), training=True)
    assert tuple(out.shape) == (2, logits, logits, 1)  # S/8 - 2, 30x30 at 256 px


def test_paper_parameter_counts_with_the_original_four_input_channels():
    # Building creates the variables without running the big model on any data.
    generator, discriminator = build_models(ModelConfig(use_cue_mask=False))
    assert generator.count_params() == 54_426_883
    assert discriminator.count_params() == 2_771_457
    assert len(generator.down_blocks) == 8 and len(generator.up_blocks) == 7


def test_the_cue_mask_adds_one_input_channel():
    generator, discriminator = build_models(ModelConfig(image_size=32, base_filters=4))
    assert generator.input_channels == 5
    assert discriminator.input_channels == 5
    assert generator.layers[0].conv.kernel.shape == (4, 4, 5, 4)


@pytest.mark.parametrize("size, depth", [(32, 5), (128, 7), (512, 9)])
def test_depth_follows_the_image_size(size, depth):
    generator = UNetGenerator(image_size=size, base_filters=2)
    assert len(generator.down_blocks) == depth
    assert len(generator.up_blocks) == depth - 1


def test_instance_norm_model_is_independent_of_the_rest_of_the_batch():
    generator, _ = build_models(ModelConfig(image_size=32, base_filters=4, norm="instance",
                                            dropout=0.0))
    x = _inputs(2, 32, 5)
    alone = np.asarray(generator(x[:1], training=True))
    together = np.asarray(generator(x, training=True))[:1]
    np.testing.assert_allclose(alone, together, atol=1e-5)


def test_mixed_precision_computes_in_bfloat16_but_outputs_float32():
    saved = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        generator, discriminator = build_models(ModelConfig(image_size=32, base_filters=4))
    finally:
        keras.mixed_precision.set_global_policy(saved)
    x = _inputs(2, 32, 5)
    out = generator(x, training=True)
    logits = discriminator((x, out), training=True)
    assert out.dtype == "float32" and logits.dtype == "float32"
    assert generator.down_blocks[1].conv.compute_dtype == "bfloat16"
    assert generator.down_blocks[1].conv.kernel.dtype == "float32"


def test_generator_inputs_concatenates_in_order():
    sketch = np.full((1, 4, 4, 1), -1.0, np.float32)
    cues = np.full((1, 4, 4, 3), 0.5, np.float32)
    mask = np.ones((1, 4, 4, 1), np.float32)
    x = np.asarray(generator_inputs(sketch, cues, mask))
    assert x.shape == (1, 4, 4, 5)
    assert list(x[0, 0, 0]) == [-1.0, 0.5, 0.5, 0.5, 1.0]
    assert generator_inputs(sketch, cues).shape == (1, 4, 4, 4)


def test_config_round_trips():
    generator = UNetGenerator(image_size=64, base_filters=4, norm="instance", dropout=0.3,
                              input_channels=4, uses_cues=False, name="g")
    again = UNetGenerator.from_config(generator.get_config())
    assert again.get_config() == generator.get_config()
    assert again.uses_cues is False and again.depth == 6
    discriminator = PatchDiscriminator(base_filters=4, norm="instance", input_channels=4)
    assert (PatchDiscriminator.from_config(discriminator.get_config()).get_config()
            == discriminator.get_config())


@pytest.mark.parametrize("uses_cues", [True, False])
def test_keras_save_and_load_round_trip(tmp_path, uses_cues):
    generator, discriminator = build_models(ModelConfig(image_size=32, base_filters=4),
                                            uses_cues=uses_cues)
    x, image = _inputs(2, 32, 5), _inputs(2, 32, 3, seed=1)
    # A training call moves the batch-norm statistics away from their initial values.
    generator(x, training=True)
    discriminator((x, image), training=True)
    generator.save(tmp_path / "g.keras")
    discriminator.save(tmp_path / "d.keras")
    g2 = keras.saving.load_model(tmp_path / "g.keras")
    d2 = keras.saving.load_model(tmp_path / "d.keras")
    assert isinstance(g2, UNetGenerator) and isinstance(d2, PatchDiscriminator)
    assert g2.uses_cues is uses_cues
    np.testing.assert_allclose(g2(x, training=False), generator(x, training=False), atol=1e-6)
    np.testing.assert_allclose(d2((x, image), training=False),
                               discriminator((x, image), training=False), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"image_size": 100}, "image_size"), ({"norm": "layer"}, "norm")],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        UNetGenerator(**kwargs)


@pytest.mark.parametrize("shape", [(1, 1, 1, 8), (2, 1, 1, 8), (4, 6, 6, 8)])
def test_fused_batch_norm_matches_keras_batch_norm(shape):
    import tensorflow as tf

    from manga_pix2pix.models.layers import FusedBatchNormalization

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(1.0, 3.0, shape).astype(np.float32))
    upstream = tf.constant(rng.normal(size=shape).astype(np.float32))
    results = []
    for layer in (keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3),
                  FusedBatchNormalization(momentum=0.9, epsilon=1e-3)):
        layer.build(shape)
        layer.gamma.assign(np.linspace(0.5, 2.0, 8))
        layer.beta.assign(np.linspace(-1.0, 1.0, 8))
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * upstream)
        grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
        results.append([y, *grads, layer.moving_mean, layer.moving_variance,
                        layer(x, training=False)])
    for keras_value, fused_value in zip(*results, strict=True):
        np.testing.assert_allclose(np.asarray(fused_value), np.asarray(keras_value),
                                   atol=1e-4, rtol=1e-4)


def test_resize_upsampling_keeps_3x3_kernels_and_round_trips(tmp_path):
    config = ModelConfig(image_size=32, base_filters=4, upsample="resize")
    generator, _ = build_models(config, line_input="grey")
    assert generator.get_config()["upsample"] == "resize"
    assert generator.line_input == "grey"
    # Its layers hold 3x3 kernels, whatever the form it is computed in (`nearest_up`).
    kinds = {type(layer.conv).__name__ for layer in generator.up_blocks}
    assert kinds == {"Conv2D"} and type(generator.last).__name__ == "Conv2D"
    assert {tuple(layer.conv.kernel.shape[:2]) for layer in generator.up_blocks} == {(3, 3)}
    x = _inputs(2, 32, 5)
    y = generator(x, training=True)
    assert y.shape == (2, 32, 32, 3)
    assert generator(_inputs(1, 64, 5), training=False).shape == (1, 64, 64, 3)
    generator.save(tmp_path / "g.keras")
    again = keras.saving.load_model(tmp_path / "g.keras")
    assert again.upsample == "resize" and again.line_input == "grey"
    np.testing.assert_allclose(again(x, training=False), generator(x, training=False), atol=1e-6)


def test_resize_upsampling_draws_no_checkerboard_at_initialisation():
    # A transposed 4x4 stride-2 convolution covers output pixels unevenly (the checkerboard
    # of Odena et al.); nearest resize then a 3x3 convolution covers them evenly. On a
    # constant input the first up block's output then has no period-2 pattern.
    import tensorflow as tf

    from manga_pix2pix.models.layers import UpBlock

    x = tf.ones([1, 8, 8, 16])
    for upsample, has_pattern in (("transpose", True), ("resize", False)):
        block = UpBlock(8, norm=None, upsample=upsample)
        block.build(x.shape)
        block.conv.kernel.assign(tf.abs(block.conv.kernel))
        y = block(x).numpy()[0, 2:-2, 2:-2]  # away from the zero-padded borders
        even, odd = y[0::2, 0::2], y[1::2, 1::2]
        assert bool(np.abs(even - odd).max() > 1e-4) is has_pattern


def test_bad_upsampling_and_line_input_name_the_argument():
    with pytest.raises(ValueError, match="upsample"):
        UNetGenerator(image_size=32, upsample="bicubic")
    with pytest.raises(ValueError, match="line_input"):
        UNetGenerator(image_size=32, line_input="colour")
    with pytest.raises(ValueError, match="upsample"):
        ModelConfig(upsample="bicubic")
