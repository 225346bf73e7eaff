"""The accelerator benchmark in one run: train step by precision and XLA, fed end to end, colorize.

Writes one JSON (and prints it):

* `train_step`: our distributed step (`TrainStep` under the default strategy, as `train` runs
  it) on a constant batch, in float32, mixed_float16, mixed_bfloat16, and float32 and
  mixed_bfloat16 with XLA: images/s and achieved TFLOP/s (80.8 GFLOP per image for the
  paper's networks at 256 px, other sizes scaled by their convolution FLOPs).
* `fed`: the same step fed end to end from TFRecords of PNG examples (read, decode, jitter,
  flip and batch on the host; sketch, cues and masks derived on the device at the start of the
  step, `--derive-on device`, and on the host for comparison), against the step on a constant
  batch of the same kind: the ratio says how much of the accelerator the input keeps busy
  (target >= 0.95).
* `colorize`: the bare generator at batch 1 and 8, and the whole colorize path per 256-px
  sketch and per 2048 x 2048 page (second call: traced already).

`--quick` runs everything tiny (32 px, narrow networks, a few steps) so that the script is
known to work on any machine, a CPU included; its figures mean nothing.

Examples:

    python benchmarks/gpu.py --output bench-gpu.json          # about 5 minutes on one GPU
    python benchmarks/gpu.py --quick --output quick.json      # minutes, any CPU
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from machine_info import machine  # noqa: E402
from pipeline import write_png_records  # noqa: E402
from train_step import make_batch, step_gflop  # noqa: E402

from manga_pix2pix.config import ModelConfig, TrainConfig  # noqa: E402
from manga_pix2pix.data.cues import CueMaskConfig  # noqa: E402
from manga_pix2pix.data.derive import derive_batch  # noqa: E402
from manga_pix2pix.data.pipeline import augment_image, derive_on_host  # noqa: E402
from manga_pix2pix.data.synthetic import synthetic_image  # noqa: E402
from manga_pix2pix.models import build_models  # noqa: E402
from manga_pix2pix.training.step import TrainStep, make_optimizer  # noqa: E402
from manga_pix2pix.training.strategy import precision_policy, resolve_precision  # noqa: E402

#: (precision, xla) pairs of the train-step benchmark.
STEP_SETTINGS = (
    ("float32", False),
    ("mixed_float16", False),
    ("mixed_bfloat16", False),
    ("float32", True),
    ("mixed_bfloat16", True),
)
CUE_MASKS = CueMaskConfig()


def make_step(size: int, base: int, batch: int, precision: str, xla: bool):
    """Our train step, as `train` builds it, deriving augmented batches on the device."""
    strategy = tf.distribute.get_strategy()
    train = TrainConfig(batch_size=batch, precision=precision, xla=xla)
    with precision_policy(precision), strategy.scope():
        generator, discriminator = build_models(ModelConfig(image_size=size, base_filters=base))
        g_opt, d_opt = make_optimizer(train, 1000), make_optimizer(train, 1000)
        g_opt.build(generator.trainable_variables)
        d_opt.build(discriminator.trainable_variables)
        step = TrainStep(strategy, generator, discriminator, g_opt, d_opt,
                         global_batch_size=batch, xla=xla,
                         derive=functools.partial(derive_batch, cue_masks=CUE_MASKS))
    return strategy, step


def _repeat(batch):
    while True:
        yield batch


def _images_per_s(step, batches, batch: int, steps: int, warmup: int) -> float:
    """Median images/s over `steps` timed steps, after `warmup` untimed ones."""
    for _ in range(warmup):
        float(step(next(batches))["g_total"])
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        float(step(next(batches))["g_total"])
        times.append(time.perf_counter() - start)
    return batch / float(np.median(times))


def train_steps(args) -> list[dict]:
    gflop = step_gflop(args.size, args.base_filters)
    data = make_batch(args.size, args.batch)
    results = []
    for precision, xla in STEP_SETTINGS:
        _, step = make_step(args.size, args.base_filters, args.batch, precision, xla)
        rate = _images_per_s(step, _repeat(data), args.batch, args.steps, args.warmup)
        results.append({
            "precision": precision, "xla": xla, "images_per_s": round(rate, 2),
            "tflops": round(rate * gflop / 1000.0, 3),
        })
    return results


def _augmented(path: str, size: int, batch: int) -> tf.data.Dataset:
    def parse(index, record):
        example = tf.io.parse_single_example(
            record, {"image": tf.io.FixedLenFeature([], tf.string)})
        image = tf.ensure_shape(tf.io.decode_png(example["image"], channels=3), [size, size, 3])
        seed = tf.stack([tf.constant(0, tf.int64), index])
        return {"image": augment_image(image, seed=seed, training=True, image_size=size),
                "seed": seed}

    ds = tf.data.TFRecordDataset(path).repeat().enumerate()
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch, drop_remainder=True)


def fed(args, precision: str, records: str) -> dict:
    """The step fed from TFRecords against the step on a constant batch, both derivations."""
    strategy, step = make_step(args.size, args.base_filters, args.batch, precision, False)
    gflop = step_gflop(args.size, args.base_filters)
    out = {"precision": precision}
    for where in ("device", "host"):
        ds = _augmented(records, args.size, args.batch)
        if where == "host":
            ds = derive_on_host(ds, cue_masks=CUE_MASKS)
        ds = ds.prefetch(tf.data.AUTOTUNE)
        constant = next(iter(ds))
        fed_rate = _images_per_s(step, iter(strategy.experimental_distribute_dataset(ds)),
                                 args.batch, args.steps, args.warmup)
        constant_rate = _images_per_s(step, _repeat(constant), args.batch, args.steps,
                                      args.warmup)
        out[f"derive_on_{where}"] = {
            "fed_images_per_s": round(fed_rate, 2),
            "constant_batch_images_per_s": round(constant_rate, 2),
            "ratio_fed_over_constant": round(fed_rate / constant_rate, 3),
            "fed_tflops": round(fed_rate * gflop / 1000.0, 3),
        }
    return out


def colorize(args, page: int) -> dict:
    from colorize import cue_layer, line_art

    from manga_pix2pix.inference.colorize import Colorizer
    from manga_pix2pix.inference.loading import load_model

    generator, _ = build_models(ModelConfig(image_size=args.size, base_filters=args.base_filters))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "generator.keras"
        generator.save(path)
        model = load_model(path)
    rng = np.random.default_rng(0)
    channels = 5
    x1 = tf.constant(rng.uniform(-1, 1, (1, args.size, args.size, channels)), tf.float32)
    x8 = tf.constant(rng.uniform(-1, 1, (8, args.size, args.size, channels)), tf.float32)

    def best_ms(fn, repeats):
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times) * 1000.0

    colorizer = Colorizer(model)
    sketch, cues = line_art(args.size)[:, :, None], cue_layer(args.size)
    big = line_art(page)[:, :, None]
    return {
        "generator_batch_1_ms": round(best_ms(lambda: model.generate(x1).numpy(), 10), 2),
        "generator_batch_8_ms_per_image": round(
            best_ms(lambda: model.generate(x8).numpy(), 5) / 8, 2),
        "colorize_ms_per_sketch": round(best_ms(lambda: colorizer(sketch, cues), 10), 2),
        f"colorize_{page}px_page_ms": round(best_ms(lambda: colorizer(big, None), 3), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="bench-gpu.json", help="the JSON file to write")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and few steps: checks that the script runs")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--base-filters", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32, help="global batch (32)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per figure (20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (3)")
    args = parser.parse_args()
    page = 2048
    if args.quick:
        args.size, args.base_filters, args.batch, args.steps, args.warmup = 32, 8, 2, 2, 1
        page = 64
    began = time.perf_counter()
    images = np.stack([synthetic_image(i, args.size) for i in range(64)])
    precision, reason = resolve_precision("auto", tf.distribute.get_strategy())
    result = {
        "benchmark": "gpu",
        "quick": args.quick,
        "size": args.size,
        "base_filters": args.base_filters,
        "batch": args.batch,
        "steps_timed": args.steps,
        "gflop_per_image": round(step_gflop(args.size, args.base_filters), 2),
        "auto_precision": {"precision": precision, "reason": reason},
        "train_step": train_steps(args),
    }
    with tempfile.TemporaryDirectory() as tmp:
        records = os.path.join(tmp, "images.tfrecord")
        write_png_records(images, records)
        result["fed"] = fed(args, precision, records)
    result["colorize"] = colorize(args, page)
    result["seconds"] = round(time.perf_counter() - began, 1)
    result["machine"] = machine(keras=keras.__version__)
    text = json.dumps(result, indent=2)
    Path(args.output).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
