"""The `sketchify` and `cues` commands, run through click's CliRunner."""

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
    result = run("cues", colour_file, "-o", tmp_path / "bad.png", "--sigma", "0")
    assert result.exit_code == 2 and not (tmp_path / "bad.png").exists()


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
