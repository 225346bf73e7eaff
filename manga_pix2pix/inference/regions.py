"""Closed regions of line art, and colours kept inside them.

An artist's line art closes regions (a sleeve, an eye, the sky between two branches); a colour
that crosses a closed line is the most visible failure of a learned colouriser, and a stroke
whose colour only tints its region is the second. This step, after the generator, makes the
colouring respect the regions at the sketch's full resolution:

1. **Regions.** The line art's gray is levelled as in colorize (its paper is white); pixels
   darker than `LINE_LEVEL` of the paper are lines. Lines are thickened by `close_gaps`
   pixels so that small gaps in a hand-drawn outline still close it; the paper's 4-connected
   components are the regions. Components smaller than `min_area` of the image (hatching,
   specks) are left as they are.
2. **Targets.** A region that holds at least `MIN_STROKE_PIXELS` pixels of a cue stroke takes
   the median colour of the stroke pixels in it (the artist said what colour it is); any other
   region keeps the generator's colour for it, its median, unless `background="paper"`: then
   an unstroked region that touches the image border is left as paper (white).
3. **Colour.** `mode="shift"` moves each region's colours by (target - the generator's median
   for the region), so the shading the generator drew inside it stays, and lines and tiny
   components are not changed. `mode="flat"` paints each region its target colour, and every
   other pixel (lines, their anti-aliased edges, specks) the nearest region's colour times
   the line art's level there, as a line layer multiplied over flat colours would: dark
   lines stay dark, and the generator's colours no longer show as a halo along them.

It runs on NumPy arrays with OpenCV (connected components have no TensorFlow op), so it is
part of `Colorizer` and the commands built on it, not of the exported SavedModel graph.
"""

from __future__ import annotations

import cv2
import numpy as np

#: How regions are coloured: `off`, `shift` (keep shading), `flat`, or `auto` (`flat` with
#: strokes or no cues, `off` with a full cue layer, which already gives every region's
#: colours and their gradients; measured on real line-art pairs, see docs/results.md).
REGION_MODES = ("off", "shift", "flat", "auto")
#: What the regions touching the image border become when no stroke is in them: the model's
#: colours (`model`), the line art's paper (`paper`: white, as a page left uncoloured around
#: a figure), or `auto` (which `Colorizer` resolves): `paper` when nothing is painted (no
#: cues, or a stroke layer with no stroke in it), `model` once anything is. With no colour
#: given the page stays white around the figure; once colour is given, the artists' own
#: colour versions mostly fill their backgrounds and the model's guess is nearer them than
#: white (measured on real line-art pairs, see docs/results.md).
BACKGROUNDS = ("auto", "model", "paper")
#: A pixel is a line where its gray is below this share of the paper's level.
LINE_LEVEL = 0.90
#: Stroke pixels a region needs before it takes the stroke's colour.
MIN_STROKE_PIXELS = 4


def paper_level(gray: np.ndarray) -> float:
    """The gray level of the line art's paper: the 95th percentile, at least 128."""
    return float(max(np.percentile(gray, 95), 128.0))


