"""`build-dataset`: gather coloured images into the manual dir, then pack the TFDS dataset.

Where things go, under the data dir D:

    D/downloads/manual/danbooru/   the manual dir: images/<id>.<ext> and manifest.sqlite
    D/danbooru/<config>/1.0.0/     the TFRecord shards (`tfds.load("danbooru/<config>",
                                   data_dir=D)`; the config is "256" by default)
    D/complexity-<config>.png      a histogram of the images' sketch complexity

Rerunning the same command after an interruption (even kill -9) finishes the job: images
already in the manual dir are not downloaded again, and the dataset is re-packed from all of
them. A data dir holds one source's posts (ids from different sources would clash).

The dump source copies nothing: it writes `dump.json` (what to read, which posts to keep) into
the manual dir, and the builder reads the dump's files itself, on Apache Beam
(`tfds_danbooru.dump_beam`); its summary comes from the report files the splits leave.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import logging
import math
import os
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from manga_pix2pix.errors import UserError
from manga_pix2pix.imageio import encode_image, write_bytes_atomic, write_image

if TYPE_CHECKING:
    from tfds_danbooru.scrape import CollectStats

log = logging.getLogger(__name__)

SOURCES = ("danbooru", "safebooru", "html", "folder", "synthetic", "dump")
#: The complexity ceiling of the training data (drawn on the histogram).
COMPLEXITY_CEILING = 40.0
#: Images gathered when --max-images is not given (a folder source takes all its images).
DEFAULT_MAX_IMAGES = 1000


@dataclasses.dataclass
class BuildOptions:
    """What to gather and how to pack it.

    Attributes:
        source: one of `SOURCES`.
        data_dir: the TFDS data dir; everything is written under it.
        base_url: the site to ask (None: the source's public site).
        tags: search tags.
        ratings: rating letters to keep (g, s, q, e); booru sources only.
        max_images: stop once the dataset holds this many images (None: 1000, or every
            image of a folder).
        min_resolution: the shortest side an image must have, in pixels (None: the image
            size).
        image_size: the side of the packed square images.
        crop: "center" or "top".
        test_fraction: the share of post ids in the test split.
        rate_limit: requests per second at most.
        timeout: seconds to wait for a server.
        retries: retries of a failed request.
        page_size: posts per listing request.
        folder: the folder of the folder source.
        busy_fraction: share of synthetic images drawn in the busy, high-detail style.
        progress_bars: let TFDS show its progress bars while packing.
        encoding: how the packed images are stored, "png" or "jpeg".
        dump_dir: the dump of the dump source.
        dump_format: "auto" (detected), "danbooru2021" or "danbooru2023".
        runner: the Beam runner of the dump source: "local", "dataflow", "flink", "spark".
        num_workers: Beam worker processes (local; default: the CPU count) or workers.
        beam_options: KEY=VALUE pipeline options passed to the runner.
    """

    source: str
    data_dir: Path
    base_url: str | None = None
    tags: tuple[str, ...] = ()
    ratings: tuple[str, ...] = ("g",)
    max_images: int | None = None
    min_resolution: int | None = None
    image_size: int = 256
    crop: str = "center"
    test_fraction: float = 0.05
    rate_limit: float = 1.0
    timeout: float = 30.0
    retries: int = 4
    page_size: int = 100
    folder: Path | None = None
    busy_fraction: float = 0.1
    progress_bars: bool = True
    encoding: str = "png"
    dump_dir: Path | None = None
    dump_format: str = "auto"
    runner: str = "local"
    num_workers: int | None = None
    beam_options: tuple[str, ...] = ()


@dataclasses.dataclass
class BuildReport:
    """What `build_dataset` did.

    Attributes:
        stats: the collection's counts (`tfds_danbooru.scrape.CollectStats`).
        dataset: the name to load, e.g. "danbooru/256".
        data_dir: the data dir.
        manual_dir: the manual dir.
        splits: examples per split.
        complexities: the complexity of every packed image.
        histogram: the histogram PNG.
    """

    stats: CollectStats
    dataset: str
    data_dir: Path
    manual_dir: Path
    splits: dict[str, int]
    complexities: np.ndarray
    histogram: Path


def manual_dir_of(data_dir: str | os.PathLike) -> Path:
    """The manual dir `build-dataset` fills: `<data_dir>/downloads/manual/danbooru`.

    A URL data dir (gs://...) gives an `etils.epath.Path`.
    """
    if "://" in str(data_dir):
        from etils import epath

        return epath.Path(data_dir) / "downloads" / "manual" / "danbooru"
    return Path(data_dir) / "downloads" / "manual" / "danbooru"


def _make_source(options: BuildOptions):
    from tfds_danbooru.scrape import (
        DanbooruSource,
        FolderSource,
        HtmlSource,
        HttpClient,
        SafebooruSource,
        SyntheticSource,
        danbooru,
        html,
        safebooru,
    )

    if options.source == "synthetic":
        return SyntheticSource(options.image_size, options.busy_fraction, options.test_fraction)
    if options.source == "folder":
        if options.folder is None:
            raise UserError("--source folder needs --folder PATH")
        return FolderSource(options.folder)
    defaults = {"danbooru": danbooru.DEFAULT_URL, "safebooru": safebooru.DEFAULT_URL,
                "html": html.DEFAULT_URL}
    base_url = options.base_url or defaults[options.source]
    auth = danbooru.credentials_from_env() if options.source == "danbooru" else None
    try:
        client = HttpClient(base_url, rate_limit=options.rate_limit, timeout=options.timeout,
                            retries=options.retries, auth=auth)
    except ValueError:
        raise UserError(f"--base-url: not an http(s) URL: {base_url}") from None
    if options.source == "danbooru":
        if auth is None and len(options.tags) > danbooru.ANONYMOUS_TAG_LIMIT:
            raise UserError(
                f"Danbooru allows {danbooru.ANONYMOUS_TAG_LIMIT} tags per search without a "
                "login: set DANBOORU_LOGIN and DANBOORU_API_KEY, or use fewer --tags"
            )
        return DanbooruSource(client, options.tags, options.ratings, options.page_size)
    if options.source == "safebooru":
        return SafebooruSource(client, options.tags, options.page_size)
    return HtmlSource(client, options.tags)


def _disk_full_error(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "No space left on device" in str(err) or "Disk quota exceeded" in str(err)


def pack(data_dir: Path, manual_dir: Path, image_size: int, crop: str, test_fraction: float,
         progress_bars: bool = True, encoding: str = "png", beam_options=None,
         prepare: Callable[[], None] | None = None):
    """Packs the manual dir into TFRecords (regenerating any earlier version); returns the builder.

    Args:
        beam_options: Beam `PipelineOptions` for a dump (None: a dump is read in this
            process).
        prepare: called once the manual dir is locked, before packing (e.g. to write what
            the builder reads).

    Raises:
        UserError: the disk filled up.
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from tfds_danbooru.danbooru.danbooru_dataset_builder import make_config
    from tfds_danbooru.scrape.cache import lock_manual_dir

    config = make_config(image_size, crop, test_fraction, encoding)
    builder = tfds.builder("danbooru", config=config, data_dir=str(data_dir))
    download_config = tfds.download.DownloadConfig(
        manual_dir=str(manual_dir),
        # Re-pack from the manual dir every time: it may hold new images.
        download_mode=tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS,
        compute_stats=tfds.download.ComputeStatsMode.SKIP,
        try_download_gcs=False,
        beam_options=beam_options,
    )
    quiet = contextlib.nullcontext()
    if not progress_bars:
        tfds.disable_progress_bar()
        # TFDS prints its "Downloading and preparing" banners to stdout.
        quiet = contextlib.redirect_stdout(io.StringIO())
    lock = None
    if isinstance(manual_dir, Path) and isinstance(data_dir, Path):
        # No other build of this data dir packs meanwhile, so what TFDS left half-written
        # (`incomplete.*` folders, when a build was killed mid-pack) is stale: drop it.
        lock = lock_manual_dir(manual_dir)
        for stale in Path(builder.data_dir).parent.glob("incomplete.*"):
            shutil.rmtree(stale, ignore_errors=True)
    try:
        if prepare is not None:
            prepare()
        with quiet:
            builder.download_and_prepare(download_config=download_config)
    except (OSError, tf.errors.OpError) as err:
        if _disk_full_error(err):
            raise UserError(f"the disk is full: cannot write the dataset in {data_dir}") from None
        raise
    finally:
        if lock is not None:
            lock.close()
    return builder


def read_complexities(builder) -> tuple[dict[str, int], np.ndarray]:
    """(examples per split, every example's complexity), read without decoding images."""
    import tensorflow_datasets as tfds

    splits = {name: info.num_examples for name, info in builder.info.splits.items()}
    values = []
    for name in sorted(splits):
        ds = builder.as_dataset(split=name, decoders={"image": tfds.decode.SkipDecoding()})
        values.extend(float(c) for c in ds.map(lambda x: x["complexity"]).as_numpy_iterator())
    return splits, np.asarray(values, np.float32)


def complexity_histogram(values: Sequence[float], *, ceiling: float = COMPLEXITY_CEILING,
                         width: int = 720, height: int = 400) -> np.ndarray:
    """Draws a histogram of complexities (1-point bins) as a uint8 RGB image, with OpenCV.

    The x axis runs from 0 to at least 50 % (further if an image is more complex); a red line
    marks the training ceiling.
    """
    values = np.asarray(values, np.float32)
    top = max(50.0, math.ceil(float(values.max()) + 1) if values.size else 50.0)
    top = min(100.0, math.ceil(top / 10.0) * 10.0)
    counts, _ = np.histogram(values, bins=int(top), range=(0.0, top))
    image = np.full((height, width, 3), 255, np.uint8)
    left, right, upper, lower = 60, width - 20, 50, height - 50
    font = cv2.FONT_HERSHEY_SIMPLEX
    peak = max(1, int(counts.max()) if counts.size else 1)
    bar = (right - left) / len(counts)
    for i, count in enumerate(counts):
        if count:
            x0 = int(round(left + i * bar))
            x1 = max(x0 + 1, int(round(left + (i + 1) * bar)) - 1)
            y0 = int(round(lower - (lower - upper) * count / peak))
            cv2.rectangle(image, (x0, y0), (x1, lower), (70, 110, 190), -1)
    cv2.line(image, (left, lower), (right, lower), (0, 0, 0), 1)
    cv2.line(image, (left, upper), (left, lower), (0, 0, 0), 1)
    for tick in range(0, int(top) + 1, 10):
        x = int(round(left + tick * bar))
        cv2.line(image, (x, lower), (x, lower + 5), (0, 0, 0), 1)
        cv2.putText(image, str(tick), (x - 8, lower + 22), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, str(peak), (8, upper + 5), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, "0", (40, lower + 5), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    x = int(round(left + ceiling * bar))
    cv2.line(image, (x, upper - 10), (x, lower), (220, 30, 30), 2)
    cv2.putText(image, f"ceiling {ceiling:g}", (x + 4, upper - 2), font, 0.45, (220, 30, 30), 1,
                cv2.LINE_AA)
    title = f"sketch complexity (% line pixels), {values.size} images"
    if values.size:
        title += f", median {float(np.median(values)):.1f}"
    cv2.putText(image, title, (left, 28), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, "%", (right - 10, lower + 40), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return image


def build_dataset(options: BuildOptions,
                  progress: Callable[[int, int], None] | None = None,
                  notice: Callable[[str], None] | None = None) -> BuildReport:
    """Gathers images into the manual dir, packs the TFDS dataset and draws the histogram.

    Args:
        options: what to gather and how to pack it.
        progress: called with (images held, images wanted) at the start and after each image
            kept.
        notice: called with a line of progress or a warning (the dump source).

    Returns:
        The report of the run.

    Raises:
        UserError: bad options, an unreachable or refusing site, no results, a missing or empty
            folder, a full disk.
    """
    from tfds_danbooru.dump import SPEC_NAME
    from tfds_danbooru.scrape import Filters, collect

    if options.source not in SOURCES:
        raise UserError(f"--source: must be one of {', '.join(SOURCES)}")
    data_dir = _data_dir(options)
    if data_dir.exists() and not data_dir.is_dir():
        raise UserError(f"{data_dir}: is a file, not a folder")
    manual_dir = manual_dir_of(data_dir)
    if options.source == "dump":
        return _build_from_dump(options, data_dir, manual_dir, notice or (lambda line: None))
    if (manual_dir / SPEC_NAME).exists():
        raise UserError(f"{manual_dir} is set up for a dump, whose ids would clash with "
                        f"{options.source!r} ones; use another --data-dir")
    source = _make_source(options)
    local = options.source in ("folder", "synthetic")
    filters = Filters(
        ratings=None if local else tuple(options.ratings),
        min_resolution=(options.image_size if options.min_resolution is None
                        else options.min_resolution),
    )
    max_images = options.max_images
    if max_images is None:
        max_images = source.count if options.source == "folder" else DEFAULT_MAX_IMAGES
    created = not data_dir.exists()
    try:
        stats = collect(source, manual_dir, filters=filters, max_images=max_images,
                        progress=progress and (lambda held: progress(held, max_images)))
    except UserError:
        # A first build that failed before keeping any image leaves no empty folders behind.
        if created and not any((manual_dir / "images").glob("*.*")):
            shutil.rmtree(data_dir, ignore_errors=True)
        raise
    builder = pack(data_dir, manual_dir, options.image_size, options.crop,
                   options.test_fraction, options.progress_bars, options.encoding)
    return _finish(builder, stats, data_dir, manual_dir)


def _finish(builder, stats: CollectStats, data_dir: Path, manual_dir: Path) -> BuildReport:
    """Reads the packed dataset's complexities and draws their histogram."""
    splits, complexities = read_complexities(builder)
    histogram = data_dir / f"complexity-{builder.builder_config.name}.png"
    try:
        if isinstance(histogram, Path):
            write_image(histogram, complexity_histogram(complexities))
        else:
            histogram.write_bytes(encode_image(complexity_histogram(complexities)))
    except UserError as err:
        if _disk_full_error(err):
            raise UserError(f"the disk is full: cannot write {histogram}") from None
        raise
    return BuildReport(stats=stats, dataset=f"danbooru/{builder.builder_config.name}",
                       data_dir=data_dir, manual_dir=manual_dir, splits=splits,
                       complexities=complexities, histogram=histogram)


def _data_dir(options: BuildOptions):
    """The data dir: a local folder, or (for a dump on a cluster) a URL such as gs://..."""
    if "://" not in str(options.data_dir):
        return Path(options.data_dir).expanduser().absolute()
    if options.source != "dump":
        raise UserError("--data-dir: a URL is for --source dump on a cluster runner; other "
                        "sources write to a local folder")
    from etils import epath

    return epath.Path(options.data_dir)


def _dump_spec(options: BuildOptions):
    from tfds_danbooru import dump

    if options.dump_dir is None:
        raise UserError("--source dump needs --dump-dir DIR")
    return dump.make_spec(
        options.dump_dir, options.dump_format, tags=tuple(options.tags),
        ratings=tuple(options.ratings),
        min_resolution=(options.image_size if options.min_resolution is None
                        else options.min_resolution),
        max_images=options.max_images)


def _build_from_dump(options: BuildOptions, data_dir: Path, manual_dir: Path,
                     notice: Callable[[str], None]) -> BuildReport:
    from tfds_danbooru import dump
    from tfds_danbooru.scrape import CollectStats
    from tfds_danbooru.scrape.manifest import MANIFEST_NAME

    spec = _dump_spec(options)
    dump.require_beam()
    from tfds_danbooru import dump_beam

    # Beam logs every stage it starts at INFO level.
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    beam_options = dump_beam.pipeline_options(options.runner, options.num_workers,
                                              options.beam_options)
    if (manual_dir / MANIFEST_NAME).exists():
        raise UserError(f"{manual_dir} holds scraped posts, whose ids would clash with the "
                        "dump's; use another --data-dir")
    budget = dump.LOCAL_IMAGE_BUDGET
    if options.runner == "local" and (spec.max_images is None or spec.max_images > budget):
        if dump.count_posts(spec, budget + 1) > budget:
            notice(f"warning: the local runner holds its shuffles in memory; budget about "
                   f"{budget:,} images per machine (--max-images), or use a cluster runner")
    try:
        manual_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{manual_dir}: cannot write ({err.strerror})") from None

    def write_spec():
        # Under pack's lock: a build refused because another is packing leaves its spec alone.
        try:
            if isinstance(manual_dir, Path):
                write_bytes_atomic(manual_dir / dump.SPEC_NAME, spec.to_json().encode())
            else:
                (manual_dir / dump.SPEC_NAME).write_text(spec.to_json())
        except OSError as err:
            raise UserError(f"{manual_dir}: cannot write ({err.strerror})") from None
    workers = options.num_workers or (os.cpu_count() if options.runner == "local" else None)
    notice(f"packing {spec.dump_dir} ({spec.format}, {len(dump.metadata_files(spec))} "
           f"metadata files, {len(dump.containers(spec))} image containers) on the "
           f"{options.runner} runner" + (f" with {workers} workers" if workers else ""))
    try:
        builder = pack(data_dir, manual_dir, options.image_size, options.crop,
                       options.test_fraction, options.progress_bars, options.encoding,
                       beam_options, prepare=write_spec)
    except UserError:
        raise
    except Exception as err:  # Beam re-raises a worker's error, whatever it was, as text
        raise _beam_error(err) from None
    events = dump.read_reports(builder.report_path(split) for split in ("train", "test"))
    stats = CollectStats(seen=events["seen"], fetched=events["fetched"], kept=events["kept"],
                         total=events["kept"])
    for key, count in events.items():
        kind, _, reason = key.partition("/")
        if kind == "skipped":
            stats.skipped[reason] = count
        elif kind == "duplicates":
            stats.duplicates[reason] = count
    return _finish(builder, stats, data_dir, manual_dir)


def _beam_error(err: Exception) -> UserError:
    """A one-line error for a failed Beam run (the whole error goes to the log)."""
    log.debug("the Beam pipeline failed", exc_info=err)
    text = str(err)
    empty = re.search(r"number of generated examples is 0 for split (\w+)", text)
    if empty:
        return UserError(
            f"no image of the dump is left for the {empty[1]} split: check --tags, --rating "
            "and --min-resolution (or, for the test split, --test-fraction)")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return UserError(f"the Beam pipeline failed: {lines[-1] if lines else type(err).__name__}")


def format_report(report: BuildReport) -> list[str]:
    """The end-of-run summary, one line per fact."""
    stats = report.stats
    recovered = ""
    if stats.recovered:
        recovered = f" ({stats.recovered} of them left by an interrupted run)"
    lines = [
        f"posts seen: {stats.seen}; fetched: {stats.fetched}; kept: {stats.kept} new{recovered}, "
        f"{stats.cached} already there; {stats.total} images in the dataset",
    ]
    if stats.skipped:
        lines.append("skipped: " + ", ".join(f"{reason} {n}"
                                             for reason, n in sorted(stats.skipped.items())))
    dups = sum(stats.duplicates.values())
    if dups:
        kinds = ", ".join(f"by {kind} {n}" for kind, n in sorted(stats.duplicates.items()))
        lines.append(f"duplicates: {dups} ({kinds})")
    if stats.failed:
        lines.append("failed (run again to retry): " + ", ".join(
            f"{reason} {n}" for reason, n in sorted(stats.failed.items())))
    split_text = ", ".join(f"{name} {n}" for name, n in sorted(report.splits.items()))
    lines.append(f"dataset: {report.dataset} in {report.data_dir} ({split_text})")
    values = report.complexities
    if values.size:
        above = int(np.sum(values > COMPLEXITY_CEILING))
        lines.append(
            f"complexity: median {float(np.median(values)):.1f}, range "
            f"{float(values.min()):.1f}-{float(values.max()):.1f}, {above} above "
            f"{COMPLEXITY_CEILING:g}; histogram: {report.histogram}"
        )
    if "test" not in report.splits:
        lines.append("note: no test split (too few images for the test fraction)")
    return lines
