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
2. **Strokes of different colours in one region** split it (`split_between_strokes`): where
   an outline has a gap too wide to close, the figure and the page around it are one region,
   and a stroke on the figure would colour the whole page. A second stroke of another colour
   on the other side (the paper's white, say) splits the region where its paper is narrowest,
   at the gap, as a paint program's "close gaps" bucket or a lazy-brush tool would. Strokes
   whose colours are within `SAME_COLOUR_DE` of each other are one colour and split nothing.
3. **Targets.** A region that holds at least `MIN_STROKE_PIXELS` pixels of a cue stroke takes
   the median colour of the stroke pixels in it (the artist said what colour it is); any other
   region keeps the generator's colour for it, its median, unless `background="paper"`: then
   an unstroked region that touches the image border is left as paper (white).
4. **Colour.** `mode="shift"` moves each region's colours by (target - the generator's median
   for the region), so the shading the generator drew inside it stays, and lines and tiny
   components are not changed. `mode="flat"` paints each region its target colour, and every
   other pixel (lines, their anti-aliased edges, specks) the nearest region's colour times
   the line art's level there, as a line layer multiplied over flat colours would: dark
   lines stay dark, and the generator's colours no longer show as a halo along them.

It runs on NumPy arrays with OpenCV (connected components have no TensorFlow op), so it is
part of `Colorizer` and the commands built on it, not of the exported SavedModel graph.
"""

from __future__ import annotations

import math

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
#: Stroke colours closer than this (CIE76 dE) are one colour: a region is split only between
#: strokes of different colours.
SAME_COLOUR_DE = 10.0
#: `split_between_strokes` floods every pixel of depth (distance to the lines) up to this...
FINE_LEVELS = 16
#: ... and in steps of this ratio above it (a wide region needs no finer steps).
COARSE_LEVEL_RATIO = 0.85
#: The longest side at which a region is flooded (larger ones are flooded smaller)...
SPLIT_SIDE = 1024
#: ... and how many cells' width the pixels that the smaller flood leaves out are grown into.
GROW_CELLS = 4
#: The most stroke colours a region is split between (more leave it one median colour).
MAX_GROUPS = 255


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


def lab(colours: np.ndarray) -> np.ndarray:
    """uint8 RGB colours `[..., 3]` -> CIE L*a*b* (L* in 0-100), float32 `[..., 3]`."""
    colours = np.asarray(colours, np.float32) / 255.0
    flat = colours.reshape(-1, 1, 3)
    return cv2.cvtColor(flat, cv2.COLOR_RGB2Lab).reshape(colours.shape)


def _colour_groups(colours: np.ndarray) -> np.ndarray:
    """Groups colours `[N, 3]`: each joins the first group whose first colour is within
    `SAME_COLOUR_DE` of it, in order. Returns int32 `[N]`, the groups numbered from 1."""
    heads: list[np.ndarray] = []
    groups = np.zeros(len(colours), np.int32)
    for i, colour in enumerate(lab(colours)):
        near = [g for g, head in enumerate(heads)
                if np.linalg.norm(colour - head) < SAME_COLOUR_DE]
        if not near:
            heads.append(colour)
            near = [len(heads) - 1]
        groups[i] = near[0] + 1
    return groups


def _flood_levels(deepest: float) -> list[float]:
    """Depths at which `split_between_strokes` floods, deepest first: geometric steps down
    to `FINE_LEVELS` pixels, then every pixel down to 0 (the narrowest passage decides)."""
    levels = list(range(FINE_LEVELS, -1, -1))
    level = deepest
    coarse = []
    while level > FINE_LEVELS:
        coarse.append(level)
        level *= COARSE_LEVEL_RATIO
    return coarse + levels


def _nearest_group(groups: np.ndarray, where: np.ndarray) -> np.ndarray:
    """For the pixels `where` (bool), the group (or region label) of the nearest pixel that
    has one (`groups` > 0), in raster order."""
    _, nearest = cv2.distanceTransformWithLabels(
        (groups == 0).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    # distanceTransformWithLabels numbers the zero pixels (those with a group) 1.. in raster
    # order.
    seeded = groups[groups > 0]
    by_pixel = np.zeros(seeded.size + 1, np.int32)
    by_pixel[1:] = seeded
    return by_pixel[nearest[where]]


def _grow(groups: np.ndarray, where: np.ndarray, steps: int) -> None:
    """Gives the pixels `where` (bool) the groups of their 4-neighbours, one pixel a step for
    up to `steps` steps (so that a group reaches only through `where`, never across a line),
    then whatever is still left the nearest pixel's group; in place. Groups are at most 255."""
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    where = where.copy()
    for _ in range(steps):
        grown = cv2.dilate(groups.astype(np.uint8), cross)
        taken = where & (grown > 0)
        groups[taken] = grown[taken]
        where &= ~taken
        if not where.any():
            return
    if where.any():
        groups[where] = _nearest_group(groups, where)


