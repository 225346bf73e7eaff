"""`manga-pix2pix train` end to end on synthetic data."""

from __future__ import annotations

import json

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from manga_pix2pix.cli import Duration, main
from manga_pix2pix.config import Config

SMOKE = ["train", "--preset", "smoke", "--synthetic-count", "8"]


def _train(*args: str):
    return CliRunner().invoke(main, [*SMOKE, *args])


def test_help_lists_the_options():
    result = CliRunner().invoke(main, ["train", "--help"])
    assert result.exit_code == 0
    for option in ("--data", "--data-dir", "--no-cues", "--preset", "--epochs", "--steps",
                   "--batch-size", "--image-size", "--base-filters", "--run-dir", "--init-from",
                   "--strategy", "--tpu", "--precision", "--xla", "--seed", "--quiet",
                   "--holdout-fraction", "--time-limit"):
        assert option in result.output, option
    assert "Example:" in result.output


@pytest.mark.parametrize("strategy", ["default", "mirrored"])
def test_train_under_a_named_strategy(strategy, tmp_path):
    run = tmp_path / "run"
    result = _train("--steps", "2", "--strategy", strategy, "--run-dir", str(run))
    assert result.exit_code == 0, result.output
    assert f"1 replica ({strategy} strategy)" in result.output
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["strategy"] == strategy and summary["steps"] == 2


def test_train_with_the_bottleneck_as_matmuls_learns_and_saves(tmp_path, monkeypatch):
    """The paper-sized path (matmul bottleneck) through the real loop, on the smoke model."""
    from manga_pix2pix.models import matmul_conv

    monkeypatch.setattr(matmul_conv, "MIN_WEIGHTS", 0)
    monkeypatch.setattr(matmul_conv, "on_cpu", lambda: True)
    run = tmp_path / "run"
    result = _train("--steps", "3", "--run-dir", str(run))
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["steps"] == 3
    assert all(np.isfinite(v) for v in summary["final_losses"].values())
    generator = keras.saving.load_model(run / "generator.keras")
    x = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 5)).astype(np.float32)
    # The reloaded generator gives the same output on the matmul and the convolution path.
    monkeypatch.setattr(matmul_conv, "MIN_WEIGHTS", 2**40)
    by_conv = np.asarray(generator(x, training=False))
    monkeypatch.setattr(matmul_conv, "MIN_WEIGHTS", 0)
    np.testing.assert_allclose(np.asarray(generator(x, training=False)), by_conv, atol=1e-5)


def test_train_writes_the_whole_run_directory(tmp_path):
    run = tmp_path / "run"
    result = _train("--steps", "5", "--run-dir", str(run))
    assert result.exit_code == 0, result.output
    assert "trained to step 5" in result.output
    assert f"generator: {run / 'generator.keras'}" in result.output
    config = Config.from_dict(json.loads((run / "config.json").read_text()))
    assert config.preset == "smoke" and config.train.steps == 5
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["steps"] == 5 and summary["epochs"] == 1.25
    assert summary["images_per_second"] > 0
    assert set(summary["final_losses"]) == {"g_total", "g_gan", "g_l1", "d_total", "d_real",
                                            "d_fake"}
    assert sorted(p.name for p in (run / "checkpoints").glob("*.index")) == ["ckpt-5.index"]
    assert list((run / "logs").glob("events.out.tfevents.*"))
    previews = sorted(p.name for p in (run / "previews").iterdir())
    assert previews == ["epoch_0001.png", "epoch_0002.png"]
    grid = cv2.imread(str(run / "previews" / "epoch_0001.png"))
    assert grid.shape == (4 * 32, 4 * 32, 3)
    generator = keras.saving.load_model(run / "generator.keras")
    assert generator.uses_cues is True
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary files

    # Running the same command again resumes; with more steps it trains on.
    result = _train("--steps", "6", "--run-dir", str(run))
    assert result.exit_code == 0, result.output
    assert "Resuming" in result.output and "trained to step 6" in result.output

    # A different model in the same run directory is refused in one line.
    result = _train("--steps", "6", "--image-size", "64", "--run-dir", str(run))
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert "image_size 32 -> 64" in result.output
    result = _train("--steps", "6", "--base-filters", "4", "--run-dir", str(run))
    assert result.exit_code == 1 and "base_filters 8 -> 4" in result.output


def test_base_filters_sets_the_width_of_both_networks(tmp_path):
    run = tmp_path / "run"
    result = _train("--steps", "1", "--base-filters", "4", "--quiet", "--run-dir", str(run))
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["model"]["base_filters"] == 4
    narrow = keras.saving.load_model(run / "generator.keras")
    result = _train("--steps", "1", "--quiet", "--run-dir", str(tmp_path / "preset"))
    assert result.exit_code == 0, result.output
    preset = keras.saving.load_model(tmp_path / "preset" / "generator.keras")
    # Every layer's width halves with the base, so the weights shrink about four-fold.
    assert 3 < preset.count_params() / narrow.count_params() < 4.5
    # The discriminator (in the checkpoint) starts at the same width.
    shapes = dict(tf.train.list_variables(str(run / "checkpoints" / "ckpt-1")))
    assert shapes["discriminator/down_0.Sconv.Skernel/.ATTRIBUTES/VARIABLE_VALUE"][-1] == 4


