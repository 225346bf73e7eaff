"""The training stream: a resumable, deterministic sequence of batches, and the held-out set.

Built from the pipeline's public stages (`load_images` for the source, `augment_image` for each
example's jitter, `derive_batch` for the batch's sketches, cues and masks, on the host or in
the train step) so that a run can restart exactly where it stopped without replaying the
input:

* Hold-out: image `i` of the source (in source order: sorted file names for a folder, seed
  order for synthetic images, dataset order for TFDS) is held out when
  `floor((i + 1) * f) > floor(i * f)` for the hold-out fraction `f`, i.e. evenly spread, the
  same on every run. The hold-out is taken before the complexity filter.
* Training images are the remaining ones with a sketch complexity at most the ceiling; they are
  kept in memory when they fit (`CACHE_BYTES`), otherwise decoded again every epoch.
* Epoch `e` visits the images in an order shuffled by the seed `(seed, e)`; the epochs follow
  each other without a break, so batches may straddle two epochs.
* Example `n` of the stream (counted from the start of training) is augmented, and its cue mask
  drawn, by the stateless seed `(seed, n)`: the same whether the batch is derived on the host
  or in the train step on the device (`TrainConfig.derive_on`).
* With `DataConfig.p_mosaic`, examples chosen by their seed become 2 x 2 mosaics of the
  global batch at half scale (`mosaic_batch`), on the host, before the batch is derived or
  split between replicas.

So the stream from step `k` on is fully determined by the config and `k`: resuming at step `k`
starts at epoch `k * B // N` and skips the examples already used in it, without preparing them.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import tensorflow as tf

from manga_pix2pix.config import Config, DataConfig
from manga_pix2pix.data.cues import NO_CUES, CueMaskConfig
from manga_pix2pix.data.derive import mosaic_batch
from manga_pix2pix.data.pipeline import (
    augment_image,
    derive_on_host,
    load_images,
    prepare_example,
)
from manga_pix2pix.data.sketch import SketchConfig
from manga_pix2pix.errors import UserError

log = logging.getLogger(__name__)

#: Training images are cached in memory (uint8) when they take at most this many bytes.
CACHE_BYTES = 1 << 30

#: How many examples make the preview batch.
PREVIEW_ROWS = 4


def cue_masks(data: DataConfig) -> CueMaskConfig:
    """The cue masks drawn in training: none with `no_cues`, else the configured mix."""
    if data.no_cues:
        return NO_CUES
    return CueMaskConfig(
        p_full=data.p_full_cues, p_partial=data.p_partial_cues, p_none=data.p_no_cues
    )


def sketch_styles(data: DataConfig) -> SketchConfig:
    """The training sketch styles: one pinned style, or the configured mix."""
    if data.sketch_style == "mix":
        return SketchConfig(
            p_adaptive=data.p_sketch_adaptive, p_xdog=data.p_sketch_xdog,
            p_pencil=data.p_sketch_pencil, augment=data.line_augment,
        )
    return SketchConfig.pinned(data.sketch_style, augment=data.line_augment)


def derive_options(data: DataConfig) -> dict[str, Any]:
    """`derive_batch`'s settings for a run's data: cue masks and blur, sketch and cue styles."""
    return {
        "cue_masks": cue_masks(data),
        "cue_sigma": data.cue_sigma,
        "sketches": sketch_styles(data),
        "cue_style": data.cue_style,
    }


#: How colorize shows line art to the models this trainer makes, whatever their sketch style:
#: levelled grey lines. Measured on real line-art pairs (docs/results.md): for models trained
#: on styled sketches it ties the paper's adaptive threshold, and for models trained on the
#: paper's own sketches it gains 0.2-0.3 dB with strokes and 0.1-0.3 dB without cues, for
#: 0.1 dB less with a full cue layer. It is recorded in the generator's config.
LINE_INPUT = "grey"


def _held_out(index: tf.Tensor, fraction: float) -> tf.Tensor:
    i = tf.cast(index, tf.float64)
    return tf.floor((i + 1.0) * fraction) > tf.floor(i * fraction)


def _source(config: Config) -> tf.data.Dataset:
    """The source's uint8 images with their complexity, enumerated in source order."""
    data = config.data
    return load_images(
        data.source,
        data_dir=data.data_dir,
        split="train",
        image_size=config.model.image_size,
        seed=config.train.seed,
        synthetic_count=data.synthetic_count,
    ).enumerate()


def held_out_images(config: Config) -> tf.data.Dataset | None:
    """The held-out uint8 images `[S, S, 3]` of a run's source (None without a hold-out).

    The synthetic source has no fixed set to hold out from: its held-out images are further
    seeds, `synthetic_image(seed + synthetic_count + i)`.
    """
    fraction = config.data.holdout_fraction
    if fraction <= 0:
        return None
    if config.data.source == "synthetic":
        count = max(1, int(round(config.data.synthetic_count * fraction)))
        extra = dataclasses.replace(config.data, synthetic_count=count)
        shifted = dataclasses.replace(
            config, data=extra,
            train=dataclasses.replace(config.train,
                                      seed=config.train.seed + config.data.synthetic_count),
        )
        return _source(shifted).map(lambda i, ex: ex["image"])
    return (
        _source(config)
        .filter(lambda i, ex: _held_out(i, fraction))
        .map(lambda i, ex: ex["image"])
    )


