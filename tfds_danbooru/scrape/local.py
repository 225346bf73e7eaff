"""Sources that need no network: a folder of the user's images, and the synthetic drawings.

Folder: every file under the folder (recursively, in sorted order of relative path) whose
suffix is an image format OpenCV reads. A file's post id is a stable 48-bit hash of its path
relative to the folder (as POSIX text), so ids survive moving the folder and rerunning; tags
are empty and the rating is "" (unknown).

Synthetic: post ids are the seeds 1, 2, 3, ... of `manga_pix2pix.data.synthetic`; rating "g",
tags `tags_of(seed, detail)`. A fraction of the seeds, chosen by a hash of the seed, is drawn
with `detail=3.0` (busier, higher-complexity images tagged `busy_style`) so that evaluation has
an "interpolation" set of an unseen style. The last `TEST_ONLY_CHARACTERS` characters appear
only in the test split, so that evaluation has a "transfer" set of unseen characters.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

from manga_pix2pix.data.synthetic import NUM_CHARACTERS, character_of, synthetic_image, tags_of
from manga_pix2pix.errors import UserError
from manga_pix2pix.imageio import IMAGE_SUFFIXES, encode_image
from tfds_danbooru.scrape.http import FetchError
from tfds_danbooru.scrape.posts import Post, Source
from tfds_danbooru.splits import split_hash

#: Characters drawn only into the test split, so the evaluation's "transfer" task (characters
#: never seen in training) is not empty on synthetic data.
TEST_ONLY_CHARACTERS = 2

#: Detail of the synthetic "busy" style.
BUSY_DETAIL = 3.0


def folder_id(relative_path: str) -> int:
    """The post id of a file in a folder source: 48 bits of the SHA-256 of its relative path."""
    digest = hashlib.sha256(relative_path.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:6], "big") or 1


class FolderSource(Source):
    """The image files under a local folder.

    Args:
        folder: the folder to read (recursively).

    Raises:
        UserError: the folder is missing, not a folder, or holds no image files.
    """

    name = "folder"

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder).expanduser()
        if not self.folder.exists():
            raise UserError(f"{self.folder}: no such folder")
        if not self.folder.is_dir():
            raise UserError(f"{self.folder}: is not a folder")
        self._paths: dict[int, Path] = {}
        for path in sorted(self.folder.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                relative = path.relative_to(self.folder).as_posix()
                self._paths.setdefault(folder_id(relative), path)
        if not self._paths:
            raise UserError(
                f"{self.folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder"
            )

    @property
    def count(self) -> int:
        """How many image files the folder holds."""
        return len(self._paths)

    def iter_posts(self) -> Iterator[Post]:
        """Yields one post per image file."""
        for post_id, path in self._paths.items():
            yield Post(id=post_id, file_url=None, rating="",
                       ext=path.suffix.lower().lstrip(".") or None)

    def fetch(self, post: Post, max_bytes: int) -> bytes:
        """Reads the file (refused if over `max_bytes`)."""
        path = self._paths[post.id]
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise FetchError(str(path), "too_large", f"{size} bytes is over the cap")
            return path.read_bytes()
        except OSError as err:
            raise FetchError(str(path), "unreadable", err.strerror or str(err)) from None


def is_busy(seed: int, fraction: float) -> bool:
    """Whether the synthetic image of `seed` is drawn in the busy style."""
    digest = hashlib.sha256(f"busy:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < fraction


class SyntheticSource(Source):
    """Procedural cel-style illustrations, drawn on demand.

    Args:
        image_size: the side of the square images drawn.
        busy_fraction: the share of seeds drawn with `detail=3.0`.
        test_fraction: the builder's test share; seeds of the last `TEST_ONLY_CHARACTERS`
            characters are kept only where they fall in the test split.
    """

    name = "synthetic"

    def __init__(self, image_size: int = 256, busy_fraction: float = 0.1,
                 test_fraction: float = 0.05):
        if not 0.0 <= busy_fraction <= 1.0:
            raise ValueError(f"busy_fraction: must be in [0, 1], got {busy_fraction}")
        self.image_size = image_size
        self.busy_fraction = busy_fraction
        self.test_fraction = test_fraction

    def detail(self, seed: int) -> float:
        """The detail the image of `seed` is drawn with."""
        return BUSY_DETAIL if is_busy(seed, self.busy_fraction) else 1.0

    def iter_posts(self) -> Iterator[Post]:
        """Yields seeds 1, 2, 3, ... without end (the collector stops at its maximum).

        Seeds of a test-only character that would land in the train split are left out.
        """
        for seed in itertools.count(1):
            test_only = character_of(seed) >= NUM_CHARACTERS - TEST_ONLY_CHARACTERS
            if test_only and split_hash(seed) >= self.test_fraction:
                continue
            yield Post(id=seed, tags=tuple(tags_of(seed, self.detail(seed))), rating="g",
                       width=self.image_size, height=self.image_size, ext="png")

    def fetch(self, post: Post, max_bytes: int) -> bytes:
        """Draws the image of the post's seed as PNG."""
        return encode_image(synthetic_image(post.id, self.image_size, self.detail(post.id)))
