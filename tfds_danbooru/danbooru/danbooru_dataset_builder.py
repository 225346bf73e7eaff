"""danbooru dataset: coloured anime illustrations from booru sites, packed from a manual dir.

`manga-pix2pix build-dataset` fills the manual dir (images named by post id and a SQLite
manifest, see `tfds_danbooru.scrape.manifest`); this builder packs it into TFRecords. By
default TFDS's manual dir is `<data_dir>/downloads/manual/`; the builder reads that folder if
it holds `manifest.sqlite`, else its `danbooru/` subfolder (where `build-dataset` writes).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import cv2
import numpy as np
import tensorflow_datasets as tfds

from manga_pix2pix.data.sketch import image_complexity
from manga_pix2pix.errors import UserError
from manga_pix2pix.imageio import read_image
from tfds_danbooru.scrape.manifest import MANIFEST_NAME, Row, read_done_rows
from tfds_danbooru.splits import split_hash

log = logging.getLogger(__name__)

CROPS = ("center", "top")
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
    """

    image_size: int = 256
    crop: str = "center"
    test_fraction: float = DEFAULT_TEST_FRACTION


def config_name(image_size: int, crop: str = "center",
                test_fraction: float = DEFAULT_TEST_FRACTION) -> str:
    """The config name for these settings: "256", "256-top", "256-test10", "512-top-test2.5"."""
    name = str(image_size)
    if crop != "center":
        name += f"-{crop}"
    if test_fraction != DEFAULT_TEST_FRACTION:
        name += f"-test{test_fraction * 100:g}"
    return name


def make_config(image_size: int = 256, crop: str = "center",
                test_fraction: float = DEFAULT_TEST_FRACTION) -> DanbooruConfig:
    """A config for these settings (a built-in one where it exists).

    Configs other than the built-in ones are read back by name from the data dir, e.g.
    `tfds.load("danbooru/256-test10", data_dir=...)`.

    Raises:
        ValueError: a bad size, crop or fraction.
    """
    if crop not in CROPS:
        raise ValueError(f"crop: must be one of {CROPS}, got {crop!r}")
    if not 8 <= image_size <= 4096:
        raise ValueError(f"image_size: must be in [8, 4096], got {image_size}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction: must be in [0, 1), got {test_fraction}")
    name = config_name(image_size, crop, test_fraction)
    for config in Builder.BUILDER_CONFIGS:
        if config.name == name:
            return config
    return DanbooruConfig(
        name=name,
        description=_describe(image_size, crop, test_fraction),
        image_size=image_size,
        crop=crop,
        test_fraction=test_fraction,
    )


def _describe(size: int, crop: str, test_fraction: float) -> str:
    return (f"{size}x{size} images, short side resized then {crop}-cropped; "
            f"{test_fraction * 100:g}% of post ids in test")


def assign_splits(rows: list[Row], test_fraction: float) -> tuple[list[Row], list[Row]]:
    """(train, test): ids whose `split_hash` is below `test_fraction` go to test.

    So that a small dataset still has a test split, if no id falls below the fraction (and
    there are at least 2 images and the fraction is above 0) the id with the lowest hash goes
    to test.
    """
    train, test = [], []
    for row in rows:
        (test if split_hash(row.id) < test_fraction else train).append(row)
    if not test and test_fraction > 0 and len(train) >= 2:
        lowest = min(train, key=lambda r: split_hash(r.id))
        train.remove(lowest)
        test.append(lowest)
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
                "image": tfds.features.Image(shape=(size, size, 3), dtype=np.uint8),
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

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        """Returns SplitGenerators."""
        root = find_manual_root(Path(dl_manager.manual_dir))
        rows = read_done_rows(root)
        if not rows:
            raise UserError(f"{root}: the manifest lists no images; run build-dataset first")
        train, test = assign_splits(rows, self.builder_config.test_fraction)
        splits = {"train": self._generate_examples(root, train)}
        if test:
            splits["test"] = self._generate_examples(root, test)
        return splits

    def _generate_examples(self, root: Path, rows: list[Row]):
        """Yields (post id, example) for every image that still decodes."""
        size, crop = self.builder_config.image_size, self.builder_config.crop
        for row in rows:
            try:
                image = read_image(root / row.file)
            except UserError as err:
                log.warning("leaving out post %d: %s", row.id, err)
                continue
            image = resize_and_crop(image, size, crop)
            yield row.id, {
                "image": image,
                "id": row.id,
                "md5": row.md5 or "",
                "tags": list(row.tags),
                "rating": row.rating,
                "source": row.source,
                "complexity": np.float32(image_complexity(image).numpy()),
            }
