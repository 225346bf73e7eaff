"""Danbooru dumps: their layouts, metadata and images, read without Apache Beam.

Two layouts are read (detected, or named):

    danbooru2021   DUMP/metadata/posts*.json      JSON lines, one post per line
                   DUMP/original/NNNN/ID.EXT      the original files, NNNN = id % 1000
                   DUMP/512px/NNNN/ID.jpg         or their 512-px JPEGs (read if no original/)
    danbooru2023   DUMP/posts.json (or metadata/posts.json; JSON lines or one JSON array),
                   else DUMP/*.parquet or DUMP/metadata/*.parquet
                   DUMP/original/*.tar, DUMP/recent/*.tar   tar shards with members ID.EXT

Both use Danbooru's field names (`id`, `md5`, `rating`, `tag_string`, `file_ext`,
`image_width`, `image_height`, `is_deleted`). Ratings are mapped to Danbooru's current letters
(`RATING_MAPS`): Danbooru2021 predates the 2022 split of "safe" into general and sensitive, so
its `s` (safe) becomes `g`; Danbooru2023's `g`/`s`/`q`/`e` are general, sensitive,
questionable and explicit as they stand.

Every post passes the scraper's filters (`tfds_danbooru.scrape.cache`): rating (general only
by default), file type (no video, archive or GIF), animation tags, minimum resolution, and
the file checks of `verify` (md5 of an original, decodes within the pixel cap, not
animated); and here also the search tags (all of them). A deleted post, or one without a file,
is skipped and counted; so is a post whose file the dump lacks. Of posts sharing an id one is
kept, and of posts sharing an md5 the lowest id.

The planning steps (`plan`, `SplitFallback`) and the per-container work (`list_members`,
`process_container`) are plain functions: `plain_examples` runs them in one process and
`tfds_danbooru.dump_beam` runs the same functions as a Beam pipeline.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import logging
import os
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator

from etils import epath

from manga_pix2pix.errors import UserError
from manga_pix2pix.imageio import MAX_PIXELS
from tfds_danbooru.scrape.cache import Filters, _filter_reason, _Skip, verify
from tfds_danbooru.scrape.http import MAX_IMAGE_BYTES
from tfds_danbooru.scrape.posts import Post, as_ext, as_id, as_md5, as_size, as_tags
from tfds_danbooru.splits import split_hash

log = logging.getLogger(__name__)

FORMATS = ("danbooru2021", "danbooru2023")
#: The file `build-dataset --source dump` writes into the manual dir: what to read, how.
SPEC_NAME = "dump.json"
#: Rating letters of each dump, mapped to Danbooru's current g/s/q/e.
RATING_MAPS = {
    "danbooru2021": {"s": "g", "q": "q", "e": "e"},
    "danbooru2023": {"g": "g", "s": "s", "q": "q", "e": "e"},
}
#: Above this many images a single machine's Beam runner runs short of memory (its shuffles
#: are held in memory); use a cluster.
LOCAL_IMAGE_BUDGET = 100_000
#: The extra that brings Apache Beam.
BEAM_EXTRA = "manga-pix2pix[beam]"

_MEMBER = re.compile(r"^([1-9][0-9]{0,18})\.([A-Za-z0-9]{1,8})$")
_FOLDER = re.compile(r"^[0-9]{4}$")
_TRUE = (True, 1, "true", "True", "t", "1")

#: A file in a container: (name, offset of its data in a tar or -1 in a folder, size).
Member = tuple[str, int, int]


def require_beam():
    """Imports Apache Beam, or says which extra brings it.

    Raises:
        UserError: Apache Beam is not installed.
    """
    try:
        import apache_beam
    except ImportError:
        raise UserError(
            f"packing a dump needs Apache Beam: pip install '{BEAM_EXTRA}'") from None
    return apache_beam


@dataclasses.dataclass(frozen=True)
class DumpSpec:
    """What to read from a dump and which posts to keep.

    Attributes:
        dump_dir: the dump's top folder (a local path, or a URL such as gs://... that the
            workers can read).
        format: one of `FORMATS`.
        images: the folder of the images under `dump_dir` ("original" or "512px"), for
            danbooru2021; danbooru2023 reads the tar shards of original/ and recent/.
        tags: tags a post must all have.
        ratings: rating letters (g, s, q, e) to keep, after `RATING_MAPS`.
        min_resolution: the shortest side an image must have, in pixels.
        max_images: keep at most this many posts, those of lowest id (None: all).
        max_pixels: the most pixels an image may decode to.
        max_bytes: the largest file read.
        rating_letters: whose rating letters the metadata uses, a key of `RATING_MAPS`
            ("": the format's own). A danbooru2021 layout whose metadata holds today's `g`
            uses today's letters, where `s` is sensitive, not safe.
    """

    dump_dir: str
    format: str
    images: str = "original"
    tags: tuple[str, ...] = ()
    ratings: tuple[str, ...] = ("g",)
    min_resolution: int = 0
    max_images: int | None = None
    max_pixels: int = MAX_PIXELS
    max_bytes: int = MAX_IMAGE_BYTES
    rating_letters: str = ""

    @property
    def rating_scheme(self) -> str:
        """The key of `RATING_MAPS` that reads this dump's ratings."""
        return self.rating_letters or self.format

    @property
    def filters(self) -> Filters:
        """The scraper's filters with these settings."""
        return Filters(ratings=self.ratings, min_resolution=self.min_resolution,
                       max_pixels=self.max_pixels, max_bytes=self.max_bytes)

    def to_json(self) -> str:
        """The spec as JSON text."""
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DumpSpec:
        """Reads `to_json`'s text back.

        Raises:
            UserError: the text is not a spec.
        """
        try:
            fields = json.loads(text)
            fields["tags"] = tuple(fields.get("tags", ()))
            fields["ratings"] = tuple(fields.get("ratings", ()))
            spec = cls(**fields)
        except (ValueError, TypeError, AttributeError) as err:
            raise UserError(f"{SPEC_NAME}: not a dump description ({err})") from None
        if spec.format not in FORMATS:
            raise UserError(f"{SPEC_NAME}: unknown dump format {spec.format!r}")
        return spec


def read_spec(manual_dir) -> DumpSpec | None:
    """The spec in `manual_dir` (or its `danbooru/` subfolder), or None if there is none."""
    for folder in (epath.Path(manual_dir), epath.Path(manual_dir) / "danbooru"):
        path = folder / SPEC_NAME
        if path.is_file():
            return DumpSpec.from_json(path.read_text())
    return None


def outside(path, root) -> bool:
    """Whether a local `path` leads, through symbolic links, out of the folder `root`.

    A dump is read where it lies, and a link out of it (to another dump, to /etc) is not
    followed. Remote paths (gs://...) have no links.
    """
    if "://" in str(root):
        return False
    real_root = os.path.realpath(str(root))
    return os.path.commonpath([os.path.realpath(str(path)), real_root]) != real_root


def _tars(root: epath.Path) -> list[epath.Path]:
    found = []
    for folder in ("original", "recent"):
        if (root / folder).is_dir() and not outside(root / folder, root):
            found.extend(p for p in sorted((root / folder).glob("*.tar"))
                         if not _skip_outside(p, root))
    return found


#: The links out of the dump already reported (the containers are listed more than once).
_REPORTED: set[str] = set()


def _skip_outside(path, root) -> bool:
    if not outside(path, root):
        return False
    if str(path) not in _REPORTED:
        _REPORTED.add(str(path))
        log.warning("%s: a link out of the dump; not read", path)
    return True


def detect_format(dump_dir) -> str:
    """The layout of the dump at `dump_dir`: "danbooru2021" or "danbooru2023".

    Raises:
        UserError: the folder is missing or holds neither layout.
    """
    root = epath.Path(dump_dir)
    if not root.is_dir():
        raise UserError(f"{dump_dir}: no such folder")
    if _tars(root):
        return "danbooru2023"
    if list((root / "metadata").glob("posts*.json")) if (root / "metadata").is_dir() else []:
        return "danbooru2021"
    raise UserError(
        f"{dump_dir}: not a Danbooru dump (expected metadata/posts*.json with original/NNNN/ "
        "or 512px/NNNN/ folders, or tar shards in original/ with posts.json); name the "
        "layout with --dump-format")


def make_spec(dump_dir, dump_format: str = "auto", **filters) -> DumpSpec:
    """Checks the dump at `dump_dir` and describes it, with `filters` (see `DumpSpec`).

    Raises:
        UserError: the dump is missing, has another layout, or lacks metadata or images.
    """
    if "://" not in str(dump_dir):
        # The workers may not share this process's working directory.
        dump_dir = os.path.abspath(os.path.expanduser(dump_dir))
    root = epath.Path(dump_dir)
    fmt = detect_format(root) if dump_format == "auto" else dump_format
    if fmt not in FORMATS:
        raise UserError(f"--dump-format: must be auto or one of {', '.join(FORMATS)}")
    if not root.is_dir():
        raise UserError(f"{dump_dir}: no such folder")
    images = "original"
    if fmt == "danbooru2021" and not (root / "original").is_dir():
        images = "512px"
    spec = DumpSpec(dump_dir=str(root), format=fmt, images=images, **filters)
    metadata_files(spec)
    if fmt == "danbooru2021" and _uses_todays_ratings(spec):
        log.warning("%s: the metadata rates posts g (general): read with today's letters, "
                    "where s is sensitive", dump_dir)
        spec = dataclasses.replace(spec, rating_letters="danbooru2023")
    if not containers(spec):
        where = ("tar shards in original/ or recent/" if fmt == "danbooru2023"
                 else "NNNN folders in original/ or 512px/")
        raise UserError(f"{dump_dir}: no images ({where})")
    return spec


def _uses_todays_ratings(spec: DumpSpec, sample: int = 10_000) -> bool:
    """Whether the first `sample` records rate any post `g`, a letter Danbooru2021 lacks."""
    records = itertools.chain.from_iterable(read_records(p) for p in metadata_files(spec))
    return any(isinstance(r, dict) and isinstance(r.get("rating"), str)
               and r["rating"].strip().lower() == "g"
               for r in itertools.islice(records, sample))


def metadata_files(spec: DumpSpec) -> list[str]:
    """The dump's metadata files, JSON (lines or array) or Parquet, in sorted order.

    Raises:
        UserError: there are none.
    """
    root = epath.Path(spec.dump_dir)
    if spec.format == "danbooru2021":
        found = sorted((root / "metadata").glob("posts*.json"))
        found = [p for p in found if not _skip_outside(p, root)]
    else:
        found = [p for p in (root / "posts.json", root / "metadata" / "posts.json")
                 if p.is_file()][:1]
        if not found:
            found = sorted(root.glob("*.parquet"))
            if (root / "metadata").is_dir():
                found += sorted((root / "metadata").glob("*.parquet"))
    if not found:
        expected = ("metadata/posts*.json" if spec.format == "danbooru2021"
                    else "posts.json or a .parquet file")
        raise UserError(f"{spec.dump_dir}: no metadata ({expected})")
    return [str(p) for p in found]


def is_json_array(path: str) -> bool:
    """Whether a JSON metadata file is one array (rather than JSON lines)."""
    with epath.Path(path).open("rb") as f:
        head = f.read(4096).lstrip()
    return head.startswith(b"[")


def read_records(path: str) -> Iterator[object]:
    """The records of one metadata file: JSON lines, a JSON array, or Parquet rows.

    A line that is not JSON gives None (counted as a malformed post).
    """
    if path.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise UserError(f"{path}: reading Parquet needs pyarrow, which comes with Apache "
                            f"Beam: pip install '{BEAM_EXTRA}'") from None

        try:
            with epath.Path(path).open("rb") as f:
                table = pq.read_table(f)
        except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise UserError(f"{path}: not a readable Parquet file ({str(err)[:200]})") from None
        yield from table.to_pylist()
    elif is_json_array(path):
        try:
            records = json.loads(epath.Path(path).read_bytes())
        except (ValueError, RecursionError):
            records = [None]
        yield from records if isinstance(records, list) else [None]
    else:
        with epath.Path(path).open("rb") as f:
            for line in f:
                if holds_text(line):
                    yield parse_json_line(line)


def parse_json_line(line) -> object:
    """One JSON line's value (text or bytes), or None if it is not JSON.

    Not JSON: not UTF-8 either, or nested too deep for the decoder (RecursionError).
    """
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


def holds_text(line) -> bool:
    """Whether a metadata line holds anything (a blank one is skipped, not counted)."""
    return bool(line.strip())


def _tags(record: dict) -> tuple[str, ...]:
    if "tag_string" in record:
        return as_tags(record["tag_string"])
    raw = record.get("tags")
    if isinstance(raw, list):
        return as_tags([t.get("name") if isinstance(t, dict) else t for t in raw])
    return as_tags(raw)


def parse_record(record, dump_format: str) -> Post:
    """A metadata record as a `Post`, with `problem` set where it cannot be used.

    `dump_format` names the rating letters (`DumpSpec.rating_scheme`).

    Problems: "malformed" (no usable id), "deleted", "no_file" (neither md5 nor file
    extension: a banned or file-less post).
    """
    if not isinstance(record, dict):
        return Post(id=None, problem="malformed")
    post_id = as_id(record.get("id"))
    if post_id is None:
        return Post(id=None, problem="malformed")
    md5, ext = as_md5(record.get("md5")), as_ext(record.get("file_ext"))
    problem = None
    if record.get("is_deleted") in _TRUE:
        problem = "deleted"
    elif md5 is None and ext is None:
        problem = "no_file"
    rating = record.get("rating")
    rating = RATING_MAPS[dump_format].get(rating.strip().lower(), "") if isinstance(
        rating, str) else ""
    return Post(id=post_id, md5=md5, tags=_tags(record), rating=rating,
                width=as_size(record.get("image_width")),
                height=as_size(record.get("image_height")), ext=ext, problem=problem)


def split_of(post_id: int | None, test_fraction: float) -> str:
    """The split a post id falls in by its hash alone ("train" for a post without id)."""
    if post_id is not None and split_hash(post_id) < test_fraction:
        return "test"
    return "train"


def post_reason(post: Post, spec: DumpSpec) -> str | None:
    """Why a post is left out before its file is read (the scraper's filters, then tags)."""
    reason = _filter_reason(post, spec.filters, final=True)
    if reason is None and spec.tags and not set(spec.tags).issubset(post.tags):
        reason = "tags"
    return reason


def _order(post: Post):
    return (post.md5 or "", post.ext or "", post.rating, post.tags, post.width or 0,
            post.height or 0)


def one_per_id(posts: Iterable[Post]) -> tuple[Post, int]:
    """(the post kept of those sharing an id, how many are dropped as duplicates)."""
    posts = list(posts)
    return min(posts, key=_order), len(posts) - 1


def one_per_md5(posts: Iterable[Post]) -> tuple[Post, list[Post]]:
    """(the post of lowest id among those sharing an md5, the others)."""
    posts = sorted(posts, key=lambda p: p.id)
    return posts[0], posts[1:]


class SplitFallback:
    """The builder's rule that a small dataset still gets one test image, as a combine.

    If no kept id falls in test by its hash (and there are at least 2 and the fraction is
    above 0), the id of lowest hash goes to test, as `assign_splits` does for the manifest.
    The accumulator is (any id in test, ids seen, (hash, id) of lowest hash).
    """

    def __init__(self, test_fraction: float):
        self.test_fraction = test_fraction

    def create(self):
        """An empty accumulator."""
        return (False, 0, None)

    def add(self, acc, post_id: int):
        """Adds one kept id."""
        entry = (split_hash(post_id), post_id)
        lowest = entry if acc[2] is None else min(acc[2], entry)
        return (acc[0] or entry[0] < self.test_fraction, acc[1] + 1, lowest)

    def merge(self, accs):
        """Merges accumulators."""
        accs = list(accs)
        lowest = [a[2] for a in accs if a[2] is not None]
        return (any(a[0] for a in accs), sum(a[1] for a in accs),
                min(lowest) if lowest else None)

    def result(self, acc) -> int | None:
        """The id moved from train to test, or None."""
        any_test, count, lowest = acc
        if any_test or self.test_fraction <= 0 or count < 2:
            return None
        return lowest[1]


def split_with_fallback(post_id: int, test_fraction: float, moved: int | None) -> str:
    """The split of a kept post, given the id `SplitFallback` moved to test."""
    return "test" if post_id == moved else split_of(post_id, test_fraction)


def containers(spec: DumpSpec) -> list[str]:
    """The folders (danbooru2021) or tar shards (danbooru2023) holding the images."""
    root = epath.Path(spec.dump_dir)
    if spec.format == "danbooru2023":
        return sorted(str(p) for p in _tars(root))
    folder = root / spec.images
    if not folder.is_dir() or _skip_outside(folder, root):
        return []
    return sorted(str(p) for p in folder.iterdir()
                  if _FOLDER.match(p.name) and p.is_dir() and not _skip_outside(p, root))


def list_members(container: str) -> list[tuple[int, tuple[str, Member]]]:
    """(post id, (container, member)) for every file named ID.EXT in a folder or tar shard.

    Only a tar's headers are read. Where an id has several files, the first by name is used.
    A tar that cannot be read lists nothing (its posts count as missing files).
    """
    found: dict[int, Member] = {}
    path = epath.Path(container)
    try:
        if container.endswith(".tar"):
            with path.open("rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
                for info in tar:
                    name = info.name.rsplit("/", 1)[-1]
                    match = _MEMBER.match(name)
                    if info.isreg() and match:
                        member = (info.name, info.offset_data, info.size)
                        found[int(match[1])] = min(found.get(int(match[1]), member), member)
        else:
            for entry in path.iterdir():
                match = _MEMBER.match(entry.name)
                # A folder container is DUMP/IMAGES/NNNN: links may stay within DUMP.
                if match and entry.is_file() and not _skip_outside(entry, path.parent.parent):
                    member = (entry.name, -1, entry.stat().length)
                    found[int(match[1])] = min(found.get(int(match[1]), member), member)
    except (OSError, tarfile.TarError) as err:
        # What was listed before a tar breaks off (a truncated shard) is still there.
        log.warning("%s: cannot be listed past %d files (%s); the rest of its posts count as "
                    "missing", container, len(found), err)
    return [(post_id, (container, member)) for post_id, member in sorted(found.items())]


def _read_members(container: str, members: list[Member]) -> Iterator[bytes | None]:
    """The bytes of each member, in the order given (None where unreadable)."""
    path = epath.Path(container)
    if container.endswith(".tar"):
        try:
            f = path.open("rb")
        except OSError as err:
            log.warning("%s: cannot be opened (%s)", container, err)
            yield from (None for _ in members)
            return
        with f:
            for _, offset, size in members:
                try:
                    f.seek(offset)
                    data = f.read(size)
                except OSError:
                    data = None
                yield data if data is not None and len(data) == size else None
    else:
        for name, _, _ in members:
            try:
                yield (None if outside(path / name, path.parent.parent)
                       else (path / name).read_bytes())
            except OSError:
                yield None


def process_container(
    container: str,
    items: Iterable[tuple[Post, Member]],
    spec: DumpSpec,
    make_example: Callable[[Post, object], dict],
) -> Iterator[tuple[str, object]]:
    """Reads one folder or tar shard once and turns its posts into examples.

    Args:
        container: the folder or tar shard.
        items: (post, member) of the posts whose files it holds.
        spec: the dump and its filters.
        make_example: (post, decoded uint8 RGB image) -> the example dict.

    Yields:
        ("example", (post id, example)), or ("event", "skipped/<reason>") for a post whose
        file is left out, and ("event", "fetched") for each file read.
    """
    items = sorted(items, key=lambda item: (item[1][1], item[1][0]))
    readable = []
    for post, member in items:
        if member[2] > spec.max_bytes:
            yield "event", "skipped/too_large"
        else:
            readable.append((post, member))
    datas = _read_members(container, [member for _, member in readable])
    for (post, member), data in zip(readable, datas, strict=True):
        if data is None:
            yield "event", "skipped/unreadable"
            continue
        yield "event", "fetched"
        # A 512-px JPEG or a WebP mirror's file is not the file the md5 describes.
        original = spec.images == "original" and member[0].rsplit(".", 1)[-1] == post.ext
        checked_post = post if original else dataclasses.replace(post, md5=None)
        try:
            checked = verify(data, checked_post, spec.filters)
        except _Skip as skip:
            yield "event", f"skipped/{skip.reason}"
            continue
        yield "example", (post.id, make_example(post, checked.image))


def plan(posts: Iterable[Post], spec: DumpSpec, test_fraction: float):
    """The metadata steps in one process: which posts to read, split by split.

    Returns:
        ({split: posts to read}, {split: Counter of events}): events are "seen",
        "skipped/<reason>" and "duplicates/<kind>" (see the module docstring).
    """
    events = {"train": collections.Counter(), "test": collections.Counter()}
    by_id: dict[int, list[Post]] = collections.defaultdict(list)
    for post in posts:
        events[split_of(post.id, test_fraction)]["seen"] += 1
        if post.id is None:
            events["train"][f"skipped/{post.problem}"] += 1
        else:
            by_id[post.id].append(post)
    by_md5: dict[object, list[Post]] = collections.defaultdict(list)
    for post_id, group in by_id.items():
        post, dropped = one_per_id(group)
        events[split_of(post_id, test_fraction)]["duplicates/id"] += dropped
        reason = post_reason(post, spec)
        if reason:
            events[split_of(post_id, test_fraction)][f"skipped/{reason}"] += 1
        else:
            by_md5[post.md5 or ("id", post.id)].append(post)
    kept = []
    for group in by_md5.values():
        keeper, others = one_per_md5(group)
        kept.append(keeper)
        for other in others:
            events[split_of(other.id, test_fraction)]["duplicates/md5"] += 1
    kept.sort(key=lambda p: p.id)
    if spec.max_images is not None:
        for post in kept[spec.max_images:]:
            events[split_of(post.id, test_fraction)]["skipped/max_images"] += 1
        kept = kept[: spec.max_images]
    fallback = SplitFallback(test_fraction)
    acc = fallback.create()
    for post in kept:
        acc = fallback.add(acc, post.id)
    moved = fallback.result(acc)
    chosen = {"train": [], "test": []}
    for post in kept:
        chosen[split_with_fallback(post.id, test_fraction, moved)].append(post)
    return chosen, events


def write_report(events: dict[str, int], path: str) -> None:
    """Writes a split's event counts as JSON (to a temporary name, then renamed)."""
    target = epath.Path(path)
    tmp = target.parent / f".{target.name}.tmp"
    tmp.write_text(json.dumps(dict(sorted(events.items())), indent=1))
    tmp.replace(target)


def read_reports(paths: Iterable) -> collections.Counter:
    """The sum of the event counts in the report files that exist."""
    total = collections.Counter()
    for path in paths:
        path = epath.Path(path)
        if path.is_file():
            total.update(json.loads(path.read_text()))
    return total


def read_posts(spec: DumpSpec) -> Iterator[Post]:
    """Every post of the dump's metadata, in file order."""
    for path in metadata_files(spec):
        for record in read_records(path):
            yield parse_record(record, spec.rating_scheme)


def count_posts(spec: DumpSpec, limit: int) -> int:
    """The dump's metadata records, counted up to `limit` (to warn before a long local run)."""
    records = (record for path in metadata_files(spec) for record in read_records(path))
    return sum(1 for _ in itertools.islice(records, limit))


def plain_examples(
    spec: DumpSpec,
    posts: list[Post],
    events: collections.Counter,
    make_example: Callable[[Post, object], dict],
    report_path: str,
) -> Iterator[tuple[int, dict]]:
    """Yields one split's (post id, example) in one process, then writes its report.

    Args:
        spec: the dump and its filters.
        posts: the split's posts to read, from `plan`.
        events: the split's events so far, from `plan` (counted on).
        make_example: (post, decoded image) -> example.
        report_path: where the split's event counts are written at the end.
    """
    events = collections.Counter(events)
    wanted = {post.id: post for post in posts}
    by_container: dict[str, list] = collections.defaultdict(list)
    for container in containers(spec):
        for post_id, (where, member) in list_members(container):
            post = wanted.pop(post_id, None)
            if post is not None:
                by_container[where].append((post, member))
    events["skipped/missing_file"] += len(wanted)
    for container in sorted(by_container):
        for kind, value in process_container(container, by_container[container], spec,
                                             make_example):
            if kind == "event":
                events[value] += 1
            else:
                events["kept"] += 1
                yield value
    write_report(+events, report_path)
