"""Fixtures for the evaluation tests: generated flat-colour drawings and their line art."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

#: Fill colours of the generated drawings (RGB), far apart from each other and from white.
FILLS = [
    (200, 40, 40), (40, 90, 200), (40, 160, 60), (230, 190, 30), (140, 60, 170),
    (240, 130, 30), (30, 170, 180), (250, 210, 180),
]


def flat_drawing(seed: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A flat-colour drawing and its outline: `(line art gray [H, W], colour RGB [H, W, 3])`.

    Random filled ellipses and polygons on white paper, each outlined in black (anti-aliased,
    2 px) for the line art; shapes drawn later cover earlier ones, in both images alike.
    """
    rng = np.random.default_rng(seed)
    colour = np.full((height, width, 3), 255, np.uint8)
    shapes = np.zeros((height, width), np.uint8)
    outlines = []
    short = min(height, width)
    for index in range(int(rng.integers(3, 6))):
        fill = FILLS[int(rng.integers(len(FILLS)))]
        canvas = np.zeros((height, width), np.uint8)
        if index % 2 == 0:
            centre = (int(rng.integers(width // 5, 4 * width // 5)),
                      int(rng.integers(height // 5, 4 * height // 5)))
            axes = (int(rng.integers(short // 7, short // 3)),
                    int(rng.integers(short // 7, short // 3)))
            cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        else:
            cx, cy = rng.integers(width // 4, 3 * width // 4), rng.integers(height // 4,
                                                                             3 * height // 4)
            angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 7))))
            radii = rng.uniform(short / 7, short / 3, len(angles))
            points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)
            cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1)
        region = canvas.astype(bool)
        colour[region] = fill
        shapes[region] = index + 1
        outlines.append(region)
    # The line art: the boundaries of the final shape map, as an artist's outline.
    edges = np.zeros((height, width), np.uint8)
    edges[:, 1:] |= (shapes[:, 1:] != shapes[:, :-1]).astype(np.uint8)
    edges[1:, :] |= (shapes[1:, :] != shapes[:-1, :]).astype(np.uint8)
    edges = cv2.dilate(edges, np.ones((2, 2), np.uint8))
    soft = cv2.GaussianBlur(edges.astype(np.float32), (3, 3), 0.6)
    lineart = np.clip(np.round(255.0 * (1.0 - np.clip(soft * 1.5, 0, 1))), 0, 255)
    lineart = lineart.astype(np.uint8)
    # The truth has dark lines too, as a finished illustration does.
    colour[lineart < 128] = 20
    return lineart, colour


@pytest.fixture
def make_flat_drawing():
    """The `flat_drawing(seed, height, width)` generator."""
    return flat_drawing


def write_png(path, image: np.ndarray) -> None:
    """Writes a uint8 gray or RGB array as a PNG (OpenCV, with RGB turned to BGR)."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), image), path


def write_pairs(folder, sizes, write=write_png) -> None:
    """Writes `lineart/pNN.png` and `colour/pNN.png` for each (height, width) in `sizes`."""
    (folder / "lineart").mkdir(parents=True)
    (folder / "colour").mkdir()
    for i, (height, width) in enumerate(sizes):
        lineart, colour = flat_drawing(i, height, width)
        write(folder / "lineart" / f"p{i:02d}.png", lineart)
        write(folder / "colour" / f"p{i:02d}.png", colour)


@pytest.fixture
def pairs_folder(tmp_path, write_encoded_file):
    """A folder of 3 generated pairs of different sizes and aspects."""
    folder = tmp_path / "pairs"
    write_pairs(folder, [(72, 96), (96, 64), (80, 80)], write_encoded_file)
    return folder
