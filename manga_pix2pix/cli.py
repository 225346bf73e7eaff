"""The `manga-pix2pix` command line: thin click commands over the library.

Library errors (`UserError`) become a one-line message and exit status 1; no traceback.
"""

from __future__ import annotations

import functools
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click  # noqa: E402

from manga_pix2pix import __version__  # noqa: E402
from manga_pix2pix.errors import UserError  # noqa: E402


def _start_tensorflow_quietly() -> None:
    """Imports TensorFlow and finds its devices with stderr silenced.

    TensorFlow's C++ runtime writes start-up notes (oneDNN, CUDA probing) to stderr before its
    log level applies; they would bury the one line a user needs. Set MANGA_PIX2PIX_VERBOSE=1
    to see them.
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
        tf.zeros([1])
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def user_errors(func):
    """Turns the library's `UserError` (and a full disk) into a clean `click.ClickException`."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UserError as err:
            raise click.ClickException(str(err)) from None
        except OSError as err:
            if err.errno == 28:  # ENOSPC
                raise click.ClickException(f"the disk is full: {err.filename or ''}".strip()) from None
            raise

    return wrapper


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
    _start_tensorflow_quietly()


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
@click.option("--sigma", type=click.FloatRange(min=0.1), default=None,
              help="Blur sigma in pixels [default: 20 per 256 px of short side].")
@user_errors
def cues(color, output, sigma):
    """Turn a colour image into a cue layer: the image blurred by a wide Gaussian.

    Example:

        manga-pix2pix cues colour.png -o cues.png --sigma 20
    """
    from manga_pix2pix.data import ops_cli

    ops_cli.cues_file(color, output, sigma=sigma)


# -- commands end --
