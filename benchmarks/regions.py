"""The regions step's time when strokes of different colours split a region; prints JSON.

colorize's regions step (`manga_pix2pix.inference.regions.colour_regions`, `flat`) on
generated line art: a figure whose outline is open by a gap too wide to close (so the figure
and the page are one region) among a scatter of closed shapes, at several sizes. Each size is
timed with one stroke colour on the figure (the reference: no split) and with a second colour
on the page (the region is split at the gap, `split_between_strokes`), in the same process,
alternating, after a warm-up; the median of the repeats, and the ratio.

Example:

    python benchmarks/regions.py                      # 512, 1024, 2048 and 4096 px
    python benchmarks/regions.py --sizes 1024 --repeats 3
"""

from __future__ import annotations

import argparse
import datetime
import json
import time

import cv2
import numpy as np
from machine_info import machine

from manga_pix2pix.inference.regions import colour_regions


def drawing(size: int, seed: int = 0) -> np.ndarray:
    """uint8 line art `size x size`: an open figure and closed shapes, lines scaled to size."""
    rng = np.random.default_rng(seed)
    art = np.full((size, size), 250, np.uint8)
    u = size / 120
    width = max(1, round(u / 2))
    for _ in range(40):
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        cv2.circle(art, centre, int(rng.integers(2, 8) * u), 20, width, cv2.LINE_AA)
    top, bottom = round(30 * u), round(90 * u)
    cv2.rectangle(art, (top, top), (bottom, bottom), 20, 2 * width)
    art[round(55 * u):round(65 * u), bottom - 2 * width:bottom + 2 * width] = 250
    return art


def strokes(size: int, two: bool) -> tuple[np.ndarray, np.ndarray]:
    """A red stroke on the figure, and with `two` a white one on the page."""
    u = size / 120
    colours = np.zeros((size, size, 3), np.uint8)
    mask = np.zeros((size, size), bool)
    places = [((58, 62, 50, 70), (220, 30, 40))]
    if two:
        places.append(((104, 108, 95, 110), (255, 255, 255)))
    for (y0, y1, x0, x1), colour in places:
        where = np.s_[round(y0 * u):round(y1 * u), round(x0 * u):round(x1 * u)]
        mask[where] = True
        colours[where] = colour
    return colours, mask


def measure(size: int, repeats: int) -> dict:
    art = drawing(size)
    result = np.full((size, size, 3), 150, np.uint8)
    cases = {"one_colour": strokes(size, False), "two_colours": strokes(size, True)}
    times: dict[str, list[float]] = {name: [] for name in cases}
    for colours, mask in cases.values():  # warm-up
        colour_regions(result, art, colours, mask, "flat")
    for _ in range(repeats):
        for name, (colours, mask) in cases.items():
            start = time.perf_counter()
            colour_regions(result, art, colours, mask, "flat")
            times[name].append(time.perf_counter() - start)
    out = {"size": size}
    for name, values in times.items():
        out[f"{name}_s"] = round(float(np.median(values)), 4)
    out["split_over_one_colour"] = round(out["two_colours_s"] / out["one_colour_s"], 2)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096],
                        help="image sides (512 1024 2048 4096)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of each (5)")
    args = parser.parse_args()
    print(json.dumps({
        "benchmark": "regions",
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "results": [measure(size, args.repeats) for size in args.sizes],
    }, indent=2))


if __name__ == "__main__":
    main()
