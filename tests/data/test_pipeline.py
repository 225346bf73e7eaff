"""The tf.data pipeline end to end: sources, augmentation, masks, filtering, determinism."""

import logging

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from manga_pix2pix.data.cues import NO_CUES, CueMaskConfig, gaussian_blur
from manga_pix2pix.data.pipeline import (
    examples_from_images,
    load_images,
    make_dataset,
    prepare_example,
    resize_and_crop,
    to_uint8_image,
)
from manga_pix2pix.data.sketch import image_complexity, sketch
from manga_pix2pix.data.synthetic import synthetic_image, tags_of
from manga_pix2pix.errors import UserError

S = 32
KEYS = {"image", "sketch", "cues", "cue_mask"}


def batches(ds) -> list[dict[str, np.ndarray]]:
    return list(ds.as_numpy_iterator())


def check_batch(batch: dict, batch_size: int, size: int = S) -> None:
    assert set(batch) == KEYS
    channels = {"image": 3, "sketch": 1, "cues": 3, "cue_mask": 1}
    for key, value in batch.items():
        assert value.shape == (batch_size, size, size, channels[key]), key
        assert value.dtype == np.float32, key
        assert value.min() >= -1.0 and value.max() <= 1.0, key
    assert set(np.unique(batch["sketch"])) <= {-1.0, 1.0}
    assert set(np.unique(batch["cue_mask"])) <= {0.0, 1.0}
    outside = np.broadcast_to(batch["cue_mask"] == 0, batch["cues"].shape)
    assert np.all(batch["cues"][outside] == 0.0)


def test_synthetic_source():
    ds = load_images("synthetic", image_size=S, seed=10, synthetic_count=3)
    examples = batches(ds)
    assert len(examples) == 3
    for i, ex in enumerate(examples):
        np.testing.assert_array_equal(ex["image"], synthetic_image(10 + i, S))
        assert ex["image"].dtype == np.uint8
        assert ex["complexity"].dtype == np.float32 and ex["complexity"].shape == ()
        assert ex["complexity"] == pytest.approx(float(image_complexity(ex["image"])))
        assert [t.decode() for t in ex["tags"]] == tags_of(10 + i)


def test_folder_source_mixed_formats(mixed_image_folder):
    examples = batches(load_images(str(mixed_image_folder), image_size=S))
    # Every image file, and not the text file.
    assert len(examples) == 8
    for ex in examples:
        assert ex["image"].shape == (S, S, 3) and ex["image"].dtype == np.uint8
        assert "tags" not in ex
        assert ex["complexity"] == pytest.approx(float(image_complexity(ex["image"])))
    # Files are read in name order: e_alpha.png is 5th; its transparent top is white paper.
    assert examples[4]["image"][:5].min() >= 250
    # The gray file stays gray.
    gray = examples[3]["image"].astype(int)
    assert np.array_equal(gray[..., 0], gray[..., 1])
    assert np.array_equal(gray[..., 1], gray[..., 2])


def test_folder_crop_top_keeps_the_top_of_a_portrait(mixed_image_folder):
    # c_web.webp is 36 wide and 64 tall: its short side is already 36, so no resampling at 36.
    center = batches(load_images(str(mixed_image_folder), image_size=36, crop="center"))[2]
    top = batches(load_images(str(mixed_image_folder), image_size=36, crop="top"))[2]
    original = synthetic_image(3, (64, 36))
    np.testing.assert_array_equal(top["image"], original[:36])
    np.testing.assert_array_equal(center["image"], original[14:50])


def test_folder_skips_a_broken_file_with_a_warning(tmp_path, caplog, write_encoded_file):
    write_encoded_file(tmp_path / "good.png", synthetic_image(0, 24))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with caplog.at_level(logging.WARNING):
        examples = batches(load_images(str(tmp_path), image_size=16))
    assert len(examples) == 1
    assert "broken.jpg" in caplog.text


def test_resize_and_crop_any_size():
    for h, w in [(37, 53), (8, 12), (100, 40)]:
        out = resize_and_crop(synthetic_image(1, (h, w)), 24)
        assert out.shape == (24, 24, 3) and out.dtype == tf.uint8
    image = synthetic_image(2, 24)
    np.testing.assert_array_equal(resize_and_crop(image, 24).numpy(), image)
    with pytest.raises(ValueError, match="crop"):
        resize_and_crop(image, 24, crop="bottom")


def test_source_errors(tmp_path):
    with pytest.raises(UserError, match="no image files"):
        load_images(str(tmp_path))
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        load_images(str(tmp_path / "a.txt"))
    for name in ["no_such_dataset_anywhere", str(tmp_path / "missing_folder"), "./missing"]:
        with pytest.raises(UserError, match="neither a folder nor a known TFDS dataset"):
            load_images(name)
    with pytest.raises(UserError, match="empty"):
        load_images("")
    with pytest.raises(UserError, match="not built"):
        load_images("mnist", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="crop"):
        load_images("synthetic", crop="left")


