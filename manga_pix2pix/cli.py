"""The `manga-pix2pix` command line: thin click commands over the library.

Library errors (`UserError`) become a one-line message and exit status 1; no traceback.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import sys

import click

from manga_pix2pix import __version__
from manga_pix2pix.config import MAX_CUE_SIGMA, MAX_WORK_SIZE
from manga_pix2pix.errors import UserError


def _quiet_tensorflow_logs() -> None:
    """Lets only TensorFlow's C++ errors through to the commands' output.

    Its notes and warnings (e.g. `tf_record_dataset_op.cc` on every TFRecord read) are not
    for the user. Set MANGA_PIX2PIX_VERBOSE=1 to see them, at the level TF_CPP_MIN_LOG_LEVEL
    asks for.
    """
    if os.environ.get("MANGA_PIX2PIX_VERBOSE"):
        return
    try:
        level = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        level = 0
    # Read by TensorFlow's C++ runtime at its first log line, so set before any TF work.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = str(max(level, 2))


_quiet_tensorflow_logs()


@functools.cache
def _start_tensorflow_quietly() -> None:
    """Imports TensorFlow and finds its devices with stderr silenced.

    TensorFlow's C++ runtime writes start-up notes (oneDNN, CUDA probing) to stderr before its
    log level applies; they would bury the one line a user needs. Set MANGA_PIX2PIX_VERBOSE=1
    to see them. Called when a command runs, not before: `--help` never imports TensorFlow.
    """
    if os.environ.get("MANGA_PIX2PIX_VERBOSE"):
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import cv2  # noqa: F401
        import tensorflow as tf

        tf.config.list_physical_devices()
        # A multi-worker strategy must configure the runtime before it starts.
        if "TF_CONFIG" not in os.environ:
            tf.zeros([1])
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def user_errors(func):
    """Starts TensorFlow for a command, and turns `UserError` into a `click.ClickException`.

    A full disk becomes a one-line error too. TensorFlow starts only when a command runs, so
    `--help` answers at once.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        _start_tensorflow_quietly()
        try:
            return func(*args, **kwargs)
        except UserError as err:
            raise click.ClickException(str(err)) from None
        except OSError as err:
            if err.errno == 28:  # ENOSPC
                where = err.filename or ""
                raise click.ClickException(f"the disk is full: {where}".strip()) from None
            raise

    return wrapper


class Duration(click.ParamType):
    """A length of time as `90s`, `20m`, `1.5h` or a bare number of minutes; in seconds."""

    name = "duration"
    _UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        text = str(value).strip().lower()
        scale = self._UNITS.get(text[-1:], None)
        number = text[:-1] if scale else text
        try:
            seconds = float(number) * (scale or 60.0)
        except ValueError:
            seconds = float("nan")
        if not seconds > 0 or seconds == float("inf"):
            self.fail(f"{value!r} is not a positive time such as 90s, 20m or 1.5h", param, ctx)
        return seconds


class FiniteRange(click.FloatRange):
    """`click.FloatRange` that also refuses `nan` and `inf`, which its bounds let through
    (every comparison with nan is false)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="manga-pix2pix")
def main():
    """Colour anime and manga sketches with a pix2pix GAN, with or without colour cues.

    Example:

        manga-pix2pix build-dataset --source synthetic --max-images 200 --data-dir data

        manga-pix2pix train --data danbooru --data-dir data --preset small --run-dir run

        manga-pix2pix colorize sketch.png --cues cues.png --model run -o colour.png
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    # TFDS and TensorFlow log through absl; their warnings (e.g. probing an unbuilt dataset
    # folder) would precede and blur the one-line error the user needs.
    logging.getLogger("absl").setLevel(logging.ERROR)


