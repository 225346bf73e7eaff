"""The `colorize` command: files, folders, cue pairing, and every kind of bad input."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib

import cv2
import keras
import numpy as np
import pytest
from click.testing import CliRunner

from manga_pix2pix.cli import main
from manga_pix2pix.config import Config, ModelConfig
from manga_pix2pix.imageio import read_image
from manga_pix2pix.models import build_models

TINY = ModelConfig(image_size=32, base_filters=8)


def _line_art(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Grey anti-aliased lines on white, uint8 `[H, W]`."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width), 255, np.uint8)
    for _ in range(5):
        p1 = tuple(int(v) for v in rng.integers(0, [width, height]))
        p2 = tuple(int(v) for v in rng.integers(0, [width, height]))
        cv2.line(image, p1, p2, int(rng.integers(0, 90)), int(rng.integers(1, 3)), cv2.LINE_AA)
    return image


def _write(path, image: np.ndarray, *params: int):
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(os.path.splitext(str(path))[1], image, list(params))
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def _palette_png(path, index: np.ndarray, palette) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data)
        )

    height, width = index.shape
    raw = b"".join(b"\x00" + row.tobytes() for row in index.astype(np.uint8))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0))
        + chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes())
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A run directory (generator with cues) and a cue-free .keras file."""
    root = tmp_path_factory.mktemp("models")
    run = root / "run"
    run.mkdir()
    (run / "config.json").write_text(Config(preset="smoke", model=TINY).to_json())
    build_models(TINY)[0].save(run / "generator.keras")
    cue_free = root / "cue_free.keras"
    build_models(TINY, uses_cues=False)[0].save(cue_free)
    return {"run": run, "cue_free": cue_free}


def _colorize(*args):
    return CliRunner().invoke(main, ["colorize", *[str(a) for a in args]])


def _ok(result):
    assert result.exit_code == 0, result.output
    return result


def _temp_files(folder):
    return [p.name for p in folder.rglob(".*")]


def test_help_documents_colorize_and_export():
    for command in ("colorize", "export"):
        result = CliRunner().invoke(main, [command, "--help"])
        assert result.exit_code == 0 and "Example:" in result.output
    assert "--no-cues" in CliRunner().invoke(main, ["colorize", "--help"]).output


def test_one_sketch_gives_one_png_at_its_size(models, tmp_path):
    sketch = _write(tmp_path / "odd.png", _line_art(97, 141))
    _ok(_colorize(sketch, "--model", models["run"], "-o", tmp_path / "colour.png"))
    out = read_image(tmp_path / "colour.png")
    assert out.shape == (97, 141, 3)
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "colour.png").stat().st_mode & 0o777 == 0o666 & ~umask
    # An existing folder as -o receives <name>.png.
    (tmp_path / "outdir").mkdir()
    _ok(_colorize(sketch, "--model", models["run"], "-o", tmp_path / "outdir", "--no-cues"))
    np.testing.assert_array_equal(read_image(tmp_path / "outdir" / "odd.png"), out)
    assert _temp_files(tmp_path) == []