class PipelineTestImages(tfds.core.GeneratorBasedBuilder):
    """A tiny dataset with the `danbooru` builder's features."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="32")]

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(32, 32, 3)),
                    "id": tf.int64,
                    "md5": tfds.features.Text(),
                    "tags": tfds.features.Sequence(tfds.features.Text()),
                    "rating": tfds.features.Text(),
                    "source": tfds.features.Text(),
                    "complexity": tf.float32,
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(range(5)), "test": self._generate_examples([9])}

    def _generate_examples(self, seeds):
        for seed in seeds:
            image = synthetic_image(seed, 32)
            yield (
                seed,
                {
                    "image": image,
                    "id": seed,
                    "md5": f"{seed:032x}",
                    "tags": tags_of(seed),
                    "rating": "g",
                    "source": "",
                    "complexity": float(image_complexity(image)),
                },
            )


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    tfds.disable_progress_bar()
    PipelineTestImages(data_dir=str(data_dir), config="32").download_and_prepare()
    return str(data_dir)


def test_tfds_source(tfds_dir):
    examples = batches(load_images("pipeline_test_images/32", data_dir=tfds_dir, image_size=32))
    assert len(examples) == 5
    sources = {seed: synthetic_image(seed, 32) for seed in range(5)}
    found = set()
    for ex in examples:
        (seed,) = [s for s, image in sources.items() if np.array_equal(image, ex["image"])]
        found.add(seed)
        assert [t.decode() for t in ex["tags"]] == tags_of(seed)
        assert ex["complexity"] == pytest.approx(float(image_complexity(ex["image"])))
    assert found == set(sources)
    test = batches(
        load_images("pipeline_test_images", data_dir=tfds_dir, split="test", image_size=16)
    )
    assert len(test) == 1 and test[0]["image"].shape == (16, 16, 3)
    with pytest.raises(UserError, match="split"):
        load_images("pipeline_test_images", data_dir=tfds_dir, split="validation")


def test_make_dataset_from_tfds(tfds_dir):
    ds = make_dataset("pipeline_test_images", data_dir=tfds_dir, image_size=32, batch_size=2)
    got = batches(ds)
    assert len(got) == 2
    for batch in got:
        check_batch(batch, 2)


def test_training_batches_end_to_end():
    ds = make_dataset("synthetic", image_size=S, batch_size=3, synthetic_count=7, seed=1)
    assert ds.element_spec["image"].shape == (3, S, S, 3)
    got = batches(ds)
    # 7 images (none above the default ceiling at this size), remainder dropped.
    assert len(got) == 2
    for batch in got:
        check_batch(batch, 3)


def test_sketch_and_cues_are_derived_from_the_augmented_image():
    config = CueMaskConfig(p_full=1.0, p_partial=0.0, p_none=0.0)
    ds = make_dataset("synthetic", image_size=S, batch_size=4, synthetic_count=4, cue_masks=config)
    batch = batches(ds)[0]
    image01 = (batch["image"] + 1.0) / 2.0
    # The target is on uint8 levels, so its sketch can be recomputed exactly.
    np.testing.assert_allclose(image01 * 255.0, np.round(image01 * 255.0), atol=1e-3)
    expected_sketch = sketch(tf.constant(image01)).numpy().astype(np.float32) / 127.5 - 1.0
    np.testing.assert_array_equal(batch["sketch"], expected_sketch)
    expected_cues = gaussian_blur(tf.constant(image01)).numpy() * 2.0 - 1.0
    # Training blurs with the low-rank factors of the same matrices: within 1e-4.
    np.testing.assert_allclose(batch["cues"], expected_cues, atol=2e-4)
    assert np.all(batch["cue_mask"] == 1.0)


def test_training_augments_and_evaluation_does_not():
    count = 8
    source = np.stack([synthetic_image(i, S) for i in range(count)])
    evaluation = batches(
        make_dataset(
            "synthetic", image_size=S, batch_size=count, synthetic_count=count, training=False
        )
    )[0]
    np.testing.assert_array_equal(to_uint8_image(evaluation["image"]).numpy(), source)
    training = batches(
        make_dataset("synthetic", image_size=S, batch_size=count, synthetic_count=count)
    )[0]
    trained = to_uint8_image(training["image"]).numpy()
    # Shuffled and jittered: no training image is an unchanged source image.
    for image in trained:
        assert not any(np.array_equal(image, s) for s in source)
    # Some are flipped: the flipped source is closer than the plain one for some images.
    flips = 0
    for image in trained:
        errors = [
            (np.abs(image.astype(int) - s).mean(), np.abs(image.astype(int) - s[:, ::-1]).mean())
            for s in source
        ]
        best = min(errors, key=min)
        flips += best[1] < best[0]
    assert 0 < flips < count


def test_seed_repeatability():
    def run(seed):
        ds = make_dataset("synthetic", image_size=S, batch_size=2, synthetic_count=6, seed=seed)
        return batches(ds)

    first, second, other = run(3), run(3), run(4)
    for a, b in zip(first, second, strict=True):
        for key in KEYS:
            np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(first[0]["image"], other[0]["image"])


def test_evaluation_masks_are_drawn_by_seed_and_index():
    config = CueMaskConfig(p_full=0.0, p_partial=1.0, p_none=0.0)

    def masks(seed):
        ds = make_dataset(
            "synthetic",
            image_size=S,
            batch_size=4,
            synthetic_count=4,
            training=False,
            cue_masks=config,
            seed=seed,
        )
        return batches(ds)[0]["cue_mask"]

    a = masks(0)
    np.testing.assert_array_equal(a, masks(0))
    share = a.reshape(4, -1).mean(axis=1)
    assert np.all((share > 0) & (share < 1)) and len(set(share)) == 4


def test_complexity_ceiling_drops_images():
    count = 12
    values = sorted(float(image_complexity(synthetic_image(i, S))) for i in range(count))
    ceiling = (values[5] + values[6]) / 2.0

    def size(ceiling):
        ds = make_dataset(
            "synthetic",
            image_size=S,
            batch_size=1,
            synthetic_count=count,
            training=False,
            complexity_ceiling=ceiling,
        )
        return len(batches(ds))

    assert size(ceiling) == 6
    assert size(None) == count


def test_no_cues_gives_zero_cues_and_masks():
    ds = make_dataset(
        "synthetic", image_size=S, batch_size=4, synthetic_count=4, cue_masks=NO_CUES
    )
    batch = batches(ds)[0]
    assert not batch["cues"].any() and not batch["cue_mask"].any()


def test_repeat_gives_fresh_augmentation_each_pass():
    ds = make_dataset("synthetic", image_size=S, batch_size=2, synthetic_count=2, repeat=True)
    got = batches(ds.take(4))
    assert len(got) == 4
    images = [b["image"] for b in got]
    assert not all(np.array_equal(images[0], other) for other in images[1:])


def test_make_dataset_on_a_folder(mixed_image_folder):
    ds = make_dataset(
        str(mixed_image_folder), image_size=S, batch_size=4, complexity_ceiling=None, crop="top"
    )
    got = batches(ds)
    assert len(got) == 2
    for batch in got:
        check_batch(batch, 4)
    # The files are read in a seeded shuffled order: the same on every run.
    again = make_dataset(
        str(mixed_image_folder), image_size=S, batch_size=4, complexity_ceiling=None, crop="top"
    )
    for a, b in zip(got, batches(again), strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])


def test_prepare_example_eager_equals_dataset_map():
    image = synthetic_image(0, (37, 53))
    config = CueMaskConfig(p_full=0.0, p_partial=1.0, p_none=0.0)
    kwargs = dict(training=True, cue_masks=config, image_size=S)
    eager = prepare_example(image, seed=tf.constant([5, 9], tf.int64), **kwargs)
    mapped = tf.data.Dataset.from_tensors(image).map(
        lambda im: prepare_example(im, seed=tf.constant([5, 9], tf.int64), **kwargs)
    )
    mapped = batches(mapped)[0]
    for key in KEYS:
        assert eager[key].shape == mapped[key].shape == (S, S, eager[key].shape[-1])
        np.testing.assert_allclose(eager[key].numpy(), mapped[key], atol=1e-6)


def test_prepare_example_at_the_images_own_size_for_evaluation():
    image = synthetic_image(1, (37, 53))
    out = prepare_example(
        image, seed=0, training=False, cue_masks=CueMaskConfig(), image_size=None
    )
    assert out["image"].shape == (37, 53, 3) and out["sketch"].shape == (37, 53, 1)
    np.testing.assert_array_equal(to_uint8_image(out["image"]).numpy(), image)
    with pytest.raises(ValueError, match="image_size"):
        prepare_example(image, seed=0, training=True, cue_masks=CueMaskConfig(), image_size=None)


def test_to_uint8_image():
    x = tf.constant([-1.5, -1.0, 0.0, 1.0, 2.0])
    np.testing.assert_array_equal(to_uint8_image(x).numpy(), [0, 0, 128, 255, 255])
    image = synthetic_image(2, 16)
    np.testing.assert_array_equal(
        to_uint8_image(tf.constant(image, tf.float32) / 127.5 - 1.0).numpy(), image
    )


def test_examples_from_images_in_memory():
    images = tf.data.Dataset.from_tensor_slices(
        np.stack([synthetic_image(i, (37, 53)) for i in range(3)])
    )
    got = batches(examples_from_images(images, image_size=S, batch_size=2, drop_remainder=False))
    assert [b["image"].shape[0] for b in got] == [2, 1]
    check_batch(got[0], 2)
    with pytest.raises(ValueError, match="batch_size"):
        examples_from_images(images, batch_size=0)
