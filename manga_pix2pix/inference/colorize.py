"""Colouring real sketches of any size, with or without a cue layer.

The model was trained on square images of `image_size` pixels whose sketch is the binary
adaptive threshold of the colour image (`manga_pix2pix.data.sketch.sketch`) and whose cues are
the colour image blurred (`gaussian_blur`, sigma 20 px per 256 px), kept where a cue mask is 1.
A real sketch is brought as close to that as possible, coloured, and the result is brought back
to the sketch's own size with its own lines on top:

1. **Line art.** The sketch (gray, RGB, RGBA composited on white, any size) is turned to gray.
   Before that, `Colorizer` makes a scan's paper white and even (`even_paper`).
2. **Work scale.** Colours are computed at the scale the model was trained at: the sketch is
   resized so that its short side is `work_size` pixels (default: the model's `image_size`;
   the long side is capped at `MAX_ASPECT` times that), then padded with white paper to the next
   multiple of `image_size` on each side. The U-Net is fully convolutional and runs on any
   multiple of `2**depth = image_size`, so any aspect ratio is one pass, with no tiles and no
   seams. A larger `work_size` gives the model more pixels per detail (useful for a page with
   many small figures) at a cost that grows with its square, and shows the model line art
   at a scale it was not trained on.
3. **Sketch op** (`line_input`). With `adaptive`, at the work scale the gray line art is
   normalised exactly like the paper's training sketch: the same adaptive threshold (OpenCV's,
   block 7, C 2), so a grey, anti-aliased or scanned drawing becomes the binary 0/255 sketch
   such a model knows. With `grey` (what the trainer records: it scores better on real line
   art, whatever the training sketches), it is levelled instead and keeps its grey lines
   (`grey_sketch`).
4. **Cues.** An opaque cue image (no alpha, or alpha 255 everywhere) is a full cue layer: it is
   resized to the work scale and blurred with the training blur, so a flat-painted colour
   layer looks like the training cues; a layer that is already about as smooth is not blurred
   a second time (`blur_unless_smooth`). An image with transparency gives strokes: the cue
   mask is alpha > 0 and the strokes' colours are used as painted (resized with premultiplied
   alpha so that the colour of transparent pixels never leaks in). Cues are stretched to the
   sketch if their size differs. Values are those of training: cues in [-1, 1] and 0 where the
   mask is 0; no cues means cues and mask all 0. Padding carries no cues.
5. **Colour.** The generator runs without dropout and, by default, with batch norm's moving
   statistics (`training=False`); `norm_stats="image"` uses each sketch's own statistics
   instead (see `manga_pix2pix.inference.loading` for when that is better). Either way the
   result is deterministic.
6. **Crisp lines.** Where the work-scale sketch has lines, the model's own (soft, low
   resolution) line pixels are replaced by the colour of the paper around them; the colour is
   resized to the sketch's size and the sketch's own full-resolution line art is multiplied
   on top. The line art is first levelled so that its paper is white (the 95th percentile of
   its gray levels, at least 128, maps to 255): a scan on grey paper does not darken the
   colours. Lines stay exactly as drawn: where the sketch is black, the output is black.
   With a full cue layer, the colours' coarse part is first taken from the layer
   (`follow_layer`): the layer gives the colours, the generator the detail.

7. **Regions** (`Colorizer(regions=...)`, after the graph). The result is coloured region by
   region of the line art, stroked regions taking their stroke's colour
   (`manga_pix2pix.inference.regions`); NumPy and OpenCV, so not part of an export.

Everything above but step 7 is TensorFlow ops on dynamic shapes, so the same function runs
eagerly, in a `tf.function` and inside the exported SavedModel.

Value ranges: sketch and cue images are uint8 `[H, W, C]` with C = 1 (gray), 2 (gray + alpha),
3 (RGB) or 4 (RGBA); the result is uint8 RGB `[H, W, 3]` at the sketch's size.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf

from manga_pix2pix.config import MAX_WORK_SIZE
from manga_pix2pix.data.cues import apply_mask, cue_sigma, gaussian_blur
from manga_pix2pix.data.sketch import sketch as sketch_op
from manga_pix2pix.data.sketch import to_gray
from manga_pix2pix.errors import UserError
from manga_pix2pix.imageio import (
    IMAGE_SUFFIXES,
    WRITE_SUFFIXES,
    check_output_folder,
    list_images,
    read_image,
    write_image,
)
from manga_pix2pix.inference.loading import LoadedModel, load_model
from manga_pix2pix.inference.regions import BACKGROUNDS, REGION_MODES, colour_regions

log = logging.getLogger(__name__)

#: The work canvas's long side is at most this many times the work size (a 1 x 10 strip is
#: coloured whole; a thinner one at a reduced scale), which bounds time and memory.
MAX_ASPECT = 16
#: The gray level percentile taken as the sketch's paper colour.
PAPER_PERCENTILE = 0.95
#: How line art is shown to the model: `adaptive` (the paper's sketch op at the work scale)
#: or `grey` (levelled grey lines, as drawn: see `grey_sketch`).
LINE_INPUTS = ("adaptive", "grey")
#: The gray level percentile of the work-scale line art taken as its darkest line.
INK_PERCENTILE = 0.005
#: A full cue layer counts as already blurred when a further blur by the training sigma keeps
#: this share of its gradient energy (see `blur_unless_smooth`); it is then not blurred again.
SMOOTH_RATIO = 0.25
#: The blur applied before that measurement, as a share of the training sigma (2 px at 256 px).
PREBLUR = 0.1
#: How colorize keeps colours inside the line art's regions by default (measured on real
#: line-art pairs, see docs/results.md).
DEFAULT_REGIONS = "auto"
#: What the unstroked regions touching the border become by default (see
#: `regions.BACKGROUNDS`; measured on real line-art pairs, see docs/results.md).
DEFAULT_BACKGROUND = "auto"


@dataclass(frozen=True)
class ColorizeSettings:
    """What the colorize graph needs to know about the model and the work scale.

    Attributes:
        image_size: the model's training size (the U-Net needs multiples of it).
        use_cue_mask: whether the generator takes the cue mask channel.
        cue_sigma: the training cue blur sigma at `image_size`, or None for the default.
        work_size: the short side, in pixels, at which colours are computed (None: image_size).
        line_input: how line art is shown to the model (`LINE_INPUTS`): `adaptive`, the
            paper's adaptive threshold, or `grey`, the line art levelled as drawn.
    """

    image_size: int
    use_cue_mask: bool
    cue_sigma: float | None = None
    work_size: int | None = None
    line_input: str = "adaptive"

    def __post_init__(self):
        if self.line_input not in LINE_INPUTS:
            raise ValueError(
                f"line_input: must be one of {LINE_INPUTS}, got {self.line_input!r}"
            )

    @property
    def work(self) -> int:
        """The work size in pixels."""
        return self.work_size or self.image_size


def _as_float(image: tf.Tensor) -> tf.Tensor:
    return tf.cast(image, tf.float32) / 255.0


def _split_alpha(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """uint8 gray, gray + alpha, RGB or RGBA `[H, W, C]` -> (RGB, alpha), both uint8."""
    image = tf.convert_to_tensor(image)
    channels = tf.shape(image)[-1]
    opaque = tf.fill(tf.concat([tf.shape(image)[:2], [1]], 0), tf.constant(255, tf.uint8))

    def gray():
        return tf.tile(image[..., :1], [1, 1, 3])

    rgb = tf.cond(channels <= 2, gray, lambda: image[..., :3])
    alpha = tf.case(
        [(tf.equal(channels, 2), lambda: image[..., 1:2]),
         (tf.equal(channels, 4), lambda: image[..., 3:4])],
        default=lambda: opaque,
        exclusive=True,
    )
    return tf.ensure_shape(rgb, [None, None, 3]), tf.ensure_shape(alpha, [None, None, 1])


def to_rgb_on_white(image: tf.Tensor) -> tf.Tensor:
    """uint8 gray, gray + alpha, RGB or RGBA `[H, W, C]` -> uint8 RGB, composited on white.

    The composite is rounded like `manga_pix2pix.imageio.decode_image`'s.
    """
    image = tf.convert_to_tensor(image)

    def composite():
        rgb, alpha = _split_alpha(image)
        a = tf.cast(alpha, tf.float32) / 255.0
        return tf.cast(tf.round(tf.cast(rgb, tf.float32) * a + 255.0 * (1.0 - a)), tf.uint8)

    # No alpha channel: nothing to composite (the common case, and the cheap one).
    rgb = tf.case(
        [(tf.equal(tf.shape(image)[-1], 1), lambda: tf.tile(image[..., :1], [1, 1, 3])),
         (tf.equal(tf.shape(image)[-1], 3), lambda: image[..., :3])],
        default=composite,
    )
    return tf.ensure_shape(rgb, [None, None, 3])


def to_rgba(image: tf.Tensor) -> tf.Tensor:
    """uint8 gray, gray + alpha, RGB or RGBA `[H, W, C]` -> uint8 RGBA (opaque if no alpha)."""
    rgb, alpha = _split_alpha(image)
    return tf.concat([rgb, alpha], axis=-1)


def work_geometry(
    height: tf.Tensor, width: tf.Tensor, work_size: int, multiple: int
) -> tuple[tf.Tensor, ...]:
    """Where a `height x width` sketch goes on the work canvas.

    Returns:
        `(h, w, canvas_h, canvas_w, top, left)`: the resized sketch's size, the canvas size
        (multiples of `multiple`) and the offset of the sketch in it (centred), int32.
    """
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    scale = tf.minimum(
        work_size / tf.minimum(h, w), MAX_ASPECT * work_size / tf.maximum(h, w)
    )
    new_h = tf.maximum(1, tf.cast(tf.round(h * scale), tf.int32))
    new_w = tf.maximum(1, tf.cast(tf.round(w * scale), tf.int32))
    canvas_h = (new_h + multiple - 1) // multiple * multiple
    canvas_w = (new_w + multiple - 1) // multiple * multiple
    return new_h, new_w, canvas_h, canvas_w, (canvas_h - new_h) // 2, (canvas_w - new_w) // 2


def _resize(image: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    # Antialiasing matters when shrinking a large page: thin lines would alias away.
    return tf.image.resize(image, tf.stack([height, width]), method="bilinear", antialias=True)


def line_layer(rgb: tf.Tensor) -> tf.Tensor:
    """The sketch's own line art, levelled so that its paper is white: float `[H, W, 3]`."""
    gray = tf.reshape(to_gray(rgb), [-1])
    counts = tf.math.bincount(gray, minlength=256, maxlength=256, dtype=tf.int64)
    cdf = tf.cast(tf.cumsum(counts), tf.float64) / tf.cast(tf.size(gray), tf.float64)
    paper = tf.cast(tf.argmax(tf.cast(cdf >= PAPER_PERCENTILE, tf.int32)), tf.float32)
    paper = tf.clip_by_value(paper, 128.0, 255.0)
    return tf.clip_by_value(tf.cast(rgb, tf.float32) / paper, 0.0, 1.0)


