"""Colorize on generated line art of any size and cue images of every kind."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tensorflow as tf
from inference_helpers import encode, line_art, palette_png

from manga_pix2pix.config import ModelConfig
from manga_pix2pix.data.cues import cue_sigma, gaussian_blur
from manga_pix2pix.data.sketch import sketch
from manga_pix2pix.errors import UserError
from manga_pix2pix.imageio import decode_image
from manga_pix2pix.inference.colorize import (
    MAX_ASPECT,
    Colorizer,
    ColorizeSettings,
    blur_unless_smooth,
    even_paper,
    follow_layer,
    line_layer,
    model_cues,
    model_sketch,
    to_rgb_on_white,
    to_rgba,
    work_geometry,
)
from manga_pix2pix.inference.loading import load_model
from manga_pix2pix.inference.regions import line_regions
from manga_pix2pix.models import build_models

SETTINGS = ColorizeSettings(image_size=32, use_cue_mask=True)


@pytest.fixture(scope="module")
def colorizer(tiny_run):
    return Colorizer(load_model(tiny_run))


@pytest.fixture(scope="module")
def trained(trained_run):
    return Colorizer(load_model(trained_run))


@pytest.mark.parametrize("height,width", [(32, 32), (97, 141), (141, 97), (40, 300), (2, 5)])
@pytest.mark.parametrize("mode", ["gray", "rgb", "rgba"])
def test_any_size_and_channels_give_rgb_at_the_input_size(colorizer, height, width, mode):
    art = line_art(height, width)
    if mode == "gray":
        image = art[:, :, None]
    elif mode == "rgb":
        image = np.dstack([art] * 3)
    else:
        image = np.dstack([np.zeros_like(art)] * 3 + [255 - art])
    out = colorizer(image)
    assert out.shape == (height, width, 3) and out.dtype == np.uint8


def test_work_geometry_keeps_the_training_scale_and_aspect():
    for (height, width), work in [((97, 141), 32), ((2048, 2048), 256), ((300, 40), 32)]:
        h, w, ch, cw, top, left = (int(v) for v in work_geometry(height, width, work, 32))
        assert min(h, w) == work
        assert abs(h / w - height / width) < 0.05
        assert ch % 32 == 0 and cw % 32 == 0 and ch - h < 32 and cw - w < 32
        assert top == (ch - h) // 2 and left == (cw - w) // 2
    # A very thin strip is coloured whole at a reduced scale instead of a huge canvas.
    h, w, *_ = (int(v) for v in work_geometry(10, 5000, 32, 32))
    assert w == MAX_ASPECT * 32 and h < 32


def test_transparent_line_art_is_coloured_like_the_same_drawing_on_white(colorizer):
    art = line_art(60, 80, seed=3)
    on_white = colorizer(art[:, :, None])
    layer = np.dstack([np.zeros((60, 80, 3), np.uint8), 255 - art])
    np.testing.assert_allclose(colorizer(layer).astype(int), on_white.astype(int), atol=1)


def test_grey_line_art_becomes_the_training_sketch():
    art = line_art(64, 64, seed=1)
    rgb = tf.constant(np.dstack([art] * 3))
    # At the work size itself the model sees exactly the training sketch op's output.
    np.testing.assert_array_equal(model_sketch(rgb, 64, 64).numpy(), sketch(rgb).numpy())
    # Downscaled, it is still binary and keeps the drawn lines (dark pixels in the art).
    small = model_sketch(rgb, 32, 32).numpy()[:, :, 0]
    assert set(np.unique(small)) <= {0, 255}
    drawn = cv2.resize(art, (32, 32), interpolation=cv2.INTER_AREA) < 128
    assert (small[drawn] == 0).mean() > 0.8


def test_lines_stay_crisp_and_black_at_full_resolution(colorizer):
    art = line_art(290, 420, seed=2)
    art[40:43, 10:120] = 0
    out = colorizer(art[:, :, None]).astype(int)
    assert (out[art == 0] == 0).all()
    # Everywhere, the output is the colour layer times the drawing: never lighter than it.
    assert (out <= art[:, :, None].astype(int) + 1).all()
    # Edges are as sharp as drawn: compared with the drawing's own gradient, the output's is
    # far steeper than that of the drawing brought down to the work scale and back up.
    def gradient(image):
        image = image.astype(np.float32)
        return np.hypot(cv2.Sobel(image, cv2.CV_32F, 1, 0), cv2.Sobel(image, cv2.CV_32F, 0, 1))

    drawn = gradient(art)
    strong = drawn > np.percentile(drawn, 95)
    ours = np.median(gradient(out.mean(axis=2))[strong] / drawn[strong])
    small = cv2.resize(art, (46, 32), interpolation=cv2.INTER_AREA)
    upsampled = cv2.resize(small, (420, 290), interpolation=cv2.INTER_LINEAR)
    naive = np.median(gradient(upsampled)[strong] / drawn[strong])
    assert ours > 0.3 and ours > 2 * naive


def test_scanned_grey_paper_is_levelled_to_white():
    art = line_art(50, 50).astype(np.float32)
    scan = np.round(art * 0.85).astype(np.uint8)  # paper at 217 instead of 255
    layer = line_layer(tf.constant(np.dstack([scan] * 3))).numpy()
    assert np.median(layer) == pytest.approx(1.0)
    assert layer.min() < 0.05  # the lines stay dark


def test_inference_is_deterministic(colorizer):
    art = line_art(70, 50, seed=4)[:, :, None]
    np.testing.assert_array_equal(colorizer(art), colorizer(art))


def _cue_image(kind: str, height: int = 40, width: int = 60) -> np.ndarray:
    """A cue file of one kind, decoded the way colorize reads it (RGBA)."""
    red = np.zeros((height, width, 4), np.uint8)
    red[10:25, 10:40] = (230, 20, 20, 255)
    flat = np.full((height, width, 3), (40, 90, 200), np.uint8)
    flat[:, : width // 2] = (220, 200, 40)
    index = np.zeros((height, width), np.uint8)
    index[10:25, 10:40] = 1
    data = {
        "rgb_png": lambda: encode(flat, ".png"),
        "gray_png": lambda: encode(cv2.cvtColor(flat, cv2.COLOR_RGB2GRAY), ".png"),
        "jpeg": lambda: encode(flat, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 95),
        "webp_opaque": lambda: encode(flat, ".webp", cv2.IMWRITE_WEBP_QUALITY, 101),
        "palette_opaque": lambda: palette_png(index, [(40, 90, 200), (220, 200, 40)]),
        "rgba_strokes": lambda: encode(red, ".png"),
        "webp_strokes": lambda: encode(red, ".webp", cv2.IMWRITE_WEBP_QUALITY, 101),
        "palette_strokes": lambda: palette_png(index, [(0, 0, 0), (230, 20, 20)], [0, 255]),
    }[kind]()
    return decode_image(data, name=kind, keep_alpha=True)


@pytest.mark.parametrize(
    "kind", ["rgb_png", "gray_png", "jpeg", "webp_opaque", "palette_opaque"]
)
def test_opaque_cue_files_are_a_full_layer_blurred_like_training(kind):
    image = _cue_image(kind)
    cues, mask = model_cues(tf.constant(image), 40, 60, SETTINGS)
    assert (mask.numpy() == 1).all()
    expected = gaussian_blur(image[:, :, :3]).numpy() * 2.0 - 1.0
    np.testing.assert_allclose(cues.numpy(), expected, atol=2e-3)
    # The hard edge between the two flat colours is softened like a training cue layer.
    assert np.abs(np.diff(cues.numpy(), axis=1)).max() < 0.3


def _painting(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A generated colour image: flat panels, ellipses and lines of random colours."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 240, np.uint8)
    for _ in range(12):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        centre = tuple(int(v) for v in rng.integers(0, (width, height)))
        axes = tuple(int(v) for v in rng.integers(height // 12, height // 3, 2))
        cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
    for _ in range(20):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        p1 = tuple(int(v) for v in rng.integers(0, (width, height)))
        p2 = tuple(int(v) for v in rng.integers(0, (width, height)))
        cv2.line(image, p1, p2, colour, int(rng.integers(1, 4)))
    return image


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_cue_layer_that_is_already_blurred_is_not_blurred_again(seed):
    height, width = 200, 300
    sigma = float(cue_sigma(height, width))
    sharp = _painting(height, width, seed)
    soft = np.round(gaussian_blur(sharp).numpy() * 255.0).astype(np.uint8)
    as_float = lambda image: tf.constant(image, tf.float32) / 255.0  # noqa: E731
    # A sharp (flat-painted) layer gets the whole training blur ...
    np.testing.assert_allclose(blur_unless_smooth(as_float(sharp), sigma).numpy(),
                               gaussian_blur(as_float(sharp), sigma).numpy(), atol=1e-6)
    # ... and a blurred one comes back as it was, not blurred twice.
    np.testing.assert_array_equal(blur_unless_smooth(as_float(soft), sigma).numpy(),
                                  as_float(soft).numpy())
    cues, _ = model_cues(tf.constant(soft), height, width, SETTINGS)
    np.testing.assert_allclose(cues.numpy(), soft / 127.5 - 1.0, atol=1e-5)
    # Lightly softened (a quarter of the training blur) still counts as painted.
    light = cv2.GaussianBlur(sharp, (0, 0), sigma / 4)
    np.testing.assert_allclose(blur_unless_smooth(as_float(light), sigma).numpy(),
                               gaussian_blur(as_float(light), sigma).numpy(), atol=1e-6)


def test_a_full_layer_gives_the_coarse_colours_and_the_model_the_detail():
    truth = 0.1 + 0.7 * tf.constant(_painting(120, 160, 3), tf.float32) / 255.0
    drawn = tf.ones_like(truth)
    sigma = 8.0
    layer = gaussian_blur(truth, sigma)
    # A model that got the detail right but tinted everything: the tint goes, the detail stays.
    tinted = truth + tf.constant([0.15, 0.05, -0.1])
    fixed = follow_layer(tinted, layer, drawn, sigma).numpy()
    assert np.abs(fixed - truth.numpy()).max() < 1e-4
    # A model whose coarse colours already are the layer's is left as it was.
    drawn = tf.where(tf.random.stateless_uniform([120, 160, 1], [1, 2]) < 0.05, 0.0, 1.0)
    drawn = tf.tile(drawn, [1, 1, 3])
    np.testing.assert_allclose(
        follow_layer(truth, gaussian_blur(truth * drawn, sigma), drawn, sigma).numpy(),
        truth.numpy(), atol=1e-5)


def test_with_a_full_layer_black_lines_stay_black(colorizer):
    art = line_art(64, 96)
    art[30:34, :] = 0  # a black line across
    out = colorizer(art[:, :, None], _painting(64, 96, 4))
    assert out.shape == (64, 96, 3)
    assert (out[art == 0] == 0).all()


@pytest.mark.parametrize("kind", ["rgba_strokes", "webp_strokes", "palette_strokes"])
def test_transparent_cue_files_give_strokes_where_alpha_is_positive(kind):
    image = _cue_image(kind)
    cues, mask = model_cues(tf.constant(image), 40, 60, SETTINGS)
    cues, mask = cues.numpy(), mask.numpy()[:, :, 0]
    np.testing.assert_array_equal(mask, (image[:, :, 3] > 0).astype(np.float32))
    red = np.array([230, 20, 20]) / 127.5 - 1.0
    np.testing.assert_allclose(cues[mask == 1], np.broadcast_to(red, (450, 3)), atol=0.02)
    assert (cues[mask == 0] == 0).all()


def test_resized_strokes_keep_their_colour_and_thin_strokes_survive():
    image = np.zeros((400, 600, 4), np.uint8)  # transparent black, a common encoding
    image[100:250, 100:400] = (230, 20, 20, 255)
    image[300, 50:550] = (20, 200, 20, 255)  # a 1-px stroke, 10x smaller at the work scale
    cues, mask = model_cues(tf.constant(image), 40, 60, SETTINGS)
    cues, mask = cues.numpy(), mask.numpy()[:, :, 0]
    red = cues[10:25, 10:40]
    np.testing.assert_allclose(red, np.broadcast_to(np.array([230, 20, 20]) / 127.5 - 1,
                                                    red.shape), atol=0.02)
    # Edge pixels are not darkened by the transparent black around the stroke.
    edge = cues[9, 10:40]
    assert (edge[:, 0] > 0.7).all()
    assert mask[30, 5:55].all() and (cues[30, 5:55, 1] > 0.4).all()


def test_no_cues_equals_a_fully_transparent_cue_layer(colorizer):
    art = line_art(50, 70)[:, :, None]
    clear = np.zeros((10, 10, 4), np.uint8)
    np.testing.assert_array_equal(colorizer(art), colorizer(art, clear))
    assert not np.array_equal(colorizer(art), colorizer(art, _cue_image("rgba_strokes")))


def test_cues_steer_the_colours_of_a_trained_model(trained):
    art = line_art(64, 96, seed=5)[:, :, None]
    paper = art[:, :, 0] == 255
    means = {}
    for name, colour in {"red": (220, 30, 30), "blue": (30, 30, 220)}.items():
        cue = np.full((64, 96, 3), colour, np.uint8)
        means[name] = trained(art, cue)[paper].mean(axis=0)
    assert means["red"][0] - means["red"][2] > 40
    assert means["blue"][2] - means["blue"][0] > 40


def test_per_image_norm_stats_are_deterministic_and_differ(trained_run):
    model = load_model(trained_run)
    art = line_art(60, 90, seed=6)[:, :, None]
    per_image = Colorizer(model, norm_stats="image")
    out = per_image(art)
    np.testing.assert_array_equal(out, per_image(art))
    assert out.shape == (60, 90, 3)
    assert np.abs(out.astype(int) - Colorizer(model)(art)).mean() > 1
    with pytest.raises(UserError, match="norm stats"):
        Colorizer(model, norm_stats="dropout")


def test_cue_strokes_colour_their_region(trained_run):
    # The model alone (no region step): a blank page is one region.
    model = Colorizer(load_model(trained_run), regions="off")
    art = np.full((64, 64, 1), 255, np.uint8)
    strokes = np.zeros((64, 64, 4), np.uint8)
    strokes[:, :32] = (220, 30, 30, 255)
    out = model(art, strokes).astype(int)
    left, right = out[:, 4:28].mean(axis=(0, 1)), out[:, 36:60].mean(axis=(0, 1))
    assert left[0] - left[2] > right[0] - right[2] + 20


def closed_shapes(size: int = 96) -> np.ndarray:
    """Line art of three closed shapes (a square, a disc, a triangle) with a gap-free outline."""
    art = np.full((size, size), 255, np.uint8)
    cv2.rectangle(art, (8, 8), (40, 40), 0, 2)
    cv2.circle(art, (68, 24), 16, 0, 2)
    cv2.polylines(art, [np.array([[10, 88], [44, 88], [27, 56]], np.int32)], True, 0, 2)
    return art


@pytest.mark.parametrize("mode", ["flat", "shift"])
def test_stroked_regions_take_the_stroke_colour_and_it_stays_inside_the_lines(
    trained_run, mode
):
    colorizer = Colorizer(load_model(trained_run), regions=mode)
    art = closed_shapes()
    strokes = np.zeros((96, 96, 4), np.uint8)
    cv2.line(strokes, (18, 24), (30, 24), (30, 60, 220, 255), 3)  # inside the square
    out = colorizer(art[:, :, None], strokes).astype(int)
    plain = Colorizer(load_model(trained_run), regions="off")(art[:, :, None], strokes).astype(int)
    inside = out[14:36, 14:36].reshape(-1, 3)
    labels, _ = line_regions(art)
    disc = labels == labels[24, 68]  # the disc next to the square: no stroke there
    if mode == "flat":
        # One colour for the whole square: the stroke's.
        assert np.abs(inside - (30, 60, 220)).max() <= 1
    else:
        # The model's shading kept, its median moved to the stroke's colour.
        assert np.abs(np.median(inside, axis=0) - (30, 60, 220)).max() <= 4
    # The disc next to it keeps the model's own colour (its median), not the stroke's.
    np.testing.assert_allclose(np.median(out[disc], axis=0), np.median(plain[disc], axis=0),
                               atol=1)
    # Lines stay exactly as drawn.
    assert (out[art == 0] == 0).all()


def test_auto_regions_are_flat_with_strokes_and_off_with_a_full_layer(trained_run):
    model = load_model(trained_run)
    auto, flat, off = (Colorizer(model, regions=m) for m in ("auto", "flat", "off"))
    art = closed_shapes()[:, :, None]
    layer = np.full((96, 96, 3), (200, 120, 40), np.uint8)
    np.testing.assert_array_equal(auto(art, layer), off(art, layer))
    np.testing.assert_array_equal(auto(art), flat(art))
    with pytest.raises(UserError, match="regions"):
        Colorizer(model, regions="watershed")


def test_grey_line_input_keeps_grey_lines_grey():
    from manga_pix2pix.inference.colorize import grey_sketch, model_sketch

    art = np.full((64, 64, 3), 250, np.uint8)
    cv2.line(art, (0, 20), (63, 20), (40, 40, 40), 2)
    cv2.line(art, (0, 44), (63, 44), (150, 150, 150), 2)  # a light pencil line
    grey = grey_sketch(tf.constant(art), 64, 64).numpy()[..., 0]
    binary = model_sketch(tf.constant(art), 64, 64).numpy()[..., 0]
    assert grey[5, 5] == 255 and grey[20, 30] < 10  # paper white, ink black
    assert 60 < grey[44, 30] < 200  # the pencil line stays grey
    assert set(np.unique(binary)) <= {0, 255}


def test_a_cue_free_model_refuses_cues(cue_free_keras):
    colorizer = Colorizer(load_model(cue_free_keras))
    art = line_art(40, 40)[:, :, None]
    assert colorizer(art).shape == (40, 40, 3)
    with pytest.raises(UserError, match="trained without cues"):
        colorizer(art, np.zeros((40, 40, 3), np.uint8))


def test_a_generator_without_cue_mask_input_runs(tmp_path):
    generator, _ = build_models(ModelConfig(image_size=32, base_filters=8, use_cue_mask=False))
    generator.save(tmp_path / "g.keras")
    model = load_model(tmp_path / "g.keras")
    assert not model.use_cue_mask and model.input_channels == 4
    out = Colorizer(model)(line_art(45, 33)[:, :, None], _cue_image("rgba_strokes"))
    assert out.shape == (45, 33, 3)


def test_a_larger_work_size_still_gives_the_input_size(tiny_run):
    model = load_model(tiny_run)
    art = line_art(100, 150)[:, :, None]
    default, larger = Colorizer(model)(art), Colorizer(model, work_size=64)(art)
    assert larger.shape == default.shape == (100, 150, 3)
    assert not np.array_equal(default, larger)
    with pytest.raises(UserError, match="work-size"):
        Colorizer(model, work_size=4)


def test_every_channel_layout_is_understood():
    gray = np.array([[[10], [200]]], np.uint8)
    gray_alpha = np.array([[[10, 255], [10, 0]]], np.uint8)
    rgba = np.array([[[10, 20, 30, 255], [10, 20, 30, 0]]], np.uint8)
    np.testing.assert_array_equal(to_rgb_on_white(gray).numpy(), [[[10] * 3, [200] * 3]])
    np.testing.assert_array_equal(to_rgb_on_white(gray_alpha).numpy(), [[[10] * 3, [255] * 3]])
    np.testing.assert_array_equal(to_rgb_on_white(rgba).numpy(), [[[10, 20, 30], [255] * 3]])
    np.testing.assert_array_equal(to_rgba(gray_alpha).numpy(), [[[10, 10, 10, 255],
                                                                 [10, 10, 10, 0]]])
    np.testing.assert_array_equal(to_rgba(gray).numpy()[..., 3], [[255, 255]])
    np.testing.assert_array_equal(to_rgba(rgba).numpy(), rgba)


def _scanned(art: np.ndarray, seed: int = 0) -> np.ndarray:
    """Line art as a scanner sees it: cream paper, light falling off to one side, noise."""
    height, width = art.shape
    light = 0.8 + 0.2 * np.linspace(0.0, 1.0, width)[None, :, None]
    cream = np.array([235.0, 225.0, 200.0])
    noise = np.random.default_rng(seed).normal(0.0, 3.0, (height, width, 3))
    return np.clip(art[..., None] / 255.0 * cream * light + noise, 0, 255).astype(np.uint8)


def _line_share(gray: np.ndarray) -> float:
    """The share of pixels colorize's regions would call lines (below 90 % of the paper)."""
    return float(np.mean(gray < 0.9 * np.percentile(gray, 95)))


