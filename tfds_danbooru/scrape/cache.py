"""The download cache: fetch, verify and store posts in the manual dir, resumably.

For each post a source yields, in this order:

1. an id seen before in this run is a duplicate (pages can overlap);
2. a "done" row whose file is present is kept as it is (nothing is fetched);
3. the source's own problem (no file URL, a bad URL, a malformed post) or a filter (rating,
   file type, animation tags, known size below the minimum or over the pixel cap) skips it;
4. a post skipped earlier for a reason that cannot change (corrupt file, md5 mismatch, a
   duplicate, HTTP 404...) is not fetched again;
5. a post whose md5 (as the site states it) is already in the dataset is a duplicate;
6. a file already at `images/<id>.<ext>` without a "done" row (a run killed between the
   rename and the manifest commit) is verified again like a download and kept if it passes;
7. otherwise the file is downloaded (within the size cap), verified (md5 as stated, decodes
   within the pixel cap, not animated, at least the minimum resolution, not a duplicate of a
   kept file by its real md5), written to a temporary file and renamed into place, and only
   then marked "done".

A transient failure (network, HTTP 5xx/429 after the retries) marks the post "failed": the
next run tries it again. Files are named by post id with an extension taken from the file's
own bytes; nothing from the network becomes a path.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import fcntl
import hashlib
import logging
import os
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

from manga_pix2pix.errors import UserError
from manga_pix2pix.imageio import MAX_PIXELS, decode_image, image_format, image_size_from_header
from tfds_danbooru.scrape.http import MAX_IMAGE_BYTES, FetchError
from tfds_danbooru.scrape.manifest import DONE, FAILED, IMAGES_DIR, SKIPPED, Manifest
from tfds_danbooru.scrape.posts import Post, Source

log = logging.getLogger(__name__)

#: Extensions of videos, archives, Flash and GIFs (nearly always animated): never downloaded.
SKIPPED_EXTS = frozenset({"mp4", "webm", "mkv", "mov", "avi", "zip", "rar", "7z", "swf", "gif"})
#: Tags that mark an animated post.
ANIMATED_TAGS = frozenset({"animated", "animated_gif", "animated_png", "video", "ugoira",
                           "flash", "sound", "animated_webp"})
#: Skip reasons that a later run cannot change (the post is not fetched again).
PERMANENT_REASONS = frozenset({"corrupt", "md5_mismatch", "duplicate_md5", "animated",
                               "file_type", "too_large", "http_404", "http_410", "http_403",
                               "http_401", "bad_url", "no_file_url"})
#: Extensions given to stored files, by the file's leading bytes.
#: The extension a file is stored under, by its format (`image_format`); others are skipped.
_STORED_EXT = {"png": "png", "jpeg": "jpg", "webp": "webp", "bmp": "bmp", "tiff": "tiff"}


@dataclasses.dataclass
class Filters:
    """Which posts are wanted.

    Attributes:
        ratings: rating letters to keep; None keeps every rating (local sources).
        min_resolution: the shortest side, in pixels, an image must have.
        max_pixels: the most pixels an image may decode to.
        max_bytes: the largest file downloaded.
    """

    ratings: tuple[str, ...] | None = ("g",)
    min_resolution: int = 0
    max_pixels: int = MAX_PIXELS
    max_bytes: int = MAX_IMAGE_BYTES


@dataclasses.dataclass
class CollectStats:
    """What one run of `collect` did.

    Attributes:
        seen: posts the source yielded.
        fetched: files downloaded (or read, or drawn) in full.
        kept: images added to the manual dir by this run.
        cached: images already there from an earlier run (not fetched again).
        recovered: files found without a "done" row that passed verification.
        skipped: posts left out, by reason.
        duplicates: posts left out as duplicates, by kind ("md5" or "id").
        failed: posts that hit network trouble, by reason (tried again by the next run).
        total: images in the manual dir at the end.
        stopped_at_max: whether the run stopped because it reached the maximum.
    """

    seen: int = 0
    fetched: int = 0
    kept: int = 0
    cached: int = 0
    recovered: int = 0
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    duplicates: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    failed: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    total: int = 0
    stopped_at_max: bool = False


def file_ext(data: bytes) -> str | None:
    """The stored extension for a file's bytes (png, jpg, webp, bmp, tiff), or None."""
    return _STORED_EXT.get(image_format(data))