def test_several_sketches_and_folders_with_cues_paired_by_name(models, tmp_path, caplog):
    sketches = tmp_path / "sketches"
    sketches.mkdir()
    art = _line_art(60, 90, seed=1)
    _write(sketches / "gray.png", art)
    _write(sketches / "photo.jpg", np.dstack([art] * 3), cv2.IMWRITE_JPEG_QUALITY, 90)
    _write(sketches / "web.webp", np.dstack([art] * 3), cv2.IMWRITE_WEBP_QUALITY, 101)
    _write(sketches / "layer.png", np.dstack([np.zeros((60, 90, 3), np.uint8), 255 - art]))
    _palette_png(sketches / "pal.png", (art < 128).astype(np.uint8), [(255, 255, 255), (0, 0, 0)])
    (sketches / "notes.txt").write_text("ignored")
    cues = tmp_path / "cues"
    cues.mkdir()
    strokes = np.zeros((30, 45, 4), np.uint8)
    strokes[5:20, 5:30] = (220, 40, 40, 255)
    _write(cues / "gray.png", strokes)
    _write(cues / "photo.jpg", np.full((60, 90, 3), (40, 200, 60), np.uint8))
    out = tmp_path / "new" / "coloured"
    _ok(_colorize(sketches, "--model", models["run"], "--cues", cues, "-o", out, "-q"))
    names = sorted(p.name for p in out.iterdir())
    assert names == ["gray.png", "layer.png", "pal.png", "photo.png", "web.png"]
    for name in names:
        assert read_image(out / name).shape == (60, 90, 3)
    assert "no cue file named web.*" in caplog.text
    # The paired cues were used: without them gray.png comes out differently.
    _ok(_colorize(sketches / "gray.png", "--model", models["run"], "-o", tmp_path / "plain.png"))
    assert not np.array_equal(read_image(tmp_path / "plain.png"), read_image(out / "gray.png"))
    # Several files on the command line also go to a folder.
    _ok(_colorize(sketches / "gray.png", sketches / "pal.png", "--model", models["run"],
                  "-o", tmp_path / "two"))
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["gray.png", "pal.png"]