def test_no_cues_trains_a_cue_free_model(tmp_path):
    run = tmp_path / "run"
    result = _train("--no-cues", "--steps", "1", "--quiet", "--run-dir", str(run))
    assert result.exit_code == 0, result.output
    assert result.output == ""
    assert keras.saving.load_model(run / "generator.keras").uses_cues is False
    assert json.loads((run / "config.json").read_text())["data"]["no_cues"] is True


@pytest.mark.parametrize("text, seconds", [("90s", 90.0), ("20m", 1200.0), ("1.5h", 5400.0),
                                           ("2", 120.0), (" 30S ", 30.0)])
def test_a_time_limit_reads_seconds_minutes_or_hours(text, seconds):
    assert Duration().convert(text, None, None) == seconds


@pytest.mark.parametrize(
    "args, message",
    [
        (["--complexity-ceiling", "0"], "above the ceiling of 0.0%"),
        (["--data", "no_such_dataset_here"], "neither a folder nor a known TFDS dataset"),
        (["--epochs", "1", "--steps", "1"], "not both"),
        (["--image-size", "48"], "image_size: must be a power of two"),
        (["--base-filters", "0"], "0 is not in the range x>=1"),
        (["--batch-size", "16"], "fewer than one batch of 16"),
        (["--strategy", "multi-worker"], "needs TF_CONFIG"),
        (["--time-limit", "0"], "not a positive time"),
        (["--time-limit", "20 minutes"], "not a positive time"),
        (["--time-limit", "infh"], "not a positive time"),
    ],
)
def test_bad_requests_are_one_line_errors(tmp_path, monkeypatch, args, message):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    result = _train(*args, "--run-dir", str(tmp_path / "run"))
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "generator.keras").exists()


def test_a_run_dir_under_a_file_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    result = _train("--run-dir", str(tmp_path / "afile" / "run"))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "afile/run: cannot create the run folder (Not a directory)" in result.output
    assert "Traceback" not in result.output


def test_a_folder_of_only_unreadable_images_says_so_once(tmp_path, caplog):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        (images / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"broken" * 10)
    result = _train("--data", str(images), "--run-dir", str(tmp_path / "run"))
    assert result.exit_code == 1
    assert "no readable training images (each was skipped" in result.output
    assert "hold-out" not in result.output
    skipped = [r for r in caplog.records if r.getMessage().startswith("skipping")]
    assert sorted(r.getMessage().split(":")[0] for r in skipped) == sorted(
        f"skipping {images / f'{i}.png'}" for i in range(3))


def test_a_bad_file_among_good_ones_is_skipped_with_one_warning(tmp_path, caplog):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(4):
        image = np.full((40, 40, 3), 60 * i, np.uint8)
        cv2.imwrite(str(images / f"{i}.png"), cv2.rectangle(image, (5, 5), (30, 30), 255, 2))
    (images / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"broken" * 10)
    # Two epochs: the count and each epoch's reading all meet the bad file.
    result = _train("--data", str(images), "--steps", "4", "--run-dir", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping")]
    assert len(skipped) == 1 and "bad.png" in skipped[0]


def test_a_damaged_checkpoint_is_one_line_that_says_what_to_do(tmp_path):
    run = tmp_path / "run"
    assert _train("--steps", "2", "--run-dir", str(run)).exit_code == 0
    data = next((run / "checkpoints").glob("ckpt-2.data-*"))
    data.write_bytes(data.read_bytes()[:100])
    result = _train("--steps", "4", "--run-dir", str(run))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error: ") and "ckpt-2: cannot restore" in lines[-1]
    assert "delete its files to resume from the one before" in lines[-1]
    assert "Traceback" not in result.output


def test_a_missing_tfds_dataset_is_a_clear_error(tmp_path):
    result = _train("--data", "mnist", "--data-dir", str(tmp_path / "nothing"),
                    "--run-dir", str(tmp_path / "run"))
    assert result.exit_code == 1
    assert "not built" in result.output and "Traceback" not in result.output


def test_a_missing_dataset_is_one_line_on_stderr_in_a_real_process(tmp_path):
    # TFDS logs a warning while probing the missing folder; the user sees only the error.
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "manga_pix2pix", "train", "--data", "danbooru", "--data-dir",
         str(tmp_path / "nowhere"), "--run-dir", str(tmp_path / "run"), "--preset", "smoke"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: danbooru: the dataset is not built in {tmp_path / 'nowhere'}; build it first "
        "(manga-pix2pix build-dataset) or pass the right --data-dir"
    ]
    assert not (tmp_path / "run").exists()