def is_animated(data: bytes) -> bool:
    """Whether a PNG (APNG) or WebP file is animated."""
    if data.startswith(b"\x89PNG"):
        idat = data.find(b"IDAT")
        actl = data.find(b"acTL")
        return actl != -1 and (idat == -1 or actl < idat)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return data[12:16] == b"VP8X" and bool(data[20] & 0x02) if len(data) > 20 else False
    return False


class _Skip(Exception):
    def __init__(self, reason: str, width: int | None = None, height: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.width = width
        self.height = height


@dataclasses.dataclass
class _Verified:
    md5: str
    ext: str
    width: int
    height: int
    #: The decoded uint8 RGB image, for callers that go on to use it.
    image: object = dataclasses.field(default=None, repr=False)


def verify(data: bytes, post: Post, filters: Filters) -> _Verified:
    """Checks a downloaded file; raises `_Skip` with the reason if it must not be kept."""
    md5 = hashlib.md5(data).hexdigest()
    if post.md5 and post.md5 != md5:
        raise _Skip("md5_mismatch")
    ext = file_ext(data)
    if ext is None:
        raise _Skip("file_type")
    if is_animated(data):
        raise _Skip("animated")
    size = image_size_from_header(data)
    if size is not None and size[0] * size[1] > filters.max_pixels:
        raise _Skip("too_large", *size)
    try:
        image = decode_image(data, name=f"post {post.id}", max_pixels=filters.max_pixels)
    except UserError as err:
        log.info("%s", err)
        raise _Skip("corrupt") from None
    height, width = image.shape[:2]
    if min(height, width) < filters.min_resolution:
        raise _Skip("too_small", width, height)
    return _Verified(md5=md5, ext=ext, width=width, height=height, image=image)


def _filter_reason(post: Post, filters: Filters, *, final: bool) -> str | None:
    """The reason a post is filtered out before its file is fetched, or None.

    Before `Source.details` (`final=False`) an unknown rating ("") passes, since the HTML
    listing does not show ratings; after it, only the wanted ratings do.
    """
    if post.problem:
        return post.problem
    if filters.ratings is not None and post.rating not in filters.ratings:
        if final or post.rating:
            return "rating"
    if post.ext in SKIPPED_EXTS:
        return "file_type"
    if ANIMATED_TAGS.intersection(post.tags):
        return "animated"
    if post.width and post.height:
        if min(post.width, post.height) < filters.min_resolution:
            return "too_small"
        if post.width * post.height > filters.max_pixels:
            return "too_large"
    return None


def _disk_full(err: OSError) -> bool:
    return err.errno in (errno.ENOSPC, errno.EDQUOT)


class _Collector:
    def __init__(self, source: Source, manual_dir: Path, manifest: Manifest, filters: Filters,
                 max_images: int | None, progress: Callable[[int], None] | None):
        self.source = source
        self.images = manual_dir / IMAGES_DIR
        self.manifest = manifest
        self.filters = filters
        self.max_images = max_images
        self.progress = progress or (lambda total: None)
        self.stats = CollectStats()
        self.ids_this_run: set[int] = set()

    def run(self) -> CollectStats:
        stats = self.stats
        stats.total = self.manifest.count_done()
        self.progress(stats.total)
        if self.max_images is not None and stats.total >= self.max_images:
            stats.stopped_at_max = True
            stats.cached = stats.total
            return stats
        for post in self.source.iter_posts():
            if self.max_images is not None and stats.total >= self.max_images:
                stats.stopped_at_max = True
                break
            stats.seen += 1
            self.handle(post)
        else:
            if self.max_images is not None and stats.total >= self.max_images:
                stats.stopped_at_max = True
        return stats

    def record(self, post: Post, status: str, reason: str | None = None, **fields) -> None:
        existing = self.manifest.get(post.id)
        if existing is not None and existing.status == DONE and status != DONE:
            return  # never demote an image the dataset holds
        fields.setdefault("md5", post.md5)
        fields.setdefault("width", post.width)
        fields.setdefault("height", post.height)
        self.manifest.record(post.id, status=status, reason=reason, url=post.file_url,
                             tags=post.tags, rating=post.rating, source=self.source.name,
                             **fields)

    def skip(self, post: Post, reason: str, **fields) -> None:
        if reason.startswith("duplicate_"):
            self.stats.duplicates[reason[len("duplicate_"):]] += 1
        else:
            self.stats.skipped[reason] += 1
        if post.id is not None:
            self.record(post, SKIPPED, reason, **fields)

    def handle(self, post: Post) -> None:
        stats = self.stats
        if post.id is None:
            stats.skipped[post.problem or "malformed"] += 1
            return
        if post.id in self.ids_this_run:
            stats.duplicates["id"] += 1
            return
        self.ids_this_run.add(post.id)
        row = self.manifest.get(post.id)
        if row is not None and row.status == DONE and (self.images.parent / row.file).is_file():
            stats.cached += 1
            return
        reason = _filter_reason(post, self.filters, final=False)
        if reason is None and row is not None and row.status == SKIPPED:
            if row.reason in PERMANENT_REASONS:
                reason = row.reason
            elif row.reason == "too_small" and row.width and row.height:
                if min(row.width, row.height) < self.filters.min_resolution:
                    reason = "too_small"
        if reason is not None:
            self.skip(post, reason)
            return
        if post.md5 and self.manifest.done_id_with_md5(post.md5) not in (None, post.id):
            self.skip(post, "duplicate_md5")
            return
        try:
            post = self.source.details(post)
        except FetchError as err:
            self.fetch_failed(post, err)
            return
        reason = _filter_reason(post, self.filters, final=True)
        if reason is not None:
            self.skip(post, reason)
            return
        if self.recover(post):
            return
        try:
            data = self.source.fetch(post, self.filters.max_bytes)
        except FetchError as err:
            self.fetch_failed(post, err)
            return
        stats.fetched += 1
        self.store(post, data)

    def fetch_failed(self, post: Post, err: FetchError) -> None:
        log.info("post %s: %s", post.id, err)
        if err.transient:
            self.stats.failed[err.reason] += 1
            self.record(post, FAILED, err.reason)
        else:
            self.skip(post, err.reason)

    def recover(self, post: Post) -> bool:
        """Adopts a file left by a killed run if it verifies, else removes it.

        Returns:
            True if the post is settled (kept, or found to duplicate a kept file).
        """
        for path in sorted(self.images.glob(f"{post.id}.*")):
            if path.stem != str(post.id):
                continue
            try:
                data = path.read_bytes()
                checked = verify(data, post, self.filters)
            except (OSError, _Skip):
                checked = None
            if checked is None or path.suffix != f".{checked.ext}":
                log.info("post %s: %s does not verify; fetching it again", post.id, path.name)
                path.unlink(missing_ok=True)
                continue
            if self.keep(post, checked, path.name):
                self.stats.recovered += 1
            else:
                path.unlink(missing_ok=True)
            return True
        return False

    def store(self, post: Post, data: bytes) -> None:
        try:
            checked = verify(data, post, self.filters)
        except _Skip as skip:
            self.skip(post, skip.reason, width=skip.width, height=skip.height)
            return
        if self.manifest.done_id_with_md5(checked.md5) not in (None, post.id):
            self.skip(post, "duplicate_md5", md5=checked.md5)
            return
        name = f"{post.id}.{checked.ext}"
        write_atomic(self.images / name, data)
        if not self.keep(post, checked, name):
            (self.images / name).unlink(missing_ok=True)

    def keep(self, post: Post, checked: _Verified, name: str) -> bool:
        """Marks the post done; False if its md5 turned out to be taken already."""
        existing = self.manifest.get(post.id)
        try:
            self.record(post, DONE, None, md5=checked.md5, file=f"{IMAGES_DIR}/{name}",
                        width=checked.width, height=checked.height)
        except sqlite3.IntegrityError:
            self.skip(post, "duplicate_md5", md5=checked.md5)
            return False
        self.stats.kept += 1
        if existing is None or existing.status != DONE:
            self.stats.total += 1
        self.progress(self.stats.total)
        return True


def write_atomic(path: Path, data: bytes) -> None:
    """Writes `data` to a temporary file next to `path`, syncs it, and renames it onto `path`.

    Raises:
        UserError: the disk is full, or the folder cannot be written.
    """
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        if _disk_full(err):
            raise UserError(f"the disk is full: cannot write {path}") from None
        raise UserError(f"{path}: cannot write ({err.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            # The manifest will say "done" next: the bytes must be on disk before it does.
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        if _disk_full(err):
            raise UserError(f"the disk is full: cannot write {path}") from None
        raise UserError(f"{path}: cannot write ({err.strerror})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def lock_manual_dir(manual_dir: Path):
    """Takes an exclusive lock on the manual dir (released when the returned file is closed).

    Raises:
        UserError: another process holds it.
    """
    handle = open(manual_dir / ".lock", "a")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise UserError(
            f"{manual_dir}: another build is writing to it; wait for it to end") from None
    return handle


def collect(
    source: Source,
    manual_dir: str | os.PathLike,
    *,
    filters: Filters | None = None,
    max_images: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> CollectStats:
    """Fills `manual_dir` with verified images of `source` until `max_images` are there.

    `max_images` counts every image in the manual dir, earlier runs included, so rerunning the
    same command after an interruption finishes the job instead of starting another.

    Args:
        source: where posts come from.
        manual_dir: the builder's manual dir (created if missing).
        filters: which posts are wanted (default: rating g, any size).
        max_images: stop once the manual dir holds this many images (None: no limit).
        progress: called with the number of images held, after each one kept.

    Returns:
        What the run did.

    Raises:
        UserError: the search failed (unreachable host, access refused, no results), the
            manual dir is in use or holds another source's posts, or the disk is full.
    """
    manual_dir = Path(manual_dir)
    filters = filters or Filters()
    try:
        (manual_dir / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if _disk_full(err):
            raise UserError(f"the disk is full: cannot create {manual_dir}") from None
        raise UserError(f"{manual_dir}: cannot create ({err.strerror})") from None
    lock = lock_manual_dir(manual_dir)
    try:
        # Temporary files of a killed run are never renamed into place: drop them.
        for stale in (manual_dir / IMAGES_DIR).glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        with Manifest(manual_dir) as manifest:
            owner = manifest.get_meta("source")
            if owner is None:
                manifest.set_meta("source", source.name)
            elif owner != source.name:
                raise UserError(
                    f"{manual_dir} holds posts from the {owner!r} source, whose ids would clash "
                    f"with {source.name!r} ones; use another --data-dir"
                )
            stats = _Collector(source, manual_dir, manifest, filters, max_images,
                               progress).run()
    finally:
        lock.close()
    if stats.seen == 0 and not stats.stopped_at_max:
        raise UserError(
            "no posts match the search; check the tags, the ratings (--rating) and --base-url")
    if stats.total == 0:
        reasons = ", ".join(f"{n} {r}" for r, n in stats.skipped.most_common()) or "none"
        hint = ""
        if stats.skipped.get("rating"):
            hint = "; other ratings can be added with --rating"
        elif stats.skipped.get("too_small"):
            hint = "; a lower --min-resolution would keep more"
        raise UserError(
            f"no usable images: {stats.seen} posts found, none kept (skipped: {reasons}; "
            f"failed: {sum(stats.failed.values())}){hint}"
        )
    return stats
