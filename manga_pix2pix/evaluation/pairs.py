"""Scoring a model on real line art, through the same path as `manga-pix2pix colorize`.

Two modes, each writing `metrics.json`, `metrics.md`, `per_pair.json` and one figure per
condition into the output folder:

**Real pairs** (`evaluate_pairs`, `evaluate --pairs DIR`): DIR holds `lineart/NAME.*` (an
artist's own line art) and `colour/NAME.*` (the same artist's colour version), matched by file
stem. Both are brought to one size: the line art's, shrunk (INTER_AREA) so that its long side
is at most `max_side`; the colour image is resized to exactly that size. Each line drawing is
coloured by `manga_pix2pix.inference.colorize.Colorizer` (the code behind `colorize`) from the
cue file an artist would hand in, under three conditions:

- `full`: an opaque cue layer, the colour image blurred by the training blur (sigma 20 px per
  256 px of the short side, `manga_pix2pix.data.cues.gaussian_blur`) and rounded to uint8.
  `colorize` treats an opaque cue file as a highlighter layer; one this smooth is not
  blurred again (`manga_pix2pix.inference.colorize.blur_unless_smooth`). Baseline
  `blurred_cues`: the cue layer itself.
- `strokes`: up to `strokes` short strokes (default 8) placed inside closed regions of the line
  art (`manga_pix2pix.evaluation.regions.place_strokes`), seeded by `seed` and the pair's name,
  each painted with the per-channel median true colour under it, handed over as an RGBA cue
  file (alpha 255 under the strokes, 0 elsewhere). Baseline `paint_bucket`: each stroked region
  filled with its stroke's colour, every other region white, the line art multiplied on top.
- `none`: no cue file. Baseline `sketch_only`: the line art itself as an RGB image.

Metrics, against the colour image, both float RGB in [0, 1]: `l1`, `psnr`, `ssim` as in
`manga_pix2pix.evaluation.metrics` (computed by its `fast_image_metrics`), and for `strokes`
`region_de`: the median, over the stroked regions, of the CIE76 Delta E (`regions.delta_e`)
between the region's colour in the output and in the colour image (per-channel medians over
the region's pixels). Each number in
`metrics.json` is the mean over pairs (`region_de` over the pairs that got a stroke).

**Line art only** (`evaluate_lineart`, `evaluate --lineart DIR`): every image in DIR, no colour
version. Strokes are placed as above and painted with colours from `PALETTE` (distinct, in a
seeded order per drawing). Metrics, means over drawings:

- `hint_de` (`strokes`): the median over stroked regions of the Delta E between the region's
  colour in the output and its stroke's colour: how faithfully hints are followed.
- `leakage` (`strokes`): the share of *candidate* regions that leak. A candidate is a region
  with no stroke, of at least the strokes' minimum area, within `leak_reach` pixels (across a
  line) of a stroked region. It leaks when, for at least one such stroked neighbour with
  stroke colour c, its output colour with the strokes is at least `LEAK_DE` Delta E closer to c
  than its output colour without cues (coloured with the background the strokes get, so
  `--background auto` leaving the cue-free page white does not count): the neighbour's hint
  pulled it over the line. Drawings with no candidate region do not count towards the mean.
- `paper_l` (`none`): the mean L* (0-100, CIE L*a*b*) of the output over the pixels of the
  regions that touch the image border, without cues: how white the paper around a figure
  stays (the line art's own paper is about 100).

Baselines: `paint_bucket` for `strokes` (its leakage is measured against the bare line art)
and `sketch_only` for `none`.

Everything is deterministic: the same folder, model, `seed` and options give the same numbers.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf

from manga_pix2pix.data.cues import gaussian_blur
from manga_pix2pix.errors import UserError
from manga_pix2pix.evaluation import figures, regions
from manga_pix2pix.evaluation.metrics import fast_image_metrics, format_metric
from manga_pix2pix.imageio import (
    IMAGE_SUFFIXES,
    list_images,
    read_image,
    write_bytes_atomic,
    write_image,
)
from manga_pix2pix.inference.colorize import (
    DEFAULT_BACKGROUND,
    DEFAULT_REGIONS,
    Colorizer,
    line_layer,
)
from manga_pix2pix.inference.loading import LoadedModel

log = logging.getLogger(__name__)

#: Conditions and, for each, its methods: the model and the baseline.
PAIR_METHODS = {
    "full": ("model", "blurred_cues"),
    "strokes": ("model", "paint_bucket"),
    "none": ("model", "sketch_only"),
}
LINEART_METHODS = {
    "strokes": ("model", "paint_bucket"),
    "none": ("model", "sketch_only"),
}
#: Metrics per condition, in table order.
PAIR_METRICS = {
    "full": ("l1", "psnr", "ssim"),
    "strokes": ("l1", "psnr", "ssim", "region_de"),
    "none": ("l1", "psnr", "ssim"),
}
LINEART_METRICS = {"strokes": ("hint_de", "leakage"), "none": ("paper_l",)}
METHOD_LABELS = {
    "model": "model",
    "blurred_cues": "baseline: blurred cue layer",
    "paint_bucket": "baseline: paint bucket",
    "sketch_only": "baseline: sketch only",
}
METRIC_LABELS = {
    "l1": "L1 ↓",
    "psnr": "PSNR (dB) ↑",
    "ssim": "SSIM ↑",
    "region_de": "region ΔE ↓",
    "hint_de": "hint ΔE ↓",
    "leakage": "leakage ↓",
    "paper_l": "paper L* ↑",
}
CONDITION_LABELS = {
    "full": "full cue layer (colour image blurred)",
    "strokes": "strokes",
    "none": "no cues",
}
#: Stroke colours of `--lineart`: distinct hues and the usual skin and hair tones.
PALETTE = np.array(
    [
        (220, 40, 40), (40, 110, 220), (50, 170, 70), (245, 200, 40), (150, 70, 190),
        (250, 140, 30), (30, 180, 190), (240, 110, 170), (250, 215, 185), (120, 75, 40),
        (110, 120, 135), (170, 220, 90),
    ],
    np.uint8,
)
#: How much closer (Delta E) to a neighbour's stroke colour a region must move to leak.
LEAK_DE = 5.0
#: Side of the box each figure tile is fitted into.
FIGURE_TILE = 192
DEFAULT_MAX_SIDE = 512
DEFAULT_STROKES = 8


@dataclass(frozen=True)
class Drawing:
    """One line drawing to evaluate, and its colour version when there is one."""

    name: str
    lineart: Path
    colour: Path | None = None


def _images_by_stem(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    found: dict[str, Path] = {}
    for path in list_images(folder):
        if path.stem in found:
            raise UserError(f"{path}: two images named {path.stem!r} in {folder} "
                            f"({found[path.stem].name}, {path.name}); keep one")
        found[path.stem] = path
    if not found:
        raise UserError(f"{folder}: no image files in this folder ({', '.join(IMAGE_SUFFIXES)})")
    return found


def find_pairs(folder: str | Path) -> list[Drawing]:
    """The pairs in `folder` (`lineart/NAME.*` with `colour/NAME.*`), sorted by name.

    Raises:
        UserError: a missing or empty folder, a duplicate name, or an image with no partner.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    lineart = _images_by_stem(folder / "lineart")
    colour = _images_by_stem(folder / "colour")
    for stem, path in sorted(lineart.items()):
        if stem not in colour:
            raise UserError(f"{path}: no colour image {stem}.* in {folder / 'colour'}")
    for stem, path in sorted(colour.items()):
        if stem not in lineart:
            raise UserError(f"{path}: no line art {stem}.* in {folder / 'lineart'}")
    return [Drawing(stem, lineart[stem], colour[stem]) for stem in sorted(lineart)]


