"""Closed regions of line art and colours kept inside them (NumPy + OpenCV)."""

import cv2
import numpy as np
import pytest

from manga_pix2pix.inference import regions
from manga_pix2pix.inference.regions import (
    _region_medians,
    colour_regions,
    line_regions,
    split_between_strokes,
)


def two_boxes(gap: int = 0) -> np.ndarray:
    """Two boxes side by side; the right box's outline has a `gap`-pixel opening."""
    art = np.full((60, 100), 250, np.uint8)
    cv2.rectangle(art, (5, 5), (45, 55), 20, 1)
    cv2.rectangle(art, (55, 5), (95, 55), 20, 1)
    if gap:
        art[30:30 + gap, 95] = 250
    return art


def test_each_closed_box_is_a_region_of_its_own():
    labels, count = line_regions(two_boxes(), close_gaps=1)
    left, right, outside = labels[30, 25], labels[30, 75], labels[2, 2]
    assert len({left, right, outside}) == 3 and 0 not in (left, right, outside)
    assert count == labels.max() + 1
    assert labels[5, 20] == 0  # a line pixel


@pytest.mark.parametrize("gap, joined", [(1, False), (6, True)])
def test_small_gaps_are_closed_and_wide_ones_are_not(gap, joined):
    labels, _ = line_regions(two_boxes(gap), close_gaps=1)
    assert bool(labels[30, 75] == labels[30, 98]) is joined


def test_flat_regions_take_stroke_or_model_medians_and_lines_stay():
    art = two_boxes()
    rng = np.random.default_rng(0)
    result = rng.integers(100, 200, (60, 100, 3)).astype(np.uint8)
    result[art < 128] = 0  # lines are black in a colorize result
    strokes = np.zeros((60, 100, 3), np.uint8)
    mask = np.zeros((60, 100), bool)
    mask[28:32, 15:30] = True
    strokes[mask] = (10, 200, 30)
    out = colour_regions(result, art, strokes, mask, "flat")
    labels, _ = line_regions(art)
    left = labels == labels[30, 25]
    right = labels == labels[30, 75]
    assert (out[left] == (10, 200, 30)).all()
    assert (out[right] == np.median(result[right], axis=0).round()).all()
    assert out[art < 128].max() <= round(200 * 20 / 250)  # lines stay dark
    shifted = colour_regions(result, art, strokes, mask, "shift")
    np.testing.assert_allclose(np.median(shifted[left], axis=0), (10, 200, 30), atol=1)
    assert shifted[left].std(axis=0).min() > 10  # the shading is kept
    np.testing.assert_array_equal(colour_regions(result, art, strokes, mask, "off"), result)
    with pytest.raises(ValueError, match="mode"):
        colour_regions(result, art, strokes, mask, "auto")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_region_medians_equal_numpy_medians(seed):
    rng = np.random.default_rng(seed)
    count = 7
    labels = rng.integers(0, count - 1, (40, 50)).astype(np.int32)  # label count-1 is empty
    labels[:3] = 2  # an even-sized and an odd-sized region both occur across the seeds
    values = rng.integers(0, 256, (40, 50, 3)).astype(np.uint8)
    got = _region_medians(values, labels, count)
    assert got.shape == (count, 3)
    for label in range(1, count - 1):
        np.testing.assert_array_equal(got[label], np.median(values[labels == label], axis=0))
    assert (got[0] == 0).all() and (got[count - 1] == 0).all()
    with pytest.raises(ValueError, match="uint8"):
        _region_medians(values.astype(np.float32), labels, count)


