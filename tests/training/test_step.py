"""The train step: loss names and values, global-batch reduction, precisions, XLA, LR decay."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from manga_pix2pix.config import ModelConfig, TrainConfig
from manga_pix2pix.models import build_models, generator_inputs
from manga_pix2pix.training.step import (
    LOSS_NAMES,
    FusedAdam,
    SecondHalfLinearDecay,
    TrainStep,
    make_optimizer,
)
from manga_pix2pix.training.strategy import precision_policy

MODEL = ModelConfig(image_size=32, base_filters=4)


def _batch(batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {k: rng.uniform(-1, 1, (batch, 32, 32, c)).astype(np.float32)
           for k, c in [("image", 3), ("sketch", 1), ("cues", 3)]}
    out["cue_mask"] = (rng.uniform(size=(batch, 32, 32, 1)) > 0.5).astype(np.float32)
    return out


def _step(train: TrainConfig, model: ModelConfig = MODEL, batch: int = 2, **kwargs):
    strategy = tf.distribute.get_strategy()
    keras.utils.set_random_seed(0)
    with strategy.scope():
        generator, discriminator = build_models(model)
        g_opt, d_opt = make_optimizer(train, 100), make_optimizer(train, 100)
        g_opt.build(generator.trainable_variables)
        d_opt.build(discriminator.trainable_variables)
        step = TrainStep(strategy, generator, discriminator, g_opt, d_opt,
                         global_batch_size=batch, l1_weight=train.l1_weight, **kwargs)
    return step


def test_losses_are_named_and_averaged_over_the_global_batch():
    # This replica holds 2 examples of a global batch of 4 (the other half being elsewhere):
    # its losses are the sums of its per-example losses divided by 4.
    step = _step(TrainConfig(), model=ModelConfig(image_size=32, base_filters=4, dropout=0.0),
                 batch=4)
    batch = _batch()
    g, d = step.generator, step.discriminator
    # Reference values by hand, in training mode (batch statistics, like the step).
    x = generator_inputs(batch["sketch"], batch["cues"], batch["cue_mask"])
    fake = g(x, training=True)
    real_logits = d((x, batch["image"]), training=True)
    fake_logits = d((x, fake), training=True)
    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    means = {
        "g_gan": float(bce(tf.ones_like(fake_logits), fake_logits)),
        "g_l1": float(tf.reduce_mean(tf.abs(batch["image"] - fake))),
        "d_real": float(bce(tf.ones_like(real_logits), real_logits)),
        "d_fake": float(bce(tf.zeros_like(fake_logits), fake_logits)),
    }
    losses = {k: float(v) for k, v in step(batch).items()}
    assert tuple(losses) == LOSS_NAMES
    for name, mean in means.items():
        assert losses[name] == pytest.approx(mean * 2 / 4, rel=1e-4), name
    assert losses["g_total"] == pytest.approx(losses["g_gan"] + 100 * losses["g_l1"], rel=1e-5)
    assert losses["d_total"] == pytest.approx(losses["d_real"] + losses["d_fake"], rel=1e-5)


def test_a_step_updates_both_networks_and_counts():
    counter = tf.Variable(0, dtype=tf.int64)
    step = _step(TrainConfig(), step=counter)
    g_before = [v.numpy() for v in step.generator.trainable_variables]
    d_before = [v.numpy() for v in step.discriminator.trainable_variables]
    step(_batch())
    step(_batch(seed=1))
    assert int(counter.numpy()) == 2
    assert int(step.g_optimizer.iterations.numpy()) == 2
    assert any(np.abs(a - v.numpy()).max() > 0
               for a, v in zip(g_before, step.generator.trainable_variables, strict=True))
    assert any(np.abs(a - v.numpy()).max() > 0
               for a, v in zip(d_before, step.discriminator.trainable_variables, strict=True))


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_steps(precision):
    train = TrainConfig(precision=precision)
    with precision_policy(precision):
        step = _step(train)
        losses = step(_batch())
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    assert all(np.isfinite(float(v)) for v in losses.values())
    loss_scaled = isinstance(step.g_optimizer, keras.optimizers.LossScaleOptimizer)
    assert loss_scaled == (precision == "mixed_float16")


@pytest.mark.slow
def test_xla_step_matches_the_plain_step():
    model = ModelConfig(image_size=32, base_filters=4, dropout=0.0)
    plain = {k: float(v) for k, v in _step(TrainConfig(), model=model)(_batch()).items()}
    xla = {k: float(v) for k, v in _step(TrainConfig(), model=model, xla=True)(_batch()).items()}
    for name in LOSS_NAMES:
        assert xla[name] == pytest.approx(plain[name], rel=1e-3), name


def test_linear_decay_holds_then_falls_to_zero():
    schedule = SecondHalfLinearDecay(1.0, 100)
    values = [float(schedule(s)) for s in (0, 50, 75, 100, 120)]
    assert values == pytest.approx([1.0, 1.0, 0.5, 0.0, 0.0])
    optimizer = make_optimizer(TrainConfig(lr_decay="linear", learning_rate=2e-4), 10)
    assert float(optimizer.learning_rate) == pytest.approx(2e-4)


def test_fused_adam_follows_keras_adam():
    rng = np.random.default_rng(0)
    start = rng.normal(size=(20, 30)).astype(np.float32)
    ours, theirs = keras.Variable(start), keras.Variable(start)
    fused = FusedAdam(learning_rate=1e-2, beta_1=0.5)
    plain = keras.optimizers.Adam(learning_rate=1e-2, beta_1=0.5)
    for _ in range(10):
        grad = rng.normal(size=(20, 30)).astype(np.float32)
        fused.apply([grad], [ours])
        plain.apply([grad], [theirs])
    assert np.abs(theirs.numpy() - start).max() > 0.05
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-5)
    assert isinstance(make_optimizer(TrainConfig(), 10), FusedAdam)


def test_the_weight_average_follows_the_weights_with_the_warm_up_decay():
    counter = tf.Variable(0, dtype=tf.int64)
    probe = _step(TrainConfig())
    ema = [tf.Variable(tf.cast(v, tf.float32), trainable=False)
           for v in probe.generator.trainable_variables]
    step = TrainStep(probe.strategy, probe.generator, probe.discriminator, probe.g_optimizer,
                     probe.d_optimizer, global_batch_size=2, step=counter, ema=ema,
                     ema_decay=0.5)
    expected = [v.numpy() for v in step.generator.trainable_variables]
    for n in range(1, 5):
        step(_batch(seed=n))
        # Steps 1 and 2: (1 + n) / (10 + n) = 0.18, 0.25 < 0.5; then 0.5 itself.
        decay = min(0.5, (1 + n) / (10 + n))
        weights = [v.numpy() for v in step.generator.trainable_variables]
        expected = [decay * e + (1 - decay) * w for e, w in zip(expected, weights, strict=True)]
        for average, want in zip(ema, expected, strict=True):
            np.testing.assert_allclose(average.numpy(), want, rtol=1e-5, atol=1e-7)
    # After moving weights the average lags them.
    assert max(np.abs(a.numpy() - w).max() for a, w in zip(ema, weights, strict=True)) > 0


def test_a_weight_average_needs_the_step_counter_and_every_weight():
    probe = _step(TrainConfig())
    weights = probe.generator.trainable_variables
    with pytest.raises(ValueError, match="ema"):
        TrainStep(probe.strategy, probe.generator, probe.discriminator, probe.g_optimizer,
                  probe.d_optimizer, global_batch_size=2,
                  ema=[tf.Variable(v) for v in weights])
    with pytest.raises(ValueError, match="ema"):
        TrainStep(probe.strategy, probe.generator, probe.discriminator, probe.g_optimizer,
                  probe.d_optimizer, global_batch_size=2, step=tf.Variable(0, dtype=tf.int64),
                  ema=[tf.Variable(v) for v in weights[:-1]])
