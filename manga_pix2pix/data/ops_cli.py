"""File-to-file versions of the data ops, for the `sketchify` and `cues` commands."""

from __future__ import annotations

import numpy as np

from manga_pix2pix.data.cues import gaussian_blur
from manga_pix2pix.data.sketch import sketch
from manga_pix2pix.imageio import read_image, write_image, write_suffix


def sketchify_file(color_path, output_path) -> np.ndarray:
    """Writes the binary sketch of `color_path` to `output_path` (same size); returns it."""
    write_suffix(output_path)  # a format it cannot write is refused before any work
    image = read_image(color_path)
    out = sketch(image).numpy()
    write_image(output_path, out)
    return out


def cues_file(color_path, output_path, sigma: float | None = None) -> np.ndarray:
    """Writes the cue layer (blurred colour) of `color_path` to `output_path`; returns it."""
    write_suffix(output_path)
    image = read_image(color_path)
    blurred = gaussian_blur(image, sigma)
    out = np.clip(np.round(blurred.numpy() * 255.0), 0, 255).astype(np.uint8)
    write_image(output_path, out)
    return out
