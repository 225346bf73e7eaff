"""danbooru dataset: coloured anime illustrations from booru sites, packed from a manual dir.

`manga-pix2pix build-dataset` fills the manual dir (images named by post id and a SQLite
manifest, see `tfds_danbooru.scrape.manifest`); this builder packs it into TFRecords. By
default TFDS's manual dir is `<data_dir>/downloads/manual/`; the builder reads that folder if
it holds `manifest.sqlite`, else its `danbooru/` subfolder (where `build-dataset` writes).

A manual dir may instead hold `dump.json` (`tfds_danbooru.dump`), which points at a Danbooru
dump: then the examples are read from the dump itself, on Apache Beam when the download config
names a Beam runner or options (`tfds_danbooru.dump_beam`), else in this process. Each split
leaves its counts of left-out posts in `dump-report.<split>.json` beside the shards.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path

import cv2
import numpy as np
import tensorflow_datasets as tfds

from manga_pix2pix.data.sketch import image_complexity
from manga_pix2pix.errors import UserError
from manga_pix2pix.imageio import read_image
from tfds_danbooru import dump
from tfds_danbooru.scrape.manifest import MANIFEST_NAME, Row, read_done_rows
from tfds_danbooru.splits import split_hash

log = logging.getLogger(__name__)

CROPS = ("center", "top")
#: How the images are stored: PNG (lossless), or JPEG (quality 95, a fraction of the size).
ENCODINGS = ("png", "jpeg")
#: Image sides with a built-in config; 64 and 128 are for tests and quick runs.
IMAGE_SIZES = (64, 128, 256, 512)
DEFAULT_TEST_FRACTION = 0.05


@dataclasses.dataclass(eq=False)
class DanbooruConfig(tfds.core.BuilderConfig):
    """A variant of the dataset: what changes the examples written.

    Attributes:
        image_size: the side S of the square images.
        crop: "center", or "top" (keep the top of a portrait, as the original project did).
        test_fraction: the share of post ids assigned to the test split.
        encoding: how the images are stored, one of `ENCODINGS`.
    """

    image_size: int = 256
    crop: str = "center"
    test_fraction: float = DEFAULT_TEST_FRACTION
    encoding: str = "png"


def config_name(image_size: int, crop: str = "center",
                test_fraction: float = DEFAULT_TEST_FRACTION, encoding: str = "png") -> str:
    """The config name for these settings: "256", "256-top", "256-test10", "512-top-test2.5",
    "256-jpeg"."""
    name = str(image_size)
    if crop != "center":
        name += f"-{crop}"
    if test_fraction != DEFAULT_TEST_FRACTION:
        name += f"-test{test_fraction * 100:g}"
    if encoding != "png":
        name += f"-{encoding}"
    return name


def make_config(image_size: int = 256, crop: str = "center",
                test_fraction: float = DEFAULT_TEST_FRACTION,
                encoding: str = "png") -> DanbooruConfig:
    """A config for these settings (a built-in one where it exists).

    Configs other than the built-in ones are read back by name from the data dir, e.g.
    `tfds.load("danbooru/256-test10", data_dir=...)`.

    Raises:
        ValueError: a bad size, crop, fraction or encoding.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding: must be one of {ENCODINGS}, got {encoding!r}")
    if crop not in CROPS:
        raise ValueError(f"crop: must be one of {CROPS}, got {crop!r}")
    if not 8 <= image_size <= 4096:
        raise ValueError(f"image_size: must be in [8, 4096], got {image_size}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction: must be in [0, 1), got {test_fraction}")
    name = config_name(image_size, crop, test_fraction, encoding)
    for config in Builder.BUILDER_CONFIGS:
        if config.name == name:
            return config
    return DanbooruConfig(
        name=name,
        description=_describe(image_size, crop, test_fraction, encoding),
        image_size=image_size,
        crop=crop,
        test_fraction=test_fraction,
        encoding=encoding,
    )


def _describe(size: int, crop: str, test_fraction: float, encoding: str = "png") -> str:
    text = (f"{size}x{size} images, short side resized then {crop}-cropped; "
            f"{test_fraction * 100:g}% of post ids in test")
    return text if encoding == "png" else f"{text}; stored as {encoding.upper()}"


def assign_splits(rows: list[Row], test_fraction: float) -> tuple[list[Row], list[Row]]:
    """(train, test): ids whose `split_hash` is below `test_fraction` go to test.

    So that a small dataset still has a test split, if no id falls below the fraction (and
    there are at least 2 images and the fraction is above 0) the id with the lowest hash goes
    to test; and so that it has a train split, if every id falls below it the one with the
    highest hash goes to train.
    """
    train, test = [], []
    for row in rows:
        (test if split_hash(row.id) < test_fraction else train).append(row)
    if not test and test_fraction > 0 and len(train) >= 2:
        lowest = min(train, key=lambda r: split_hash(r.id))
        train.remove(lowest)
        test.append(lowest)
    if not train and test:
        highest = max(test, key=lambda r: split_hash(r.id))
        test.remove(highest)
        train.append(highest)
    return train, test


