"""The `danbooru` builder: TFDS's dummy-data test, splits, preprocessing, configs, `tfds build`."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds

import tfds_danbooru
from manga_pix2pix.data.sketch import image_complexity
from manga_pix2pix.imageio import read_image
from tfds_danbooru.danbooru import danbooru_dataset_builder as dbb
from tfds_danbooru.danbooru.danbooru_dataset_builder_test import DanbooruTest  # noqa: F401
from tfds_danbooru.danbooru.make_dummy_data import make_dummy_data
from tfds_danbooru.scrape import Filters, SyntheticSource, collect
from tfds_danbooru.scrape.manifest import Manifest, read_done_rows

DUMMY = Path(str(dbb.Builder.code_path.parent)) / "dummy_data"


def test_registered_on_import():
    assert "danbooru" in tfds.list_builders(with_community_datasets=False)
    assert tfds_danbooru.Danbooru.name == "danbooru"
    assert tfds.builder_cls("danbooru").DEFAULT_CONFIG_NAME == "256"


def test_features_and_configs(tmp_path):
    builder = tfds.builder("danbooru/512-top", data_dir=tmp_path)
    features = builder.info.features
    assert features["image"].shape == (512, 512, 3) and features["image"].dtype == np.uint8
    assert set(features.keys()) == {"image", "id", "md5", "tags", "rating", "source",
                                    "complexity"}
    assert features["id"].dtype == np.int64 and features["complexity"].dtype == np.float32
    names = {c.name for c in dbb.Builder.BUILDER_CONFIGS}
    assert {"256", "512", "256-top", "64"} <= names
    assert dbb.make_config(256).name == "256"
    custom = dbb.make_config(128, "top", 0.1)
    assert custom.name == "128-top-test10" and custom.test_fraction == 0.1
    with pytest.raises(ValueError, match="crop"):
        dbb.make_config(256, "left")


def test_splits_follow_a_hash_of_the_id():
    rows = [dbb.Row(i, None, None, (), "g", "x", "done", None, f"images/{i}.png", 1, 1)
            for i in range(1, 2001)]
    train, test = dbb.assign_splits(rows, 0.05)
    assert 60 <= len(test) <= 140 and len(train) + len(test) == 2000
    # The same id lands in the same split whatever else the dataset holds.
    train2, test2 = dbb.assign_splits(rows[::3], 0.05)
    assert {r.id for r in test2} == {r.id for r in test if r.id % 3 == 1}
    assert dbb.split_hash(12345) == dbb.split_hash(12345)
    # A tiny dataset still gets one test image; a zero fraction none.
    small_train, small_test = dbb.assign_splits(rows[:3], 0.05)
    assert len(small_test) == 1 and len(small_train) == 2
    assert dbb.assign_splits(rows[:3], 0.0)[1] == []
    # And a train split: ids that all hash into the test fraction leave the highest in train.
    low = [r for r in rows if dbb.split_hash(r.id) < 0.05][:3]
    only_test_train, only_test_test = dbb.assign_splits(low, 0.05)
    assert [r.id for r in only_test_train] == [max(low, key=lambda r: dbb.split_hash(r.id)).id]
    assert len(only_test_test) == 2
    assert [len(split) for split in dbb.assign_splits(low[:1], 0.05)] == [1, 0]


def test_resize_and_crop():
    rng = np.random.default_rng(0)
    portrait = rng.integers(0, 256, (300, 200, 3), np.uint8)
    center = dbb.resize_and_crop(portrait, 100, "center")
    top = dbb.resize_and_crop(portrait, 100, "top")
    shrunk = cv2.resize(portrait, (100, 150), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(center, shrunk[25:125])
    np.testing.assert_array_equal(top, shrunk[:100])
    landscape = rng.integers(0, 256, (20, 40, 3), np.uint8)
    grown = dbb.resize_and_crop(landscape, 64, "top")
    np.testing.assert_array_equal(
        grown, cv2.resize(landscape, (128, 64), interpolation=cv2.INTER_CUBIC)[:, 32:96])
    square = rng.integers(0, 256, (64, 64, 3), np.uint8)
    np.testing.assert_array_equal(dbb.resize_and_crop(square, 64), square)


def test_dummy_data_is_reproducible_and_small(tmp_path):
    make_dummy_data(tmp_path)
    assert sum(p.stat().st_size for p in DUMMY.rglob("*") if p.is_file()) < 20_000
    committed, fresh = read_done_rows(DUMMY), read_done_rows(tmp_path)
    assert [(r.id, r.tags, r.rating) for r in committed] == [(r.id, r.tags, r.rating)
                                                             for r in fresh]
    for row in committed:
        np.testing.assert_array_equal(read_image(DUMMY / row.file),
                                      read_image(tmp_path / row.file))


def test_manifest_rows_cannot_point_outside_the_manual_dir(tmp_path):
    make_dummy_data(tmp_path)
    with sqlite3.connect(tmp_path / "manifest.sqlite") as conn:
        forged = conn.execute("SELECT file FROM posts WHERE id = 1007").fetchone()[0]
        conn.execute("UPDATE posts SET file = 'images/1001.png' WHERE id = 1002")
    assert forged == "../../escape.png"
    assert [r.id for r in read_done_rows(tmp_path)] == [1001, 1003, 1004, 1005]
    with Manifest(tmp_path) as manifest, pytest.raises(ValueError, match="images/<id>"):
        manifest.record(9, status="done", file="../9.png")


def test_tfds_load_and_the_tfds_build_command(tmp_path):
    manual = tmp_path / "downloads" / "manual" / "danbooru"
    source = SyntheticSource(48)
    collect(source, manual, filters=Filters(ratings=None), max_images=6)
    expected = sorted(p.id for p in itertools.islice(source.iter_posts(), 6))
    # What `tfds build danbooru --imports tfds_danbooru --data_dir D --config 64` runs. (The
    # `tfds` script itself also loads its convert_format command, which needs apache-beam.)
    import simple_parsing
    from tensorflow_datasets.scripts.cli import build

    args = simple_parsing.parse(build.Args, args=[
        "danbooru", "--imports", "tfds_danbooru", "--data_dir", str(tmp_path), "--config", "64"])
    args.execute()
    examples = list(tfds.load("danbooru/64", data_dir=tmp_path, split="train+test"))
    assert sorted(int(e["id"]) for e in examples) == expected
    for example in examples:
        image = example["image"].numpy()
        assert image.shape == (64, 64, 3)
        assert example["complexity"].numpy() == pytest.approx(
            float(image_complexity(image)), abs=1e-4)
        assert example["source"].numpy() == b"synthetic" and example["rating"].numpy() == b"g"
