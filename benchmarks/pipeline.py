"""Input pipeline throughput and parity with OpenCV; prints JSON.

Default mode: images/s of the whole on-the-fly training pipeline at 256 px (pix2pix jitter,
sketch, cue blur, cue masks with the default full/partial/none mix, scaling to [-1, 1],
batching) on images already decoded in memory, against OpenCV/numpy doing the same work in the
same run. The target is at least 4x the rate a pix2pix train step consumes images on the same
cores (about 2 img/s at 256 px on 2 CPU cores), i.e. 8 img/s.

`--per-core`: the host's two parts on one core each, at 256 px, against references in the same
run: `decode_images_per_s_per_core` (read TFRecords of PNG examples, decode, jitter, flip,
batch; reference: reading and decoding alone) and `derive_images_per_s_per_core` (the batched
`derive_batch` on in-memory uint8 batches; reference: the per-example derivation it replaced,
`random_cue_mask` + `gaussian_blur` + `sketch` one image at a time). With `--styles` the derivation
also draws the sketch-style mix with line jitter and the artist cues.

`--parity`: over a folder of images, the sketch's pixel agreement and the complexity
difference against `cv2.adaptiveThreshold`, and the cue blur's max error against
`cv2.GaussianBlur`.

Examples:

    python benchmarks/pipeline.py                      # synthetic images
    python benchmarks/pipeline.py --images DIR --seconds 30
    python benchmarks/pipeline.py --parity --images DIR
    python benchmarks/pipeline.py --per-core --seconds 10
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from machine_info import machine  # noqa: E402

from manga_pix2pix.data.cues import (  # noqa: E402
    CueMaskConfig,
    apply_mask,
    cue_sigma,
    gaussian_blur,
    random_cue_mask,
)
from manga_pix2pix.data.derive import derive_batch  # noqa: E402
from manga_pix2pix.data.pipeline import (  # noqa: E402
    JITTER_SCALE,
    augment_image,
    examples_from_images,
    resize_and_crop,
)
from manga_pix2pix.data.sketch import SketchConfig, image_complexity, sketch  # noqa: E402
from manga_pix2pix.data.synthetic import synthetic_image  # noqa: E402
from manga_pix2pix.imageio import list_images, read_image  # noqa: E402

TARGET_IMAGES_PER_S = 8.0
TARGET_DECODE_PER_CORE = 450.0
TARGET_DERIVE_PER_CORE = 300.0


def load(images_dir: str | None, count: int, size: int) -> np.ndarray:
    """Decoded `[N, size, size, 3]` uint8 images: from a folder, or synthetic."""
    if images_dir is None:
        return np.stack([synthetic_image(i, size) for i in range(count)])
    paths = list_images(images_dir)[:count]
    if not paths:
        sys.exit(f"{images_dir}: no images")
    return np.stack([resize_and_crop(read_image(p), size).numpy() for p in paths])


def tf_rate(images: np.ndarray, batch_size: int, seconds: float) -> float:
    """Images/s of the TF pipeline on in-memory images (after one warm-up second)."""
    ds = examples_from_images(
        tf.data.Dataset.from_tensor_slices(images),
        image_size=images.shape[1],
        batch_size=batch_size,
        training=True,
        cue_masks=CueMaskConfig(),
        repeat=True,
    )
    return _rate(iter(ds), batch_size, seconds)


def _rate(batches, batch_size: int, seconds: float) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < 1.0:
        next(batches)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(batches)
        n += batch_size
    return n / (time.perf_counter() - start)


def _cv2_partial_mask(size: int, rng: np.random.Generator, config: CueMaskConfig) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(1, config.max_strokes + 1)):
        start = rng.uniform(0, size, 2)
        end = start + rng.normal(0, 0.25 * size, 2)
        width = max(2, int(round(rng.uniform(0.03, 0.10) * size)))
        cv2.line(mask, tuple(int(v) for v in start), tuple(int(v) for v in end), 1, width)
    for _ in range(rng.integers(0, config.max_blobs + 1)):
        centre = tuple(int(v) for v in rng.uniform(0, size, 2))
        axes = tuple(int(v) for v in (0.05 + 0.15 * rng.uniform(size=2)) * size)
        cv2.ellipse(mask, centre, axes, rng.uniform(0, 180), 0, 360, 1, -1)
    return mask.astype(np.float32)[..., None]


def cv2_example(image: np.ndarray, rng: np.random.Generator, config: CueMaskConfig) -> dict:
    """The same work as `prepare_example(training=True)`, with OpenCV and numpy."""
    size = image.shape[0]
    big = int(round(size * JITTER_SCALE))
    image = cv2.resize(image, (big, big), interpolation=cv2.INTER_LINEAR)
    y, x = rng.integers(0, big - size + 1, 2)
    image = image[y : y + size, x : x + size]
    if rng.random() < 0.5:
        image = image[:, ::-1]
    image = np.ascontiguousarray(image)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    line = cv2.adaptiveThreshold(
        gray, 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY, 7, 2
    )
    colour = image.astype(np.float32) / 255.0
    cues = cv2.GaussianBlur(colour, (0, 0), 20.0 * size / 256.0) * 2.0 - 1.0
    u = rng.random()
    if u < config.p_full:
        mask = np.ones((size, size, 1), np.float32)
    elif u < config.p_full + config.p_partial:
        mask = _cv2_partial_mask(size, rng, config)
    else:
        mask = np.zeros((size, size, 1), np.float32)
    return {
        "image": colour * 2.0 - 1.0,
        "sketch": line[..., None].astype(np.float32) / 127.5 - 1.0,
        "cues": cues * mask,
        "cue_mask": mask,
    }


def cv2_batches(images: np.ndarray, batch_size: int):
    rng = np.random.default_rng(0)
    config = CueMaskConfig()
    while True:
        order = rng.permutation(len(images))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            examples = [
                cv2_example(images[i], rng, config) for i in order[start : start + batch_size]
            ]
            yield {key: np.stack([ex[key] for ex in examples]) for key in examples[0]}


def throughput(args) -> dict:
    info = machine(opencv=cv2.__version__, numpy=np.__version__)
    images = load(args.images, args.count, args.size)
    tf_images_per_s = tf_rate(images, args.batch_size, args.seconds)
    cv2_images_per_s = _rate(cv2_batches(images, args.batch_size), args.batch_size, args.seconds)
    return {
        "benchmark": "pipeline_throughput",
        "source": args.images or "synthetic",
        "images": int(len(images)),
        "image_size": args.size,
        "batch_size": args.batch_size,
        "seconds_per_measurement": args.seconds,
        "tf_pipeline_images_per_s": round(tf_images_per_s, 1),
        "opencv_numpy_images_per_s": round(cv2_images_per_s, 1),
        "ratio_tf_over_opencv": round(tf_images_per_s / cv2_images_per_s, 3),
        "target_images_per_s": TARGET_IMAGES_PER_S,
        "meets_target": tf_images_per_s >= TARGET_IMAGES_PER_S,
        "opencv_threads": cv2.getNumThreads(),
        "machine": info,
    }


def _one_core(ds: tf.data.Dataset) -> tf.data.Dataset:
    """The dataset on a private pool of one thread, each op single-threaded too."""
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    options.autotune.enabled = False
    return ds.with_options(options)


def write_png_records(images: np.ndarray, path: str) -> None:
    """One TFRecord file of `tf.train.Example`s, each one PNG-encoded image."""
    with tf.io.TFRecordWriter(path) as writer:
        for image in images:
            png = tf.io.encode_png(image).numpy()
            feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[png]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature))
                         .SerializeToString())


def _decoded(path: str, size: int, augment: bool) -> tf.data.Dataset:
    def parse(index, record):
        example = tf.io.parse_single_example(
            record, {"image": tf.io.FixedLenFeature([], tf.string)})
        image = tf.ensure_shape(tf.io.decode_png(example["image"], channels=3), [size, size, 3])
        if not augment:
            return {"image": image}
        seed = tf.stack([tf.constant(0, tf.int64), index])
        return {"image": augment_image(image, seed=seed, training=True, image_size=size),
                "seed": seed}

    return tf.data.TFRecordDataset(path).repeat().enumerate().map(parse)


def _reference_derive(images: tf.Tensor, seeds: tf.Tensor, config: CueMaskConfig):
    """The per-example derivation `derive_batch` replaced: one image at a time."""
    image = tf.cast(images[0], tf.float32) / 255.0
    mask = random_cue_mask(tf.shape(image)[0], tf.shape(image)[1], seeds[0], config)
    cues = apply_mask(gaussian_blur(image) * 2.0 - 1.0, mask)
    line = tf.cast(sketch(image), tf.float32) / 127.5 - 1.0
    return {"image": image * 2.0 - 1.0, "sketch": line, "cues": cues, "cue_mask": mask}


def per_core(args) -> dict:
    """The host's decode and derive rates on one core each, with same-run references."""
    images = load(args.images, args.count, args.size)
    batch = args.derive_batch_size
    config = CueMaskConfig()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "images.tfrecord")
        write_png_records(images, path)
        out["decode_images_per_s_per_core"] = _rate(
            iter(_one_core(_decoded(path, args.size, True).batch(args.batch_size))),
            args.batch_size, args.seconds)
        out["decode_only_images_per_s_per_core"] = _rate(
            iter(_one_core(_decoded(path, args.size, False).batch(args.batch_size))),
            args.batch_size, args.seconds)
    sample = images[np.arange(batch) % len(images)]
    seeds = tf.stack([tf.zeros([batch], tf.int64), tf.range(batch, dtype=tf.int64)], axis=1)
    options = {"cue_masks": config}
    if args.styles:
        options.update(sketches=SketchConfig(p_adaptive=0.2, p_xdog=0.3, p_pencil=0.5,
                                             augment=True), cue_style="artist")
    batches = tf.data.Dataset.from_tensors((sample, seeds)).repeat()
    derived = batches.map(lambda x, s: derive_batch(x, s, **options))
    out["derive_images_per_s_per_core"] = _rate(iter(_one_core(derived)), batch, args.seconds)
    singles = tf.data.Dataset.from_tensor_slices((sample[:, None], seeds[:, None])).repeat()
    reference = singles.map(lambda x, s: _reference_derive(x, s, config))
    out["derive_reference_per_example_images_per_s_per_core"] = _rate(
        iter(_one_core(reference)), 1, args.seconds)
    return {
        "benchmark": "pipeline_per_core",
        "source": args.images or "synthetic",
        "images": int(len(images)),
        "image_size": args.size,
        "batch_size": args.batch_size,
        "derive_batch_size": batch,
        "styles_and_artist_cues": bool(args.styles),
        "seconds_per_measurement": args.seconds,
        **{k: round(v, 1) for k, v in out.items()},
        "ratio_decode_over_decode_only": round(
            out["decode_images_per_s_per_core"] / out["decode_only_images_per_s_per_core"], 3),
        "ratio_derive_over_per_example_reference": round(
            out["derive_images_per_s_per_core"]
            / out["derive_reference_per_example_images_per_s_per_core"], 3),
        "targets": {"decode_images_per_s_per_core": TARGET_DECODE_PER_CORE,
                    "derive_images_per_s_per_core": TARGET_DERIVE_PER_CORE},
        "meets_targets": {
            "decode": out["decode_images_per_s_per_core"] >= TARGET_DECODE_PER_CORE,
            "derive": out["derive_images_per_s_per_core"] >= TARGET_DERIVE_PER_CORE,
        },
        "machine": machine(opencv=cv2.__version__, numpy=np.__version__),
    }


