"""`evaluate` end to end on an untrained smoke generator and generated data."""

import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from click.testing import CliRunner

from manga_pix2pix.cli import main
from manga_pix2pix.config import preset
from manga_pix2pix.data.cues import NO_CUES, CueMaskConfig, gaussian_blur, random_cue_mask
from manga_pix2pix.data.pipeline import prepare_example, resize_and_crop
from manga_pix2pix.data.sketch import image_complexity
from manga_pix2pix.data.synthetic import character_of, synthetic_image
from manga_pix2pix.errors import UserError
from manga_pix2pix.evaluation import evaluate as ev
from manga_pix2pix.evaluation.figures import GAP, HEADER, MIN_TILE
from manga_pix2pix.models import build_models

CEILING = 25.0  # at 32 px synthetic sketches are 17-37 % lines: all three tasks get images
TRAIN_COUNT = 6  # few training images, so that some characters are unseen
TEST_COUNT = 24


def make_run(path, uses_cues=True, image_size=32, ceiling=CEILING):
    """A run directory with an untrained smoke generator and its config."""
    config = preset("smoke")
    config.model.image_size = image_size
    config.data.synthetic_count = TRAIN_COUNT
    config.data.complexity_ceiling = ceiling
    config.data.no_cues = not uses_cues
    generator, _ = build_models(config.model, uses_cues=uses_cues)
    path.mkdir()
    generator.save(path / "generator.keras")
    (path / "config.json").write_text(config.to_json())
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("eval") / "run")


