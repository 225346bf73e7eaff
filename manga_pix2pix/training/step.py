"""The pix2pix train step: one `tf.function` that runs under any `tf.distribute` strategy.

Losses (as in the paper and the TensorFlow pix2pix tutorial):

    g_gan  = BCE(D(x, G(x)), 1)                  the generator fools the discriminator
    g_l1   = |y - G(x)|                          and stays close to the target
    g_total = g_gan + l1_weight * g_l1
    d_real = BCE(D(x, y), 1),  d_fake = BCE(D(x, G(x)), 0),  d_total = d_real + d_fake

where x is the generator's input (sketch, cues, cue mask), which is also the discriminator's
condition, and y the colour target. Each per-example loss is a mean over pixels (L1) or over
patches (BCE); the batch mean is taken over the *global* batch with
`tf.nn.compute_average_loss`, so gradients summed over replicas are those of the global batch.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

from manga_pix2pix.config import TrainConfig
from manga_pix2pix.models import generator_inputs

#: Names of the losses a step returns, in display order.
LOSS_NAMES = ("g_total", "g_gan", "g_l1", "d_total", "d_real", "d_fake")


@keras.saving.register_keras_serializable(package="manga_pix2pix")
class SecondHalfLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Constant for the first half of training, then linearly down to 0 (the pix2pix recipe).

    Args:
        learning_rate: the initial rate.
        total_steps: the length of the run, in optimiser steps: an int, or an integer
            `tf.Variable` read at every step (a time-limited run fits it to its speed while
            the rate is still constant, and may shorten it later).
    """

    def __init__(self, learning_rate: float, total_steps: int | tf.Variable):
        self.learning_rate = learning_rate
        self.total_steps = total_steps

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        half = tf.cast(self.total_steps, tf.float32) / 2.0
        fraction = tf.clip_by_value((step - half) / tf.maximum(half, 1.0), 0.0, 1.0)
        return self.learning_rate * (1.0 - fraction)

    def get_config(self):
        total = self.total_steps
        if isinstance(total, tf.Variable):
            total = int(total.numpy())
        return {"learning_rate": self.learning_rate, "total_steps": total}


def _handle(variable):
    """The resource handle of a Keras or TensorFlow variable (the local copy under a strategy)."""
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return variable.handle


@keras.saving.register_keras_serializable(package="manga_pix2pix")
class FusedAdam(keras.optimizers.Adam):
    """Adam computed by TensorFlow's fused `ResourceApplyAdam` kernel.

    The arithmetic of `keras.optimizers.Adam` (without AMSGrad), but one multi-threaded pass
    over each variable and its two moments instead of about a dozen element-wise ops, each
    reading and writing whole tensors: with 57 million parameters the update is memory-bound,
    and this makes it several times cheaper.
    """

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable),
            m=_handle(self._momentums[index]),
            v=_handle(self._velocities[index]),
            beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype),
        )


def make_optimizer(train: TrainConfig,
                   total_steps: int | tf.Variable) -> keras.optimizers.Optimizer:
    """One Adam optimiser as configured (wrapped for loss scaling under `mixed_float16`).

    `total_steps` is the run's length for the linear decay (see `SecondHalfLinearDecay`).

    Build it inside `strategy.scope()`, after the model it trains has its variables.
    """
    lr = train.learning_rate
    if train.lr_decay == "linear":
        lr = SecondHalfLinearDecay(train.learning_rate, total_steps)
    optimizer = FusedAdam(learning_rate=lr, beta_1=train.beta_1)
    if train.precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def _bce_per_example(logits: tf.Tensor, label: float) -> tf.Tensor:
    """Binary cross-entropy of patch logits against a constant label, mean per example."""
    logits = tf.cast(logits, tf.float32)
    labels = tf.fill(tf.shape(logits), label)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.reduce_mean(bce, axis=[1, 2, 3])