def line_regions(
    gray: np.ndarray, close_gaps: int | None = None, min_area: float = 2e-4,
    paper: float | None = None,
) -> tuple[np.ndarray, int]:
    """Labels the closed regions of line art.

    Args:
        gray: uint8 `[H, W]` line art (dark lines on light paper).
        close_gaps: pixels by which lines are thickened before the regions are found
            (None: 1 px per 512 px of the long side, at least 1).
        min_area: components smaller than this share of the image get label 0.
        paper: `paper_level(gray)`, when the caller has it already.

    Returns:
        `(labels, count)`: int32 `[H, W]`, 0 on lines and tiny components, 1..count-1 for
        regions; `count` is one more than the largest label.
    """
    if close_gaps is None:
        close_gaps = max(1, round(max(gray.shape) / 512))
    paper = paper_level(gray) if paper is None else paper
    lines = (gray.astype(np.float32) < LINE_LEVEL * paper).astype(np.uint8)
    if close_gaps > 0:
        size = 2 * close_gaps + 1
        lines = cv2.dilate(lines, np.ones((size, size), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        1 - lines, connectivity=4, ltype=cv2.CV_32S
    )
    small = stats[:, cv2.CC_STAT_AREA] < min_area * gray.size
    small[0] = True  # OpenCV's label 0 is the lines themselves
    keep = np.cumsum(~small).astype(np.int32) * (~small)
    return keep[labels], int(keep.max()) + 1


def _region_medians(values: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """Per-label, per-channel median of uint8 `values` `[H, W, C]`: float32 `[count, C]`.

    Equal to `np.median` per region (the mean of the two middle values for an even count),
    from one histogram per channel: 256 levels per label, so the cost is one pass over the
    pixels whatever the number of regions. Label 0 and empty labels get 0.
    """
    if values.dtype != np.uint8:
        raise ValueError(f"values: expected uint8, got {values.dtype}")
    flat = labels.ravel().astype(np.int64)
    sizes = np.bincount(flat, minlength=count)[:count]
    lower = (sizes - 1) // 2 + 1  # 1-based ranks of the two middle values
    upper = sizes // 2 + 1
    out = np.zeros((count, values.shape[-1]), np.float32)
    channels = values.reshape(-1, values.shape[-1])
    for c in range(values.shape[-1]):
        keys = flat * 256 + channels[:, c]
        cdf = np.cumsum(np.bincount(keys, minlength=count * 256)[: count * 256]
                        .reshape(count, 256), axis=1)
        low = np.argmax(cdf >= lower[:, None], axis=1)
        high = np.argmax(cdf >= upper[:, None], axis=1)
        out[:, c] = (low + high) / 2.0
    out[sizes == 0] = 0.0
    out[0] = 0.0
    return out


def _lines_over(
    table: np.ndarray, labels: np.ndarray, gray: np.ndarray, paper: float
) -> np.ndarray:
    """Each region its colour in `table`; every other pixel (lines, specks) the nearest
    region's colour times the line art's level there (gray / `paper`), as a multiplied line
    layer would."""
    lines = labels == 0
    _, nearest = cv2.distanceTransformWithLabels(
        lines.astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    # distanceTransformWithLabels numbers the zero pixels (the regions) 1.. in raster order.
    by_pixel = np.zeros(int(nearest.max()) + 1, np.int32)
    region_labels = labels[~lines]
    by_pixel[1:region_labels.size + 1] = region_labels
    out = np.take(table, labels, axis=0)  # 3x faster than table[labels]
    where = np.flatnonzero(lines)
    level = np.clip(gray.ravel()[where].astype(np.float32) / paper, 0.0, 1.0)
    colour = np.take(table, by_pixel[nearest.ravel()[where]], axis=0)
    out.reshape(-1, out.shape[-1])[where] = np.round(colour * level[:, None]).astype(np.uint8)
    return out


def colour_regions(
    result: np.ndarray,
    sketch_gray: np.ndarray,
    strokes: np.ndarray | None = None,
    stroke_mask: np.ndarray | None = None,
    mode: str = "shift",
    background: str = "model",
) -> np.ndarray:
    """Keeps colours inside the line art's closed regions (see the module docstring).

    Args:
        result: uint8 RGB `[H, W, 3]`, the colorize output.
        sketch_gray: uint8 `[H, W]`, the line art.
        strokes: uint8 RGB `[H, W, 3]` stroke colours (where `stroke_mask`), or None.
        stroke_mask: bool `[H, W]`, where a stroke was painted, or None.
        mode: one of `REGION_MODES` but `auto` (which `Colorizer` resolves).
        background: one of `BACKGROUNDS` but `auto`; with `paper`, each region that touches
            the border and holds no stroke is painted white (in `shift` mode too: paper has no
            shading).

    Returns:
        uint8 RGB `[H, W, 3]`.
    """
    if mode not in REGION_MODES or mode == "auto":
        raise ValueError(f"mode: must be one of {REGION_MODES}, got {mode!r}")
    if background not in BACKGROUNDS or background == "auto":
        raise ValueError(f"background: must be one of {BACKGROUNDS} but auto, "
                         f"got {background!r}")
    if mode == "off":
        return result
    paper_gray = paper_level(sketch_gray)
    labels, count = line_regions(sketch_gray, paper=paper_gray)
    if count <= 1:
        return result
    model_median = _region_medians(result, labels, count)
    target = model_median.copy()
    stroked = np.zeros(0, np.int64)
    if strokes is not None and stroke_mask is not None and stroke_mask.any():
        stroke_labels = np.where(stroke_mask, labels, 0)
        hits = np.bincount(stroke_labels.ravel(), minlength=count)
        stroked = np.flatnonzero(hits >= MIN_STROKE_PIXELS)
        stroked = stroked[stroked > 0]
        if stroked.size:
            stroke_median = _region_medians(strokes, stroke_labels, count)
            target[stroked] = stroke_median[stroked]
    paper = np.zeros(count, bool)
    if background == "paper":
        border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
        paper[np.unique(border)] = True
        paper[stroked] = False
        paper[0] = False
        target[paper] = 255.0
    inside = (labels > 0)[..., None]
    if mode == "flat":
        table = np.clip(np.round(target), 0, 255).astype(np.uint8)
        return _lines_over(table, labels, sketch_gray, paper_gray)
    shift = np.take(target - model_median, labels, axis=0)
    colour = np.where(inside, result.astype(np.float32) + shift, result)
    colour = np.where(np.take(paper, labels)[..., None], 255.0, colour)
    return np.clip(np.round(colour), 0, 255).astype(np.uint8)
