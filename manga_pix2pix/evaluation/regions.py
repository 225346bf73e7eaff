"""Closed regions of line art, short strokes placed inside them, and region colours.

What the real-line-art evaluation (`manga_pix2pix.evaluation.pairs`) needs to act like an
artist who drops a few colour strokes on a drawing, and to score colours region by region.
NumPy and OpenCV, on uint8 images at the size being evaluated:

- **Lines** (`line_mask`): the line art's gray levels are levelled so that its paper is white
  (the 95th percentile of the gray levels, at least 128, maps to 255, as `colorize` levels
  line art); every pixel darker than `LINE_THRESHOLD` is a line, so pencil lines as light as
  90 % of the paper's level count. The lines are then thickened by one pixel (a 3 x 3
  dilation), which closes one-pixel gaps and keeps regions off the anti-aliased fringe of the
  lines. (On 50 real drawings at 512 px, a cut at 200 left 17 drawings with fewer than 8
  regions of 0.25 % of the image or more; at 230, 6. Otsu's level varied from 130 to 242 on
  them and merged light pencil drawings into one region.)
- **Regions** (`find_regions`): the 4-connected components of the paper (everything that is
  not a line). Each is closed by lines or by the image border.
- **Strokes** (`place_strokes`): up to `count` regions of at least `min_area` pixels, picked in
  a seeded random order; in each, a short straight stroke of width `2 * radius + 1` centred on a
  point of the region's distance-transform ridge (a pixel at least 70 % as far from the region's
  edge as its deepest point), along the principal axis of the region's deep part (pixels at
  least half as deep), and cut short wherever it would come closer than `radius + MARGIN`
  pixels to the region's edge or the image border (`distance_inside`). A stroke therefore
  never touches a line.
- **Colours**: a stroke's colour and a region's colour are per-channel medians (`median_colour`)
  of the pixels under it; colour differences are CIE76 Delta E, the Euclidean distance in
  CIE L*a*b* as OpenCV converts sRGB (D65) on float images (`delta_e`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from manga_pix2pix.inference.regions import lab

#: Levelled gray levels (paper at 255) below this are lines.
LINE_THRESHOLD = 230
#: The gray level percentile taken as the paper colour (as `colorize` levels line art).
PAPER_PERCENTILE = 95
#: A stroke keeps at least this many pixels, beyond its own radius, from its region's edge.
MARGIN = 2
#: A stroke is centred on a pixel at least this share of its region's deepest distance.
RIDGE_SHARE = 0.7
#: The region's "deep part", whose principal axis orients the stroke.
DEEP_SHARE = 0.5


def _gray(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if image.ndim == 3:
        return image[:, :, 0]
    return image


def line_mask(lineart: np.ndarray) -> np.ndarray:
    """Where the line art has lines (see the module docstring): bool `[H, W]`.

    Args:
        lineart: uint8 gray `[H, W]` / `[H, W, 1]` or RGB `[H, W, 3]`, dark lines on light paper.
    """
    gray = _gray(lineart).astype(np.float32)
    paper = float(np.clip(np.percentile(gray, PAPER_PERCENTILE), 128.0, 255.0))
    levelled = np.clip(np.round(gray * (255.0 / paper)), 0, 255).astype(np.uint8)
    lines = (levelled < LINE_THRESHOLD).astype(np.uint8)
    return cv2.dilate(lines, np.ones((3, 3), np.uint8)).astype(bool)


@dataclass
class Regions:
    """The closed regions of a line drawing.

    Attributes:
        labels: int32 `[H, W]`: 0 on lines, 1..count on the paper, one label per region.
        areas: pixels per label, `[count + 1]` (index 0: the lines).
        touches_border: bool `[count + 1]`, whether a region reaches the image border.
    """

    labels: np.ndarray
    areas: np.ndarray
    touches_border: np.ndarray

    @property
    def count(self) -> int:
        """How many regions there are."""
        return len(self.areas) - 1

    def mask(self, label: int) -> np.ndarray:
        """Region `label` as a bool `[H, W]` mask."""
        return self.labels == label


def find_regions(lineart: np.ndarray) -> Regions:
    """The 4-connected components of the paper of `lineart` (see `line_mask`)."""
    paper = (~line_mask(lineart)).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(paper, connectivity=4)
    areas = stats[:, cv2.CC_STAT_AREA].astype(np.int64)
    areas[0] = int((labels == 0).sum())
    border = np.unique(
        np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    )
    touches = np.zeros(count, bool)
    touches[border] = True
    touches[0] = False
    return Regions(labels=labels.astype(np.int32), areas=areas, touches_border=touches)


@dataclass
class Stroke:
    """One stroke: the region it lies in and its pixels.

    Attributes:
        region: the region's label.
        mask: bool `[H, W]`, True under the stroke (always inside the region).
    """

    region: int
    mask: np.ndarray


def stroke_size(height: int, width: int) -> tuple[int, int]:
    """Default `(length, radius)` of a stroke for an image of this size, in pixels.

    About 1/8 of the short side long and 1/200 of it in radius (64 x 5 px on a 512-px side).
    """
    short = min(height, width)
    return max(6, round(short / 8)), max(1, round(short / 200))


def default_min_area(height: int, width: int) -> int:
    """The smallest region that gets a stroke: 0.25 % of the image, and at least 48 pixels."""
    return max(48, round(0.0025 * height * width))


def _principal_axis(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The unit direction (dy, dx) of most spread of `points` `[N, 2]`; random if none."""
    if len(points) >= 2:
        cov = np.cov(points.T.astype(np.float64))
        values, vectors = np.linalg.eigh(cov)
        if values[-1] > 1e-6 and values[-1] > 1.05 * values[0]:
            return vectors[:, -1] / np.linalg.norm(vectors[:, -1])
    angle = rng.uniform(0.0, np.pi)
    return np.array([np.sin(angle), np.cos(angle)])


