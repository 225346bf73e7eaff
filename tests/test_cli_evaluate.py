"""`manga-pix2pix evaluate` through click's CliRunner, on an untrained smoke generator."""

import json

import pytest
from click.testing import CliRunner

from manga_pix2pix.cli import main
from manga_pix2pix.config import preset
from manga_pix2pix.models import build_models


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli_eval") / "run"
    path.mkdir()
    config = preset("smoke")
    config.data.synthetic_count = 6  # few training images: some characters stay unseen
    config.data.complexity_ceiling = 25.0  # at 32 px, so that every task gets images
    generator, _ = build_models(config.model)
    generator.save(path / "generator.keras")
    (path / "config.json").write_text(config.to_json())
    return path


def test_help_has_an_example():
    result = CliRunner().invoke(main, ["evaluate", "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert "manga-pix2pix evaluate --model" in result.output


def test_evaluate_writes_every_row_task_and_figure(run_dir, tmp_path):
    out = tmp_path / "eval"
    args = ["evaluate", "--model", str(run_dir), "--data", "synthetic", "--max-images", "24",
            "-o", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    body = json.loads((out / "metrics.json").read_text())
    assert body["counts"]["all"] == 24
    for section in ("all", "color", "transfer", "interpolation"):
        assert body["counts"][section] > 0, section
        assert set(body["metrics"][section]) == {
            "model_cues", "model_partial_cues", "model_no_cues", "cue_layer", "cue_lines",
            "sketch_only",
        }
        assert (out / body["figures"][section]).is_file()
    assert (out / "metrics.md").read_text().startswith("# Evaluation")
    assert "figure (transfer):" in result.output
    # Deterministic: the same command gives the same numbers.
    again = tmp_path / "again"
    assert CliRunner().invoke(main, args[:-1] + [str(again)]).exit_code == 0
    assert json.loads((again / "metrics.json").read_text())["metrics"] == body["metrics"]


def test_data_defaults_to_the_runs_source_and_quiet_is_quiet(run_dir, tmp_path):
    result = CliRunner().invoke(
        main, ["evaluate", "--model", str(run_dir / "generator.keras"), "--max-images", "3",
               "-o", str(tmp_path / "o"), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert result.output == ""
    body = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert body["info"]["data"] == "synthetic"
    assert body["counts"]["all"] == 3


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--data", "no_such_dataset"], "no_such_dataset"),
        (["--data", "synthetic", "--character-tags", ","], "no tag"),
    ],
)
def test_bad_arguments_give_one_line_errors(run_dir, tmp_path, extra, message):
    result = CliRunner().invoke(
        main, ["evaluate", "--model", str(run_dir), "-o", str(tmp_path / "o"), *extra]
    )
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_a_corrupt_model_is_a_clean_error(tmp_path):
    bad = tmp_path / "generator.keras"
    bad.write_bytes(b"\x00" * 10)
    result = CliRunner().invoke(main, ["evaluate", "--model", str(bad), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "generator.keras" in result.output and "Traceback" not in result.output


def test_an_output_under_a_file_is_refused_before_any_work(run_dir, tmp_path, monkeypatch):
    from manga_pix2pix.evaluation import evaluate as ev

    def no_work(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(ev, "load_model", no_work)
    (tmp_path / "afile").write_text("x")
    result = CliRunner().invoke(main, ["evaluate", "--model", str(run_dir), "--data",
                                       "synthetic", "-o", str(tmp_path / "afile" / "o")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.strip() == (f"Error: {tmp_path / 'afile' / 'o'}: cannot create the "
                                     f"output folder ({tmp_path / 'afile'} is a file)")