def test_even_paper_leaves_digital_line_art_and_transparency_as_they_are():
    art = line_art(120, 90, seed=3)
    assert even_paper(art[..., None]) is not None
    np.testing.assert_array_equal(even_paper(art[..., None]), art[..., None])
    rgb = np.repeat(art[..., None], 3, axis=2)
    np.testing.assert_array_equal(even_paper(rgb), rgb)
    # Line art on a transparent layer: its paper is the white it is put on.
    rgba = np.dstack([np.zeros_like(rgb), 255 - art])
    np.testing.assert_array_equal(even_paper(rgba), rgba)


def test_even_paper_makes_a_scans_paper_white_and_keeps_its_lines_and_fills():
    art = line_art(240, 320, seed=4)
    cv2.rectangle(art, (20, 20), (140, 120), 0, -1)  # a solid fill wider than the window
    scan = _scanned(art)
    flat = even_paper(scan)
    gray, clean = cv2.cvtColor(flat, cv2.COLOR_RGB2GRAY), art
    paper = clean == 255
    assert np.percentile(gray[paper], 5) >= 235  # the whole page is white, dim side included
    means = flat[paper].astype(float).mean(axis=0)
    assert means.max() - means.min() <= 3  # grey, not cream (colorize levels it to white)
    assert gray[30:110, 30:130].mean() <= 40  # the fill stays black
    lines = clean < 100
    assert gray[lines].mean() <= gray[paper].mean() - 120
    # What colorize's regions step sees: the lines of the drawing, not the dim half of the page.
    raw = cv2.cvtColor(scan, cv2.COLOR_RGB2GRAY)
    assert _line_share(raw) > 1.5 * _line_share(clean)
    assert abs(_line_share(gray) - _line_share(clean)) <= 0.2 * _line_share(clean)


def test_a_scan_is_coloured_like_the_drawing_it_is(colorizer):
    art = line_art(96, 128, seed=5)
    clean = colorizer(np.repeat(art[..., None], 3, axis=2), background="paper")
    scan = colorizer(_scanned(art, seed=1), background="paper")
    assert clean.shape == scan.shape == (96, 128, 3)
    # The paper of both comes out white; without even_paper the dim side is not paper.
    border = np.ones(art.shape, bool)
    border[4:-4, 4:-4] = False
    assert scan[border].mean() >= 245 and clean[border].mean() >= 245