def _stroke_in(
    region: np.ndarray, length: int, radius: int, rng: np.random.Generator
) -> np.ndarray | None:
    """A stroke inside the bool mask `region`, or None if the region is too thin for one."""
    dist = distance_inside(region)
    deepest = float(dist.max())
    clearance = radius + MARGIN
    if deepest < clearance + 0.5:
        return None
    ridge = np.argwhere(dist >= max(clearance + 0.5, RIDGE_SHARE * deepest))
    centre = ridge[rng.integers(len(ridge))].astype(np.float64)
    deep = np.argwhere(dist >= max(clearance + 0.5, DEEP_SHARE * deepest))
    direction = _principal_axis(deep, rng)
    height, width = region.shape
    ends = []
    for sign in (1.0, -1.0):
        end = centre
        for step in range(1, length // 2 + 1):
            y, x = np.round(centre + sign * step * direction).astype(int)
            if not (0 <= y < height and 0 <= x < width) or dist[y, x] < clearance:
                break
            end = centre + sign * step * direction
        ends.append(end)
    canvas = np.zeros(region.shape, np.uint8)
    (y0, x0), (y1, x1) = (np.round(e).astype(int) for e in ends)
    cv2.line(canvas, (int(x0), int(y0)), (int(x1), int(y1)), 1, 2 * radius + 1, cv2.LINE_8)
    # The thick line's rounded ends and the integer path may graze the clearance: cut them.
    return canvas.astype(bool) & (dist >= MARGIN)


def distance_inside(region: np.ndarray) -> np.ndarray:
    """Each pixel's distance to the nearest pixel outside the bool mask `region` or to the
    image border (a stroke keeps clear of both): float32 `[H, W]`, 0 outside the region."""
    padded = np.pad(region.astype(np.uint8), 1)
    return cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]


def place_strokes(
    regions: Regions,
    count: int,
    rng: np.random.Generator,
    *,
    length: int | None = None,
    radius: int | None = None,
    min_area: int | None = None,
) -> list[Stroke]:
    """Up to `count` short strokes, each well inside its own region (see the module docstring).

    Args:
        regions: from `find_regions`.
        count: the most strokes to place (one per region).
        rng: the seeded generator that picks the regions and the points on their ridges.
        length, radius, min_area: in pixels; by default `stroke_size` and `default_min_area`.

    Returns:
        The strokes, fewer than `count` when fewer regions are large and thick enough.
    """
    height, width = regions.labels.shape
    default_length, default_radius = stroke_size(height, width)
    length = default_length if length is None else length
    radius = default_radius if radius is None else radius
    min_area = default_min_area(height, width) if min_area is None else min_area
    eligible = [label for label in range(1, regions.count + 1)
                if regions.areas[label] >= min_area]
    strokes: list[Stroke] = []
    for label in rng.permutation(np.asarray(eligible, np.int64)):
        if len(strokes) >= count:
            break
        mask = _stroke_in(regions.mask(int(label)), length, radius, rng)
        if mask is not None and mask.any():
            strokes.append(Stroke(region=int(label), mask=mask))
    return strokes


def median_colour(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-channel median of uint8 RGB `image` under the bool `mask`: uint8 `[3]`."""
    return np.round(np.median(image[mask], axis=0)).astype(np.uint8)


def delta_e(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """CIE76 Delta E between uint8 RGB colours `[..., 3]` (Euclidean distance in L*a*b*)."""
    return np.linalg.norm(lab(a) - lab(b), axis=-1)


def cue_image(shape: tuple[int, int], strokes: list[Stroke], colours) -> np.ndarray:
    """The strokes as an artist's cue file: uint8 RGBA, opaque colour under each stroke only."""
    out = np.zeros((*shape, 4), np.uint8)
    for stroke, colour in zip(strokes, colours, strict=True):
        out[stroke.mask, :3] = colour
        out[stroke.mask, 3] = 255
    return out


def paint_bucket(
    lines: np.ndarray, regions: Regions, strokes: list[Stroke], colours
) -> np.ndarray:
    """Each stroked region filled with its stroke's colour, the rest white, lines on top.

    A region's fill is `bucket_mask`: the region up to the drawn line.

    Args:
        lines: the line layer to multiply on top, float `[H, W, 3]` in [0, 1] (1 on paper).
        regions: the regions the strokes lie in.
        strokes: the strokes; each fills its whole region.
        colours: uint8 RGB `[3]` per stroke.

    Returns:
        float RGB `[H, W, 3]` in [0, 1].
    """
    fill = np.ones((*regions.labels.shape, 3), np.float32)
    for stroke, colour in zip(strokes, colours, strict=True):
        fill[bucket_mask(regions, stroke.region)] = np.asarray(colour, np.float32) / 255.0
    return fill * lines


def bucket_mask(regions: Regions, label: int) -> np.ndarray:
    """What a paint bucket fills for region `label`: the region and the line pixels within
    1 px of it (undoing `line_mask`'s thickening, so that the fill reaches the drawn line)."""
    region = regions.mask(label)
    grown = cv2.dilate(region.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return region | (grown & (regions.labels == 0))


def neighbours(regions: Regions, label: int, reach: int) -> set[int]:
    """The regions within `reach` pixels of region `label` (across its lines), not itself."""
    mask = regions.mask(label).astype(np.uint8)
    size = 2 * reach + 1
    grown = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    found = set(np.unique(regions.labels[grown.astype(bool)]).tolist())
    return found - {0, label}
