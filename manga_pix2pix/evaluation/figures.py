"""Report figures like the original's: one row per example, columns sketch | cues | output | truth.

Drawn with numpy and OpenCV. Small images are enlarged by an integer factor (nearest
neighbour, so pixels stay visible as pixels) so that a column is at least `MIN_TILE` wide and
its label fits.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

#: Tiles narrower than this are enlarged by an integer factor.
MIN_TILE = 128
GAP = 4
HEADER = 26
BACKGROUND = 255
INK = (30, 30, 30)


def _rgb(tile: np.ndarray) -> np.ndarray:
    tile = np.asarray(tile)
    if tile.dtype != np.uint8:
        raise ValueError(f"tile: expected uint8, got {tile.dtype}")
    if tile.ndim == 2:
        tile = tile[:, :, None]
    if tile.shape[2] == 1:
        tile = np.repeat(tile, 3, axis=2)
    return tile


def grid(rows: Sequence[Sequence[np.ndarray]], labels: Sequence[str]) -> np.ndarray:
    """Lays out equal-sized tiles in rows under a header of column labels.

    Args:
        rows: each row a sequence of uint8 tiles `[H, W]`, `[H, W, 1]` or `[H, W, 3]`, one per
            label; every tile the same height and width.
        labels: the column titles.

    Returns:
        uint8 RGB image.
    """
    if not rows:
        raise ValueError("rows: at least one row is needed")
    tiles = [[_rgb(t) for t in row] for row in rows]
    height, width = tiles[0][0].shape[:2]
    for row in tiles:
        if len(row) != len(labels):
            raise ValueError(f"rows: each row needs {len(labels)} tiles, got {len(row)}")
        if any(t.shape[:2] != (height, width) for t in row):
            raise ValueError("rows: tiles differ in size")
    scale = max(1, -(-MIN_TILE // width))
    th, tw = height * scale, width * scale
    n_cols, n_rows = len(labels), len(tiles)
    out = np.full(
        (HEADER + n_rows * (th + GAP), GAP + n_cols * (tw + GAP), 3), BACKGROUND, np.uint8
    )
    for c, label in enumerate(labels):
        x = GAP + c * (tw + GAP)
        font_scale = 0.5
        (text_w, _), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        while text_w > tw and font_scale > 0.3:
            font_scale -= 0.05
            (text_w, _), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        cv2.putText(out, label, (x + max(0, (tw - text_w) // 2), HEADER - 8),
                    cv2.FONT_HERSHEY_SIMPLEX, font_scale, INK, 1, cv2.LINE_AA)
    for r, row in enumerate(tiles):
        y = HEADER + r * (th + GAP)
        for c, tile in enumerate(row):
            x = GAP + c * (tw + GAP)
            if scale > 1:
                tile = cv2.resize(tile, (tw, th), interpolation=cv2.INTER_NEAREST)
            out[y : y + th, x : x + tw] = tile
    return out
