"""Closed regions of line art and colours kept inside them (NumPy + OpenCV)."""

import cv2
import numpy as np
import pytest

from manga_pix2pix.inference.regions import _region_medians, colour_regions, line_regions


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