def test_a_batch_reports_bad_files_and_colours_the_rest(models, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _write(folder / "good.png", _line_art(40, 40))
    (folder / "empty.png").write_bytes(b"")
    result = _colorize(folder, "--model", models["run"], "-o", tmp_path / "out", "-q")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "empty.png: the file is empty" in result.output
    assert "1 of 2 sketches failed" in result.output
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good.png"]


def test_a_folder_in_the_way_of_one_output_fails_that_sketch_only(models, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _write(folder / "a.png", _line_art(40, 40))
    _write(folder / "b.png", _line_art(40, 40, seed=1))
    (tmp_path / "out" / "a.png").mkdir(parents=True)  # where a.png's colouring would go
    result = _colorize(folder, "--model", models["run"], "-o", tmp_path / "out", "-q")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "a.png: is a directory" in result.output and "Traceback" not in result.output
    assert "1 of 2 sketches failed" in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
    assert (tmp_path / "out" / "a.png").is_dir() and (tmp_path / "out" / "b.png").is_file()


def test_a_work_size_beyond_the_limit_is_a_usage_error(models, tmp_path):
    sketch = _write(tmp_path / "s.png", _line_art(40, 40))
    result = _colorize(sketch, "--model", models["run"], "--work-size", "100000",
                       "-o", tmp_path / "o.png")
    assert result.exit_code == 2 and "--work-size" in result.output
    assert "8<=x<=2048" in result.output and not (tmp_path / "o.png").exists()


def test_cues_and_no_cues_together_is_a_usage_error(models, tmp_path):
    sketch = _write(tmp_path / "s.png", _line_art(32, 32))
    result = _colorize(sketch, "--model", models["run"], "--cues", sketch, "--no-cues",
                       "-o", tmp_path / "o.png")
    assert result.exit_code == 2 and "either --cues or --no-cues" in result.output


def _bad_cases(tmp_path, models):
    """Each case: (arguments after `colorize`, expected message, output path)."""
    good = _write(tmp_path / "good.png", _line_art(40, 50))
    out = tmp_path / "out.png"
    run = models["run"]
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("this is not an image\n" * 20)
    (tmp_path / "truncated.png").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + header
    (tmp_path / "bomb.png").write_bytes(bomb + struct.pack(">I", zlib.crc32(b"IHDR" + header)))
    tiff = b"II*\x00" + struct.pack("<IH", 8, 2) + struct.pack("<HHII", 256, 4, 1, 30000)
    tiff += struct.pack("<HHII", 257, 4, 1, 30000) + b"\x00" * 64
    (tmp_path / "bomb.tif").write_bytes(tiff)
    (tmp_path / "garbage.keras").write_bytes(b"PK\x03\x04 but not really a zip")
    (tmp_path / "no_generator").mkdir()
    other = tmp_path / "other.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]).save(other)
    (tmp_path / "a_file").write_text("x")
    folder = tmp_path / "sketches"
    folder.mkdir()
    _write(folder / "one.png", _line_art(30, 40))
    return {
        "missing sketch": ([tmp_path / "nope.png", "-m", run, "-o", out], "no such file"),
        "empty sketch": ([tmp_path / "empty.png", "-m", run, "-o", out], "the file is empty"),
        "not an image": ([tmp_path / "text.png", "-m", run, "-o", out], "not an image"),
        "truncated": ([tmp_path / "truncated.png", "-m", run, "-o", out], "truncated"),
        "pixel bomb": ([tmp_path / "bomb.png", "-m", run, "-o", out], "over the limit"),
        "TIFF pixel bomb": ([tmp_path / "bomb.tif", "-m", run, "-o", out],
                            "30000x30000 is over the limit"),
        "empty cues": ([good, "-m", run, "--cues", tmp_path / "empty.png", "-o", out],
                       "empty.png: the file is empty"),
        "missing cues": ([good, "-m", run, "--cues", tmp_path / "nocue.png", "-o", out],
                         "no such cue file"),
        "missing model": ([good, "-m", tmp_path / "nomodel", "-o", out], "no such model"),
        "garbage model": ([good, "-m", tmp_path / "garbage.keras", "-o", out],
                          "not a .keras model file"),
        "folder without generator": ([good, "-m", tmp_path / "no_generator", "-o", out],
                                     "neither a run directory"),
        "other keras model": ([good, "-m", other, "-o", out], "not a manga-pix2pix generator"),
        "cue-free model with cues": ([good, "-m", models["cue_free"], "--cues", good, "-o", out],
                                     "trained without cues"),
        "missing output folder": ([good, "-m", run, "-o", tmp_path / "no" / "out.png"],
                                  "does not exist"),
        "output under a file": ([good, "-m", run, "-o", tmp_path / "a_file" / "out.png"],
                                "does not exist"),
        "unknown output format": ([good, "-m", run, "-o", tmp_path / "out.xyz"],
                                  "unknown image format"),
        "overwrite the input": ([good, "-m", run, "-o", good], "would overwrite an input"),
        "one cue file for many": ([good, good, "-m", run, "--cues", good, "-o", tmp_path / "d"],
                                  "need a folder of cue files"),
        "bad model, new output folder": ([folder, "-m", tmp_path / "nomodel",
                                          "-o", tmp_path / "new" / "folder"], "no such model"),
        "output folder under a file": ([folder, "-m", run, "-o", tmp_path / "a_file" / "d"],
                                       "is a file"),
    }


def test_every_bad_input_is_one_clear_line_and_leaves_nothing(models, tmp_path):
    cases = _bad_cases(tmp_path, models)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for name, (args, message) in cases.items():
        result = _colorize(*args)
        assert result.exit_code == 1, (name, result.output)
        assert isinstance(result.exception, SystemExit), (name, result.exception)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), (name, result.output)
        assert message in lines[0], (name, lines[0])
        assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_read_only_output_folder_is_refused_cleanly(models, tmp_path):
    sketch = _write(tmp_path / "s.png", _line_art(40, 40))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    immutable = False
    if os.access(locked, os.W_OK):  # root ignores modes; make the folder immutable instead
        chattr = shutil.which("chattr")
        if chattr is None or subprocess.run([chattr, "+i", str(locked)]).returncode != 0:
            pytest.skip("cannot make a folder read-only for this user")
        immutable = True
    try:
        for output in (locked / "out.png", locked / "sub"):
            result = _colorize(sketch, sketch, "-m", models["run"], "-o", output) if (
                output.name == "sub") else _colorize(sketch, "-m", models["run"], "-o", output)
            assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
            assert result.output.startswith("Error: ") and len(result.output.splitlines()) == 1
            assert "not writable" in result.output or "cannot" in result.output
        assert list(locked.iterdir()) == []
    finally:
        if immutable:
            subprocess.run([shutil.which("chattr"), "-i", str(locked)], check=True)
        locked.chmod(0o755)


def test_paper_background_leaves_the_page_around_a_figure_white(models, tmp_path):
    art = np.full((96, 128), 255, np.uint8)
    cv2.rectangle(art, (30, 20), (98, 76), 0, 2)
    sketch = _write(tmp_path / "figure.png", art)
    _ok(_colorize(sketch, "--model", models["run"], "--no-cues", "--background", "model",
                  "-o", tmp_path / "model.png"))
    _ok(_colorize(sketch, "--model", models["run"], "--no-cues", "--background", "paper",
                  "-o", tmp_path / "paper.png"))
    model, paper = read_image(tmp_path / "model.png"), read_image(tmp_path / "paper.png")
    around = np.ones(art.shape, bool)
    around[17:80, 27:102] = False  # the box, its outline and the pixel that thickens it
    assert (paper[around] == 255).all()
    assert not (model[around] == 255).all()
    np.testing.assert_array_equal(paper[30:66, 40:88], model[30:66, 40:88])  # the figure
    result = _colorize(sketch, "--model", models["run"], "--background", "paper",
                       "--regions", "off", "-o", tmp_path / "off.png")
    assert result.exit_code != 0
    assert result.output.strip().splitlines()[-1].startswith("Error: --background paper")
    assert not (tmp_path / "off.png").exists()


def test_auto_background_is_paper_until_something_is_painted(models, tmp_path):
    art = np.full((96, 128), 255, np.uint8)
    cv2.rectangle(art, (30, 20), (98, 76), 0, 2)
    sketch = _write(tmp_path / "figure.png", art)
    empty = np.zeros((96, 128, 4), np.uint8)
    painted = empty.copy()
    painted[40:46, 50:80] = (40, 90, 220, 255)  # one stroke, inside the figure
    cue_files = {"empty": _write(tmp_path / "empty.png", empty),
                 "painted": _write(tmp_path / "painted.png", painted)}

    def colour(name, *args):
        _ok(_colorize(sketch, "--model", models["run"], *args, "-o", tmp_path / f"{name}.png"))
        return read_image(tmp_path / f"{name}.png")

    for cues in ("no", "empty", "painted"):
        given = ["--no-cues"] if cues == "no" else ["--cues", cue_files[cues]]
        auto = colour(f"{cues}-default", *given)  # auto is the default
        resolved = "model" if cues == "painted" else "paper"
        np.testing.assert_array_equal(auto, colour(f"{cues}-{resolved}", *given,
                                                   "--background", resolved))
        other = "paper" if resolved == "model" else "model"
        assert not np.array_equal(auto, colour(f"{cues}-{other}", *given, "--background", other))
    # Without the regions there is no background to decide: auto is accepted and changes nothing.
    np.testing.assert_array_equal(
        colour("off-auto", "--no-cues", "--regions", "off"),
        colour("off-model", "--no-cues", "--regions", "off", "--background", "model"))


def test_a_second_colour_on_the_page_stops_a_stroke_running_through_a_gap(models, tmp_path):
    art = np.full((96, 128), 255, np.uint8)
    cv2.rectangle(art, (30, 20), (98, 76), 0, 2)
    art[40:56, 96:101] = 255  # the outline is open on the right, far wider than closes
    sketch = _write(tmp_path / "open.png", art)
    figure_only = np.zeros((96, 128, 4), np.uint8)
    figure_only[45:50, 45:75] = (200, 40, 30, 255)
    both = figure_only.copy()
    both[84:89, 40:90] = (255, 255, 255, 255)  # and white on the page below the figure
    out = {}
    for name, cues in (("figure", figure_only), ("both", both)):
        _ok(_colorize(sketch, "--model", models["run"], "--cues",
                      _write(tmp_path / f"{name}-cues.png", cues), "-o", tmp_path / f"{name}.png"))
        out[name] = read_image(tmp_path / f"{name}.png")
    inside, page = out["figure"][30:66, 40:88], out["figure"][2:12, 2:126]
    assert (inside == (200, 40, 30)).all() and (page == (200, 40, 30)).all()  # one region
    inside, page = out["both"][30:66, 40:88], out["both"][2:12, 2:126]
    assert (inside == (200, 40, 30)).all() and (page == 255).all()  # cut at the gap