def _flood(region: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """`split_between_strokes` at the size it is given (`groups`: the markers in `region`)."""
    depth = cv2.distanceTransform(region.astype(np.uint8), cv2.DIST_L2, 5)
    stride = int(groups.max()) + 1
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    flat_groups = groups.ravel()
    previous = None
    for level in _flood_levels(float(depth.max())):
        seeded = groups > 0
        pending = region & (depth >= level) & ~seeded
        if not pending.any():
            continue
        inside = (pending | seeded).astype(np.uint8)
        count, parts = cv2.connectedComponents(inside, connectivity=4)
        # The groups next to each part's pending pixels are the ones it holds.
        edge = np.flatnonzero(seeded & (cv2.dilate(pending.astype(np.uint8), cross) > 0))
        keys = parts.ravel()[edge].astype(np.int64) * stride + flat_groups[edge]
        present = np.bincount(keys, minlength=count * stride).reshape(count, stride)[:, 1:] > 0
        held = present.sum(axis=1)
        only = np.where(held == 1, present.argmax(axis=1) + 1, 0).astype(np.int32)
        todo = np.flatnonzero(pending)
        part = parts.ravel()[todo]
        flat_groups[todo] = only[part]
        shared = todo[held[part] > 1]
        if shared.size:
            # Where two floods meet: the band of pixels new at this depth, shared out from
            # both sides (as wide as the step from the depth before).
            where = np.zeros(groups.shape, bool)
            where.ravel()[shared] = True
            _grow(groups, where, math.ceil(previous - level) + 1 if previous else 1)
        previous = level
    return groups


def split_between_strokes(region: np.ndarray, markers: np.ndarray) -> np.ndarray:
    """Splits one region between groups of strokes where its paper is narrowest.

    The region is flooded from the strokes in order of each pixel's distance to the region's
    edge (its lines), the widest paper first, as a marker-controlled watershed on that
    distance: the floods of two strokes meet where the paper between them is narrowest, which
    is the gap where an outline is left open. A part that no stroke's flood reached before it
    joined two of them is shared out by nearest flooded pixel.

    A region longer than `SPLIT_SIDE` pixels is flooded at a size that fits (each cell the
    paper only where all its pixels are: lines never get thinner); the pixels that the
    smaller flood leaves out (along the lines, thin parts) then take their neighbours' groups,
    grown inside the region.

    Args:
        region: bool `[H, W]`, one 4-connected region.
        markers: int32 `[H, W]`, 1..G under each group's stroke pixels (G at most
            `MAX_GROUPS`), 0 elsewhere.

    Returns:
        int32 `[H, W]`: the group each pixel of `region` is given (every pixel connected to a
        stroke gets one), 0 outside it.
    """
    if markers.size and not 0 <= markers.min() <= markers.max() <= MAX_GROUPS:
        raise ValueError(f"markers: groups must be 0..{MAX_GROUPS}, got "
                         f"{markers.min()}..{markers.max()}")
    groups = np.where(region, markers, 0).astype(np.int32)
    if not groups.any():
        return groups
    height, width = region.shape
    cell = -(-max(height, width) // SPLIT_SIDE)
    if cell == 1:
        return _flood(region, groups)
    block = np.ones((cell, cell), np.uint8)
    # Each cell's top-left pixel gets the minimum (paper) or maximum (group) over the cell.
    small_region = cv2.erode(region.astype(np.uint8), block, anchor=(0, 0))[::cell, ::cell]
    small_groups = cv2.dilate(groups.astype(np.uint8), block, anchor=(0, 0))[::cell, ::cell]
    small_region = small_region > 0
    small = _flood(small_region, np.where(small_region, small_groups, 0).astype(np.int32))
    big = np.repeat(np.repeat(small, cell, axis=0), cell, axis=1)[:height, :width]
    groups = np.where(region & (groups == 0), big, groups)
    # The pixels left out (along the lines, in thin parts) grow from their neighbours inside
    # the region for a few cells' width.
    missing = region & (groups == 0)
    if missing.any():
        _grow(groups, missing, GROW_CELLS * cell)
    return groups


def split_stroked_regions(
    labels: np.ndarray, count: int, strokes: np.ndarray, stroke_mask: np.ndarray
) -> tuple[np.ndarray, int]:
    """Each region that holds strokes of different colours split between them.

    A stroke is a 4-connected part of `stroke_mask` inside a region, of at least
    `MIN_STROKE_PIXELS` pixels; its colour is its median. Strokes of one region whose colours
    are within `SAME_COLOUR_DE` of each other are one group; with two groups or more the region
    is split by `split_between_strokes`, the first group keeping its label.

    Returns:
        `(labels, count)` as `line_regions` gives them, with a new label per extra group.
    """
    inside = (stroke_mask & (labels > 0)).astype(np.uint8)
    parts, marks, stats, _ = cv2.connectedComponentsWithStats(inside, connectivity=4,
                                                               ltype=cv2.CV_32S)
    big = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= MIN_STROKE_PIXELS)
    big = big[big > 0]
    if big.size < 2:
        return labels, count
    # Every pixel of a stroke part lies in one region (both are 4-connected, lines are not),
    # so the mean of its labels is that region's.
    sums = np.bincount(marks.ravel(), weights=labels.ravel(), minlength=parts)
    region_of = np.round(sums[big] / stats[big, cv2.CC_STAT_AREA]).astype(np.int64)
    colours = _region_medians(strokes, marks, parts)[big]
    labels = labels.copy()
    for region in np.unique(region_of):
        mine = region_of == region
        groups = _colour_groups(colours[mine])
        if not 2 <= groups.max() <= MAX_GROUPS:
            continue
        rows, cols = np.nonzero(labels == region)
        box = np.s_[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        lookup = np.zeros(parts, np.int32)
        lookup[big[mine]] = groups
        split = split_between_strokes(labels[box] == region, lookup[marks[box]])
        for group in range(2, int(groups.max()) + 1):
            labels[box][split == group] = count
            count += 1
    return labels, count


def _lines_over(
    table: np.ndarray, labels: np.ndarray, gray: np.ndarray, paper: float
) -> np.ndarray:
    """Each region its colour in `table`; every other pixel (lines, specks) the nearest
    region's colour times the line art's level there (gray / `paper`), as a multiplied line
    layer would."""
    lines = labels == 0
    out = np.take(table, labels, axis=0)  # 3x faster than table[labels]
    level = np.clip(gray[lines].astype(np.float32) / paper, 0.0, 1.0)
    colour = np.take(table, _nearest_group(labels, lines), axis=0)
    out[lines] = np.round(colour * level[:, None]).astype(np.uint8)
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
    if strokes is not None and stroke_mask is not None and stroke_mask.any():
        labels, count = split_stroked_regions(labels, count, strokes, stroke_mask)
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