@pytest.fixture(scope="module")
def synthetic_report(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "report"
    model = ev.load_model(run_dir)
    report = ev.evaluate(model, "synthetic", max_images=TEST_COUNT, batch_size=5, output_dir=out)
    return report, out


def complexity(seed):
    return float(image_complexity(synthetic_image(seed, 32)))


def test_task_split_follows_the_definitions(synthetic_report):
    report, _ = synthetic_report
    seen = {character_of(s) for s in range(TRAIN_COUNT) if complexity(s) <= CEILING}
    expected = {"color": 0, "transfer": 0, "interpolation": 0}
    for i in range(TEST_COUNT):
        seed = TRAIN_COUNT + i
        if complexity(seed) >= 1.2 * CEILING:
            expected["interpolation"] += 1
        elif character_of(seed) in seen:
            expected["color"] += 1
        else:
            expected["transfer"] += 1
    assert report.counts == {"all": TEST_COUNT, **expected}
    assert min(expected.values()) > 0
    assert report.info["training_characters"] == sorted(f"character_{c}" for c in seen)
    assert report.info["interpolation_threshold"] == pytest.approx(30.0)


def test_every_row_and_section_is_reported(synthetic_report):
    report, out = synthetic_report
    body = json.loads((out / "metrics.json").read_text())
    assert "model_partial_cues" in ev.METHODS and body["methods"] == ev.METHODS
    assert set(body["metrics"]) == {"all", "color", "transfer", "interpolation"}
    for section, rows in body["metrics"].items():
        assert set(rows) == set(ev.METHODS), section
        for method, values in rows.items():
            assert set(values) == {"l1", "psnr", "ssim"}
            assert all(np.isfinite(v) for v in values.values()), (section, method)
    table = (out / "metrics.md").read_text()
    for label in ev.METHODS.values():
        assert table.count(f"| {label} |") == 4


def test_sections_partition_the_held_out_images(synthetic_report):
    report, _ = synthetic_report
    counts, metrics = report.counts, report.metrics
    assert counts["all"] == counts["color"] + counts["transfer"] + counts["interpolation"]
    for method in ev.METHODS:
        for name in ("l1", "ssim"):
            weighted = sum(counts[t] * metrics[t][method][name] for t in ev.tasks.TASKS)
            assert weighted / counts["all"] == pytest.approx(metrics["all"][method][name])


def test_rows_match_a_direct_computation(run_dir, synthetic_report):
    report, _ = synthetic_report
    generate = ev.load_model(run_dir).loaded.generate
    errors = {m: [] for m in ("cue_layer", "cue_lines", "sketch_only", "model_cues")}
    for i in range(TEST_COUNT):
        truth = synthetic_image(TRAIN_COUNT + i, 32).astype(np.float32) / 255.0
        blurred = gaussian_blur(truth).numpy()
        ex = prepare_example(
            synthetic_image(TRAIN_COUNT + i, 32), seed=0, training=False,
            cue_masks=ev.FULL_CUES, image_size=32,
        )
        lines = (ex["sketch"].numpy() + 1) / 2
        x = tf.concat([ex["sketch"], ex["cues"], ex["cue_mask"]], -1)[None]
        output = (generate(x)[0].numpy() + 1) / 2
        errors["cue_layer"].append(np.abs(blurred - truth).mean())
        errors["cue_lines"].append(np.abs(blurred * lines - truth).mean())
        errors["sketch_only"].append(np.abs(lines - truth).mean())
        errors["model_cues"].append(np.abs(output - truth).mean())
    for method, values in errors.items():
        assert report.metrics["all"][method]["l1"] == pytest.approx(np.mean(values), abs=1e-5)


def test_stroke_cue_row_matches_a_direct_computation(run_dir):
    model = ev.load_model(run_dir)
    # Three images in batches of 2: the second batch's mask is keyed by index 2, not 0.
    report = ev.evaluate(model, "synthetic", max_images=3, batch_size=2)
    strokes_only = CueMaskConfig(p_full=0, p_partial=1, p_none=0)
    errors = []
    for i in range(3):
        image = synthetic_image(TRAIN_COUNT + i, 32)
        ex = prepare_example(image, seed=0, training=False, cue_masks=ev.FULL_CUES,
                             image_size=32)
        seed = tf.constant([ev.PARTIAL_CUE_SEED, i], tf.int64)
        mask = random_cue_mask(32, 32, seed, strokes_only)
        assert 0 < float(tf.reduce_mean(mask)) < 1  # a real partial mask
        x = tf.concat([ex["sketch"], ex["cues"] * mask, mask], -1)[None]
        output = (np.clip(model.loaded.generate(x)[0].numpy(), -1, 1) + 1) / 2
        errors.append(np.abs(output - image.astype(np.float32) / 255.0).mean())
    assert report.metrics["all"]["model_partial_cues"]["l1"] == pytest.approx(
        np.mean(errors), abs=1e-5)
    assert report.metrics["all"]["model_partial_cues"] != report.metrics["all"]["model_cues"]


def test_stroke_cue_row_is_the_same_on_every_run(run_dir):
    model = ev.load_model(run_dir)
    first = ev.evaluate(model, "synthetic", max_images=4, batch_size=4)
    again = ev.evaluate(model, "synthetic", max_images=4, batch_size=4)
    assert first.metrics == again.metrics
    # The masks follow the images, not the batches.
    other = ev.evaluate(model, "synthetic", max_images=4, batch_size=3)
    for name, value in first.metrics["all"]["model_partial_cues"].items():
        assert other.metrics["all"]["model_partial_cues"][name] == pytest.approx(value, abs=1e-5)


def test_withheld_cues_are_the_pipelines_no_cue_examples():
    image = synthetic_image(7, 32)
    full = prepare_example(image, seed=0, training=False, cue_masks=ev.FULL_CUES, image_size=32)
    none = prepare_example(image, seed=0, training=False, cue_masks=NO_CUES, image_size=32)
    assert float(tf.reduce_min(full["cue_mask"])) == 1.0
    assert not np.any(none["cues"].numpy()) and not np.any(none["cue_mask"].numpy())
    np.testing.assert_array_equal(full["sketch"].numpy(), none["sketch"].numpy())


def test_one_figure_per_task(synthetic_report):
    report, out = synthetic_report
    import cv2

    assert set(report.figures) == {"all", "color", "transfer", "interpolation"}
    for task, name in report.figures.items():
        figure = cv2.imread(str(out / name))
        rows = min(6, report.counts[task])
        assert figure.shape[0] == HEADER + rows * (MIN_TILE + GAP), task
        assert figure.shape[1] == GAP + 7 * (MIN_TILE + GAP), task  # 7 columns with cues


def test_a_model_trained_without_cues_has_no_cue_row(tmp_path):
    model = ev.load_model(make_run(tmp_path / "run", uses_cues=False))
    report = ev.evaluate(model, "synthetic", max_images=4, output_dir=tmp_path / "out")
    for section, rows in report.metrics.items():
        assert rows["model_cues"] is None and rows["model_partial_cues"] is None
        if report.counts[section]:
            assert rows["model_no_cues"] is not None
    out = tmp_path / "out"
    table = (out / "metrics.md").read_text()
    assert "| model, full cues | n/a | n/a | n/a |" in table
    assert "| model, stroke cues | n/a | n/a | n/a |" in table
    body = json.loads((out / "metrics.json").read_text())
    assert body["info"]["uses_cues"] is False
    assert all(rows["model_partial_cues"] is None for rows in body["metrics"].values())
    import cv2

    figure = cv2.imread(str(out / report.figures["all"]))
    assert figure.shape[1] == GAP + 4 * (MIN_TILE + GAP)  # no columns that need cues


def test_a_folder_has_no_tags_so_only_interpolation_is_split(run_dir, tmp_path):
    import cv2

    folder = tmp_path / "held_out"
    folder.mkdir()
    for i in range(5):
        cv2.imwrite(str(folder / f"{i}.png"), synthetic_image(100 + i, 48)[..., ::-1])
    report = ev.evaluate(
        ev.load_model(run_dir), str(folder), complexity_ceiling=10.0, output_dir=tmp_path / "o"
    )
    assert report.counts == {"all": 5, "color": 0, "transfer": 0, "interpolation": 5}
    assert "character tags" in report.info["empty_reasons"]["color"]
    assert set(report.figures) == {"all", "interpolation"}


def test_bad_input_is_a_user_error(run_dir, tmp_path):
    model = ev.load_model(run_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no image files"):
        ev.evaluate(model, str(empty))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        ev.evaluate(model, "synthetic", max_images=2, output_dir=blocker)
    with pytest.raises(UserError, match="not built|neither"):
        ev.evaluate(model, "danbooru", data_dir=str(tmp_path / "nothing"))
    with pytest.raises(UserError):
        ev.load_model(tmp_path / "missing")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="bad.keras"):
        ev.load_model(bad)
    assert not (tmp_path / "out").exists()


DATASET = "danbooru/64-test30"


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """A `danbooru` TFDS dataset of 30 synthetic 64-px images, 30 % of them busy."""
    data_dir = tmp_path_factory.mktemp("tfds")
    result = CliRunner().invoke(main, [
        "build-dataset", "--source", "synthetic", "--max-images", "30", "--image-size", "64",
        "--test-fraction", "0.3", "--busy-fraction", "0.3", "--data-dir", str(data_dir), "-q",
    ])
    assert result.exit_code == 0, result.output
    return data_dir


def tags_and_complexity(data_dir, split, size):
    """(character tag, complexity at `size`) of each image of a split, read with TFDS itself."""
    out = []
    for ex in tfds.load(DATASET, data_dir=str(data_dir), split=split).as_numpy_iterator():
        tags = [t.decode() for t in ex["tags"]]
        (character,) = [t for t in tags if t.startswith("character_")]
        image = resize_and_crop(ex["image"], size)
        out.append((character, float(image_complexity(image))))
    return out


# 64: the stored complexity is the model's; 32: it is computed again at the model's size.
@pytest.mark.parametrize("size", [64, 32])
def test_tfds_task_split_follows_the_definitions(tfds_dir, tmp_path, size):
    ceiling = 30.0
    report = ev.evaluate(
        ev.load_model(make_run(tmp_path / "run", image_size=size, ceiling=ceiling)),
        DATASET, data_dir=str(tfds_dir), output_dir=tmp_path / "out",
    )
    train = tags_and_complexity(tfds_dir, "train", size)
    test = tags_and_complexity(tfds_dir, "test", size)
    seen = {character for character, c in train if c <= ceiling}
    expected = {"all": len(test), "color": 0, "transfer": 0, "interpolation": 0}
    for character, c in test:
        task = "interpolation" if c >= 1.2 * ceiling else (
            "color" if character in seen else "transfer")
        expected[task] += 1
    assert report.counts == expected
    assert report.info["training_characters"] == sorted(seen)
    assert expected["interpolation"] > 0 and expected["color"] > 0
    assert set(report.figures) == {"all"} | {t for t in ev.tasks.TASKS if expected[t]}


def test_a_missing_tfds_split_is_a_user_error(tfds_dir, run_dir):
    with pytest.raises(UserError, match="validation"):
        ev.evaluate(ev.load_model(run_dir), DATASET, data_dir=str(tfds_dir), split="validation")


def test_the_runs_own_folder_gives_only_its_held_out_images(tmp_path):
    import cv2

    folder, alone = tmp_path / "art", tmp_path / "held_out_alone"
    folder.mkdir()
    alone.mkdir()
    for i in range(10):
        cv2.imwrite(str(folder / f"{i:02d}.png"), synthetic_image(200 + i, 40)[..., ::-1])
    # floor((i + 1) * 0.3) > floor(i * 0.3) holds for i = 3, 6, 9: the run held those out.
    for i in (3, 6, 9):
        (alone / f"{i:02d}.png").write_bytes((folder / f"{i:02d}.png").read_bytes())
    run = make_run(tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["data"].update(source=str(folder), holdout_fraction=0.3)
    (run / "config.json").write_text(json.dumps(config))
    model = ev.load_model(run)
    own, separate = ev.evaluate(model, str(folder)), ev.evaluate(model, str(alone))
    assert own.counts["all"] == separate.counts["all"] == 3
    assert own.metrics == separate.metrics


def test_norm_stats_image_uses_each_images_own_statistics(run_dir):
    model = ev.load_model(run_dir)
    moving = ev.evaluate(model, "synthetic", max_images=4, batch_size=4)
    own = ev.evaluate(model, "synthetic", max_images=4, batch_size=4, norm_stats="image")
    assert own.info["norm_stats"] == "image" and moving.info["norm_stats"] == "moving"
    # The baselines do not involve the generator; the model rows do.
    assert own.metrics["all"]["cue_layer"] == moving.metrics["all"]["cue_layer"]
    assert own.metrics["all"]["model_cues"]["l1"] != moving.metrics["all"]["model_cues"]["l1"]
    generate = model.loaded.generate_per_image
    ex = prepare_example(synthetic_image(TRAIN_COUNT, 32), seed=0, training=False,
                         cue_masks=ev.FULL_CUES, image_size=32)
    x = tf.concat([ex["sketch"], ex["cues"], ex["cue_mask"]], -1)[None]
    single = ev.evaluate(model, "synthetic", max_images=1, norm_stats="image")
    truth = synthetic_image(TRAIN_COUNT, 32).astype(np.float32) / 255.0
    output = (np.clip(generate(x)[0].numpy(), -1, 1) + 1) / 2
    assert single.metrics["all"]["model_cues"]["l1"] == pytest.approx(
        np.abs(output - truth).mean(), abs=1e-5)
