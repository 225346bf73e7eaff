"""Export: a SavedModel that needs only TensorFlow, and a TFLite generator."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from inference_helpers import encode, line_art

from manga_pix2pix.cli import main
from manga_pix2pix.imageio import read_image
from manga_pix2pix.inference.colorize import Colorizer
from manga_pix2pix.inference.loading import load_model

# Runs in a fresh interpreter that must not import manga_pix2pix: it decodes the files with
# TensorFlow, as any TensorFlow consumer would, and calls the serving signatures.
CONSUMER = """
import sys
import numpy as np
import tensorflow as tf

folder, sketch_file, cue_file, out = sys.argv[1:5]
model = tf.saved_model.load(folder)
sketch = tf.io.decode_image(tf.io.read_file(sketch_file))
cues = tf.io.decode_image(tf.io.read_file(cue_file))
serve = model.signatures["serving_default"]
results = {
    "with_cues": serve(sketch=sketch, cues=cues)["colour"],
    "batch": serve(sketch=tf.stack([sketch, sketch]), cues=cues)["colour"],
    "without_cues": model.signatures["colorize_without_cues"](sketch=sketch)["colour"],
}
np.savez(out, **{k: v.numpy() for k, v in results.items()})
leaked = sorted(name for name in sys.modules if name.startswith("manga_pix2pix"))
assert not leaked, leaked
"""


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "served"
    result = _run("export", tiny_run, "-o", out, "--format", "savedmodel")
    assert result.exit_code == 0, result.output
    return out


def test_savedmodel_serves_uint8_images_like_colorize_without_our_code(
    exported, tiny_run, tmp_path
):
    sketch_file = tmp_path / "sketch.png"
    sketch_file.write_bytes(encode(line_art(97, 141, seed=7), ".png"))  # gray PNG, 1 channel
    strokes = np.zeros((50, 70, 4), np.uint8)
    strokes[10:30, 5:40] = (200, 40, 40, 255)
    cue_file = tmp_path / "cues.png"
    cue_file.write_bytes(encode(strokes, ".png"))
    for args, name in [(["--cues", cue_file], "with.png"), (["--no-cues"], "without.png")]:
        # The region step runs in Python after the graph; the SavedModel is the graph.
        result = _run("colorize", sketch_file, "--model", tiny_run, "-o", tmp_path / name,
                      "--regions", "off", *args)
        assert result.exit_code == 0, result.output

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    out = tmp_path / "served.npz"
    proc = subprocess.run(
        [sys.executable, "-I", "-c", CONSUMER, exported, sketch_file, cue_file, out],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    served = np.load(out)
    with_cues = read_image(tmp_path / "with.png").astype(int)
    without = read_image(tmp_path / "without.png").astype(int)
    assert served["with_cues"].shape == (97, 141, 3) and served["with_cues"].dtype == np.uint8
    assert np.abs(served["with_cues"] - with_cues).max() <= 1
    assert np.abs(served["without_cues"] - without).max() <= 1
    assert served["batch"].shape == (2, 97, 141, 3)
    assert np.abs(served["batch"][1] - with_cues).max() <= 1
    assert not np.array_equal(with_cues, without)
    # The export is also a --model for colorize, with the same result.
    result = _run("colorize", sketch_file, "--model", exported, "--cues", cue_file,
                  "--regions", "off", "-o", tmp_path / "via_export.png")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(read_image(tmp_path / "via_export.png"), with_cues)


def test_export_metadata_describes_the_model(exported):
    meta = json.loads((exported / "manga_pix2pix.json").read_text())
    assert meta["image_size"] == 32 and meta["input_channels"] == 5 and meta["uses_cues"]
    assert meta["export_format"] == "savedmodel"


@pytest.mark.parametrize("norm_stats", ["moving", "image", "moving-matmul"])
def test_tflite_matches_the_keras_generator(norm_stats, trained_run, tmp_path, monkeypatch):
    matmul = norm_stats == "moving-matmul"
    if matmul:
        # The paper-sized bottleneck's matmul form (which this tiny model is below), in TFLite.
        from manga_pix2pix.models import matmul_conv

        monkeypatch.setattr(matmul_conv, "MIN_WEIGHTS", 0)
        monkeypatch.setattr(matmul_conv, "on_cpu", lambda: True)
        norm_stats = "moving"
    result = _run("export", trained_run, "-o", tmp_path / "lite", "--format", "tflite",
                  "--norm-stats", norm_stats)
    assert result.exit_code == 0, result.output
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(model_path=str(tmp_path / "lite" / "generator.tflite"))
    interpreter.allocate_tensors()
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert ("DEPTH_TO_SPACE" in ops) == matmul, ops
    (inp,), (outp,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert list(inp["shape"]) == [1, 32, 32, 5] and list(outp["shape"]) == [1, 32, 32, 3]
    x = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 5)).astype(np.float32)
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    expected = load_model(trained_run).generator(norm_stats)(x).numpy()
    np.testing.assert_allclose(interpreter.get_tensor(outp["index"]), expected, atol=1e-4)
    assert _leftovers(tmp_path) == []


def test_savedmodel_can_serve_per_image_statistics(trained_run, tmp_path):
    result = _run("export", trained_run, "-o", tmp_path / "served", "--norm-stats", "image")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "served" / "manga_pix2pix.json").read_text())[
        "norm_stats"] == "image"
    served = tf.saved_model.load(str(tmp_path / "served"))
    art = line_art(50, 70, seed=9)[:, :, None]
    cues = np.full((50, 70, 3), (200, 60, 60), np.uint8)
    colour = served.signatures["serving_default"](sketch=tf.constant(art), cues=tf.constant(cues))
    expected = Colorizer(load_model(trained_run), norm_stats="image")(art, cues)
    assert np.abs(colour["colour"].numpy().astype(int) - expected).max() <= 1


def test_cue_free_export_serves_only_the_sketch(cue_free_keras, tmp_path):
    result = _run("export", cue_free_keras, "-o", tmp_path / "served")
    assert result.exit_code == 0, result.output
    model = tf.saved_model.load(str(tmp_path / "served"))
    inputs = model.signatures["serving_default"].structured_input_signature[1]
    assert list(inputs) == ["sketch"]
    sketch = tf.constant(line_art(40, 30)[:, :, None])
    assert model.signatures["serving_default"](sketch=sketch)["colour"].shape == (40, 30, 3)


def test_export_refuses_to_overwrite_unless_forced(tiny_run, tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    result = _run("export", tiny_run, "-o", target)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "not empty" in result.output and "--force" in result.output
    assert (target / "keep.txt").exists()
    result = _run("export", tiny_run, "-o", target, "--force")
    assert result.exit_code == 0, result.output
    assert not (target / "keep.txt").exists() and (target / "saved_model.pb").exists()
    assert _leftovers(tmp_path) == []


def test_export_never_replaces_the_folder_of_the_model_it_exports(tiny_run, tmp_path,
                                                                   monkeypatch):
    run = tmp_path / "runs" / "run"
    shutil.copytree(tiny_run, run)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    for model, target in ((run, run), (run, run.parent), (run / "generator.keras", run)):
        result = _run("export", model, "-o", target, "--force")
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
        assert "holds the model being exported" in result.output
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    empty = tmp_path / "here"
    empty.mkdir()
    monkeypatch.chdir(empty)
    result = _run("export", run, "-o", ".")
    assert result.exit_code == 1 and "is the current folder" in result.output
    assert list(empty.iterdir()) == [] and _leftovers(tmp_path) == []
    # Inside the run folder is another folder: allowed, and said.
    result = _run("export", run, "-o", run / "exported")
    assert result.exit_code == 0, result.output
    assert f"to {run / 'exported'}" in result.output
    assert (run / "exported" / "saved_model.pb").is_file() and (run / "generator.keras").is_file()


@pytest.mark.parametrize("case", ["missing_parent", "bad_model", "tflite_from_export", "file"])
def test_export_errors_are_one_line_and_leave_nothing(case, exported, tmp_path):
    target = tmp_path / "out"
    args = {
        "missing_parent": (exported, "-o", tmp_path / "no" / "out"),
        "bad_model": (tmp_path / "nothing.keras", "-o", target),
        "tflite_from_export": (exported, "-o", target, "--format", "tflite"),
        "file": (exported, "-o", tmp_path / "f.txt"),
    }[case]
    (tmp_path / "f.txt").write_text("a file")
    result = _run("export", *args)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    assert not target.exists() and _leftovers(tmp_path) == []
