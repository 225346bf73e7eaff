"""The tf.data input pipeline: coloured images -> (image, sketch, cues, cue_mask) batches.

Sources (`load_images`):
    * `"synthetic"`: the procedural illustrations of `manga_pix2pix.data.synthetic`; image `i`
      is `synthetic_image(seed + i)`, for `i` in `range(synthetic_count)`.
    * a folder: every image file directly in it (PNG, JPEG, WebP, BMP, GIF, TIFF; gray,
      palette, RGBA composited on white, any size). The short side is resized to the
      target size, then the image is cropped (centre, or top for portraits). Files that cannot
      be decoded are skipped with a warning.
    * a TFDS dataset name such as `"danbooru"` or `"danbooru/256"`, read from `data_dir`.

Each example then goes through `augment_image` (training: the pix2pix jitter, resize up by
286/256, random crop back, random horizontal flip; the result stays uint8), and each batch
through `manga_pix2pix.data.derive.derive_batch`: the sketch of the augmented image (so sketch
and image align), the cue layer (the augmented image blurred) and a cue mask, for the whole
batch at once. `prepare_example` is both for one example.

Value ranges (every output of `make_dataset` and `prepare_example`):
    image: float32 `[S, S, 3]` in [-1, 1] (the target colour image).
    sketch: float32 `[S, S, 1]` in [-1, 1], -1 on lines and 1 on paper (exactly -1 or 1 for
        the paper's adaptive threshold and XDoG; grey levels for the pencil style and for
        jittered lines).
    cues: float32 `[S, S, 3]` in [-1, 1], 0 (no cue) where the mask is 0.
    cue_mask: float32 `[S, S, 1]`, 0 or 1.
`make_dataset` adds a leading batch dimension `B`.

Determinism: every random choice (crop offset, flip, cue-mask kind and shape) is keyed by
`(seed, index)` alone (stateless random ops for the jitter, a counter-based hash of the seed for
the cue masks: the same wherever the batch is derived), where `index` counts the examples as
they leave the shuffle (and the repeat), so a given seed and source give the same batches on
every run and on every machine with the same TensorFlow version. Parallel maps keep their input
order (`deterministic=True`). The shuffles (of a folder's files or a TFDS dataset's shards, and
of the images) are seeded; with `repeat=True` each pass over the data is shuffled differently,
but the sequence of passes is the same for a seed. What is not deterministic: a TFDS dataset
rebuilt with different contents, a folder whose files change, and (in the last bits of float32
arithmetic) different CPU instruction sets.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from manga_pix2pix.data.cues import CueMaskConfig
from manga_pix2pix.data.derive import derive_batch
from manga_pix2pix.data.sketch import PAPER_SKETCHES, SketchConfig, image_complexity
from manga_pix2pix.data.synthetic import synthetic_image, tags_of
from manga_pix2pix.errors import UserError
from manga_pix2pix.imageio import list_images, read_image

log = logging.getLogger(__name__)

#: pix2pix jitter: images are resized up by this factor (286 / 256) before the random crop.
JITTER_SCALE = 286.0 / 256.0

CROPS = ("center", "top")

#: Training cue masks by default: the paper's full cues, partial cues and none, mixed.
DEFAULT_CUE_MASKS = CueMaskConfig()

AUTOTUNE = tf.data.AUTOTUNE


def to_uint8_image(x: tf.Tensor) -> tf.Tensor:
    """Converts an image in [-1, 1] (any shape) to uint8 in [0, 255], rounded and clipped."""
    x = tf.cast(tf.convert_to_tensor(x), tf.float32)
    return tf.cast(tf.round(tf.clip_by_value((x + 1.0) * 127.5, 0.0, 255.0)), tf.uint8)


def resize_and_crop(image: tf.Tensor, size: int, crop: str = "center") -> tf.Tensor:
    """Resizes an image's short side to `size`, then crops it to `size x size`.

    Args:
        image: uint8 `[H, W, 3]`, any size.
        size: the output side.
        crop: `"center"`, or `"top"` (keep the top of a portrait, e.g. a face; the crop is
            still centred horizontally).

    Returns:
        uint8 `[size, size, 3]`. An image already `size x size` is returned unchanged.
    """
    if crop not in CROPS:
        raise ValueError(f"crop: must be one of {CROPS}, got {crop!r}")
    image = tf.convert_to_tensor(image)
    shape = tf.shape(image)
    height, width = shape[0], shape[1]

    def resize():
        short = tf.cast(tf.minimum(height, width), tf.float32)
        scale = size / short
        new_h = tf.maximum(size, tf.cast(tf.round(tf.cast(height, tf.float32) * scale), tf.int32))
        new_w = tf.maximum(size, tf.cast(tf.round(tf.cast(width, tf.float32) * scale), tf.int32))
        # Antialiasing matters when shrinking a large image: without it, thin lines alias.
        resized = tf.image.resize(image, [new_h, new_w], method="bilinear", antialias=True)
        resized = tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)
        top = 0 if crop == "top" else (new_h - size) // 2
        left = (new_w - size) // 2
        return resized[top : top + size, left : left + size]

    same = tf.logical_and(tf.equal(height, size), tf.equal(width, size))
    out = tf.cond(same, lambda: image, resize)
    return tf.ensure_shape(out, [size, size, 3])


#: The files already reported as skipped: counting the images and the first epoch both read
#: every file, and a bad one is worth one warning, not one per pass.
_SKIPPED: set[str] = set()


def _decode_file(path: bytes) -> tuple[np.ndarray, bool]:
    """Reads one image file for the folder source; a bad file gives `ok = False`."""
    name = path.decode()
    try:
        return read_image(name), True
    except UserError as err:
        if name not in _SKIPPED:
            _SKIPPED.add(name)
            log.warning("skipping %s", err)
        return np.zeros([1, 1, 3], np.uint8), False


def _folder_source(
    folder: Path, image_size: int, crop: str, shuffle_files: bool, seed: int
) -> tf.data.Dataset:
    files = [str(p) for p in list_images(folder)]
    if not files:
        raise UserError(f"{folder}: no image files in this folder")

    def load(path):
        image, ok = tf.numpy_function(_decode_file, [path], [tf.uint8, tf.bool], stateful=False)
        image = tf.ensure_shape(image, [None, None, 3])
        return image, tf.ensure_shape(ok, [])

    def finish(image, ok):
        image = resize_and_crop(image, image_size, crop)
        return {"image": image, "complexity": image_complexity(image)}

    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_files:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.filter(lambda image, ok: ok)
    return ds.map(finish, num_parallel_calls=AUTOTUNE, deterministic=True)


def _synthetic_source(count: int, image_size: int, seed: int) -> tf.data.Dataset:
    if count < 1:
        raise ValueError(f"synthetic_count: must be at least 1, got {count}")

    def draw(index: np.int64) -> tuple[np.ndarray, np.ndarray]:
        i = seed + int(index)
        tags = np.array([t.encode() for t in tags_of(i)], dtype=object)
        return synthetic_image(i, image_size), tags

    def load(index):
        image, tags = tf.numpy_function(draw, [index], [tf.uint8, tf.string], stateful=False)
        image = tf.ensure_shape(image, [image_size, image_size, 3])
        return {
            "image": image,
            "complexity": image_complexity(image),
            "tags": tf.ensure_shape(tags, [None]),
        }

    ds = tf.data.Dataset.range(count)
    return ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)


def _tfds_source(
    name: str,
    data_dir: str | None,
    split: str,
    image_size: int,
    crop: str,
    shuffle_files: bool,
    seed: int,
) -> tf.data.Dataset:
    import tensorflow_datasets as tfds

    try:
        # Registers the `danbooru` builder with TFDS.
        import tfds_danbooru  # noqa: F401
    except ImportError as err:
        log.debug("tfds_danbooru not importable: %s", err)

    where = data_dir or "the default TFDS data folder"
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except ValueError:
        # DatasetNotFoundError (a ValueError), or a string that is not a dataset name at all.
        raise UserError(
            f"{name}: neither a folder nor a known TFDS dataset (use a folder of images, "
            "'synthetic', or a TFDS name such as 'danbooru')"
        ) from None
    if not builder.is_prepared():
        raise UserError(
            f"{name}: the dataset is not built in {where}; build it first "
            "(manga-pix2pix build-dataset) or pass the right --data-dir"
        )
    try:
        ds = builder.as_dataset(
            split=split,
            shuffle_files=shuffle_files,
            read_config=tfds.ReadConfig(shuffle_seed=seed),
        )
    except (ValueError, KeyError) as err:
        splits = ", ".join(sorted(builder.info.splits.keys()))
        raise UserError(f"{name}: cannot read split {split!r} (it has {splits}): {err}") from None
    features = builder.info.features

    def select(example):
        image = example["image"]
        if image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        out = {}
        if tuple(image.shape[:2]) == (image_size, image_size) and "complexity" in features:
            out["image"] = image
            out["complexity"] = tf.cast(example["complexity"], tf.float32)
        else:
            out["image"] = resize_and_crop(image, image_size, crop)
            out["complexity"] = image_complexity(out["image"])
        if "tags" in features:
            out["tags"] = example["tags"]
        return out

    return ds.map(select, num_parallel_calls=AUTOTUNE, deterministic=True)


def load_images(
    source: str,
    *,
    data_dir: str | None = None,
    split: str = "train",
    image_size: int = 256,
    crop: str = "center",
    seed: int = 0,
    synthetic_count: int = 256,
    shuffle_files: bool = False,
) -> tf.data.Dataset:
    """The coloured images of a source, at `image_size`, before any augmentation.

    Args:
        source: `"synthetic"`, a folder of image files, or a TFDS name (`"danbooru"`,
            `"danbooru/256"`).
        data_dir: the TFDS data folder (TFDS sources only; None means TFDS's default).
        split: the TFDS split, e.g. `"train"` or `"train[:90%]"` (TFDS sources only).
        image_size: the side `S` of the square images yielded.
        crop: how a non-square image is cropped after its short side is resized to `S`:
            `"center"` or `"top"`.
        seed: the synthetic source draws `synthetic_image(seed + i)` for image `i`; also keys
            `shuffle_files`.
        synthetic_count: how many synthetic images.
        shuffle_files: read a folder's files, or a TFDS dataset's shards, in an order shuffled
            by `seed` (and reshuffled on each pass) rather than in name order; training uses
            it so that a shuffle buffer smaller than the dataset still mixes it well.

    Returns:
        A dataset of dicts: `image` uint8 `[S, S, 3]`, `complexity` float32 scalar (percent of
        line pixels of its sketch), and `tags` string `[n]` where the source has tags
        (synthetic and TFDS danbooru).

    Raises:
        UserError: an empty source or folder, a missing folder that is not a TFDS name either,
            an unknown or unbuilt TFDS dataset, an unknown split.
        ValueError: a bad `crop`, `image_size` or `synthetic_count`.
    """
    if crop not in CROPS:
        raise ValueError(f"crop: must be one of {CROPS}, got {crop!r}")
    if image_size < 8:
        raise ValueError(f"image_size: must be at least 8, got {image_size}")
    if not source:
        raise UserError("the data source is empty: give a folder, 'synthetic' or a dataset name")
    if source == "synthetic":
        return _synthetic_source(synthetic_count, image_size, seed)
    path = Path(os.path.expanduser(source))
    if path.is_dir():
        return _folder_source(path, image_size, crop, shuffle_files, seed)
    if path.exists():
        raise UserError(f"{source}: is a file; give a folder of images or a dataset name")
    return _tfds_source(source, data_dir, split, image_size, crop, shuffle_files, seed)


def _stateless_seed(seed: int | tf.Tensor) -> tf.Tensor:
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank == 0:
        seed = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
    return tf.cast(seed, tf.int64)


def _jitter(image: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
    """pix2pix jitter on a float image: resize up by 286/256, random crop back, random flip."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    big = int(round(size * JITTER_SCALE))
    image = tf.image.resize(image, [big, big], method="bilinear")
    image = tf.image.stateless_random_crop(image, [size, size, 3], crop_seed)
    return tf.image.stateless_random_flip_left_right(image, flip_seed)


def augment_image(
    image_uint8: tf.Tensor, *, seed: int | tf.Tensor, training: bool, image_size: int | None
) -> tf.Tensor:
    """The host's part of an example: resize and crop to `image_size`, and (training) jitter.

    Args:
        image_uint8: uint8 RGB `[H, W, 3]`.
        seed: an int, or a stateless seed `[2]`; keys the jitter (crop offset and flip).
        training: apply the pix2pix jitter (random resized crop and flip).
        image_size: the output side `S`; None keeps the image's size (not with `training`).

    Returns:
        uint8 `[S, S, 3]`, ready for `manga_pix2pix.data.derive.derive_batch`.
    """
    image_uint8 = tf.convert_to_tensor(image_uint8)
    if image_uint8.dtype != tf.uint8:
        raise ValueError(f"image_uint8: expected uint8, got {image_uint8.dtype.name}")
    if image_size is None and training:
        raise ValueError("image_size: required when training")
    if image_size is not None:
        image_uint8 = resize_and_crop(image_uint8, image_size)
    if not training:
        return image_uint8
    aug_seed = tf.random.experimental.stateless_split(_stateless_seed(seed), 2)[0]
    image = _jitter(tf.cast(image_uint8, tf.float32), image_size, aug_seed)
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


def prepare_example(
    image_uint8: tf.Tensor,
    *,
    seed: int | tf.Tensor,
    training: bool,
    cue_masks: CueMaskConfig = DEFAULT_CUE_MASKS,
    cue_sigma: float | None = None,
    image_size: int | None,
    sketches: SketchConfig = PAPER_SKETCHES,
    cue_style: str = "paper",
) -> dict[str, tf.Tensor]:
    """Derives one training or evaluation example from one colour image.

    `augment_image`, then `derive_batch` on a batch of one: the same arithmetic as a batch
    derived on the host or on the accelerator.

    Args:
        image_uint8: uint8 RGB `[H, W, 3]`.
        seed: an int, or a stateless seed `[2]` (int32/int64); keys every random choice.
        training: apply the pix2pix jitter (random resized crop and flip).
        cue_masks: how the cue mask is drawn (`NO_CUES` for a model without cues).
        cue_sigma: the cue blur sigma in pixels; None means 20 px per 256 px of image side.
        image_size: the output side `S`; an image of another size is first resized (short side)
            and centre-cropped to it. None keeps the image's own size (evaluation at any size;
            not allowed with `training`).
        sketches: the sketch style mix (default: the paper's adaptive threshold only).
        cue_style: `paper` (the image blurred, cut by the cue mask) or `artist` (see
            `manga_pix2pix.data.cues.artist_cues`; `cue_masks` gives the odds of a full
            highlighter layer, strokes and none).

    Returns:
        `{"image", "sketch", "cues", "cue_mask"}`, float32 (see the module docstring).
    """
    seed = _stateless_seed(seed)
    image = augment_image(image_uint8, seed=seed, training=training, image_size=image_size)
    batch = derive_batch(image[None], seed[None], cue_masks, cue_sigma, sketches=sketches,
                         cue_style=cue_style)
    return {name: value[0] for name, value in batch.items()}


def derive_on_host(batches: tf.data.Dataset, **options) -> tf.data.Dataset:
    """Maps `derive_batch` over batches of `{"image": uint8, "seed"}` (from `augment_image`).

    Args:
        batches: the augmented batches.
        **options: `derive_batch`'s `cue_masks`, `cue_sigma`, `sketches` and `cue_style`.
    """
    return batches.map(
        lambda batch: derive_batch(batch["image"], batch["seed"], **options),
        num_parallel_calls=AUTOTUNE, deterministic=True,
    )


def examples_from_images(
    images: tf.data.Dataset,
    *,
    image_size: int = 256,
    batch_size: int = 4,
    training: bool = True,
    seed: int = 0,
    cue_masks: CueMaskConfig = DEFAULT_CUE_MASKS,
    cue_sigma: float | None = None,
    repeat: bool = False,
    shuffle_buffer: int = 256,
    drop_remainder: bool = True,
    derive: bool = True,
) -> tf.data.Dataset:
    """The second half of `make_dataset`: uint8 images -> batched training examples.

    Stages: (training) seeded shuffle -> (repeat) -> `augment_image` keyed by `(seed, index)`
    -> batch -> (`derive`) `derive_batch` on each batch -> prefetch.

    Args:
        images: a dataset of uint8 `[H, W, 3]` images (resized and centre-cropped to
            `image_size` if they are not that size already).
        image_size, batch_size, training, seed, cue_masks, cue_sigma, repeat, shuffle_buffer,
            drop_remainder: see `make_dataset`.
        derive: derive the examples here; False yields the augmented batches, `{"image":
            uint8 [B, S, S, 3], "seed": int64 [B, 2]}`, for `derive_batch` to derive elsewhere
            (e.g. on an accelerator) with the same result.

    Returns:
        A dataset of dicts of float32 tensors `[B, S, S, C]` (or of augmented batches).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: must be at least 1, got {batch_size}")
    ds = images
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    def augment(index, image):
        example_seed = tf.stack([tf.constant(seed, tf.int64), index])
        image = augment_image(image, seed=example_seed, training=training,
                              image_size=image_size)
        return {"image": image, "seed": example_seed}

    ds = ds.enumerate().map(augment, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if derive:
        ds = derive_on_host(ds, cue_masks=cue_masks, cue_sigma=cue_sigma)
    return ds.prefetch(AUTOTUNE)


def make_dataset(
    source: str,
    *,
    data_dir: str | None = None,
    split: str = "train",
    image_size: int = 256,
    batch_size: int = 4,
    training: bool = True,
    seed: int = 0,
    complexity_ceiling: float | None = 40.0,
    cue_masks: CueMaskConfig = DEFAULT_CUE_MASKS,
    cue_sigma: float | None = None,
    crop: str = "center",
    synthetic_count: int = 256,
    repeat: bool = False,
    shuffle_buffer: int = 256,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """Batches of `{image, sketch, cues, cue_mask}` for training or evaluation.

    Order of stages: source (`load_images`; when training, its files or shards in an order
    shuffled by the seed) -> keep images with complexity <= ceiling -> (training) seeded
    shuffle -> (repeat) -> `prepare_example` keyed by `(seed, index)` -> batch -> prefetch.
    See the module docstring for value ranges and for what the seed makes deterministic.
    If the ceiling drops every image, or fewer images than `batch_size` remain with
    `drop_remainder`, the dataset is empty.

    Args:
        source, data_dir, split, image_size, crop, synthetic_count: see `load_images`.
        batch_size: examples per batch.
        training: shuffle and augment (pix2pix jitter); False: source order, no augmentation,
            cue masks still drawn from `cue_masks` by `(seed, index)`.
        seed: keys the shuffle and every random op (and the synthetic images).
        complexity_ceiling: drop images whose sketch complexity (percent of line pixels) is
            above it; None keeps all.
        cue_masks: how cue masks are drawn; `NO_CUES` gives all-zero cues and masks.
        cue_sigma: cue blur sigma in pixels; None means 20 px per 256 px.
        repeat: repeat the source forever (each pass reshuffled when training).
        shuffle_buffer: shuffle buffer size, in images.
        drop_remainder: drop a last partial batch (static batch shapes, as TPUs need).

    Returns:
        A dataset of dicts of float32 tensors `[B, S, S, C]`.

    Raises:
        UserError: see `load_images`.
    """
    ds = load_images(
        source,
        data_dir=data_dir,
        split=split,
        image_size=image_size,
        crop=crop,
        seed=seed,
        synthetic_count=synthetic_count,
        shuffle_files=training,
    )
    if complexity_ceiling is not None:
        ceiling = float(complexity_ceiling)
        ds = ds.filter(lambda ex: ex["complexity"] <= ceiling)
    return examples_from_images(
        ds.map(lambda ex: ex["image"]),
        image_size=image_size,
        batch_size=batch_size,
        training=training,
        seed=seed,
        cue_masks=cue_masks,
        cue_sigma=cue_sigma,
        repeat=repeat,
        shuffle_buffer=shuffle_buffer,
        drop_remainder=drop_remainder,
    )
