"""`evaluate --pairs` and `evaluate --lineart` end to end, on generated flat-colour drawings.

The model is a tiny untrained generator: what is checked is the evaluation (conditions,
baselines, metrics, files, errors), not colouring quality.
"""

import json

import cv2
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from conftest import write_pairs

from manga_pix2pix.cli import main
from manga_pix2pix.config import Config, ModelConfig
from manga_pix2pix.errors import UserError
from manga_pix2pix.evaluation import pairs, regions
from manga_pix2pix.evaluation.metrics import fast_image_metrics, image_metrics
from manga_pix2pix.imageio import read_image, write_image
from manga_pix2pix.inference.loading import load_model
from manga_pix2pix.models import build_models

TINY = ModelConfig(image_size=32, base_filters=8)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs_model") / "run"
    path.mkdir()
    generator, _ = build_models(TINY)
    generator.save(path / "generator.keras")
    (path / "config.json").write_text(Config(preset="smoke", model=TINY).to_json())
    return path


@pytest.fixture(scope="module")
def cue_free(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs_cue_free") / "cue_free.keras"
    build_models(TINY, uses_cues=False)[0].save(path)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """3 pairs; one larger than --max-side 96 and one not square."""
    path = tmp_path_factory.mktemp("pairs_data") / "pairs"
    write_pairs(path, [(72, 96), (150, 100), (80, 80)])
    return path


@pytest.fixture(scope="module")
def evaluated(run_dir, folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs_out") / "eval"
    args = ["evaluate", "--model", str(run_dir), "--pairs", str(folder), "--max-side", "96",
            "--strokes", "4", "--seed", "3", "-o", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return out, args, result.output


def _read(out):
    return (json.loads((out / "metrics.json").read_text()),
            json.loads((out / "per_pair.json").read_text()))


def test_pairs_report_has_every_condition_method_metric_and_figure(evaluated):
    out, _, output = evaluated
    body, per_pair = _read(out)
    assert set(body["metrics"]) == {"full", "strokes", "none"}
    assert set(body["metrics"]["full"]) == {"model", "blurred_cues"}
    assert set(body["metrics"]["strokes"]) == {"model", "paint_bucket"}
    assert set(body["metrics"]["none"]) == {"model", "sketch_only"}
    for condition, methods in body["metrics"].items():
        for method, values in methods.items():
            names = {"l1", "psnr", "ssim"} | ({"region_de"} if condition == "strokes" else set())
            assert set(values) == names, (condition, method)
            assert 0 <= values["l1"] <= 1 and -1 <= values["ssim"] <= 1
            assert values["psnr"] > 0
        assert (out / body["figures"][condition]).is_file()
    figure = read_image(out / "figures" / "strokes.png")
    assert figure.shape[1] > 5 * pairs.FIGURE_TILE  # line art | cues | output | baseline | truth
    assert body["info"]["count"] == 3 and body["info"]["seed"] == 3
    assert body["info"]["work_size"] == 32  # colorize's default: the model's image size
    assert set(per_pair) == {"p00", "p01", "p02"}
    # Sizes: the long side shrunk to --max-side, the aspect kept; small ones left alone.
    assert per_pair["p01"]["size"] == [96, 64] and per_pair["p00"]["size"] == [72, 96]
    assert all(1 <= len(p["placed"]) <= 4 for p in per_pair.values())
    text = (out / "metrics.md").read_text()
    assert text.startswith("# Evaluation on real pairs")
    assert "baseline: paint bucket" in text and "region ΔE" in text
    strokes = body["metrics"]["strokes"]
    gain = strokes["model"]["psnr"] - strokes["paint_bucket"]["psnr"]
    assert "| strokes | paint bucket | " in text and f"| {gain:+.2f} |" in text
    assert "figure (strokes):" in output


def test_pairs_means_are_the_means_of_the_per_pair_values(evaluated):
    body, per_pair = _read(evaluated[0])
    for condition, methods in body["metrics"].items():
        for method, values in methods.items():
            for metric, mean in values.items():
                found = [p[condition][method][metric] for p in per_pair.values()]
                assert mean == pytest.approx(np.mean(found)), (condition, method, metric)


def _fitted(folder, name, max_side=96):
    lineart = read_image(folder / "lineart" / f"{name}.png")
    h, w = pairs.fit_size(*lineart.shape[:2], max_side)
    colour = read_image(folder / "colour" / f"{name}.png")
    area = cv2.INTER_AREA
    return (cv2.resize(lineart, (w, h), interpolation=area),
            cv2.resize(colour, (w, h), interpolation=area))


def test_baselines_are_what_they_say(evaluated, folder):
    _, per_pair = _read(evaluated[0])
    lineart, colour = _fitted(folder, "p01")
    truth = colour / 255.0
    sketch = fast_image_metrics(lineart / 255.0, truth)
    assert per_pair["p01"]["none"]["sketch_only"]["psnr"] == pytest.approx(sketch["psnr"])
    blurred = pairs.blurred_cue_layer(colour)
    cue = fast_image_metrics(blurred / 255.0, truth)
    assert per_pair["p01"]["full"]["blurred_cues"]["ssim"] == pytest.approx(cue["ssim"])
    # The paint bucket fills flat shapes with their true colour: close in colour, and better
    # than the bare sketch everywhere it painted.
    bucket = per_pair["p01"]["strokes"]["paint_bucket"]
    assert bucket["region_de"] < 3.0
    assert bucket["l1"] < per_pair["p01"]["none"]["sketch_only"]["l1"]


def test_stroke_colours_are_the_median_true_colour_under_each_stroke(evaluated, folder):
    _, per_pair = _read(evaluated[0])
    for name, record in per_pair.items():
        lineart, colour = _fitted(folder, name)
        found = regions.find_regions(lineart)
        strokes = regions.place_strokes(found, 4, pairs.stroke_rng(3, name))
        assert [s.region for s in strokes] == [p["region"] for p in record["placed"]]
        for stroke, placed in zip(strokes, record["placed"], strict=True):
            ys, xs = np.nonzero(stroke.mask)
            median = [round(float(np.median(colour[ys, xs, c]))) for c in range(3)]
            assert placed["colour"] == median
            assert placed["pixels"] == len(ys)


def test_model_rows_are_the_colorize_command_on_the_cue_file(evaluated, folder, run_dir,
                                                             tmp_path):
    """The model is scored on exactly what `manga-pix2pix colorize` makes of the cue files."""
    _, per_pair = _read(evaluated[0])
    lineart, colour = _fitted(folder, "p00")
    found = regions.find_regions(lineart)
    strokes = regions.place_strokes(found, 4, pairs.stroke_rng(3, "p00"))
    colours = [regions.median_colour(colour, s.mask) for s in strokes]
    write_image(tmp_path / "sketch.png", lineart)
    write_image(tmp_path / "strokes.png", regions.cue_image(lineart.shape[:2], strokes, colours))
    write_image(tmp_path / "full.png", pairs.blurred_cue_layer(colour))
    for condition, cues in (("strokes", ["--cues", "strokes.png"]),
                            ("full", ["--cues", "full.png"]), ("none", [])):
        target = tmp_path / f"out_{condition}.png"
        args = ["colorize", str(tmp_path / "sketch.png"), "--model", str(run_dir), "-o",
                str(target), *[str(tmp_path / c) if c.endswith(".png") else c for c in cues]]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        got = fast_image_metrics(read_image(target) / 255.0, colour / 255.0)
        for metric in ("l1", "psnr", "ssim"):
            assert per_pair["p00"][condition]["model"][metric] == pytest.approx(
                got[metric], abs=1e-6
            ), (condition, metric)
        tf_psnr = image_metrics(tf.constant(read_image(target) / 255.0, tf.float32),
                                tf.constant(colour / 255.0, tf.float32))["psnr"]
        assert got["psnr"] == pytest.approx(float(tf_psnr), abs=1e-3), condition


def test_pairs_are_deterministic_and_the_seed_moves_the_strokes(evaluated, tmp_path):
    out, args, _ = evaluated
    body, per_pair = _read(out)
    again = tmp_path / "again"
    assert CliRunner().invoke(main, [*args[:-1], str(again), "-q"]).exit_code == 0
    body2, per_pair2 = _read(again)
    assert body2["metrics"] == body["metrics"] and per_pair2 == per_pair
    other = tmp_path / "other"
    seeded = [*args[:-1], str(other), "-q"]
    seeded[seeded.index("--seed") + 1] = "4"
    assert CliRunner().invoke(main, seeded).exit_code == 0
    _, per_pair3 = _read(other)
    assert [p["placed"] for p in per_pair3.values()] != [p["placed"] for p in per_pair.values()]


def test_a_cue_free_model_has_no_model_rows_with_cues(cue_free, folder, tmp_path):
    report = pairs.evaluate_pairs(load_model(cue_free), folder, max_side=48, strokes=2,
                                  output_dir=tmp_path / "o")
    assert report.metrics["full"]["model"] is None
    assert report.metrics["strokes"]["model"] is None
    assert report.metrics["none"]["model"]["psnr"] > 0
    assert report.metrics["full"]["blurred_cues"]["psnr"] > 0
    assert "| model | n/a | n/a | n/a | n/a |" in (tmp_path / "o" / "metrics.md").read_text()


@pytest.fixture(scope="module")
def lineart_evaluated(run_dir, folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("lineart_out") / "eval"
    args = ["evaluate", "--model", str(run_dir), "--lineart", str(folder / "lineart"),
            "--max-side", "96", "--strokes", "2", "--work-size", "64", "-o", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return out


def test_lineart_report(lineart_evaluated):
    body, per_pair = _read(lineart_evaluated)
    assert set(body["metrics"]) == {"strokes", "none"}
    assert body["info"]["work_size"] == 64 and body["info"]["mode"] == "lineart"
    model = body["metrics"]["strokes"]["model"]
    assert set(model) == {"hint_de", "leakage"}
    # colorize's region step (on by default) gives a stroked region its stroke's colour.
    assert 0 <= model["hint_de"] <= 1.0 and 0 <= model["leakage"] <= 1
    bucket = body["metrics"]["strokes"]["paint_bucket"]
    assert bucket["hint_de"] == pytest.approx(0.0, abs=0.5)  # it paints the hint itself
    assert bucket["leakage"] == 0.0  # and nothing else
    assert body["metrics"]["none"]["sketch_only"]["paper_l"] == pytest.approx(100.0, abs=0.5)
    assert 0 <= body["metrics"]["none"]["model"]["paper_l"] <= 100
    for condition in ("strokes", "none"):
        assert (lineart_evaluated / body["figures"][condition]).is_file()
    palette = {tuple(c) for c in pairs.PALETTE.tolist()}
    for record in per_pair.values():
        colours = [tuple(p["colour"]) for p in record["placed"]]
        assert set(colours) <= palette and len(set(colours)) == len(colours)  # distinct
    assert (lineart_evaluated / "metrics.md").read_text().startswith(
        "# Evaluation on line art without colour"
    )


def test_auto_background_keeps_the_paper_and_leaves_leakage_as_the_strokes_make_it(
    lineart_evaluated, run_dir, folder, tmp_path
):
    auto, auto_pairs = _read(lineart_evaluated)  # the default background, auto
    out = tmp_path / "model"
    result = CliRunner().invoke(main, [
        "evaluate", "--model", str(run_dir), "--lineart", str(folder / "lineart"),
        "--max-side", "96", "--strokes", "2", "--work-size", "64", "--background", "model",
        "-o", str(out)])
    assert result.exit_code == 0, result.output
    model, model_pairs = _read(out)
    assert auto["info"]["background"] == "auto" and model["info"]["background"] == "model"
    # Without cues, auto leaves the regions touching the border as paper; the model does not.
    assert auto["metrics"]["none"]["model"]["paper_l"] == pytest.approx(100.0, abs=0.5)
    assert model["metrics"]["none"]["model"]["paper_l"] < 99
    # With strokes auto is the model's colours, and leakage is measured against the cue-free
    # colouring on that background: the same numbers, drawing by drawing.
    for name, record in auto_pairs.items():
        assert record["strokes"] == model_pairs[name]["strokes"]


def _two_regions():
    """Three regions side by side, split by two vertical lines: left, middle, right."""
    art = np.full((40, 90), 255, np.uint8)
    art[:, 29:31] = 0
    art[:, 59:61] = 0
    found = regions.find_regions(art)
    left, middle, right = found.labels[20, 10], found.labels[20, 45], found.labels[20, 80]
    return art, found, (left, middle, right)


def test_leakage_counts_neighbours_pulled_towards_the_stroke_colour():
    art, found, (left, middle, right) = _two_regions()
    stroke = regions.Stroke(region=int(left), mask=found.mask(left))
    red = np.array([220, 40, 40], np.uint8)
    without = np.full((40, 90, 3), 128, np.uint8)
    with_strokes = without.copy()
    with_strokes[found.mask(left)] = red
    reach, area = 6, 50
    # The middle region (the only neighbour of the stroked one) stays grey: no leak.
    assert pairs.leakage(with_strokes, without, found, [stroke], [red], reach, area) == 0.0
    # It turns reddish: a leak; the right region is no neighbour and does not count.
    with_strokes[found.mask(middle)] = (180, 90, 90)
    assert pairs.leakage(with_strokes, without, found, [stroke], [red], reach, area) == 1.0
    with_strokes[found.mask(right)] = red
    assert pairs.leakage(with_strokes, without, found, [stroke], [red], reach, area) == 1.0
    # A small shift (under LEAK_DE) is no leak.
    with_strokes[found.mask(middle)] = (131, 127, 127)
    assert pairs.leakage(with_strokes, without, found, [stroke], [red], reach, area) == 0.0
    # With every region stroked, there is no candidate.
    strokes = [regions.Stroke(int(r), found.mask(r)) for r in (left, middle, right)]
    assert pairs.leakage(with_strokes, without, found, strokes, [red] * 3, reach, area) is None


def test_hint_fidelity_and_paper_lightness():
    art, found, (left, middle, right) = _two_regions()
    stroke = regions.Stroke(region=int(middle), mask=found.mask(middle))
    output = np.full((40, 90, 3), 255, np.uint8)
    output[found.mask(middle)] = (40, 90, 200)
    assert pairs.hint_de(output, found, [stroke], [np.array([40, 90, 200], np.uint8)]) == 0.0
    assert pairs.hint_de(output, found, [stroke], [np.array([200, 40, 40], np.uint8)]) > 50
    # Every region touches the border here; the paper is white except the middle.
    share = found.mask(middle).sum() / (found.labels > 0).sum()
    l_blue = float(regions.lab(np.array([40, 90, 200], np.uint8))[0])
    expected = share * l_blue + (1 - share) * 100.0
    assert pairs.paper_lightness(output, found) == pytest.approx(expected, abs=0.1)


# -- bad input: each a one-line error and exit status 1 --


def _bad_cases(tmp_path, write_encoded):
    good = tmp_path / "good"
    write_pairs(good, [(40, 40), (40, 40)], write_encoded)
    cases = {}
    empty = tmp_path / "empty"
    (empty / "lineart").mkdir(parents=True)
    (empty / "colour").mkdir()
    cases["empty"] = (["--pairs", str(empty)], f"{empty / 'lineart'}: no image files")
    no_colour = tmp_path / "no_colour"
    (no_colour / "lineart").mkdir(parents=True)
    write_encoded(no_colour / "lineart" / "a.png", np.full((20, 20), 255, np.uint8))
    cases["no colour folder"] = (["--pairs", str(no_colour)],
                                 f"{no_colour / 'colour'}: no such folder")
    unmatched = tmp_path / "unmatched"
    write_pairs(unmatched, [(40, 40), (40, 40)], write_encoded)
    (unmatched / "colour" / "p01.png").rename(unmatched / "colour" / "q01.png")
    cases["unmatched line art"] = (
        ["--pairs", str(unmatched)],
        f"{unmatched / 'lineart' / 'p01.png'}: no colour image p01.*",
    )
    orphan = tmp_path / "orphan"
    write_pairs(orphan, [(40, 40)], write_encoded)
    write_encoded(orphan / "colour" / "extra.jpg", np.zeros((20, 20, 3), np.uint8))
    cases["unmatched colour"] = (["--pairs", str(orphan)],
                                 f"{orphan / 'colour' / 'extra.jpg'}: no line art extra.*")
    corrupt = tmp_path / "corrupt"
    write_pairs(corrupt, [(40, 40), (40, 40)], write_encoded)
    (corrupt / "colour" / "p01.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    cases["unreadable"] = (["--pairs", str(corrupt)],
                           f"{corrupt / 'colour' / 'p01.png'}: not an image")
    twice = tmp_path / "twice"
    write_pairs(twice, [(40, 40)], write_encoded)
    write_encoded(twice / "lineart" / "p00.jpg", np.full((20, 20), 255, np.uint8))
    cases["two files, one name"] = (["--pairs", str(twice)], "two images named 'p00'")
    cases["missing folder"] = (["--pairs", str(tmp_path / "nope")],
                               f"{tmp_path / 'nope'}: no such folder")
    lineart_empty = tmp_path / "lineart_empty"
    lineart_empty.mkdir()
    cases["empty line art folder"] = (["--lineart", str(lineart_empty)],
                                      f"{lineart_empty}: no image files")
    cases["data and pairs"] = (["--pairs", str(good), "--data", "synthetic"],
                               "give one of --data, --pairs and --lineart")
    cases["pairs and lineart"] = (["--pairs", str(good), "--lineart", str(good / "lineart")],
                                  "give one of --data, --pairs and --lineart")
    return cases


BAD = ["empty", "no colour folder", "unmatched line art", "unmatched colour", "unreadable",
       "two files, one name", "missing folder", "empty line art folder", "data and pairs",
       "pairs and lineart"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_a_one_line_error(case, run_dir, tmp_path, write_encoded_file):
    extra, message = _bad_cases(tmp_path, write_encoded_file)[case]
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["evaluate", "--model", str(run_dir), *extra,
                                       "-o", str(out), "-q"])
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 or "Usage:" in result.output, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert not (out / "metrics.json").exists()


def test_an_output_that_is_a_file_is_a_one_line_error(run_dir, folder, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    result = CliRunner().invoke(main, ["evaluate", "--model", str(run_dir), "--pairs",
                                       str(folder), "-o", str(target), "-q"])
    assert result.exit_code != 0
    assert "is a file" in result.output
    with pytest.raises(UserError, match="exists and is not a folder"):
        pairs.evaluate_pairs(load_model(run_dir), folder, output_dir=target)


def test_help_names_the_real_line_art_options():
    result = CliRunner().invoke(main, ["evaluate", "--help"])
    assert result.exit_code == 0
    for option in ("--pairs", "--lineart", "--max-side", "--strokes", "--seed"):
        assert option in result.output


def test_a_colour_image_of_another_shape_is_stretched_with_a_warning(
    tmp_path, caplog, make_flat_drawing
):

    lineart, colour = make_flat_drawing(0, 60, 80)
    (tmp_path / "lineart").mkdir()
    (tmp_path / "colour").mkdir()
    write_image(tmp_path / "lineart" / "a.png", lineart)
    write_image(tmp_path / "colour" / "a.png", cv2.resize(colour, (160, 60)))
    drawing = pairs.find_pairs(tmp_path)[0]
    with caplog.at_level("WARNING", logger=pairs.__name__):
        art, truth = pairs.load_drawing(drawing, 512)
    assert art.shape == truth.shape == (60, 80, 3)
    assert "stretched" in caplog.text and "a.png" in caplog.text


def test_regions_off_scores_the_models_own_output(run_dir, folder, tmp_path):
    model = load_model(run_dir)
    reports = {mode: pairs.evaluate_pairs(model, folder, max_side=64, strokes=2, regions=mode,
                                          output_dir=tmp_path / mode)
               for mode in ("auto", "off")}
    info = {m: json.loads((tmp_path / m / "metrics.json").read_text())["info"] for m in reports}
    assert info["auto"]["regions"] == "auto" and info["off"]["regions"] == "off"
    auto, off = (reports[m].metrics["strokes"]["model"] for m in ("auto", "off"))
    # With regions a stroked region takes its stroke's colour (the median true colour under
    # it), so it lands closer to the truth than a tiny model's own output does.
    assert auto["region_de"] < off["region_de"]
    # A full cue layer turns the region step off under `auto`.
    assert reports["auto"].metrics["full"]["model"] == reports["off"].metrics["full"]["model"]