def parity(args) -> dict:
    if args.images is None:
        sys.exit("--parity needs --images DIR")
    paths = list_images(args.images)[: args.count]
    if not paths:
        sys.exit(f"{args.images}: no images")
    agreements, complexity_diffs, blur_errors = [], [], []
    agree_pixels = total_pixels = 0
    for path in paths:
        image = read_image(path)
        ours = sketch(image).numpy()[..., 0]
        theirs = cv2.adaptiveThreshold(
            cv2.cvtColor(image, cv2.COLOR_RGB2GRAY),
            255,
            cv2.ADAPTIVE_THRESH_GAUSSIAN_C,
            cv2.THRESH_BINARY,
            7,
            2,
        )
        same = int(np.sum(ours == theirs))
        agree_pixels += same
        total_pixels += ours.size
        agreements.append(same / ours.size)
        their_complexity = (1.0 - theirs.astype(np.float64).mean() / 255.0) * 100.0
        complexity_diffs.append(abs(float(image_complexity(image)) - their_complexity))
        colour = image.astype(np.float32) / 255.0
        sigma = float(cue_sigma(*image.shape[:2]))
        blurred = gaussian_blur(colour).numpy()
        blur_errors.append(float(np.abs(blurred - cv2.GaussianBlur(colour, (0, 0), sigma)).max()))
    return {
        "benchmark": "pipeline_parity",
        "source": args.images,
        "images": len(paths),
        "sketch_pixel_agreement": round(agree_pixels / total_pixels, 6),
        "sketch_agreement_worst_image": round(min(agreements), 6),
        "complexity_abs_diff_mean": round(float(np.mean(complexity_diffs)), 5),
        "complexity_abs_diff_max": round(float(np.max(complexity_diffs)), 5),
        "blur_max_abs_error_255": round(max(blur_errors) * 255.0, 5),
        "blur_mean_of_max_abs_error_255": round(float(np.mean(blur_errors)) * 255.0, 5),
        "targets": {"sketch_pixel_agreement": 0.995, "blur_max_abs_error_255": 2.0},
        "machine": machine(opencv=cv2.__version__, numpy=np.__version__),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", help="a folder of images (default: synthetic images)")
    parser.add_argument("--count", type=int, default=300, help="most images to use")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15.0, help="per measurement")
    parser.add_argument("--parity", action="store_true", help="measure parity, not speed")
    parser.add_argument("--per-core", action="store_true",
                        help="decode and derive rates on one core each")
    parser.add_argument("--derive-batch-size", type=int, default=32,
                        help="batch of the derivation in --per-core (32)")
    parser.add_argument("--styles", action="store_true",
                        help="--per-core: derive with the sketch-style mix and artist cues")
    args = parser.parse_args()
    if args.images is None and not args.parity:
        args.count = min(args.count, 64)
    if args.per_core:
        result = per_core(args)
    else:
        result = parity(args) if args.parity else throughput(args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
