"""The `sketchify` and `cues` commands, run through click's CliRunner."""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from manga_pix2pix.cli import main
from manga_pix2pix.data.cues import gaussian_blur
from manga_pix2pix.data.sketch import sketch


@pytest.fixture
def colour_file(tmp_path, make_natural_image, write_encoded_file):
    path = tmp_path / "colour.png"
    write_encoded_file(path, make_natural_image(0, 37, 53))
    return path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def read_back(path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


@pytest.mark.parametrize("command", ["sketchify", "cues"])
def test_help(command):
    result = run(command, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.output


def test_sketchify_writes_a_binary_sketch_of_the_same_size(
    colour_file, tmp_path, make_natural_image
):
    out = tmp_path / "sketch.png"
    result = run("sketchify", colour_file, "-o", out)
    assert result.exit_code == 0, result.output
    written = read_back(out)
    assert written.shape == (37, 53)
    assert set(np.unique(written)) == {0, 255}
    np.testing.assert_array_equal(written, sketch(make_natural_image(0, 37, 53)).numpy()[..., 0])


def test_cues_writes_a_blurred_image_of_the_same_size(colour_file, tmp_path, make_natural_image):
    out = tmp_path / "cues.png"
    result = run("cues", colour_file, "-o", out)
    assert result.exit_code == 0, result.output
    written = cv2.cvtColor(read_back(out), cv2.COLOR_BGR2RGB)
    assert written.shape == (37, 53, 3)
    expected = gaussian_blur(make_natural_image(0, 37, 53)).numpy() * 255.0
    assert np.abs(written - expected).max() <= 0.5 + 1e-3


def test_cues_sigma_option(colour_file, tmp_path, make_natural_image):
    sharp, wide = tmp_path / "sharp.png", tmp_path / "wide.png"
    assert run("cues", colour_file, "-o", sharp, "--sigma", "1").exit_code == 0
    assert run("cues", colour_file, "-o", wide, "--sigma", "8").exit_code == 0
    original = make_natural_image(0, 37, 53).astype(int)
    sharp_rgb = cv2.cvtColor(read_back(sharp), cv2.COLOR_BGR2RGB).astype(int)
    wide_rgb = cv2.cvtColor(read_back(wide), cv2.COLOR_BGR2RGB).astype(int)
    expected = gaussian_blur(original.astype(np.uint8), 1.0).numpy() * 255.0
    assert np.abs(sharp_rgb - expected).max() <= 0.5 + 1e-3
    # A wider blur strays further from the original and is smoother.
    assert np.abs(wide_rgb - original).mean() > np.abs(sharp_rgb - original).mean()
    assert np.abs(np.diff(wide_rgb, axis=1)).mean() < np.abs(np.diff(sharp_rgb, axis=1)).mean()
    for sigma in ("0", "1e7"):  # 1e7 would need a 64 x 8e7 blur matrix
        result = run("cues", colour_file, "-o", tmp_path / "bad.png", "--sigma", sigma)
        assert result.exit_code == 2 and "--sigma" in result.output
        assert not (tmp_path / "bad.png").exists()


def assert_clean_error(result, *words):
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for word in words:
        assert word in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["sketchify", "cues"])
def test_missing_file(command, tmp_path):
    out = tmp_path / "out.png"
    assert_clean_error(
        run(command, tmp_path / "missing.png", "-o", out), "missing.png", "no such file"
    )
    assert not out.exists()


@pytest.mark.parametrize("command", ["sketchify", "cues"])
def test_not_an_image(command, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is text, not a picture")
    out = tmp_path / "out.png"
    assert_clean_error(run(command, bad, "-o", out), "notes.png", "not an image")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.png"]


def test_output_folder_missing(colour_file, tmp_path):
    assert_clean_error(run("sketchify", colour_file, "-o", tmp_path / "nope" / "s.png"), "nope")


@pytest.mark.parametrize("command", ["sketchify", "cues"])
def test_an_output_format_that_cannot_be_written(command, colour_file, tmp_path):
    for name in ("out.xyz", "out.gif"):
        assert_clean_error(run(command, colour_file, "-o", tmp_path / name),
                           f"cannot write an image as '{Path(name).suffix}'", ".png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["colour.png"]


def test_a_decoder_failure_is_one_line_on_stderr_too(tmp_path):
    # OpenCV's decoders log their own errors from C++ straight to stderr, past click; only a
    # real process shows whether they are silenced. A PGM header with too few pixels after it:
    header_only = tmp_path / "cut.pgm"
    header_only.write_bytes(b"P5\n30 30\n255\n" + b"\x80" * 100)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-m", "manga_pix2pix", "sketchify", str(header_only),
         "-o", str(tmp_path / "s.png")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"Error: {header_only}: not an image, or the image is truncated or corrupt"]
