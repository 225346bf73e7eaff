"""Regions, strokes, stroke colours and the paint bucket, on generated flat-colour drawings."""

import cv2
import numpy as np
import pytest
from conftest import FILLS

from manga_pix2pix.evaluation import pairs, regions


def _rgb(gray):
    return np.repeat(gray[:, :, None], 3, axis=2)


def test_line_mask_finds_grey_pencil_lines_and_ignores_grey_paper():
    paper = np.full((60, 80), 232, np.uint8)  # a scan: the paper is not white
    cv2.line(paper, (5, 30), (75, 30), 200, 1)  # a light pencil line, 86 % of the paper
    cv2.line(paper, (40, 2), (40, 58), 30, 2)  # an inked one
    lines = regions.line_mask(paper)
    assert lines[30, 10] and lines[30, 70] and lines[20, 40]
    assert not lines[10, 10] and not lines[50, 70]
    # The 1-px pencil line is thickened by one pixel on each side, no more.
    assert lines[29, 10] and lines[31, 10] and not lines[27, 10] and not lines[33, 10]


def test_regions_are_the_closed_areas_between_lines():
    art = np.full((50, 90), 255, np.uint8)
    cv2.rectangle(art, (10, 10), (40, 40), 0, 2)
    cv2.circle(art, (65, 25), 12, 0, 2)
    found = regions.find_regions(_rgb(art))
    assert found.count == 3  # the paper around, the inside of the square, of the circle
    inside_square, inside_circle, outside = (found.labels[25, 25], found.labels[25, 65],
                                             found.labels[2, 2])
    assert len({inside_square, inside_circle, outside}) == 3 and 0 not in (inside_square,)
    assert found.touches_border[outside] and not found.touches_border[inside_square]
    assert found.areas[inside_square] == (found.labels == inside_square).sum()


def test_strokes_lie_well_inside_one_region_each_and_are_seeded(make_flat_drawing):
    lineart, _ = make_flat_drawing(3, 120, 160)
    found = regions.find_regions(lineart)
    strokes = regions.place_strokes(found, 8, pairs.stroke_rng(0, "a"))
    assert 1 <= len(strokes) <= 8
    assert len({s.region for s in strokes}) == len(strokes)  # one per region
    _, radius = regions.stroke_size(120, 160)
    for stroke in strokes:
        region = found.mask(stroke.region)
        assert stroke.mask.any() and not (stroke.mask & ~region).any()
        # Never closer than `MARGIN` pixels to the region's edge (its lines) or the border.
        padded = np.pad(region.astype(np.uint8), 1)
        dist = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
        assert dist[stroke.mask].min() >= regions.MARGIN
        assert found.areas[stroke.region] >= regions.default_min_area(120, 160)
        assert stroke.mask.sum() >= (2 * radius + 1) ** 2 // 2
    again = regions.place_strokes(found, 8, pairs.stroke_rng(0, "a"))
    assert [s.region for s in again] == [s.region for s in strokes]
    assert all((a.mask == b.mask).all() for a, b in zip(again, strokes, strict=True))
    other = regions.place_strokes(found, 8, pairs.stroke_rng(1, "a"))
    assert any((a.mask != b.mask).any() for a, b in zip(other, strokes, strict=False))
    assert len(regions.place_strokes(found, 2, pairs.stroke_rng(0, "a"))) == 2


def test_stroke_colours_are_the_median_true_colour_under_the_stroke(make_flat_drawing):
    lineart, colour = make_flat_drawing(5, 120, 160)
    found = regions.find_regions(lineart)
    strokes = regions.place_strokes(found, 8, pairs.stroke_rng(0, "b"))
    assert strokes
    # Noise makes the median differ from the mean and from any one pixel.
    rng = np.random.default_rng(0)
    noisy = np.clip(colour + rng.normal(0, 12, colour.shape), 0, 255).astype(np.uint8)
    for stroke in strokes:
        got = regions.median_colour(noisy, stroke.mask)
        ys, xs = np.nonzero(stroke.mask)
        expected = [np.median(noisy[ys, xs, c]) for c in range(3)]
        np.testing.assert_allclose(got, np.round(expected), atol=0.5)
        # On the flat drawing itself, it is the exact fill of the shape under the stroke.
        flat = tuple(int(v) for v in regions.median_colour(colour, stroke.mask))
        assert flat in [*FILLS, (255, 255, 255)]


def test_paint_bucket_fills_exactly_the_region_up_to_its_line(make_flat_drawing):
    lineart, colour = make_flat_drawing(7, 96, 128)
    found = regions.find_regions(lineart)
    strokes = regions.place_strokes(found, 3, pairs.stroke_rng(0, "c"))
    colours = [np.array([10 + 60 * i, 200, 90], np.uint8) for i in range(len(strokes))]
    white_lines = np.ones((96, 128, 3), np.float32)  # no line layer: see the fill alone
    filled = regions.paint_bucket(white_lines, found, strokes, colours)
    painted = np.zeros((96, 128), bool)
    for stroke, c in zip(strokes, colours, strict=True):
        region = found.mask(stroke.region)
        np.testing.assert_allclose(filled[region], np.broadcast_to(c / 255.0, (region.sum(), 3)))
        painted |= regions.bucket_mask(found, stroke.region)
        # What it fills beyond the region is line pixels only, within 1 px of the region.
        extra = regions.bucket_mask(found, stroke.region) & ~region
        assert (found.labels[extra] == 0).all()
    assert (filled[~painted] == 1.0).all()  # every other region (and line) stays white
    # With the line layer on top, the lines come back.
    lines = np.repeat((lineart[:, :, None] / 255.0).astype(np.float32), 3, axis=2)
    assert (regions.paint_bucket(lines, found, strokes, colours)[lineart == 0] == 0).all()


def test_cue_image_is_opaque_exactly_under_the_strokes(make_flat_drawing):
    lineart, colour = make_flat_drawing(2, 80, 100)
    found = regions.find_regions(lineart)
    strokes = regions.place_strokes(found, 4, pairs.stroke_rng(0, "d"))
    colours = [regions.median_colour(colour, s.mask) for s in strokes]
    cues = regions.cue_image((80, 100), strokes, colours)
    union = np.any([s.mask for s in strokes], axis=0)
    assert cues.dtype == np.uint8 and cues.shape == (80, 100, 4)
    assert ((cues[:, :, 3] == 255) == union).all() and (cues[~union] == 0).all()
    for stroke, c in zip(strokes, colours, strict=True):
        assert (cues[stroke.mask, :3] == c).all()


@pytest.mark.parametrize("rgb, other, expected", [
    ((255, 255, 255), (255, 255, 255), 0.0),
    ((255, 255, 255), (0, 0, 0), 100.0),  # L* 100 vs 0, a* = b* = 0
])
def test_delta_e_is_cie76_on_lab(rgb, other, expected):
    assert regions.delta_e(np.array(rgb, np.uint8), np.array(other, np.uint8)) == pytest.approx(
        expected, abs=0.05
    )


def test_delta_e_matches_the_lab_distance_by_hand():
    a, b = np.array([200, 40, 40], np.uint8), np.array([40, 90, 200], np.uint8)
    la, lb = regions.lab(a), regions.lab(b)
    assert la[0] == pytest.approx(44.9, abs=1.0)  # a saturated red's lightness
    assert regions.delta_e(a, b) == pytest.approx(float(np.linalg.norm(la - lb)))
    assert regions.delta_e(a, b) > 50