def model_sketch(rgb: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """The training sketch of line art `rgb` at `height x width`: uint8 0/255 `[h, w, 1]`."""
    gray = tf.cast(to_gray(rgb), tf.float32)
    small = tf.cast(tf.round(tf.clip_by_value(_resize(gray, height, width), 0.0, 255.0)),
                    tf.uint8)
    return sketch_op(small)


def _percentile(gray_uint8: tf.Tensor, q: float) -> tf.Tensor:
    """The `q` quantile of a uint8 image's levels, as a float level in [0, 255]."""
    flat = tf.reshape(tf.cast(gray_uint8, tf.int32), [-1])
    counts = tf.math.bincount(flat, minlength=256, maxlength=256, dtype=tf.int64)
    cdf = tf.cast(tf.cumsum(counts), tf.float64) / tf.cast(tf.size(flat), tf.float64)
    return tf.cast(tf.argmax(tf.cast(cdf >= q, tf.int32)), tf.float32)


def grey_sketch(rgb: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Line art as grey lines at `height x width`: uint8 `[h, w, 1]`, paper 255, ink 0.

    The gray line art is resized (antialiased), then levelled: its paper (the 95th
    percentile, at least 128) maps to white and its darkest ink (the 0.5th percentile, at
    most 160) to black, so that thin lines thinned further by the resize stay as dark as the
    training sketches' lines, and anti-aliasing and pencil pressure stay as drawn.
    """
    gray = tf.cast(to_gray(rgb), tf.float32)
    small = tf.cast(tf.round(tf.clip_by_value(_resize(gray, height, width), 0.0, 255.0)),
                    tf.uint8)
    paper = tf.clip_by_value(_percentile(small, PAPER_PERCENTILE), 128.0, 255.0)
    ink = tf.minimum(_percentile(small, INK_PERCENTILE), tf.minimum(160.0, paper - 32.0))
    out = (tf.cast(small, tf.float32) - ink) / (paper - ink) * 255.0
    return tf.cast(tf.round(tf.clip_by_value(out, 0.0, 255.0)), tf.uint8)


def _gradient_energy(image: tf.Tensor) -> tf.Tensor:
    """Mean squared finite-difference gradient of a float `[H, W, C]` image."""
    dy = image[1:] - image[:-1]
    dx = image[:, 1:] - image[:, :-1]
    return tf.reduce_mean(tf.square(dy)) + tf.reduce_mean(tf.square(dx))


def blur_unless_smooth(layer: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
    """Blurs a float `[H, W, 3]` layer by `sigma`, unless it is already about that smooth.

    A flat-painted layer gets the training blur; a layer that is already blurred (a blurred
    colour image, another tool's soft export) is left as it is rather than blurred twice. The
    test: against the layer blurred lightly, by `PREBLUR * sigma` (which removes the uint8
    rounding and pixel noise), the layer blurred by `sigma` keeps at least `SMOOTH_RATIO` of
    the gradient energy only when the layer has little detail finer than `sigma` (measured on
    real colour images:
    0.002-0.03 for the images themselves, 0.02-0.11 blurred by a quarter of the training
    sigma, 0.36-0.58 blurred by it).
    """
    base = gaussian_blur(layer, PREBLUR * sigma)
    blurred = gaussian_blur(layer, sigma)
    ratio = _gradient_energy(blurred) / tf.maximum(_gradient_energy(base), 1e-12)
    return tf.cond(ratio >= SMOOTH_RATIO, lambda: layer, lambda: blurred)


def work_sigma(settings: ColorizeSettings, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """The training cue blur's sigma for a `height x width` work-scale image, in pixels."""
    if settings.cue_sigma is None:
        return cue_sigma(height, width)
    short = tf.cast(tf.minimum(height, width), tf.float32)
    return settings.cue_sigma * short / settings.image_size


def follow_layer(
    colour: tf.Tensor, layer: tf.Tensor, drawn: tf.Tensor, sigma: tf.Tensor
) -> tf.Tensor:
    """The generator's colours with their coarse part replaced by a full cue layer's.

    A full cue layer says what the colours are at the scale of the training blur; the
    generator adds what the layer cannot say, the detail. So the result keeps the generator's
    colours minus their blur by `sigma` (computed with the line art drawn in, as a colour
    image has it) and takes the layer's instead: `colour - blur(colour * drawn) + layer`.

    Args:
        colour: float `[H, W, 3]` in [0, 1], the generator's colours at the sketch's size.
        layer: float `[H, W, 3]` in [0, 1], the cue layer as the generator saw it, resized.
        drawn: float `[H, W, 3]` in [0, 1], the sketch's line art (`line_layer`).
        sigma: the training blur at the sketch's size, in pixels.
    """
    coarse = gaussian_blur(colour * drawn, sigma)
    return tf.clip_by_value(colour - coarse + layer, 0.0, 1.0)


def model_cues(
    cues: tf.Tensor, height: tf.Tensor, width: tf.Tensor, settings: ColorizeSettings
) -> tuple[tf.Tensor, tf.Tensor]:
    """A user's cue image as the model's cues at `height x width` (see the module docstring).

    Returns:
        `(cues, mask)`: float32 `[h, w, 3]` in [-1, 1] (0 outside the mask) and `[h, w, 1]` 0/1.
    """
    rgba = _as_float(to_rgba(cues))
    rgb, alpha = rgba[..., :3], rgba[..., 3:]
    opaque = tf.reduce_min(alpha) >= 1.0

    def full_layer():
        small = tf.clip_by_value(_resize(rgb, height, width), 0.0, 1.0)
        sigma = work_sigma(settings, height, width)
        return blur_unless_smooth(small, sigma), tf.ones(tf.stack([height, width, 1]))

    def strokes():
        weight = tf.clip_by_value(_resize(alpha, height, width), 0.0, 1.0)
        colour = _resize(rgb * alpha, height, width) / tf.maximum(weight, 1e-6)
        # alpha > 0, allowing for the resize's rounding: a faint 1-px stroke still counts.
        mask = tf.cast(weight > 0.5 / 255.0, tf.float32)
        return tf.clip_by_value(colour, 0.0, 1.0), mask

    colour, mask = tf.cond(opaque, full_layer, strokes)
    return apply_mask(colour * 2.0 - 1.0, mask), mask


def fill_lines(colour: tf.Tensor, lines: tf.Tensor, window: int = 7) -> tf.Tensor:
    """Replaces line pixels (and a 1-px rim) by the mean colour of the paper around them.

    Args:
        colour: float `[h, w, 3]`.
        lines: float `[h, w, 1]`, 1 on a line.
        window: side of the square the paper colour is averaged over.
    """
    lines = tf.nn.max_pool2d(lines[None], 3, 1, "SAME")[0]
    paper = 1.0 - lines
    total = tf.nn.avg_pool2d((colour * paper)[None], window, 1, "SAME")[0]
    weight = tf.nn.avg_pool2d(paper[None], window, 1, "SAME")[0]
    filled = total / tf.maximum(weight, 1e-6)
    return tf.where((lines > 0) & (weight > 1e-3), filled, colour)


def colorize_tensor(
    generate: Callable[[tf.Tensor], tf.Tensor],
    sketch: tf.Tensor,
    cues: tf.Tensor | None,
    settings: ColorizeSettings,
) -> tf.Tensor:
    """Colours one sketch of any size (see the module docstring for every step).

    Args:
        generate: the generator, float `[1, H', W', C]` -> `[1, H', W', 3]`, in [-1, 1].
        sketch: uint8 `[H, W, 1|2|3|4]` line art.
        cues: uint8 `[h, w, 1|2|3|4]` cue image, or None for no cues.
        settings: the model's size, its inputs and the work size.

    Returns:
        uint8 RGB `[H, W, 3]`.
    """
    rgb = to_rgb_on_white(sketch)
    shape = tf.shape(rgb)
    height, width = shape[0], shape[1]
    h, w, canvas_h, canvas_w, top, left = work_geometry(
        height, width, settings.work, settings.image_size
    )
    if settings.line_input == "grey":
        binary = grey_sketch(rgb, h, w)
    else:
        binary = model_sketch(rgb, h, w)
    if cues is None:
        cue_values = tf.zeros(tf.stack([h, w, 3]))
        mask = tf.zeros(tf.stack([h, w, 1]))
    else:
        cue_values, mask = model_cues(cues, h, w, settings)
    pad = [[top, canvas_h - h - top], [left, canvas_w - w - left], [0, 0]]
    parts = [
        tf.pad(tf.cast(binary, tf.float32) / 127.5 - 1.0, pad, constant_values=1.0),
        tf.pad(cue_values, pad),
    ]
    if settings.use_cue_mask:
        parts.append(tf.pad(mask, pad))
    out = generate(tf.concat(parts, axis=-1)[None])[0]
    colour = (tf.cast(out[top : top + h, left : left + w], tf.float32) + 1.0) / 2.0
    colour = fill_lines(colour, tf.cast(binary < 128, tf.float32))
    colour = tf.clip_by_value(_resize(colour, height, width), 0.0, 1.0)
    drawn = line_layer(rgb)
    if cues is not None:
        def follow():
            layer = tf.clip_by_value(_resize((cue_values + 1.0) / 2.0, height, width), 0.0, 1.0)
            scale = tf.cast(tf.minimum(height, width), tf.float32) / tf.cast(
                tf.minimum(h, w), tf.float32)
            return follow_layer(colour, layer, drawn, work_sigma(settings, h, w) * scale)

        colour = tf.cond(tf.reduce_min(mask) >= 1.0, follow, lambda: colour)
    result = colour * drawn
    return tf.cast(tf.round(result * 255.0), tf.uint8)


class Colorizer:
    """Colours uint8 sketches with a loaded model; one traced graph for all sizes.

    Args:
        model: from `load_model`.
        work_size: the short side at which colours are computed (default: the model's size).
        norm_stats: batch norm's statistics, `moving` or `image` (see `loading.NORM_STATS`).
        line_input: `adaptive` or `grey` (see `LINE_INPUTS`); None: what the model records
            (`LoadedModel.line_input`).
        regions: keep colours inside the line art's closed regions, and give stroked regions
            their stroke's colour: `off`, `shift`, `flat` or `auto` (see
            `manga_pix2pix.inference.regions`).
        background: `auto` (the default), `model` or `paper`: with regions on, what the
            unstroked regions that touch the image border become (see `regions.BACKGROUNDS`).
    """

    def __init__(
        self,
        model: LoadedModel,
        work_size: int | None = None,
        norm_stats: str = "moving",
        line_input: str | None = None,
        regions: str = DEFAULT_REGIONS,
        background: str = DEFAULT_BACKGROUND,
    ):
        if work_size is not None and not 8 <= work_size <= MAX_WORK_SIZE:
            raise UserError(f"--work-size: must be from 8 to {MAX_WORK_SIZE} pixels, "
                            f"got {work_size}")
        if regions not in REGION_MODES:
            raise UserError(f"--regions: must be one of {', '.join(REGION_MODES)}, "
                            f"got {regions!r}")
        _check_background(background, regions)
        self.model = model
        self.regions = regions
        self.background = background
        generate = model.generator(norm_stats)
        self.settings = ColorizeSettings(
            image_size=model.image_size,
            use_cue_mask=model.use_cue_mask,
            cue_sigma=model.cue_sigma,
            work_size=work_size,
            line_input=line_input or model.line_input,
        )
        image = tf.TensorSpec([None, None, None], tf.uint8)
        self._without_cues = tf.function(
            lambda s: colorize_tensor(generate, s, None, self.settings),
            input_signature=[image],
        )
        self._with_cues = tf.function(
            lambda s, c: colorize_tensor(generate, s, c, self.settings),
            input_signature=[image, image],
        )

    def __call__(
        self, sketch: np.ndarray, cues: np.ndarray | None = None, background: str | None = None
    ) -> np.ndarray:
        """Colours a uint8 sketch `[H, W, 1-4]` with optional cues; returns uint8 `[H, W, 3]`.

        `background` (`auto`, `model` or `paper`) overrides the one given at construction.

        Raises:
            UserError: cues given to a model trained without cues, or a bad `background`.
        """
        background = background or self.background
        _check_background(background, self.regions)
        sketch = even_paper(_check_image(sketch, "sketch"))
        if cues is None:
            return self._in_regions(self._without_cues(sketch).numpy(), sketch, None,
                                    background)
        if not self.model.uses_cues:
            raise UserError(
                f"{self.model.source}: this model was trained without cues (--no-cues); "
                "colour without --cues"
            )
        cues = _check_image(cues, "cues")
        return self._in_regions(self._with_cues(sketch, cues).numpy(), sketch, cues, background)

    def _in_regions(
        self, result: np.ndarray, sketch: np.ndarray, cues: np.ndarray | None, background: str
    ) -> np.ndarray:
        layer = cues is not None and not (cues.shape[2] in (2, 4) and cues[..., -1].min() < 255)
        mode = ("off" if layer else "flat") if self.regions == "auto" else self.regions
        if mode == "off":
            return result
        height, width = result.shape[:2]
        gray = _gray_on_white(sketch)
        strokes = stroke_mask = None
        if cues is not None and not layer:  # gray + alpha or RGBA
            rgba = cues if cues.shape[2] == 4 else cues[..., [0, 0, 0, 1]]
            if rgba.shape[:2] != (height, width):
                rgba = cv2.resize(rgba, (width, height), interpolation=cv2.INTER_NEAREST)
            strokes, stroke_mask = rgba[..., :3], rgba[..., 3] > 0
        if background == "auto":
            painted = layer or (stroke_mask is not None and bool(stroke_mask.any()))
            background = "model" if painted else "paper"
        return colour_regions(result, gray, strokes, stroke_mask, mode, background)


def _check_background(background: str, regions: str) -> None:
    if background not in BACKGROUNDS:
        raise UserError(f"--background: must be one of {', '.join(BACKGROUNDS)}, "
                        f"got {background!r}")
    if background == "paper" and regions == "off":
        raise UserError("--background paper: needs the line art's regions; "
                        "use --regions auto, flat or shift")


#: `even_paper`: the light over a page is estimated at this short side, with a max filter
#: (it drops the lines) of this share of it, then smoothed by a Gaussian as wide.
EVEN_PAPER_SIZE = 256
EVEN_PAPER_WINDOW = 1 / 8
#: A page whose paper is this even already is left exactly as it is: its estimated light
#: reaches this share of white over at least three quarters of the page, in every channel.
EVEN_PAPER_WHITE = 0.97
#: Where a solid fill wider than the window hides the paper, the light is taken as at least
#: this share of the page's paper level, so the fill stays dark.
EVEN_PAPER_FLOOR = 0.7


def even_paper(sketch: np.ndarray) -> np.ndarray:
    """Line art whose paper is made white and even: a scan's tinted paper and uneven light are
    divided out, as a scanner's "flatten background" does. uint8 `[H, W, 1|3]` in and out.

    The light is the sketch's per-channel maximum over a window an eighth of the short side
    wide (so it passes over the lines), smoothed; each pixel is divided by it. Digital line
    art on white comes back unchanged, byte for byte; so does line art with transparency
    (its paper is the white it is put on).
    """
    height, width, channels = sketch.shape
    if channels not in (1, 3) or min(height, width) < 16:
        return sketch
    scale = min(1.0, EVEN_PAPER_SIZE / min(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(sketch, size, interpolation=cv2.INTER_AREA)
    small = small.reshape(size[1], size[0], channels).astype(np.float32)
    side = max(3, int(min(small.shape[:2]) * EVEN_PAPER_WINDOW) | 1)
    light = cv2.dilate(small, np.ones((side, side), np.uint8))
    light = cv2.GaussianBlur(light, (0, 0), side / 2).reshape(small.shape)
    if all(np.percentile(light[..., c], 25) >= EVEN_PAPER_WHITE * 255 for c in range(channels)):
        return sketch
    paper = np.percentile(small.reshape(-1, channels), PAPER_PERCENTILE * 100, axis=0)
    light = np.maximum(light, EVEN_PAPER_FLOOR * np.maximum(paper, 128.0))
    # In uint8 at full size (a 64 M-pixel page would need 1.5 GB more as float32); the light
    # is at least 90 there, so its rounding moves a level by at most 0.6 %.
    light = np.round(light).astype(np.uint8)
    light = cv2.resize(light, (width, height), interpolation=cv2.INTER_LINEAR)
    flat = cv2.divide(sketch.reshape(height, width, channels),
                      light.reshape(height, width, channels), scale=255.0)
    return flat.reshape(height, width, channels)


def _gray_on_white(image: np.ndarray) -> np.ndarray:
    """uint8 `[H, W, 1-4]` -> uint8 gray `[H, W]`, composited on white as `to_rgb_on_white`."""
    channels = image.shape[2]
    if channels in (2, 4):
        alpha = image[..., -1:].astype(np.float32) / 255.0
        image = np.round(image[..., :-1] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    if image.shape[2] == 1:
        return image[..., 0]
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"{name}: expected uint8 [H, W, 1-4], got {image.dtype} {image.shape}")
    return image


@dataclass(frozen=True)
class Job:
    """One sketch to colour: where it is, its cue file (or None) and where the result goes."""

    sketch: Path
    cues: Path | None
    output: Path


@dataclass
class Report:
    """What `colorize_paths` did: the files written and the sketches that failed (with why)."""

    written: list[Path]
    failed: list[tuple[Path, str]]


def _find_cue_file(folder: Path, stem: str) -> Path | None:
    matches = [p for p in list_images(folder) if p.stem == stem]
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches)
        raise UserError(f"{folder}: several cue files for {stem!r} ({names}); keep one")
    return matches[0] if matches else None


def _expand_sketches(sketches: Sequence[str | os.PathLike]) -> tuple[list[Path], bool]:
    """The sketch files to colour, and whether the output must be a folder."""
    files: list[Path] = []
    many = len(sketches) > 1
    for item in sketches:
        path = Path(item)
        if path.is_dir():
            many = True
            found = list_images(path)
            if not found:
                raise UserError(f"{path}: no image files in this folder "
                                f"({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise UserError(f"{path}: no such file or folder")
    return files, many


def _make_output_folder(output: Path) -> None:
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{output}: cannot create the output folder ({err.strerror})") from None


def plan_jobs(
    sketches: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    cues: str | os.PathLike | None = None,
) -> list[Job]:
    """Pairs sketches with cue files and output paths, checking everything it can up front.

    One sketch and an output that is not an existing folder: the output is that file. Several
    sketches or a sketch folder: the output is a folder (created by `colorize_paths` if needed)
    and each result is `<sketch name>.png` in it. Nothing is created here. A cue file goes with
    a single sketch; a cue folder pairs by file name (`page1.png` with `page1.png`,
    `page1.jpg`, ...; a sketch without one gets no cues).

    Raises:
        UserError: a missing input, an output that cannot be written, ambiguous pairings, or an
            output that would overwrite an input.
    """
    files, many = _expand_sketches(sketches)
    output = Path(output)
    cue_path = None if cues is None else Path(cues)
    if cue_path is not None and not cue_path.exists():
        raise UserError(f"{cue_path}: no such cue file or folder")
    if many and cue_path is not None and not cue_path.is_dir():
        raise UserError(f"{cue_path}: several sketches need a folder of cue files (paired by "
                        "file name), not one cue file")
    as_folder = many or output.is_dir() or str(output).endswith(("/", os.sep))
    jobs = []
    if as_folder:
        check_output_folder(output)
        targets = [output / f"{f.stem}.png" for f in files]
    else:
        if output.suffix.lower() not in WRITE_SUFFIXES:
            raise UserError(f"{output}: unknown image format {output.suffix or '(no suffix)'}; "
                            f"use one of {', '.join(WRITE_SUFFIXES)}")
        parent = output.parent
        if not parent.is_dir():
            raise UserError(f"{output}: the folder {parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UserError(f"{output}: the folder {parent} is not writable")
        targets = [output]
    seen: dict[Path, Path] = {}
    inputs = {f.resolve() for f in files}
    for sketch, target in zip(files, targets, strict=False):
        if target.resolve() in inputs:
            raise UserError(f"{target}: would overwrite an input sketch; choose another output")
        if target in seen:
            raise UserError(f"{seen[target]} and {sketch} would both be written to {target}")
        seen[target] = sketch
        if cue_path is None:
            cue = None
        elif cue_path.is_dir():
            cue = _find_cue_file(cue_path, sketch.stem)
            if cue is None:
                log.warning("%s: no cue file named %s.* in %s; colouring without cues",
                            sketch, sketch.stem, cue_path)
        else:
            cue = cue_path
        if cue is not None and cue.resolve() == target.resolve():
            raise UserError(f"{target}: would overwrite a cue file; choose another output")
        jobs.append(Job(sketch, cue, target))
    return jobs


def colorize_file(colorizer: Colorizer, job: Job) -> np.ndarray:
    """Reads a job's sketch (and cues), colours it and writes the result atomically."""
    sketch = read_image(job.sketch)
    cues = None if job.cues is None else read_image(job.cues, keep_alpha=True)
    if cues is not None:
        ratio = (sketch.shape[1] / sketch.shape[0]) / (cues.shape[1] / cues.shape[0])
        if abs(ratio - 1.0) > 0.02:
            log.warning("%s: its shape differs from %s's; the cues are stretched to fit",
                        job.cues, job.sketch)
    result = colorizer(sketch, cues)
    write_image(job.output, result)
    return result


def colorize_paths(
    sketches: Sequence[str | os.PathLike],
    model: str | os.PathLike,
    output: str | os.PathLike,
    *,
    cues: str | os.PathLike | None = None,
    work_size: int | None = None,
    norm_stats: str = "moving",
    line_input: str | None = None,
    regions: str = DEFAULT_REGIONS,
    background: str = DEFAULT_BACKGROUND,
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Colours sketch files (or folders of them) and writes the results; see `plan_jobs`.

    With one sketch, any problem raises. With several, a sketch that cannot be read is
    reported in the `Report` and the others are still coloured. `progress(done, total)` is
    called after each sketch.

    Raises:
        UserError: a bad model, bad paths or cues given to a model trained without cues.
    """
    jobs = plan_jobs(sketches, output, cues)
    loaded = load_model(model)
    if cues is not None and not loaded.uses_cues:
        raise UserError(f"{model}: this model was trained without cues (--no-cues); "
                        "drop --cues")
    colorizer = Colorizer(
        loaded, work_size=work_size, norm_stats=norm_stats, line_input=line_input,
        regions=regions, background=background,
    )
    # Only now, with inputs, model and settings checked, is anything created.
    for folder in sorted({job.output.parent for job in jobs}):
        _make_output_folder(folder)
    report = Report(written=[], failed=[])
    for done, job in enumerate(jobs, start=1):
        try:
            colorize_file(colorizer, job)
        except UserError as err:
            if len(jobs) == 1:
                raise
            report.failed.append((job.sketch, str(err)))
        else:
            report.written.append(job.output)
        if progress is not None:
            progress(done, len(jobs))
    return report
