"""Train-step throughput: our distributed step against a reference in the TF tutorial's style.

The reference is written as in the TensorFlow pix2pix tutorial: functional Keras models built
from `downsample`/`upsample` Sequential blocks, Keras batch normalisation, two gradient tapes,
`apply_gradients`, in float32. It has the same architecture as ours (depth and widths follow
the image size, same input channels), and runs on the same batches. Ours is
`manga_pix2pix.training.step.TrainStep` under the default strategy, as `train` runs it.

Both are timed in the same process, one step of each in turn (other work on the machine slows
both alike), after warm-up steps that trace and compile. Prints JSON: the median images/s of
each, the median ratio of the paired steps (with quartiles), and the achieved TFLOP/s
(80.8 GFLOP per image for the paper's networks at 256 px; other sizes and widths scaled by
their convolution FLOPs).

`--precision mixed_bfloat16` runs our step in bfloat16 against the float32 reference. On CPUs
with AMX, the float32 reference slows down (to about half speed here) in a process that also
runs bfloat16 kernels, which inflates that ratio: compare our images/s there with the
reference's images/s from a float32 run instead.

Examples:

    python benchmarks/train_step.py                        # 256 px, batch 1 and 4
    python benchmarks/train_step.py --size 128 --batch 4 --steps 20
    python benchmarks/train_step.py --precision mixed_bfloat16
    python benchmarks/train_step.py --size 128 --base-filters 16 --batch 4 --upsample resize

With `--upsample resize` both generators resize then convolve (the reference with Keras's
`UpSampling2D` and a 3x3 `Conv2D`, ours fused into one transposed convolution,
`manga_pix2pix.models.nearest_up`); the GFLOP figure then counts the fused form's arithmetic,
the same as the transposed convolutions'.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from machine_info import machine  # noqa: E402

from manga_pix2pix.config import ModelConfig, TrainConfig  # noqa: E402
from manga_pix2pix.models import build_models  # noqa: E402
from manga_pix2pix.training.step import TrainStep, make_optimizer  # noqa: E402
from manga_pix2pix.training.strategy import precision_policy  # noqa: E402

GFLOP_PER_IMAGE_AT_256 = 80.8
INPUT_CHANNELS = 5  # sketch, cues, cue mask
LAMBDA = 100


# --- The reference, as in the TensorFlow pix2pix tutorial -----------------------------------

def downsample(filters, size, apply_batchnorm=True):
    initializer = tf.random_normal_initializer(0.0, 0.02)
    result = keras.Sequential()
    result.add(keras.layers.Conv2D(filters, size, strides=2, padding="same",
                                   kernel_initializer=initializer, use_bias=False))
    if apply_batchnorm:
        result.add(keras.layers.BatchNormalization())
    result.add(keras.layers.LeakyReLU())
    return result


def upsample(filters, size, apply_dropout=False, resize=False):
    initializer = tf.random_normal_initializer(0.0, 0.02)
    result = keras.Sequential()
    if resize:  # nearest 2x, then a 3x3 convolution, as Keras users write it
        result.add(keras.layers.UpSampling2D(2, interpolation="nearest"))
        result.add(keras.layers.Conv2D(filters, 3, padding="same",
                                       kernel_initializer=initializer, use_bias=False))
    else:
        result.add(keras.layers.Conv2DTranspose(filters, size, strides=2, padding="same",
                                                kernel_initializer=initializer,
                                                use_bias=False))
    result.add(keras.layers.BatchNormalization())
    if apply_dropout:
        result.add(keras.layers.Dropout(0.5))
    result.add(keras.layers.ReLU())
    return result


def reference_generator(size, base, resize=False):
    inputs = keras.layers.Input(shape=[size, size, INPUT_CHANNELS])
    depth = int(np.log2(size))
    widths = [base * min(2**i, 8) for i in range(depth)]
    down_stack = [downsample(w, 4, apply_batchnorm=i > 0) for i, w in enumerate(widths)]
    up_stack = [upsample(w, 4, apply_dropout=i < 3, resize=resize)
                for i, w in enumerate(reversed(widths[:-1]))]
    initializer = tf.random_normal_initializer(0.0, 0.02)
    if resize:
        last = keras.Sequential([
            keras.layers.UpSampling2D(2, interpolation="nearest"),
            keras.layers.Conv2D(3, 3, padding="same", kernel_initializer=initializer,
                                activation="tanh"),
        ])
    else:
        last = keras.layers.Conv2DTranspose(3, 4, strides=2, padding="same",
                                            kernel_initializer=initializer, activation="tanh")
    x = inputs
    skips = []
    for down in down_stack:
        x = down(x)
        skips.append(x)
    skips = reversed(skips[:-1])
    for up, skip in zip(up_stack, skips, strict=True):
        x = up(x)
        x = keras.layers.Concatenate()([x, skip])
    return keras.Model(inputs=inputs, outputs=last(x))


def reference_discriminator(size, base):
    initializer = tf.random_normal_initializer(0.0, 0.02)
    inp = keras.layers.Input(shape=[size, size, INPUT_CHANNELS], name="input_image")
    tar = keras.layers.Input(shape=[size, size, 3], name="target_image")
    x = keras.layers.concatenate([inp, tar])
    down1 = downsample(base, 4, False)(x)
    down2 = downsample(base * 2, 4)(down1)
    down3 = downsample(base * 4, 4)(down2)
    zero_pad1 = keras.layers.ZeroPadding2D()(down3)
    conv = keras.layers.Conv2D(base * 8, 4, strides=1, kernel_initializer=initializer,
                               use_bias=False)(zero_pad1)
    batchnorm1 = keras.layers.BatchNormalization()(conv)
    leaky_relu = keras.layers.LeakyReLU()(batchnorm1)
    zero_pad2 = keras.layers.ZeroPadding2D()(leaky_relu)
    last = keras.layers.Conv2D(1, 4, strides=1, kernel_initializer=initializer)(zero_pad2)
    return keras.Model(inputs=[inp, tar], outputs=last)


def reference_step(size, base, resize=False):
    generator = reference_generator(size, base, resize)
    discriminator = reference_discriminator(size, base)
    loss_object = keras.losses.BinaryCrossentropy(from_logits=True)
    generator_optimizer = keras.optimizers.Adam(2e-4, beta_1=0.5)
    discriminator_optimizer = keras.optimizers.Adam(2e-4, beta_1=0.5)

    def generator_loss(disc_generated_output, gen_output, target):
        gan_loss = loss_object(tf.ones_like(disc_generated_output), disc_generated_output)
        l1_loss = tf.reduce_mean(tf.abs(target - gen_output))
        return gan_loss + (LAMBDA * l1_loss), gan_loss, l1_loss

    def discriminator_loss(disc_real_output, disc_generated_output):
        real_loss = loss_object(tf.ones_like(disc_real_output), disc_real_output)
        generated_loss = loss_object(tf.zeros_like(disc_generated_output), disc_generated_output)
        return real_loss + generated_loss

    @tf.function
    def train_step(input_image, target):
        with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
            gen_output = generator(input_image, training=True)
            disc_real_output = discriminator([input_image, target], training=True)
            disc_generated_output = discriminator([input_image, gen_output], training=True)
            gen_total_loss, gen_gan_loss, gen_l1_loss = generator_loss(
                disc_generated_output, gen_output, target)
            disc_loss = discriminator_loss(disc_real_output, disc_generated_output)
        generator_gradients = gen_tape.gradient(gen_total_loss, generator.trainable_variables)
        discriminator_gradients = disc_tape.gradient(disc_loss,
                                                     discriminator.trainable_variables)
        generator_optimizer.apply_gradients(
            zip(generator_gradients, generator.trainable_variables, strict=True))
        discriminator_optimizer.apply_gradients(
            zip(discriminator_gradients, discriminator.trainable_variables, strict=True))
        return gen_total_loss

    return train_step, generator.count_params() + discriminator.count_params()


# --- Ours ---------------------------------------------------------------------------------

def our_step(size, base, batch, precision, upsample="transpose"):
    model = ModelConfig(image_size=size, base_filters=base, upsample=upsample)
    train = TrainConfig(batch_size=batch, precision=precision)
    strategy = tf.distribute.get_strategy()
    with precision_policy(precision), strategy.scope():
        generator, discriminator = build_models(model)
        g_opt, d_opt = make_optimizer(train, 1000), make_optimizer(train, 1000)
        g_opt.build(generator.trainable_variables)
        d_opt.build(discriminator.trainable_variables)
        step = TrainStep(strategy, generator, discriminator, g_opt, d_opt,
                         global_batch_size=batch)
    return step, generator.count_params() + discriminator.count_params()


def _forward_gflop(size, base):
    """Convolution GFLOP of one forward pass of the generator and of the discriminator."""
    depth = int(np.log2(size))
    widths = [base * min(2**i, 8) for i in range(depth)]
    g, channels, side = 0.0, INPUT_CHANNELS, size
    for w in widths:
        side //= 2
        g += 2 * 16 * channels * w * side * side
        channels = w
    for w in widths[:-1][::-1]:
        g += 2 * 16 * channels * w * side * side  # a transposed conv, per input pixel
        side *= 2
        channels = 2 * w  # concatenated with the skip of the same width
    g += 2 * 16 * channels * 3 * side * side
    d, channels, side = 0.0, INPUT_CHANNELS + 3, size
    for w in (base, base * 2, base * 4):
        side //= 2
        d += 2 * 16 * channels * w * side * side
        channels = w
    for w in (base * 8, 1):
        side -= 1  # pad 1 on each side, 4x4 valid conv
        d += 2 * 16 * channels * w * side * side
        channels = w
    return g / 1e9, d / 1e9


def step_gflop(size, base):
    """GFLOP of one train step per image: 80.8 for the paper's networks at 256 px.

    The step runs the generator forward and backward (3 passes) and the discriminator on the
    real and the generated pair, forward and backward for both losses (7 passes); scaled so
    that the paper's networks give the figure used throughout the project.
    """
    g, d = _forward_gflop(size, base)
    g256, d256 = _forward_gflop(256, 64)
    return GFLOP_PER_IMAGE_AT_256 * (3 * g + 7 * d) / (3 * g256 + 7 * d256)


def make_batch(size, batch, seed=0):
    rng = np.random.default_rng(seed)
    sketch = np.where(rng.uniform(size=(batch, size, size, 1)) < 0.1, -1.0, 1.0)
    return {
        "image": tf.constant(rng.uniform(-1, 1, (batch, size, size, 3)), tf.float32),
        "sketch": tf.constant(sketch, tf.float32),
        "cues": tf.constant(rng.uniform(-1, 1, (batch, size, size, 3)), tf.float32),
        "cue_mask": tf.constant(rng.uniform(size=(batch, size, size, 1)) < 0.5, tf.float32),
    }


def measure(size, batch, base, steps, warmup, precision, upsample="transpose"):
    data = make_batch(size, batch)
    reference_inputs = tf.concat([data["sketch"], data["cues"], data["cue_mask"]], axis=-1)
    reference, ref_params = reference_step(size, base, resize=upsample == "resize")
    ours, our_params = our_step(size, base, batch, precision, upsample)
    assert ref_params == our_params, (ref_params, our_params)

    def run_reference():
        return float(reference(reference_inputs, data["image"]))

    def run_ours():
        return float(ours(data)["g_total"])

    for _ in range(warmup):
        run_reference()
        run_ours()
    # Alternate single steps: a pair sees the same machine load, and the median ratio of the
    # pairs is robust to the moments when another process takes the cores.
    times = {"reference": [], "ours": []}
    for _ in range(steps):
        for name, fn in (("reference", run_reference), ("ours", run_ours)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    gflop = step_gflop(size, base)
    out = {"size": size, "batch": batch, "base_filters": base, "parameters": our_params,
           "gflop_per_image": round(gflop, 2), "steps_timed": steps, "precision_ours": precision,
           "upsample": upsample}
    for name, values in times.items():
        seconds = float(np.median(values))
        out[f"{name}_images_per_s"] = round(batch / seconds, 3)
        out[f"{name}_tflops"] = round(batch * gflop / seconds / 1000, 4)
    ratios = np.array(times["reference"]) / np.array(times["ours"])
    out["ratio"] = round(float(np.median(ratios)), 3)
    out["ratio_quartiles"] = [round(float(q), 3) for q in np.percentile(ratios, [25, 75])]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256, help="image side (default 256)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4],
                        help="batch sizes (default 1 4)")
    parser.add_argument("--base-filters", type=int, default=64, help="network width (64)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each (10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each (2)")
    parser.add_argument("--precision", default="float32",
                        choices=["float32", "mixed_float16", "mixed_bfloat16"],
                        help="our step's precision; the reference stays float32")
    parser.add_argument("--upsample", default="transpose", choices=["transpose", "resize"],
                        help="up-sampling of both generators: the paper's transposed convs, "
                             "or nearest 2x then a 3x3 conv (the small preset's)")
    args = parser.parse_args()
    results = [measure(args.size, b, args.base_filters, args.steps, args.warmup, args.precision,
                       args.upsample)
               for b in args.batch]
    print(json.dumps({
        "benchmark": "train_step",
        "date": datetime.date.today().isoformat(),
        "machine": machine(keras=keras.__version__),
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