def test_flat_lines_are_the_nearest_regions_colour_times_the_line_level():
    art = two_boxes()
    art[:, 49:51] = 140  # a grey, anti-aliased stroke between the boxes
    result = np.full((60, 100, 3), 77, np.uint8)  # the model's colour, lines included
    strokes = np.zeros((60, 100, 3), np.uint8)
    mask = np.zeros((60, 100), bool)
    mask[28:32, 15:30] = True
    strokes[mask] = (10, 200, 30)
    mask[28:32, 65:80] = True
    strokes[28:32, 65:80] = (240, 120, 0)
    out = colour_regions(result, art, strokes, mask, "flat")
    labels, _ = line_regions(art)
    assert (labels[5:56, 5] == 0).all() and (labels[:, 49:51] == 0).all()
    # The left box's outline (x = 5, gray 20) lies between the outside and the stroked box.
    shades = {tuple(np.round(np.float32(c) * np.float32(20 / 250)).astype(np.uint8))
              for c in [(10, 200, 30), tuple(out[30, 2])]}
    assert {tuple(v) for v in out[10:50, 5]} <= shades
    # The grey stroke's pixels take the colour of the region beside them, times 140 / 250.
    beside = out[30, 47]
    assert labels[30, 47] > 0
    np.testing.assert_array_equal(out[30, 49], np.round(beside * np.float32(140 / 250)))
    # The pixels by which lines are thickened are paper in the line art: they take the
    # region's colour exactly, not the model's.
    assert labels[30, 6] == 0 and art[30, 6] == 250
    np.testing.assert_array_equal(out[30, 6], (10, 200, 30))


@pytest.mark.parametrize("mode", ["flat", "shift"])
def test_paper_background_leaves_unstroked_border_regions_white(mode):
    art = two_boxes()
    rng = np.random.default_rng(1)
    result = rng.integers(60, 180, (60, 100, 3)).astype(np.uint8)
    labels, _ = line_regions(art)
    outside, left, right = labels[2, 2], labels[30, 25], labels[30, 75]
    out = colour_regions(result, art, None, None, mode, background="paper")
    assert (out[labels == outside] == 255).all()
    assert not (out[labels == left] == 255).all()  # the boxes do not touch the border
    np.testing.assert_array_equal(out[labels == right],
                                  colour_regions(result, art, None, None, mode)[labels == right])
    # A stroke in the background says what colour it is: it is not paper then.
    strokes = np.zeros((60, 100, 3), np.uint8)
    mask = np.zeros((60, 100), bool)
    mask[1:3, 20:40] = True
    strokes[mask] = (200, 30, 90)
    stroked = colour_regions(result, art, strokes, mask, "flat", background="paper")
    assert (stroked[labels == outside] == (200, 30, 90)).all()
    with pytest.raises(ValueError, match="background"):
        colour_regions(result, art, None, None, mode, background="white")


RED, WHITE, BLUE = (220, 30, 40), (255, 255, 255), (30, 60, 220)


def open_box(scale: int = 1) -> np.ndarray:
    """A figure (a box) whose outline is open on the right by a gap far too wide to close,
    so that the figure and the page around it are one region; `scale` times 80 x 120 px."""
    art = np.full((80 * scale, 120 * scale), 250, np.uint8)
    cv2.rectangle(art, (20 * scale, 15 * scale), (70 * scale, 65 * scale), 20, 2 * scale)
    art[35 * scale:45 * scale, 68 * scale:73 * scale] = 250  # the gap: 10 px of 50
    return art


def painted(shape, *strokes) -> tuple[np.ndarray, np.ndarray]:
    """A stroke layer from `((row slice, col slice), colour)` pairs: colours and mask."""
    colours = np.zeros((*shape, 3), np.uint8)
    mask = np.zeros(shape, bool)
    for where, colour in strokes:
        mask[where] = True
        colours[where] = colour
    return colours, mask


@pytest.mark.parametrize("scale", [1, 10])
def test_strokes_of_two_colours_split_an_open_outline_at_its_gap(scale):
    s = scale
    art = open_box(scale)
    labels, _ = line_regions(art)
    assert labels[40 * s, 45 * s] == labels[5 * s, 5 * s] > 0  # one region through the gap
    result = np.full((*art.shape, 3), 150, np.uint8)
    inside = (slice(38 * s, 42 * s), slice(35 * s, 50 * s))
    outside = (slice(70 * s, 74 * s), slice(85 * s, 100 * s))
    figure = np.zeros(art.shape, bool)
    figure[15 * s:65 * s, 20 * s:70 * s] = True  # the box, its outline included
    page = (labels == labels[5 * s, 5 * s]) & ~figure
    page[30 * s:50 * s, 60 * s:80 * s] = False  # where the cut through the gap may fall

    # One red stroke on the figure colours the page too: the outline is open.
    alone = colour_regions(result, art, *painted(art.shape, (inside, RED)), "flat")
    assert (alone[page] == RED).all()
    # With a white stroke on the page as well, the region is cut at the gap.
    both = colour_regions(result, art, *painted(art.shape, (inside, RED), (outside, WHITE)),
                          "flat")
    assert (both[figure & (labels > 0)] == RED).all()
    assert (both[page] == WHITE).all()
    # The lines stay the artist's: dark, whichever side they are on.
    assert both[art < 128].max() <= round(255 * 20 / 250)