class TrainStep:
    """The distributed pix2pix train step for one pair of networks and optimisers.

    Create it inside `strategy.scope()` once the models and optimisers exist; call it on one
    element of `strategy.experimental_distribute_dataset(...)`. It returns the losses of the
    global batch, by name (`LOSS_NAMES`), as float32 scalars.

    Args:
        strategy: the distribution strategy the variables were created under.
        generator: the `UNetGenerator`.
        discriminator: the `PatchDiscriminator`.
        g_optimizer: the generator's optimiser.
        d_optimizer: the discriminator's optimiser.
        global_batch_size: examples per step over all replicas.
        l1_weight: weight of the L1 term (paper: 100).
        use_cue_mask: whether the generator takes the cue mask as an input channel.
        xla: compile the forward and backward passes with XLA.
        step: an int64 variable counted up by every step (inside the same `tf.function`, so
            it always matches the weights, even when Python is interrupted between steps).
        derive: for batches of augmented images (`{"image": uint8, "seed"}`), the function
            that derives the examples (`derive_batch` with the run's cue settings), called on
            each replica's share at the start of the step, on its device.
        ema: a variable per generator trainable variable (same order), moved towards it after
            every step: `ema = d * ema + (1 - d) * weight`, d = min(ema_decay,
            (1 + step) / (10 + step)) so that the first steps are not averaged with the
            initial weights (needs `step`).
        ema_decay: the average's decay.
    """

    def __init__(
        self,
        strategy: tf.distribute.Strategy,
        generator: keras.Model,
        discriminator: keras.Model,
        g_optimizer: keras.optimizers.Optimizer,
        d_optimizer: keras.optimizers.Optimizer,
        *,
        global_batch_size: int,
        l1_weight: float = 100.0,
        use_cue_mask: bool = True,
        xla: bool = False,
        step: tf.Variable | None = None,
        derive: Callable[[tf.Tensor, tf.Tensor], dict[str, tf.Tensor]] | None = None,
        ema: list[tf.Variable] | None = None,
        ema_decay: float = 0.999,
    ):
        self.strategy = strategy
        self.generator = generator
        self.discriminator = discriminator
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.global_batch_size = global_batch_size
        self.l1_weight = l1_weight
        self.use_cue_mask = use_cue_mask
        self.step = step
        self.derive = derive
        if ema is not None and (step is None or len(ema) != len(generator.trainable_variables)):
            raise ValueError("ema: needs `step` and one variable per generator trainable variable")
        self.ema = ema
        self.ema_decay = ema_decay
        # Batch-norm moving statistics are updated by each replica from its own examples;
        # averaged after every step they stay identical on all replicas and workers.
        self._replica_averaged = [
            v for v in generator.non_trainable_variables + discriminator.non_trainable_variables
            if v.dtype in ("float16", "bfloat16", "float32", "float64")
        ]
        # Under XLA only the gradient computation is compiled: the optimiser update under a
        # mirrored strategy all-reduces across replicas, which XLA cannot contain on CPU/GPU.
        self._gradients = tf.function(self._compute_gradients, jit_compile=True) if xla else (
            self._compute_gradients
        )
        self._step = tf.function(self._distributed_step)

    def __call__(self, distributed_batch) -> dict[str, tf.Tensor]:
        return self._step(distributed_batch)

    def _compute_gradients(self, batch):
        # 1. The generator's input, which is also the discriminator's condition.
        mask = batch["cue_mask"] if self.use_cue_mask else None
        inputs = generator_inputs(batch["sketch"], batch["cues"], mask)
        target = batch["image"]
        with tf.GradientTape(persistent=True) as tape:
            # 2. Generate, then judge the real and the generated pair (training=True: batch
            #    statistics and dropout, as in pix2pix).
            #    The condition's share of the discriminator's first convolution is computed
            #    once for both.
            fake = self.generator(inputs, training=True)
            condition = self.discriminator.condition_features(inputs)
            real_logits = self.discriminator.judge(condition, target, training=True)
            fake_logits = self.discriminator.judge(condition, fake, training=True)
            # 3. Per-example losses, averaged over the global batch.
            g_gan = _bce_per_example(fake_logits, 1.0)
            g_l1 = tf.reduce_mean(tf.abs(target - tf.cast(fake, tf.float32)), axis=[1, 2, 3])
            d_real = _bce_per_example(real_logits, 1.0)
            d_fake = _bce_per_example(fake_logits, 0.0)
            losses = {
                "g_gan": g_gan,
                "g_l1": g_l1,
                "g_total": g_gan + self.l1_weight * g_l1,
                "d_real": d_real,
                "d_fake": d_fake,
                "d_total": d_real + d_fake,
            }
            losses = {
                name: tf.nn.compute_average_loss(value, global_batch_size=self.global_batch_size)
                for name, value in losses.items()
            }
            # 4. Scaled for mixed_float16 (a no-op otherwise).
            g_loss = self.g_optimizer.scale_loss(losses["g_total"])
            d_loss = self.d_optimizer.scale_loss(losses["d_total"])
        # 5. Each network's gradients of its own loss.
        g_grads = tape.gradient(g_loss, self.generator.trainable_variables)
        d_grads = tape.gradient(d_loss, self.discriminator.trainable_variables)
        del tape
        return g_grads, d_grads, losses

    def _replica_step(self, batch):
        if "seed" in batch:
            # 0. Derive this replica's examples from its augmented uint8 images, here on its
            #    device (`--derive-on device`).
            if self.derive is None:
                raise ValueError("derive: needed for batches of augmented images")
            batch = self.derive(batch["image"], batch["seed"])
        g_grads, d_grads, losses = self._gradients(batch)
        # 6. Gradients are summed over replicas inside `apply` (losses are already divided
        #    by the global batch); the loss-scale optimiser unscales them first.
        self.g_optimizer.apply(g_grads, self.generator.trainable_variables)
        self.d_optimizer.apply(d_grads, self.discriminator.trainable_variables)
        if self.strategy.num_replicas_in_sync > 1 and self._replica_averaged:
            context = tf.distribute.get_replica_context()
            means = context.all_reduce(
                tf.distribute.ReduceOp.MEAN, [tf.identity(v) for v in self._replica_averaged]
            )
            for variable, mean in zip(self._replica_averaged, means, strict=True):
                variable.assign(mean)
        return losses

    def _distributed_step(self, distributed_batch):
        per_replica = self.strategy.run(self._replica_step, args=(distributed_batch,))
        if self.step is not None:
            self.step.assign_add(1)
        if self.ema:
            # After the update, in cross-replica context: the weights are the same on every
            # replica, and so is their average.
            n = tf.cast(self.step, tf.float32)
            decay = tf.minimum(self.ema_decay, (1.0 + n) / (10.0 + n))
            for average, weight in zip(self.ema, self.generator.trainable_variables,
                                       strict=True):
                average.assign(decay * average + (1.0 - decay) * tf.cast(weight, tf.float32))
        return {
            name: self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica[name], axis=None)
            for name in LOSS_NAMES
        }