@dataclasses.dataclass
class TrainingData:
    """What the loop needs to know about the training images.

    Attributes:
        images: the training images (uint8 `[S, S, 3]`), cached when they fit in memory.
        num_images: how many there are.
        steps_per_epoch: `num_images // global_batch_size`.
        preview: a fixed batch of prepared examples (numpy), held out where there is a
            hold-out, else the first training images, without augmentation.
    """

    images: tf.data.Dataset
    num_images: int
    steps_per_epoch: int
    preview: dict[str, np.ndarray]


def load_training_data(config: Config, global_batch_size: int) -> TrainingData:
    """Reads the source once: counts, caches and checks the training images.

    Raises:
        UserError: no training images (none in the source, or all filtered out by the
            complexity ceiling or the hold-out), or fewer than one global batch.
    """
    data, size = config.data, config.model.image_size
    fraction = data.holdout_fraction
    if not 0.0 <= fraction < 1.0:
        raise UserError(f"--holdout-fraction must be in [0, 1), got {fraction}")
    source = _source(config)
    if fraction > 0 and data.source != "synthetic":
        source = source.filter(lambda i, ex: tf.logical_not(_held_out(i, fraction)))
    kept = source
    ceiling = None if data.complexity_ceiling is None else float(data.complexity_ceiling)
    if ceiling is not None:
        kept = source.filter(lambda i, ex: ex["complexity"] <= ceiling)
    images = kept.map(lambda i, ex: ex["image"])

    def count(counts, item):
        _, example = item
        keep = True if ceiling is None else example["complexity"] <= ceiling
        return counts[0] + 1, counts[1] + tf.cast(keep, tf.int64)

    # One pass counts both (a second would decode every file again and repeat its warnings).
    zero = tf.constant(0, tf.int64)
    total, num_images = (int(n) for n in source.reduce((zero, zero), count))
    # Filled during the first epoch, then shared by all the following ones.
    cached = images.cache() if num_images * size * size * 3 <= CACHE_BYTES else images
    if num_images == 0:
        if total == 0 and fraction > 0 and data.source != "synthetic":
            raise UserError(f"{data.source}: no training images (the hold-out took them all, "
                            "or none could be read)")
        if total == 0:
            raise UserError(f"{data.source}: no readable training images (each was skipped; "
                            "see the warnings above)")
        raise UserError(
            f"{data.source}: no training images: all {total} have a sketch complexity above "
            f"the ceiling of {data.complexity_ceiling}% (raise --complexity-ceiling)"
        )
    if num_images < global_batch_size:
        raise UserError(
            f"{data.source}: only {num_images} training images, fewer than one batch of "
            f"{global_batch_size}; lower --batch-size or add images"
        )
    log.info("%d training images from %s", num_images, data.source)
    return TrainingData(
        images=cached,
        num_images=num_images,
        steps_per_epoch=num_images // global_batch_size,
        preview=_preview_batch(config, images),
    )


def _preview_batch(config: Config, train_images: tf.data.Dataset) -> dict[str, np.ndarray]:
    held_out = held_out_images(config)
    source = held_out if held_out is not None else train_images
    masks = cue_masks(config.data)
    styles = sketch_styles(config.data)
    seed = config.train.seed

    def prepare(index, image):
        return prepare_example(
            image, seed=tf.stack([tf.constant(seed, tf.int64), -1 - index]), training=False,
            cue_masks=masks, cue_sigma=config.data.cue_sigma,
            image_size=config.model.image_size, sketches=styles,
            cue_style=config.data.cue_style,
        )

    rows = source.take(PREVIEW_ROWS).enumerate().map(prepare).batch(PREVIEW_ROWS)
    batch = next(iter(rows), None)
    if batch is None:  # an empty hold-out: fall back to training images
        batch = next(iter(train_images.take(PREVIEW_ROWS).enumerate().map(prepare)
                          .batch(PREVIEW_ROWS)))
    return {name: value.numpy() for name, value in batch.items()}


def training_stream(
    config: Config, data: TrainingData, global_batch_size: int, start_step: int = 0,
    derive: bool = True,
) -> tf.data.Dataset:
    """The infinite stream of training batches from `start_step` on (see the module docstring).

    Batches are dicts of float32 `[B, S, S, C]`: `image`, `sketch`, `cues`, `cue_mask`; or,
    without `derive`, the augmented batches `{"image": uint8 [B, S, S, 3], "seed": int64
    [B, 2]}` for the train step to derive on the device (`derive_batch`, same result).
    """
    seed = config.train.seed
    n = data.num_images
    start = start_step * global_batch_size
    first_epoch, skip = divmod(start, n)
    images = data.images
    buffer = min(n, 10_000)

    def epoch(e):
        # The graph-level seed of this traced function, not the process-wide one: with the
        # op seed `e`, each epoch's order depends on (seed, e) only.
        tf.random.set_seed(seed + 1)
        return images.shuffle(buffer, seed=e, reshuffle_each_iteration=False)

    def augment(index, image):
        example_seed = tf.stack([tf.constant(seed, tf.int64), index])
        image = augment_image(image, seed=example_seed, training=True,
                              image_size=config.model.image_size)
        return {"image": image, "seed": example_seed}

    ds = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max).flat_map(epoch)
    ds = ds.skip(skip).enumerate(start=start)
    ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(global_batch_size, drop_remainder=True)
    if config.data.p_mosaic > 0:
        # On the global batch, before it is split: the same mosaics wherever it is derived.
        share = config.data.p_mosaic
        ds = ds.map(lambda b: {"image": mosaic_batch(b["image"], b["seed"], share),
                               "seed": b["seed"]})
    if derive:
        ds = derive_on_host(ds, **derive_options(config.data))
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    # Every worker computes the same stream and keeps its share of each batch; sharding by
    # file would starve workers of a source with fewer files than workers.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)
