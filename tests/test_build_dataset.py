"""`manga-pix2pix build-dataset` with the local sources: synthetic drawings and a folder."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds
from click.testing import CliRunner

from manga_pix2pix.cli import main
from manga_pix2pix.data.pipeline import load_images
from manga_pix2pix.data.synthetic import synthetic_image
from manga_pix2pix.dataset_build import complexity_histogram, manual_dir_of
from manga_pix2pix.imageio import encode_image, read_image
from tfds_danbooru.scrape.local import SyntheticSource, folder_id


def run(*args):
    return CliRunner().invoke(main, ["build-dataset", *args])


def test_help_documents_the_command():
    result = CliRunner().invoke(main, ["build-dataset", "--help"])
    assert result.exit_code == 0
    for option in ("--source", "--base-url", "--tags", "--rating", "--max-images",
                   "--min-resolution", "--image-size", "--crop", "--data-dir", "--rate-limit",
                   "--folder", "--test-fraction", "--quiet", "Example:"):
        assert option in result.output


def test_synthetic_build_with_busy_images_then_a_rerun(tmp_path):
    data_dir = tmp_path / "data"
    args = ["--source", "synthetic", "--max-images", "24", "--image-size", "64",
            "--busy-fraction", "0.3", "--data-dir", str(data_dir)]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "kept: 24 new" in result.output
    examples = list(tfds.load("danbooru/64", data_dir=str(data_dir), split="train+test"))
    posts = itertools.islice(SyntheticSource(64, test_fraction=0.05).iter_posts(), 24)
    expected = [p.id for p in posts]
    assert sorted(int(e["id"]) for e in examples) == expected
    busy = [float(e["complexity"]) for e in examples if b"busy_style" in list(e["tags"].numpy())]
    plain = [float(e["complexity"]) for e in examples
             if b"cel_style" in list(e["tags"].numpy())]
    assert 2 <= len(busy) <= 14 and len(busy) + len(plain) == 24
    assert np.mean(busy) > np.mean(plain)
    # The packed image is the drawing at 64 px, unchanged.
    first = next(e for e in examples if int(e["id"]) == expected[0])
    np.testing.assert_array_equal(first["image"].numpy(), read_image(
        manual_dir_of(data_dir) / "images" / f"{expected[0]}.png"))
    histogram = read_image(data_dir / "complexity-64.png")
    assert histogram.shape == (400, 720, 3) and (histogram < 128).any()

    again = run(*args, "--max-images", "30")
    assert again.exit_code == 0, again.output
    assert "kept: 6 new, 24 already there; 30 images in the dataset" in again.output
    assert len(list(tfds.load("danbooru/64", data_dir=str(data_dir), split="train+test"))) == 30


def test_default_config_is_what_tfds_load_and_the_pipeline_read(tmp_path):
    result = run("--source", "synthetic", "--max-images", "3", "--data-dir", str(tmp_path),
                 "--quiet")
    assert result.exit_code == 0, result.output
    examples = list(tfds.load("danbooru", data_dir=str(tmp_path), split="train"))
    assert len(examples) == 2 and examples[0]["image"].shape == (256, 256, 3)
    ds = load_images("danbooru", data_dir=str(tmp_path), split="test", image_size=256)
    (example,) = list(ds)
    assert example["image"].shape == (256, 256, 3) and example["tags"].shape[0] == 3


@pytest.fixture
def art_folder(tmp_path):
    """Images in several formats, one in a subfolder, a duplicate, a corrupt and a tiny file."""
    folder = tmp_path / "art"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.png").write_bytes(encode_image(synthetic_image(1, (48, 40))))
    (folder / "b.jpg").write_bytes(encode_image(synthetic_image(2, (40, 60)), ".jpg"))
    (folder / "sub" / "c.webp").write_bytes(encode_image(synthetic_image(3, 50), ".webp"))
    (folder / "sub" / "copy_of_a.png").write_bytes((folder / "a.png").read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "tiny.png").write_bytes(encode_image(synthetic_image(4, 8)))
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_folder_build(art_folder, tmp_path):
    data_dir = tmp_path / "data"
    result = run("--source", "folder", "--folder", str(art_folder), "--image-size", "64",
                 "--min-resolution", "32", "--crop", "top", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "kept: 3 new" in out and "duplicates: 1 (by md5 1)" in out
    assert "corrupt 1" in out and "too_small 1" in out
    examples = list(tfds.load("danbooru/64-top", data_dir=str(data_dir), split="train+test"))
    # Files are read in sorted order of path, so a.png is kept and its copy is the duplicate.
    assert {int(e["id"]) for e in examples} == {folder_id(n) for n in ("a.png", "b.jpg",
                                                                       "sub/c.webp")}
    landscape = next(e for e in examples if int(e["id"]) == folder_id("b.jpg"))
    expected = cv2.resize(synthetic_image(2, (40, 60)), (96, 64), interpolation=cv2.INTER_CUBIC)
    assert np.abs(landscape["image"].numpy().astype(int) - expected[:, 16:80]).mean() < 12
    assert all(e["source"].numpy() == b"folder" and e["rating"].numpy() == b""
               for e in examples)


def test_folder_errors(tmp_path):
    result = run("--source", "folder", "--folder", str(tmp_path / "nope"),
                 "--data-dir", str(tmp_path / "d"))
    assert result.exit_code == 1 and "no such folder" in result.output
    (tmp_path / "empty").mkdir()
    result = run("--source", "folder", "--folder", str(tmp_path / "empty"),
                 "--data-dir", str(tmp_path / "d"))
    assert result.exit_code == 1 and "no image files" in result.output
    result = run("--source", "folder", "--data-dir", str(tmp_path / "d"))
    assert result.exit_code == 1 and "needs --folder" in result.output
    result = run("--source", "synthetic", "--data-dir", str(tmp_path / "empty" / "x"),
                 "--max-images", "2", "--image-size", "64", "--quiet")
    assert result.exit_code == 0 and result.output == ""
    result = run("--source", "folder", "--folder", str(tmp_path), "--data-dir",
                 str(tmp_path / "empty" / "x"))
    assert result.exit_code == 1 and "holds posts from the 'synthetic' source" in result.output
    assert "Traceback" not in result.output


def test_a_pack_killed_half_way_leaves_nothing_for_the_next_one(tmp_path):
    data_dir = tmp_path / "data"
    args = ["--source", "synthetic", "--max-images", "4", "--image-size", "64",
            "--data-dir", str(data_dir), "--quiet"]
    assert run(*args).exit_code == 0
    # What TFDS leaves when a build is killed while it writes the shards.
    stale = data_dir / "danbooru" / "64" / "incomplete.AB12CD_1.0.0"
    stale.mkdir()
    (stale / "danbooru-train.tfrecord-00000-of-00001").write_bytes(b"half a shard")
    result = run(*args, "--max-images", "6")
    assert result.exit_code == 0, result.output
    assert not stale.exists()
    assert sorted(p.name for p in (data_dir / "danbooru" / "64").iterdir()) == ["1.0.0"]
    assert len(list(tfds.load("danbooru/64", data_dir=str(data_dir), split="train+test"))) == 6


@pytest.mark.parametrize("option", ["--timeout", "--rate-limit", "--test-fraction"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_numbers_that_are_not_finite_are_usage_errors(option, value, tmp_path):
    result = run("--source", "synthetic", "--data-dir", str(tmp_path / "d"), option, value)
    assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output
    # Past a bound it is out of range; below one (or with none), not finite.
    assert "is not a finite number" in result.output or "is not in the range" in result.output
    assert not (tmp_path / "d").exists()


def test_histogram_drawing():
    image = complexity_histogram([5.0, 5.5, 12.0, 61.0])
    assert image.shape == (400, 720, 3) and image.dtype == np.uint8
    empty = complexity_histogram([])
    assert empty.shape == (400, 720, 3)