@main.command()
@click.argument("color", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Where to write the sketch PNG.")
@user_errors
def sketchify(color, output):
    """Turn a colour image into the binary sketch the model is trained on.

    The sketch is OpenCV's adaptive threshold of the gray image (block 7, C 2),
    the same size as the input.

    Example:

        manga-pix2pix sketchify colour.png -o sketch.png
    """
    from manga_pix2pix.data import ops_cli

    ops_cli.sketchify_file(color, output)


@main.command()
@click.argument("color", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Where to write the cue PNG.")
@click.option("--sigma", type=FiniteRange(0.1, MAX_CUE_SIGMA), default=None,
              help="Blur sigma in pixels [default: 20 per 256 px of short side].")
@user_errors
def cues(color, output, sigma):
    """Turn a colour image into a cue layer: the image blurred by a wide Gaussian.

    Example:

        manga-pix2pix cues colour.png -o cues.png --sigma 20
    """
    from manga_pix2pix.data import ops_cli

    ops_cli.cues_file(color, output, sigma=sigma)


@main.command()
@click.option("-m", "--model", "model_path", required=True, type=click.Path(exists=True),
              help="A run directory, a .keras generator file or an exported SavedModel folder.")
@click.option("--data", default=None,
              help="'synthetic', a folder of held-out images, or a TFDS name such as "
                   "'danbooru' [default: the run's training source].")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="The TFDS data folder (for a TFDS --data) [default: the run's].")
@click.option("--split", default="test", show_default=True, help="The held-out TFDS split.")
@click.option("--train-split", default="train", show_default=True,
              help="The TFDS split the model was trained on (whose character tags it has seen).")
@click.option("--character-tags", default="character_*", show_default=True,
              help="Which tags name characters: comma-separated globs, or a file of tags, "
                   "one per line.")
@click.option("--complexity-ceiling", type=FiniteRange(min=0, min_open=True), default=None,
              help="The training complexity ceiling, percent [default: the run's, else 40].")
@click.option("--max-images", type=click.IntRange(min=1), default=None,
              help="Evaluate at most this many images [synthetic: draw this many, default 64].")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Images per generator call.")
@click.option("--figure-rows", type=click.IntRange(min=1), default=6, show_default=True,
              help="Examples per task figure.")
@click.option("--norm-stats", type=click.Choice(["moving", "image"]), default="moving",
              show_default=True,
              help="Batch-norm statistics, as in colorize: the training run's moving averages, "
                   "or each image's own.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Folder for metrics.json, metrics.md and figures/ (created if missing).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")
# -- real line art (evaluate --pairs / --lineart) --
@click.option("--pairs", type=click.Path(file_okay=False), default=None,
              help="Score on real pairs instead of --data: a folder with lineart/NAME.* and "
                   "colour/NAME.*, coloured as colorize does, with a full cue layer, a few "
                   "strokes, and no cues.")
@click.option("--lineart", type=click.Path(file_okay=False), default=None,
              help="Score on a folder of line art with no colour version: hint fidelity, "
                   "leakage across lines and paper kept white.")
@click.option("--max-side", type=click.IntRange(min=11), default=512, show_default=True,
              help="With --pairs/--lineart: shrink images to this long side first.")
@click.option("--strokes", type=click.IntRange(min=0), default=8, show_default=True,
              help="With --pairs/--lineart: the most cue strokes per drawing.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="With --pairs/--lineart: seeds where the strokes go (with each name).")
@click.option("--work-size", type=click.IntRange(8, MAX_WORK_SIZE), default=None,
              help="With --pairs/--lineart: as colorize --work-size [default: the model's "
                   "image size].")
@click.option("--line-input", type=click.Choice(["adaptive", "grey"]), default=None,
              help="With --pairs/--lineart: as colorize --line-input [default: what the "
                   "model records].")
@click.option("--regions", type=click.Choice(["auto", "flat", "shift", "off"]), default="auto",
              show_default=True, help="With --pairs/--lineart: as colorize --regions.")
@click.option("--background", type=click.Choice(["auto", "model", "paper"]), default="auto",
              show_default=True, help="With --pairs/--lineart: as colorize --background.")
# -- end real line art --
@user_errors
def evaluate(model_path, data, data_dir, split, train_split, character_tags, complexity_ceiling,
             max_images, batch_size, figure_rows, norm_stats, output, quiet, pairs, lineart,
             max_side, strokes, seed, work_size, line_input, regions, background):
    """Score a model on held-out images: L1, PSNR, SSIM per task, against baselines.

    Rows: the model with full cues, with cues only in a few strokes, with cues
    withheld, and three baselines (the cue layer, the cue layer with the sketch's
    lines, the sketch alone). Sections:
    all images and the original's three tasks: color (a character seen in
    training), transfer (no character seen), interpolation (complexity >= 1.2 x
    the training ceiling). Writes metrics.json, metrics.md and one figure per task
    (sketch | cues | output | truth) into the output folder.

    With --pairs (an artist's line art and colour version) or --lineart (line art
    alone), each drawing is coloured as colorize colours it, with a full cue layer,
    a few strokes and no cues, next to the blurred cue layer, a paint bucket and the
    bare sketch.

    Example:

        manga-pix2pix evaluate --model run --data danbooru --data-dir data -o eval

        manga-pix2pix evaluate --model run --data synthetic --max-images 200 -o eval

        manga-pix2pix evaluate --model run --pairs pairs/ -o eval-pairs

        manga-pix2pix evaluate --model run --lineart drawings/ -o eval-lineart
    """
    import contextlib

    from manga_pix2pix.evaluation import evaluate as ev
    from manga_pix2pix.evaluation.tasks import parse_character_tags
    from manga_pix2pix.imageio import check_output_folder

    check_output_folder(output)  # before the work, not after it
    if pairs is not None or lineart is not None:
        _evaluate_real(model_path, data, pairs, lineart, max_side, strokes, seed, work_size,
                       figure_rows, norm_stats, output, quiet, line_input, regions,
                       background)
        return
    model = ev.load_model(model_path)
    if data is None:
        if model.config is None:
            raise click.UsageError("give --data: the model has no config.json to take it from")
        data = model.config.data.source
        data_dir = data_dir or model.config.data.data_dir
    tags = parse_character_tags(character_tags)
    with contextlib.ExitStack() as stack:
        bar = None

        def on_start(total):
            nonlocal bar
            if not quiet:
                bar = stack.enter_context(
                    click.progressbar(length=total or 0, label="evaluating", file=sys.stderr)
                )

        def on_batch(n):
            if bar is not None:
                bar.update(n)

        report = ev.evaluate(
            model, data, data_dir=data_dir, split=split, train_split=train_split,
            character_tags=tags, complexity_ceiling=complexity_ceiling, max_images=max_images,
            batch_size=batch_size, figure_rows=figure_rows, norm_stats=norm_stats,
            output_dir=output, on_start=on_start, on_batch=on_batch,
        )
    if not quiet:
        counts = ", ".join(f"{k} {v}" for k, v in report.counts.items())
        click.echo(f"images: {counts}")
        click.echo(f"metrics: {os.path.join(output, 'metrics.md')}")
        for task, name in report.figures.items():
            click.echo(f"figure ({task}): {os.path.join(output, name)}")


def _evaluate_real(model_path, data, pairs, lineart, max_side, strokes, seed, work_size,
                   figure_rows, norm_stats, output, quiet, line_input, regions, background):
    """`evaluate --pairs` / `evaluate --lineart`: real line art through the colorize path."""
    import contextlib

    from manga_pix2pix.evaluation import pairs as real
    from manga_pix2pix.inference.loading import load_model

    given = [name for name, value in (("--data", data), ("--pairs", pairs),
                                      ("--lineart", lineart)) if value is not None]
    if len(given) > 1:
        raise click.UsageError(
            f"give one of --data, --pairs and --lineart, not {' and '.join(given)}"
        )
    run = real.evaluate_pairs if pairs is not None else real.evaluate_lineart
    model = load_model(model_path)
    with contextlib.ExitStack() as stack:
        bar = None

        def on_start(total):
            nonlocal bar
            if not quiet:
                bar = stack.enter_context(
                    click.progressbar(length=total, label="evaluating", file=sys.stderr)
                )

        def on_drawing():
            if bar is not None:
                bar.update(1)

        report = run(model, pairs or lineart, max_side=max_side, strokes=strokes, seed=seed,
                     work_size=work_size, figure_rows=figure_rows, norm_stats=norm_stats,
                     line_input=line_input, regions=regions, background=background,
                     output_dir=output, model_name=model_path, on_start=on_start,
                     on_drawing=on_drawing)
    if not quiet:
        click.echo(f"drawings: {report.info['count']} in {report.info['seconds']:.1f} s")
        click.echo(f"metrics: {os.path.join(output, 'metrics.md')}")
        for condition, name in report.figures.items():
            click.echo(f"figure ({condition}): {os.path.join(output, name)}")


@main.command()
@click.argument("sketches", nargs=-1, required=True, type=click.Path())
@click.option("-m", "--model", required=True, type=click.Path(),
              help="A run directory, a .keras generator file or an exported SavedModel folder.")
@click.option("-o", "--output", required=True, type=click.Path(),
              help="The output image for one sketch (.png, .jpg, .webp, .bmp or .tif, by its "
                   "suffix); a folder (created if needed) for several sketches or a sketch "
                   "folder.")
@click.option("--cues", type=click.Path(), default=None,
              help="A cue image (opaque: a full colour layer, blurred like training cues; with "
                   "transparency: strokes where alpha > 0), or a folder of them paired with the "
                   "sketches by file name.")
@click.option("--no-cues", is_flag=True, help="Colour without cues (the default when --cues "
                                               "is not given).")
@click.option("--work-size", type=click.IntRange(8, MAX_WORK_SIZE), default=None,
              help="Short side in pixels at which colours are computed [default: the model's "
                   "image size]. Larger keeps more detail on big pages; time grows with its "
                   "square.")
@click.option("--norm-stats", type=click.Choice(["moving", "image"]), default="moving",
              show_default=True,
              help="Batch-norm statistics: the training averages (moving), or each sketch's "
                   "own (image, as the pix2pix paper at test time). Try image if colours come "
                   "out washed out, typically with few or no cues.")
@click.option("--line-input", type=click.Choice(["adaptive", "grey"]), default=None,
              help="How the line art is shown to the model: the paper's adaptive threshold, "
                   "or grey lines levelled as drawn [default: what the model records: grey "
                   "for models trained by this release].")
@click.option("--regions", type=click.Choice(["auto", "flat", "shift", "off"]), default="auto",
              show_default=True,
              help="Keep colours inside the line art's closed regions: flat (one colour per "
                   "region, a stroked region takes its stroke's colour), shift (the same, "
                   "keeping the model's shading), off; auto: flat with strokes or no cues, "
                   "off with a full cue layer.")
@click.option("--background", type=click.Choice(["auto", "model", "paper"]), default="auto",
              show_default=True,
              help="The regions touching the border that no stroke is in: the model's "
                   "colours, or left as paper (white); auto: paper when nothing is painted "
                   "(no cues, or an empty stroke layer), the model's colours once anything "
                   "is. Paper needs the regions (not --regions off); with --regions auto, a "
                   "full cue layer sets the background itself.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@user_errors
def colorize(sketches, model, output, cues, no_cues, work_size, norm_stats, line_input, regions,
             background, quiet):
    """Colour sketches of any size with a trained generator, with or without cues.

    SKETCHES are image files (gray, RGB, RGBA, palette PNG, JPEG, WebP, ...) or folders
    of them. Each result is an RGB image at its sketch's size: colours computed at the
    model's scale, with the sketch's own lines kept crisp on top.

    Example:

        manga-pix2pix colorize sketch.png --cues cues.png --model run -o colour.png

        manga-pix2pix colorize pages/ --cues page-cues/ --model run -o coloured/
    """
    from manga_pix2pix.inference.colorize import colorize_paths

    if cues is not None and no_cues:
        raise click.UsageError("give either --cues or --no-cues, not both")
    bar = None

    def progress(done, total):
        nonlocal bar
        if quiet or total < 2:
            return
        if bar is None:
            bar = click.progressbar(length=total, label="colouring", file=sys.stderr)
        bar.update(1)

    report = colorize_paths(sketches, model, output, cues=cues, work_size=work_size,
                            norm_stats=norm_stats, line_input=line_input, regions=regions,
                            background=background, progress=progress)
    if bar is not None:
        bar.render_finish()
    for _sketch, message in report.failed:
        click.echo(f"Error: {message}", err=True)
    if report.failed:
        total = len(report.failed) + len(report.written)
        raise click.ClickException(f"{len(report.failed)} of {total} sketches failed")


@main.command()
@click.argument("model", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(),
              help="The folder to write (its parent must exist).")
@click.option("--format", "fmt", type=click.Choice(["savedmodel", "tflite"]),
              default="savedmodel", show_default=True,
              help="savedmodel: the whole colorize graph on uint8 images; tflite: the bare "
                   "generator at the model's image size.")
@click.option("--norm-stats", type=click.Choice(["moving", "image"]), default="moving",
              show_default=True, help="Batch-norm statistics in the exported graph (see "
                                      "colorize --help).")
@click.option("--force", is_flag=True, help="Replace the output folder if it exists.")
@user_errors
def export(model, output, fmt, norm_stats, force):
    """Export a generator for serving: a SavedModel or a TFLite file.

    The SavedModel needs only TensorFlow: its serving signature takes a uint8 sketch
    (and cue image) of any size and returns the uint8 colour image, like `colorize`.

    Example:

        manga-pix2pix export run -o exported --format savedmodel

        manga-pix2pix export run/generator.keras -o mobile --format tflite
    """
    from manga_pix2pix.inference.export import export_model

    target = export_model(model, output, fmt, norm_stats=norm_stats, force=force)
    click.echo(f"exported {model} as a {'SavedModel' if fmt == 'savedmodel' else 'TFLite file'} "
               f"to {target}", err=True)


def _notice(line: str, quiet: bool) -> None:
    """Shows a progress line on stderr (a warning even with --quiet)."""
    if not quiet or line.startswith("warning:"):
        click.echo(line, err=True)


@main.command("build-dataset")
@click.option("--source", type=click.Choice(["danbooru", "safebooru", "html", "folder",
                                             "synthetic", "dump"]),
              default="danbooru", show_default=True,
              help="Where images come from: a booru API, a booru's HTML pages, a local "
                   "folder, the built-in synthetic drawings, or a Danbooru dump.")
@click.option("--base-url", default=None,
              help="The site to ask [default: danbooru.donmai.us for danbooru, safebooru.org "
                   "for safebooru and html].")
@click.option("--tags", "tags", multiple=True,
              help="A search tag (repeatable; Danbooru allows 2 without a login).")
@click.option("--rating", "ratings", multiple=True, type=click.Choice(["g", "s", "q", "e"]),
              help="A rating to keep (repeatable): g general, s sensitive/safe, "
                   "q questionable, e explicit [default: g].")
@click.option("--max-images", type=click.IntRange(min=1), default=None,
              help="Stop once the dataset holds this many images, earlier runs included "
                   "[default: 1000; a folder: all its images; a dump: all its posts].")
@click.option("--min-resolution", type=click.IntRange(min=1), default=None,
              help="Skip images whose short side is below this many pixels "
                   "[default: the image size].")
@click.option("--image-size", type=click.Choice(["64", "128", "256", "512"]), default="256",
              show_default=True, help="Side of the packed square images (64 and 128 are for "
                                      "tests and quick runs).")
@click.option("--crop", type=click.Choice(["center", "top"]), default="center",
              show_default=True, help="Crop after resizing the short side: centre, or the top "
                                      "of portraits (as the original did).")
@click.option("--test-fraction", type=FiniteRange(min=0, max=0.5), default=0.05,
              show_default=True, help="Share of post ids in the test split.")
@click.option("--data-dir", type=click.Path(file_okay=False), default="data",
              show_default=True, help="The TFDS data folder; everything is written under it.")
@click.option("--rate-limit", type=FiniteRange(min=0, min_open=True), default=1.0,
              show_default=True, help="Requests per second at most.")
@click.option("--timeout", type=FiniteRange(min=0, max=3600, min_open=True), default=30.0,
              show_default=True, help="Seconds to wait for the server to connect or send more; "
                                      "a whole answer gets ten times that.")
@click.option("--retries", type=click.IntRange(min=0), default=4, show_default=True,
              help="Retries of a failed request (back-off 1, 2, 4... s; Retry-After honoured).")
@click.option("--page-size", type=click.IntRange(min=1, max=1000), default=100,
              show_default=True, help="Posts per search request (Danbooru: at most 200).")
@click.option("--folder", type=click.Path(), default=None,
              help="The image folder of --source folder (read recursively).")
@click.option("--busy-fraction", type=FiniteRange(min=0, max=1), default=0.1,
              show_default=True,
              help="Synthetic only: share of busy, high-detail images (tagged busy_style).")
@click.option("--dump-dir", type=click.Path(), default=None,
              help="The dump of --source dump (Danbooru2021 or Danbooru2023 layout).")
@click.option("--dump-format", type=click.Choice(["auto", "danbooru2021", "danbooru2023"]),
              default="auto", show_default=True, help="The dump's layout (auto: detected).")
@click.option("--runner", type=click.Choice(["local", "dataflow", "flink", "spark"]),
              default="local", show_default=True,
              help="Dump only: the Apache Beam runner (local: worker processes on this "
                   "machine).")
@click.option("--num-workers", type=click.IntRange(min=1), default=None,
              help="Dump only: Beam worker processes (local) or workers (Dataflow, Flink) "
                   "[default: the CPU count for local].")
@click.option("--beam-option", "beam_options", multiple=True, metavar="KEY=VALUE",
              help="Dump only: a Beam pipeline option for the runner (repeatable), e.g. "
                   "project=my-project, temp_location=gs://bucket/tmp, flink_master=host:8081.")
@click.option("--encoding", type=click.Choice(["png", "jpeg"]), default="png",
              show_default=True,
              help="How the packed images are stored (jpeg: a fraction of the size, lossy).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars and no summary.")
@user_errors
def build_dataset(source, base_url, tags, ratings, max_images, min_resolution, image_size,
                  crop, test_fraction, data_dir, rate_limit, timeout, retries, page_size, folder,
                  busy_fraction, dump_dir, dump_format, runner, num_workers, beam_options,
                  encoding, quiet):
    """Build the `danbooru` TFDS dataset of coloured illustrations.

    Images are gathered into DATA_DIR/downloads/manual/danbooru/ (files named by
    post id, and a manifest.sqlite), then packed into TFRecords loadable with
    tfds.load("danbooru/<size>", data_dir=DATA_DIR). Run the same command again
    after an interruption to finish it: nothing already kept is downloaded twice.
    Safe-for-work only by default (rating g). Polite: 1 request/s by default.

    A dump (--source dump --dump-dir DIR) is read in place and packed on Apache
    Beam (pip install 'manga-pix2pix[beam]'): on this machine's CPUs with
    --runner local, or on a cluster with --runner dataflow, flink or spark.

    Example:

        manga-pix2pix build-dataset --tags holding_staff --max-images 500 --data-dir data

        manga-pix2pix build-dataset --source synthetic --max-images 200 --data-dir data

        manga-pix2pix build-dataset --source folder --folder my_art --data-dir data

        manga-pix2pix build-dataset --source dump --dump-dir danbooru2021 --data-dir data
    """
    import contextlib

    from manga_pix2pix import dataset_build

    options = dataset_build.BuildOptions(
        source=source, data_dir=data_dir, base_url=base_url, tags=tuple(tags),
        ratings=tuple(ratings) or ("g",), max_images=max_images, min_resolution=min_resolution,
        image_size=int(image_size), crop=crop, test_fraction=test_fraction,
        rate_limit=rate_limit, timeout=timeout, retries=retries, page_size=page_size,
        folder=folder, busy_fraction=busy_fraction, progress_bars=not quiet,
        dump_dir=dump_dir, dump_format=dump_format, runner=runner, num_workers=num_workers,
        beam_options=tuple(beam_options), encoding=encoding,
    )
    with contextlib.ExitStack() as stack:
        bar = None
        shown = 0

        def progress(held, target):
            nonlocal bar, shown
            if bar is None:
                bar = stack.enter_context(click.progressbar(
                    length=target, label="collecting images", file=sys.stderr, show_pos=True))
            bar.update(max(0, held - shown))
            shown = held

        report = dataset_build.build_dataset(
            options, progress=None if quiet else progress,
            notice=functools.partial(_notice, quiet=quiet))
    if not quiet:
        for line in dataset_build.format_report(report):
            click.echo(line)


@main.command()
@click.option("--data", "source", default="synthetic", show_default=True,
              help="'synthetic', a folder of images, or a TFDS name such as 'danbooru'.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="The TFDS data folder (for a TFDS --data).")
@click.option("--run-dir", required=True, type=click.Path(file_okay=False),
              help="Where the run lives; run the same command again to resume it.")
@click.option("--preset", "preset_name", type=click.Choice(["paper", "small", "smoke"]),
              default="paper", show_default=True,
              help="paper: the paper's networks at 256 px; small: 128 px, a quarter of the "
                   "width (trainable on a CPU); smoke: seconds, to try the flow.")
@click.option("--no-cues", is_flag=True, default=None,
              help="Train the paper's cue-free model (cues always withheld).")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Passes over the training images [default: the preset's].")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Train steps in all (instead of --epochs).")
@click.option("--time-limit", "time_limit_s", type=Duration(), default=None,
              help="Train for this long (e.g. 20m, 90s, 1.5h; a bare number is minutes), "
                   "counted from the start: the steps are fitted to the speed measured as "
                   "it trains, so a linear decay ends on time. With --steps or --epochs, at "
                   "most that many. A resumed run keeps its fitted length.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Global batch size, split over replicas [default: the preset's].")
@click.option("--image-size", type=click.IntRange(min=32, max=1024), default=None,
              help="Training image side, a power of two [default: the preset's].")
@click.option("--base-filters", type=click.IntRange(min=1), default=None,
              help="Filters of the networks' first layer; every layer's width scales with it "
                   "(paper: 64) [default: the preset's].")
@click.option("--norm", type=click.Choice(["batch", "instance"]), default=None,
              help="Normalisation: batch (paper) or instance (large batches, many replicas).")
@click.option("--learning-rate", type=FiniteRange(min=0, min_open=True), default=None,
              help="Adam learning rate for both networks [default: 2e-4].")
@click.option("--lr-decay", type=click.Choice(["constant", "linear"]), default=None,
              help="linear: decay to 0 over the second half of training [default: constant].")
@click.option("--ema-decay", type=FiniteRange(min=0, max=1, max_open=True), default=None,
              help="Save an exponential moving average of the generator's weights with this "
                   "decay (e.g. 0.999; 0: the last weights) [default: the preset's].")
@click.option("--complexity-ceiling", type=FiniteRange(min=0, max=100), default=None,
              help="Keep images whose sketch has at most this percent of line pixels "
                   "[default: 40].")
@click.option("--holdout-fraction", type=FiniteRange(min=0, max=1, max_open=True),
              default=None, help="Share of the images held out of training (for previews "
                                 "and evaluation) [default: 0].")
@click.option("--synthetic-count", type=click.IntRange(min=1), default=None,
              help="How many images the synthetic source draws [default: the preset's].")
@click.option("--sketch-style", type=click.Choice(["adaptive", "xdog", "pencil", "mix"]),
              default=None, help="Training sketches: the paper's adaptive threshold, XDoG, "
                                 "soft grey pencil lines, or a mix of the three "
                                 "[default: the preset's].")
@click.option("--line-augment/--no-line-augment", default=None,
              help="Jitter the sketch lines: thickness, darkness, grey level, noise "
                   "[default: the preset's].")
@click.option("--cue-style", type=click.Choice(["paper", "artist"]), default=None,
              help="Training cues: the paper's blurred truth, or an artist's: flat-colour "
                   "strokes and highlighter layers that do not trace the truth "
                   "[default: the preset's].")
@click.option("--mosaic", "p_mosaic", type=FiniteRange(min=0, max=1), default=None,
              help="Share of training examples replaced by a 2 x 2 mosaic of the batch's "
                   "images at half scale (small figures, as on a whole page) "
                   "[default: the preset's].")
@click.option("--upsample", type=click.Choice(["transpose", "resize"]), default=None,
              help="Generator up-sampling: the paper's transposed convolutions, or resize "
                   "then convolve (no checkerboard) [default: the preset's].")
@click.option("--init-from", type=click.Path(exists=True), default=None,
              help="Start a new run from the weights of another run directory or a .keras "
                   "generator (ignored when --run-dir already has a checkpoint).")
@click.option("--strategy", type=click.Choice(["auto", "default", "mirrored", "multi-worker",
                                               "tpu"]),
              default=None, help="auto: TPU if --tpu, all GPUs if several, else one device; "
                                 "multi-worker reads TF_CONFIG [default: auto].")
@click.option("--tpu", default=None, help="TPU name or grpc:// address.")
@click.option("--precision", type=click.Choice(["auto", "float32", "mixed_float16",
                                                "mixed_bfloat16"]),
              default=None, help="Compute precision. auto: mixed_bfloat16 on hardware with "
                                 "bfloat16 units (AMX or AVX512-BF16 CPUs, GPUs of compute "
                                 "capability 8.0+, TPUs), else float32; a resumed run keeps "
                                 "its own [default: auto].")
@click.option("--xla", is_flag=True, default=None, help="Compile the step with XLA.")
@click.option("--derive-on", type=click.Choice(["auto", "host", "device"]), default=None,
              help="Where sketches, cues and cue masks are derived: host (input pipeline) or "
                   "device (in the train step, per replica); auto is device, the faster one "
                   "measured; the same examples either way [default: auto].")
@click.option("--seed", type=int, default=None,
              help="Seeds weights, data order, augmentation, cue masks and dropout [default: 0].")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=None,
              help="Save a checkpoint every this many steps (and at the end).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@user_errors
def train(run_dir, preset_name, init_from, quiet, **options):
    """Train the pix2pix colouriser, or resume a run.

    Writes RUN/config.json, checkpoints/, logs/ (TensorBoard), previews/
    (sketch | cues | output | truth per epoch), and at the end generator.keras
    and train_summary.json. Running the same command again resumes exactly
    where the run stopped; Ctrl-C saves a checkpoint first.

    Example:

        manga-pix2pix train --data synthetic --preset smoke --run-dir demo-run

        manga-pix2pix train --data images/ --holdout-fraction 0.1 --preset small --run-dir run

        manga-pix2pix train --data danbooru --data-dir data --no-cues --run-dir run-no-cues
    """
    from manga_pix2pix.training import loop

    if options["epochs"] is not None and options["steps"] is not None:
        raise click.UsageError("give --epochs or --steps, not both")
    config = loop.build_config(preset_name, **options)
    summary = loop.train(config, run_dir, init_from=init_from, quiet=quiet)
    if not quiet and not summary["already_trained"]:
        rate = summary["images_per_second"]
        speed = f", {rate:.1f} images/s" if rate else ""
        done = f"trained to step {summary['steps']} ({summary['epochs']:g} epochs{speed})"
        if summary["wrote_run_dir"]:
            click.echo(f"{done}; generator: {os.path.join(run_dir, loop.GENERATOR_FILE)}")
        else:
            click.echo(f"{done}; this worker's part is done (the chief writes the run directory)")


@main.command()
@click.option("-m", "--model", required=True, type=click.Path(),
              help="A run directory, a .keras generator file or an exported SavedModel folder.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback lets others on the network "
                   "use it.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--work-size", type=click.IntRange(8, MAX_WORK_SIZE), default=None,
              help="Short side in pixels at which colours are computed [default: the model's "
                   "image size] (see colorize --help).")
@click.option("--norm-stats", type=click.Choice(["moving", "image"]), default="moving",
              show_default=True, help="Batch-norm statistics (see colorize --help).")
@click.option("--background", type=click.Choice(["auto", "model", "paper"]), default="auto",
              show_default=True,
              help="Where the page's Background choice starts, and what API requests without "
                   "one get (see colorize --help).")
@click.option("--max-upload-mb", type=click.IntRange(min=1), default=25, show_default=True,
              help="Largest request accepted, in MB (sketch and cues together).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a web browser.")
@user_errors
def serve(model, host, port, work_size, norm_stats, background, max_upload_mb, open_browser):
    """Serve a local web page for painting colour strokes over a sketch.

    Open a sketch, paint cues on it and the colouring updates after each stroke.
    The model is loaded once; Ctrl-C stops the server. Download the result and the
    cue layer: `colorize --cues` gives the same result from the same files.

    Example:

        manga-pix2pix serve --model run --open

        manga-pix2pix serve --model run/generator.keras --port 8080 --work-size 512
    """
    from manga_pix2pix.app import server

    settings = server.ServeSettings(host=host, max_upload_bytes=max_upload_mb * 1024 * 1024)
    sock = server.bind_socket(host, port)
    warning = server.network_warning(host)
    if warning is not None:
        click.echo(f"Warning: {warning}", err=True)
    try:
        loaded = server.build_app(model, work_size=work_size, norm_stats=norm_stats,
                                  background=background, settings=settings)
    except BaseException:
        sock.close()
        raise
    info = loaded.info
    cues = "with cues" if info.uses_cues else "without cues (--no-cues model)"
    click.echo(f"model: {info.name} ({info.preset or 'custom'}, {info.image_size} px, {cues}; "
               f"work size {info.work_size})")
    click.echo(f"serving on {server.url_of(sock)}  (Ctrl-C to stop)")
    server.run_server(loaded.app, sock, open_browser=open_browser)
    click.echo("stopped")


# -- commands end --


if __name__ == "__main__":
    main()