def find_lineart(folder: str | Path) -> list[Drawing]:
    """Every image directly in `folder`, sorted by name.

    Raises:
        UserError: a missing or empty folder, or a duplicate name.
    """
    return [Drawing(stem, path) for stem, path in sorted(_images_by_stem(Path(folder)).items())]


def fit_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """The size with the long side at most `max_side`, aspect kept (never enlarged)."""
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    shrink = height * width < image.shape[0] * image.shape[1]
    return cv2.resize(image, (width, height),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def load_drawing(drawing: Drawing, max_side: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The line art (and colour image) as uint8 RGB at the evaluated size.

    Raises:
        UserError: an unreadable or unusable image (naming the file), or one under 11 pixels
            a side once fitted (SSIM's window).
    """
    lineart = read_image(drawing.lineart)
    height, width = fit_size(*lineart.shape[:2], max_side)
    if min(height, width) < 11:
        raise UserError(f"{drawing.lineart}: {width}x{height} at --max-side {max_side} is too "
                        "small to score (at least 11 pixels a side)")
    colour = None
    if drawing.colour is not None:
        colour = read_image(drawing.colour)
        ratio = (colour.shape[1] / colour.shape[0]) / (lineart.shape[1] / lineart.shape[0])
        if abs(ratio - 1.0) > 0.02:
            log.warning("%s: its shape differs from %s's; it is stretched to fit",
                        drawing.colour, drawing.lineart)
        colour = _resize(colour, height, width)
    return _resize(lineart, height, width), colour


def stroke_rng(seed: int, name: str) -> np.random.Generator:
    """The generator of a drawing's strokes: depends only on `seed` and the drawing's name."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def blurred_cue_layer(colour: np.ndarray) -> np.ndarray:
    """The `full` condition's cue file: the colour image blurred (sigma 20 px / 256 px), uint8."""
    blurred = gaussian_blur(tf.constant(colour, tf.float32) / 255.0).numpy()
    return np.clip(np.round(blurred * 255.0), 0, 255).astype(np.uint8)


def _float(image: np.ndarray) -> np.ndarray:
    return np.asarray(image, np.float32) / 255.0


def _uint8(image01: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(image01) * 255.0), 0, 255).astype(np.uint8)


def _median_de(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def region_de(output: np.ndarray, truth: np.ndarray, found: regions.Regions,
              strokes: list[regions.Stroke]) -> float | None:
    """Median over stroked regions of Delta E between the output's and the truth's colour."""
    values = []
    for stroke in strokes:
        mask = found.mask(stroke.region)
        values.append(float(regions.delta_e(regions.median_colour(output, mask),
                                            regions.median_colour(truth, mask))))
    return _median_de(values)


def hint_de(output: np.ndarray, found: regions.Regions, strokes: list[regions.Stroke],
            colours) -> float | None:
    """Median over stroked regions of Delta E between the output's colour and the stroke's."""
    values = [
        float(regions.delta_e(regions.median_colour(output, found.mask(s.region)), c))
        for s, c in zip(strokes, colours, strict=True)
    ]
    return _median_de(values)


def leakage(with_strokes: np.ndarray, without: np.ndarray, found: regions.Regions,
            strokes: list[regions.Stroke], colours, reach: int, min_area: int) -> float | None:
    """The share of candidate regions that leak (see the module docstring), or None if none."""
    stroked = {s.region: c for s, c in zip(strokes, colours, strict=True)}
    pulls: dict[int, list[np.ndarray]] = {}
    for label, colour in stroked.items():
        for other in regions.neighbours(found, label, reach):
            if other not in stroked and found.areas[other] >= min_area:
                pulls.setdefault(other, []).append(colour)
    if not pulls:
        return None
    leaked = 0
    for label, colours_near in pulls.items():
        mask = found.mask(label)
        after = regions.median_colour(with_strokes, mask)
        before = regions.median_colour(without, mask)
        near = np.asarray(colours_near, np.uint8)
        moved = regions.delta_e(before[None], near) - regions.delta_e(after[None], near)
        leaked += bool((moved >= LEAK_DE).any())
    return leaked / len(pulls)


def paper_lightness(output: np.ndarray, found: regions.Regions) -> float | None:
    """Mean L* of `output` over the regions touching the border; None if there are none."""
    mask = found.touches_border[found.labels]
    if not mask.any():
        return None
    return float(regions.lab(output[mask])[:, 0].mean())


def _tile(image: np.ndarray) -> np.ndarray:
    """uint8 gray or RGB `image` scaled to fit a white FIGURE_TILE square box."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    scale = FIGURE_TILE / max(image.shape[:2])
    h, w = max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale))
    small = _resize(image, h, w)
    box = np.full((FIGURE_TILE, FIGURE_TILE, 3), 255, np.uint8)
    top, left = (FIGURE_TILE - h) // 2, (FIGURE_TILE - w) // 2
    box[top : top + h, left : left + w] = small
    return box


def _strokes_over(lineart: np.ndarray, cues: np.ndarray) -> np.ndarray:
    """The stroke cue file drawn over the line art, for figures."""
    alpha = cues[:, :, 3:].astype(np.float32) / 255.0
    return _uint8((cues[:, :, :3] * alpha + lineart * (1.0 - alpha)) / 255.0)


def _blank(like: np.ndarray) -> np.ndarray:
    return np.full(like.shape[:2] + (3,), 235, np.uint8)


@dataclass
class RealReport:
    """What a real-line-art evaluation measured.

    Attributes:
        mode: `pairs` or `lineart`.
        info: how it was run (model, folder, sizes, seed, timing, ...).
        metrics: `metrics[condition][method][metric]`, the mean over drawings; None where a
            method does not apply (the model with cues, for a model trained without cues) or
            no drawing has a value.
        per_pair: `per_pair[name][condition][method][metric]`; also `per_pair[name]["size"]`
            (the evaluated `[height, width]`) and `["placed"]`, the strokes placed: a list of
            `{"region", "pixels", "colour"}` (region label, stroke pixels, RGB colour).
        figures: condition -> figure file (relative to the output folder).
    """

    mode: str
    info: dict
    metrics: dict[str, dict[str, dict[str, float | None] | None]]
    per_pair: dict[str, dict]
    figures: dict[str, str] = field(default_factory=dict)

    @property
    def metric_names(self) -> dict[str, tuple[str, ...]]:
        """Condition -> its metrics, in table order."""
        return PAIR_METRICS if self.mode == "pairs" else LINEART_METRICS

    def to_json(self) -> str:
        """`metrics.json`: info, metrics, figures (a non-finite number written as null)."""
        body = {
            "info": self.info,
            "methods": {c: list(m) for c, m in _methods(self.mode).items()},
            "metrics": _finite(self.metrics),
            "figures": self.figures,
        }
        return json.dumps(body, indent=2) + "\n"

    def per_pair_json(self) -> str:
        """`per_pair.json`: every drawing's own values."""
        return json.dumps(_finite(self.per_pair), indent=2) + "\n"

    def to_markdown(self) -> str:
        """`metrics.md`: one table per condition."""
        info = self.info
        what = "real pairs" if self.mode == "pairs" else "line art without colour"
        lines = [
            f"# Evaluation on {what}",
            "",
            f"- model: `{info['model']}` ({info['image_size']} px, "
            f"{'trained with cues' if info['uses_cues'] else 'trained without cues'}, "
            f"norm stats {info['norm_stats']}, work size {info['work_size']} px)",
            f"- folder: `{info['folder']}`: {info['count']} drawings, long side at most "
            f"{info['max_side']} px",
            f"- strokes: up to {info['strokes']} per drawing (seed {info['seed']}), "
            f"{info['mean_strokes']:.1f} placed on average",
            f"- time: {info['seconds']:.1f} s ({info['seconds_per_drawing']:.2f} s per drawing)",
            "",
        ]
        if self.mode == "pairs":
            lines += self._against_baselines()
        for condition, methods in _methods(self.mode).items():
            names = self.metric_names[condition]
            lines += [f"## {condition}: {CONDITION_LABELS[condition]}", ""]
            if condition in self.figures:
                lines += [f"![{condition}]({self.figures[condition]})", ""]
            lines.append("| method | " + " | ".join(METRIC_LABELS[m] for m in names) + " |")
            lines.append("|---|" + "---:|" * len(names))
            for method in methods:
                values = self.metrics[condition][method]
                cells = [_format(m, None if values is None else values.get(m)) for m in names]
                lines.append(f"| {METHOD_LABELS[method]} | " + " | ".join(cells) + " |")
            lines.append("")
        return "\n".join(lines)


    def _against_baselines(self) -> list[str]:
        """The model against each condition's baseline, in one table (PSNR gain in dB)."""
        lines = [
            "## Model against baseline",
            "",
            "| condition | baseline | PSNR model / baseline (dB) | gain (dB) | "
            "SSIM model / baseline | region ΔE model / baseline |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for condition, (_, baseline) in PAIR_METHODS.items():
            model = self.metrics[condition]["model"] or {}
            base = self.metrics[condition][baseline] or {}
            gain = None
            if model.get("psnr") is not None and base.get("psnr") is not None:
                gain = model["psnr"] - base["psnr"]
            cells = [
                f"{_format('psnr', model.get('psnr'))} / {_format('psnr', base.get('psnr'))}",
                "n/a" if gain is None or not np.isfinite(gain) else f"{gain:+.2f}",
                f"{_format('ssim', model.get('ssim'))} / {_format('ssim', base.get('ssim'))}",
                "" if condition != "strokes" else (
                    f"{_format('region_de', model.get('region_de'))} / "
                    f"{_format('region_de', base.get('region_de'))}"
                ),
            ]
            lines.append(f"| {condition} | {METHOD_LABELS[baseline].removeprefix('baseline: ')} | "
                         + " | ".join(cells) + " |")
        return lines + [""]


def _methods(mode: str) -> dict[str, tuple[str, ...]]:
    return PAIR_METHODS if mode == "pairs" else LINEART_METHODS


def _format(name: str, value: float | None) -> str:
    if name in ("l1", "psnr", "ssim"):
        return format_metric(name, value)
    if value is None:
        return "n/a"
    return f"{value:.3f}" if name == "leakage" else f"{value:.2f}"


def _finite(obj):
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    return obj


def _means(per_pair: dict[str, dict], mode: str, uses_cues: bool) -> dict:
    out: dict = {}
    names = PAIR_METRICS if mode == "pairs" else LINEART_METRICS
    for condition, methods in _methods(mode).items():
        out[condition] = {}
        for method in methods:
            if method == "model" and condition != "none" and not uses_cues:
                out[condition][method] = None
                continue
            means = {}
            for metric in names[condition]:
                values = [
                    p[condition][method][metric]
                    for p in per_pair.values()
                    if p[condition][method].get(metric) is not None
                ]
                means[metric] = float(np.mean(values)) if values else None
            out[condition][method] = means
    return out


def _image_scores(predictions: dict[str, np.ndarray], truth: np.ndarray) -> dict[str, dict]:
    """L1, PSNR, SSIM (`fast_image_metrics`) of each uint8 prediction against the truth."""
    truth01 = _float(truth)
    return {k: fast_image_metrics(_float(v), truth01) for k, v in predictions.items()}


@dataclass
class _Figures:
    rows: int
    tiles: dict[str, list[list[np.ndarray]]] = field(default_factory=dict)

    def add(self, condition: str, row: list[np.ndarray]) -> None:
        kept = self.tiles.setdefault(condition, [])
        if len(kept) < self.rows:
            kept.append([_tile(t) for t in row])


def _check_options(max_side: int, strokes: int, figure_rows: int) -> None:
    if max_side < 11:
        raise UserError(f"--max-side: must be at least 11 pixels, got {max_side}")
    if strokes < 0:
        raise UserError(f"--strokes: must be at least 0, got {strokes}")
    if figure_rows < 1:
        raise UserError(f"--figure-rows: must be at least 1, got {figure_rows}")


def _check_output(out_dir: Path | None) -> None:
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a folder")


def evaluate_pairs(
    model: LoadedModel,
    folder: str | Path,
    *,
    max_side: int = DEFAULT_MAX_SIDE,
    strokes: int = DEFAULT_STROKES,
    seed: int = 0,
    figure_rows: int = 6,
    norm_stats: str = "moving",
    work_size: int | None = None,
    line_input: str | None = None,
    regions: str = DEFAULT_REGIONS,
    background: str = DEFAULT_BACKGROUND,
    output_dir: str | Path | None = None,
    model_name: str | None = None,
    on_start: Callable[[int], None] | None = None,
    on_drawing: Callable[[], None] | None = None,
) -> RealReport:
    """Scores `model` on real line-art / colour pairs (see the module docstring).

    Args:
        model: the generator, as `manga_pix2pix.inference.loading.load_model` loads it.
        folder: holds `lineart/` and `colour/`, images matched by file stem.
        max_side: the long side, in pixels, of the evaluated images (larger ones are shrunk).
        strokes: the most strokes per drawing in the `strokes` condition.
        seed: with each pair's name, seeds its strokes.
        figure_rows: pairs per figure (the first ones by name).
        norm_stats: batch norm's statistics, as `colorize --norm-stats`.
        work_size: `colorize --work-size` (default: the model's image size).
        line_input: `colorize --line-input` (default: what the model records).
        regions: `colorize --regions` (default `auto`, as colorize).
        background: `colorize --background` (default `auto`, as colorize).
        output_dir: where to write the report (created if missing); None writes nothing.
        model_name: how the report names the model (default: its source path).
        on_start: called with the number of pairs, once they are all read.
        on_drawing: called after each pair.

    Returns:
        The report.

    Raises:
        UserError: a bad folder (missing, empty, an unmatched name, an unreadable image), a bad
            option, or an unwritable output folder.
    """
    return _evaluate("pairs", model, find_pairs, folder, max_side=max_side, strokes=strokes,
                     seed=seed, figure_rows=figure_rows, norm_stats=norm_stats,
                     work_size=work_size, line_input=line_input, regions=regions,
                     background=background, output_dir=output_dir, model_name=model_name,
                     on_start=on_start, on_drawing=on_drawing)


def evaluate_lineart(model: LoadedModel, folder: str | Path, **options) -> RealReport:
    """Scores `model` on line art with no colour version (see the module docstring).

    Options and errors as `evaluate_pairs`, with `folder` a folder of line drawings.
    """
    return _evaluate("lineart", model, find_lineart, folder, **options)


def _evaluate(mode, model, finder, folder, *, max_side=DEFAULT_MAX_SIDE,
              strokes=DEFAULT_STROKES, seed=0, figure_rows=6, norm_stats="moving",
              work_size=None, line_input=None, regions=DEFAULT_REGIONS,
              background=DEFAULT_BACKGROUND,
              output_dir=None, model_name=None, on_start=None, on_drawing=None) -> RealReport:
    _check_options(max_side, strokes, figure_rows)
    out_dir = None if output_dir is None else Path(output_dir)
    _check_output(out_dir)
    drawings = finder(folder)
    # Every image is read (and checked) before the model runs: a bad file fails in seconds.
    loaded = [(d, *load_drawing(d, max_side)) for d in drawings]
    colorizer = Colorizer(model, work_size=work_size, norm_stats=norm_stats,
                          line_input=line_input, regions=regions, background=background)
    if on_start is not None:
        on_start(len(loaded))
    figs = _Figures(figure_rows)
    per_pair: dict[str, dict] = {}
    placed = []
    start = time.perf_counter()
    score = _score_pair if mode == "pairs" else _score_lineart
    for drawing, lineart, colour in loaded:
        per_pair[drawing.name] = score(colorizer, model.uses_cues, drawing.name, lineart,
                                       colour, strokes, seed, figs)
        placed.append(len(per_pair[drawing.name]["placed"]))
        if on_drawing is not None:
            on_drawing()
    seconds = time.perf_counter() - start
    info = {
        "mode": mode,
        "model": model_name or str(model.source),
        "image_size": model.image_size,
        "uses_cues": model.uses_cues,
        "norm_stats": norm_stats,
        "work_size": colorizer.settings.work,
        "line_input": colorizer.settings.line_input,
        "regions": regions,
        "background": colorizer.background,
        "folder": str(folder),
        "count": len(loaded),
        "max_side": max_side,
        "strokes": strokes,
        "seed": seed,
        "mean_strokes": float(np.mean(placed)),
        "seconds": seconds,
        "seconds_per_drawing": seconds / len(loaded),
        "colour_difference": "CIE76 Delta E on CIE L*a*b* (OpenCV, sRGB D65)",
    }
    if mode == "lineart":
        info["leak_de"] = LEAK_DE
    report = RealReport(mode, info, _means(per_pair, mode, model.uses_cues), per_pair)
    if out_dir is not None:
        _write(report, out_dir, figs, mode)
    return report


def _place(lineart: np.ndarray, count: int, seed: int, name: str):
    found = regions.find_regions(lineart)
    rng = stroke_rng(seed, name)
    return found, regions.place_strokes(found, count, rng), rng


def _placed(lineart: np.ndarray, strokes: list[regions.Stroke], colours) -> dict:
    return {
        "size": list(lineart.shape[:2]),
        "placed": [
            {"region": s.region, "pixels": int(s.mask.sum()), "colour": [int(v) for v in c]}
            for s, c in zip(strokes, colours, strict=True)
        ],
    }


def _score_pair(colorizer, uses_cues, name, lineart, colour, count, seed, figs) -> dict:
    lines = line_layer(tf.constant(lineart)).numpy()
    found, strokes, _ = _place(lineart, count, seed, name)
    colours = [regions.median_colour(colour, s.mask) for s in strokes]
    full_cues = blurred_cue_layer(colour)
    stroke_cues = regions.cue_image(lineart.shape[:2], strokes, colours)
    outputs = {
        ("full", "blurred_cues"): full_cues,
        ("strokes", "paint_bucket"): _uint8(regions.paint_bucket(lines, found, strokes, colours)),
        ("none", "sketch_only"): lineart,
        ("none", "model"): colorizer(lineart),
    }
    if uses_cues:
        outputs["full", "model"] = colorizer(lineart, full_cues)
        outputs["strokes", "model"] = colorizer(lineart, stroke_cues)
    scores = _image_scores({f"{c}/{m}": v for (c, m), v in outputs.items()}, colour)
    result: dict = {c: {m: {} for m in methods} for c, methods in PAIR_METHODS.items()}
    for (condition, method), output in outputs.items():
        result[condition][method] = scores[f"{condition}/{method}"]
        if condition == "strokes":
            result[condition][method]["region_de"] = region_de(output, colour, found, strokes)
    result.update(_placed(lineart, strokes, colours))
    cue_tiles = {"full": full_cues, "strokes": _strokes_over(lineart, stroke_cues),
                 "none": _blank(lineart)}
    for condition, (_, baseline) in PAIR_METHODS.items():
        model_out = outputs.get((condition, "model"), _blank(lineart))
        # The full cue layer is its own baseline: shown once, as the cues.
        extra = [] if condition == "full" else [outputs[condition, baseline]]
        figs.add(condition, [lineart, cue_tiles[condition], model_out, *extra, colour])
    return result


def _score_lineart(colorizer, uses_cues, name, lineart, _colour, count, seed, figs) -> dict:
    lines = line_layer(tf.constant(lineart)).numpy()
    found, strokes, rng = _place(lineart, count, seed, name)
    order = rng.permutation(len(PALETTE))
    colours = [PALETTE[order[i % len(PALETTE)]] for i in range(len(strokes))]
    stroke_cues = regions.cue_image(lineart.shape[:2], strokes, colours)
    bucket = _uint8(regions.paint_bucket(lines, found, strokes, colours))
    without = colorizer(lineart)
    height, width = lineart.shape[:2]
    _, radius = regions.stroke_size(height, width)
    reach = leak_reach(height, width)
    min_area = regions.default_min_area(height, width)
    result: dict = {
        "strokes": {
            "paint_bucket": {
                "hint_de": hint_de(bucket, found, strokes, colours),
                "leakage": leakage(bucket, lineart, found, strokes, colours, reach, min_area),
            },
            "model": {},
        },
        "none": {
            "model": {"paper_l": paper_lightness(without, found)},
            "sketch_only": {"paper_l": paper_lightness(lineart, found)},
        },
        **_placed(lineart, strokes, colours),
    }
    with_strokes = _blank(lineart)
    if uses_cues:
        with_strokes = colorizer(lineart, stroke_cues)
        # Leakage is what the strokes move, so its reference is the cue-free colouring under
        # the background the strokes get (`auto` leaves the cue-free page white, not them).
        reference = (colorizer(lineart, background="model") if colorizer.background == "auto"
                     else without)
        result["strokes"]["model"] = {
            "hint_de": hint_de(with_strokes, found, strokes, colours),
            "leakage": leakage(with_strokes, reference, found, strokes, colours, reach,
                               min_area),
        }
    figs.add("strokes", [lineart, _strokes_over(lineart, stroke_cues), with_strokes, bucket])
    figs.add("none", [lineart, _blank(lineart), without])
    return result


def leak_reach(height: int, width: int) -> int:
    """How far across a line a region counts as a neighbour: 1/40 of the short side, >= 6 px.

    Wider than the lines of most drawings (thickened by `regions.line_mask`), narrow enough not
    to jump over a whole region of `regions.default_min_area`.
    """
    return max(6, round(min(height, width) / 40))


FIGURE_LABELS = {
    "pairs": {
        "full": ["line art", "cue layer (baseline)", "output", "truth"],
        "strokes": ["line art", "strokes", "output", "paint bucket", "truth"],
        "none": ["line art", "no cues", "output", "sketch only", "truth"],
    },
    "lineart": {
        "strokes": ["line art", "strokes", "output", "paint bucket"],
        "none": ["line art", "no cues", "output"],
    },
}


def _write(report: RealReport, out_dir: Path, figs: _Figures, mode: str) -> None:
    try:
        (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{out_dir}: cannot create the output folder ({err.strerror})") from None
    for condition, rows in figs.tiles.items():
        name = f"figures/{condition}.png"
        write_image(out_dir / name, figures.grid(rows, FIGURE_LABELS[mode][condition]))
        report.figures[condition] = name
    write_bytes_atomic(out_dir / "per_pair.json", report.per_pair_json().encode())
    write_bytes_atomic(out_dir / "metrics.md", report.to_markdown().encode())
    write_bytes_atomic(out_dir / "metrics.json", report.to_json().encode())