def test_strokes_of_one_colour_split_nothing_and_three_colours_split_three_ways():
    art = open_box()
    labels, _ = line_regions(art)
    result = np.full((*art.shape, 3), 150, np.uint8)
    inside = (slice(38, 42), slice(35, 50))
    outside = (slice(70, 74), slice(85, 100))
    corner = (slice(3, 6), slice(3, 12))
    near_red = (224, 34, 40)  # within SAME_COLOUR_DE of RED: the same colour, painted twice
    assert np.linalg.norm(regions.lab(np.uint8([RED])) - regions.lab(np.uint8([near_red]))) < \
        regions.SAME_COLOUR_DE
    colours, mask = painted(art.shape, (inside, RED), (outside, near_red))
    same = colour_regions(result, art, colours, mask, "flat")
    region = labels == labels[5, 5]
    median = np.median(colours[mask], axis=0).round()
    assert (same[region] == median).all()  # one region, the strokes' median colour, as before
    three = colour_regions(result, art, *painted(art.shape, (inside, RED), (outside, WHITE),
                                                 (corner, BLUE)), "flat")
    assert tuple(three[40, 45]) == RED and tuple(three[72, 110]) == WHITE
    assert tuple(three[4, 30]) == BLUE  # the corner's stroke holds its own part of the page
    assert {tuple(c) for c in three[region]} == {RED, WHITE, BLUE}


def test_a_split_gives_every_pixel_of_the_region_a_group_and_keeps_the_strokes_own():
    art = open_box(2)
    labels, _ = line_regions(art)
    region = labels == labels[10, 10]
    markers = np.zeros(art.shape, np.int32)
    markers[76:84, 70:100] = 1
    markers[140:148, 170:200] = 2
    groups = split_between_strokes(region, markers)
    assert groups.dtype == np.int32 and groups.shape == art.shape
    assert (groups[region] > 0).all() and (groups[~region] == 0).all()
    np.testing.assert_array_equal(groups[markers > 0], markers[markers > 0])
    # The cut lies in the gap: each side of the outline belongs to one group.
    assert (groups[36:124, 46:134][region[36:124, 46:134]] == 1).all()
    assert (groups[:20][region[:20]] == 2).all()
    no_strokes = split_between_strokes(region, np.zeros_like(markers))
    assert not no_strokes.any()
    with pytest.raises(ValueError, match="markers"):
        split_between_strokes(region, markers * 200)


def test_a_large_region_split_smaller_reaches_no_group_across_a_line():
    # Longer than SPLIT_SIDE, so flooded at half size. A wall down the middle, open at one
    # place, parts the two strokes' sides; a second, short wall 2 px thick on the left side
    # leaves a 1 px channel beside the first, too thin for the half-size flood. The channel
    # is the left side's (it opens only to it), though the right side is nearer across the
    # wall.
    height = regions.SPLIT_SIDE + 76
    region = np.ones((height, 60), bool)
    region[:, 30] = False
    region[500:520, 30] = True
    region[100:109, 27:29] = False
    markers = np.zeros(region.shape, np.int32)
    markers[50:60, 5:15] = 1
    markers[50:60, 45:55] = 2
    groups = split_between_strokes(region, markers)
    assert (groups[100:109, 29] == 1).all()
    away = np.ones(height, bool)
    away[480:540] = False  # where the cut through the opening may fall
    assert (groups[away, :30][region[away, :30]] == 1).all()
    assert (groups[away, 31:][region[away, 31:]] == 2).all()