def resize_and_crop(image: np.ndarray, size: int, crop: str = "center") -> np.ndarray:
    """Resizes the short side to `size` (area filter down, cubic up), then crops a square.

    Args:
        image: uint8 `[H, W, 3]`.
        size: the output side.
        crop: "center", or "top" (the top rows of a portrait; still centred horizontally).

    Returns:
        uint8 `[size, size, 3]`.
    """
    if crop not in CROPS:
        raise ValueError(f"crop: must be one of {CROPS}, got {crop!r}")
    height, width = image.shape[:2]
    if (height, width) != (size, size):
        scale = size / min(height, width)
        new_h = max(size, int(round(height * scale)))
        new_w = max(size, int(round(width * scale)))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        image = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
        top = 0 if crop == "top" else (new_h - size) // 2
        left = (new_w - size) // 2
        image = image[top : top + size, left : left + size]
    return np.ascontiguousarray(image)


def make_example(image: np.ndarray, *, post_id: int, md5: str | None, tags, rating: str,
                 source: str, size: int, crop: str) -> dict:
    """The example of one image: resized and cropped to `size`, with its sketch complexity."""
    image = resize_and_crop(image, size, crop)
    return {
        "image": image,
        "id": post_id,
        "md5": md5 or "",
        "tags": list(tags),
        "rating": rating,
        "source": source,
        "complexity": np.float32(image_complexity(image).numpy()),
    }


def dump_example(post, image: np.ndarray, *, size: int, crop: str, source: str) -> dict:
    """`make_example` for a dump's `Post` (module-level, so that Beam can pickle it)."""
    return make_example(image, post_id=post.id, md5=post.md5, tags=post.tags,
                        rating=post.rating, source=source, size=size, crop=crop)


def find_manual_root(manual_dir: Path) -> Path:
    """The folder holding `manifest.sqlite`: `manual_dir` itself or its `danbooru/`."""
    manual_dir = Path(manual_dir)
    if (manual_dir / MANIFEST_NAME).is_file():
        return manual_dir
    return manual_dir / "danbooru"


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for the danbooru dataset."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release.",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Fill the manual dir with `manga-pix2pix build-dataset --data-dir <data_dir> ...` (from a
    booru site, a folder of images or the synthetic source). It writes
    `<data_dir>/downloads/manual/danbooru/` (images/<id>.<ext> and manifest.sqlite), which
    this builder finds by itself; `--manual_dir` may point at that folder too.
    """
    BUILDER_CONFIGS = [
        DanbooruConfig(name=config_name(size, crop), description=_describe(size, crop, 0.05),
                       image_size=size, crop=crop)
        for size in (256, 512, 64, 128)
        for crop in CROPS
    ]
    DEFAULT_CONFIG_NAME = "256"

    def _info(self) -> tfds.core.DatasetInfo:
        """Returns the dataset metadata."""
        size = self.builder_config.image_size
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(size, size, 3), dtype=np.uint8,
                                             encoding_format=self.builder_config.encoding),
                "id": np.int64,
                "md5": tfds.features.Text(),
                "tags": tfds.features.Sequence(tfds.features.Text()),
                "rating": tfds.features.Text(),
                "source": tfds.features.Text(),
                "complexity": np.float32,
            }),
            supervised_keys=None,
            homepage="https://danbooru.donmai.us",
        )

    def _download_and_prepare(self, dl_manager, download_config):
        # A dump is read on Beam only when a runner or options are given, so that a plain
        # `tfds build` never starts Beam's default runner (which would download one).
        self._use_beam = bool(download_config.beam_runner or download_config.beam_options)
        return super()._download_and_prepare(dl_manager, download_config)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        """Returns SplitGenerators."""
        spec = dump.read_spec(dl_manager.manual_dir)
        if spec is not None:
            return self._dump_splits(spec)
        root = find_manual_root(Path(dl_manager.manual_dir))
        rows = read_done_rows(root)
        if not rows:
            raise UserError(f"{root}: the manifest lists no images; run build-dataset first")
        train, test = assign_splits(rows, self.builder_config.test_fraction)
        splits = {"train": self._generate_examples(root, train)}
        if test:
            splits["test"] = self._generate_examples(root, test)
        return splits

    def report_path(self, split: str) -> str:
        """The report file of a split built from a dump (its counts of left-out posts)."""
        return f"{self.data_dir}/dump-report.{split}.json"

    def _dump_splits(self, spec: dump.DumpSpec):
        config = self.builder_config
        make = functools.partial(dump_example, size=config.image_size, crop=config.crop,
                                 source=spec.format)
        splits = ["train", "test"] if config.test_fraction > 0 else ["train"]
        if getattr(self, "_use_beam", False):
            dump.require_beam()
            from tfds_danbooru import dump_beam

            return {split: dump_beam.DumpExamples(spec, split, config.test_fraction, make,
                                                  self.report_path(split))
                    for split in splits}
        chosen, events = dump.plan(dump.read_posts(spec), spec, config.test_fraction)
        if not chosen["train"] and not chosen["test"]:
            counts = ", ".join(f"{key.split('/')[-1]} {n}"
                               for key, n in sorted((events["train"] + events["test"]).items())
                               if key != "seen") or "none"
            raise UserError(f"{spec.dump_dir}: no post passes the filters ({counts})")
        return {split: dump.plain_examples(spec, chosen[split], events[split], make,
                                           self.report_path(split))
                for split in splits if chosen[split] or split == "train"}

    def _generate_examples(self, root: Path, rows: list[Row]):
        """Yields (post id, example) for every image that still decodes."""
        size, crop = self.builder_config.image_size, self.builder_config.crop
        for row in rows:
            try:
                image = read_image(root / row.file)
            except UserError as err:
                log.warning("leaving out post %d: %s", row.id, err)
                continue
            yield row.id, make_example(image, post_id=row.id, md5=row.md5, tags=row.tags,
                                       rating=row.rating, source=row.source, size=size,
                                       crop=crop)
