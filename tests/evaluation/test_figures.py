"""Report figures: layout, enlargement of small tiles, input checks."""

import numpy as np
import pytest

from manga_pix2pix.evaluation.figures import GAP, HEADER, MIN_TILE, grid


def tiles(size, value):
    return [
        np.full((size, size), value, np.uint8),
        np.full((size, size, 1), value, np.uint8),
        np.full((size, size, 3), value, np.uint8),
    ]


def test_grid_lays_out_rows_and_columns_with_enlarged_tiles():
    out = grid([tiles(32, 10), tiles(32, 200)], ["sketch", "cues", "truth"])
    tile = MIN_TILE  # 32 px enlarged 4x
    assert out.dtype == np.uint8
    assert out.shape == (HEADER + 2 * (tile + GAP), GAP + 3 * (tile + GAP), 3)
    # The first tile of each row sits where expected, enlarged whole.
    assert (out[HEADER : HEADER + tile, GAP : GAP + tile] == 10).all()
    y = HEADER + tile + GAP
    assert (out[y : y + tile, GAP + 2 * (tile + GAP) : GAP + 3 * tile + 2 * GAP] == 200).all()
    # The header has drawn label text.
    assert (out[:HEADER] < 128).any()


def test_large_tiles_are_not_resized():
    out = grid([tiles(200, 50)], ["a", "b", "c"])
    assert out.shape == (HEADER + 200 + GAP, GAP + 3 * (200 + GAP), 3)


def test_grid_rejects_bad_rows():
    with pytest.raises(ValueError, match="rows"):
        grid([], ["a"])
    with pytest.raises(ValueError, match="3 tiles"):
        grid([tiles(32, 0)[:2]], ["a", "b", "c"])
    with pytest.raises(ValueError, match="size"):
        grid([[np.zeros((32, 32, 3), np.uint8), np.zeros((16, 16, 3), np.uint8)]], ["a", "b"])
    with pytest.raises(ValueError, match="uint8"):
        grid([[np.zeros((32, 32, 3), np.float32)]], ["a"])
