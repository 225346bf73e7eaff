"""Scores a generator on held-out images: metrics per method and task, and figures.

Methods (the rows of the report), each compared with the true colour image in [0, 1]:
    model_cues: the model given the full cue layer (the paper's setting); n/a for a model
        trained without cues.
    model_no_cues: the model with cues withheld (cues and cue mask 0).
    cue_layer: the cue layer itself, the blurred colour image (a baseline).
    cue_lines: the cue layer with the sketch's lines multiplied over it (a baseline).
    sketch_only: the sketch as a grey image (a baseline).

Each held-out image is derived deterministically by the pipeline's `prepare_example`: no
augmentation, the image resized and centre-cropped to the model's size, the full cue layer.
Tasks (`color`, `transfer`, `interpolation`) are defined in `manga_pix2pix.evaluation.tasks`;
`all` is every held-out image.

Held-out images by source:
    a TFDS name (`danbooru`): the `split` (default `test`); the training set for the task split
        is `train_split` (default `train`) of the same dataset.
    `synthetic`: `max_images` synthetic images drawn from the seeds after the training ones,
        as the trainer holds out: a run draws seeds `seed` to `seed + synthetic_count - 1` (its
        config's), so held-out images are seeds `seed + synthetic_count + i`; the training set
        is the run's seeds.
    a folder: every image in it, or, when it is the folder the run was trained on with a
        hold-out (`train --holdout-fraction`), the images the run held out. A folder has no
        tags, so only `all` and `interpolation` are defined.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from manga_pix2pix.config import Config, DataConfig, TrainConfig
from manga_pix2pix.data.cues import CueMaskConfig
from manga_pix2pix.data.pipeline import load_images, prepare_example
from manga_pix2pix.data.sketch import image_complexity
from manga_pix2pix.errors import UserError
from manga_pix2pix.evaluation import figures, tasks
from manga_pix2pix.evaluation.metrics import METRICS, format_metric, image_metrics, mean_metrics
from manga_pix2pix.imageio import list_images, write_bytes_atomic, write_image
from manga_pix2pix.inference.loading import CONFIG_FILE, GENERATOR_FILE, LoadedModel
from manga_pix2pix.inference.loading import load_model as load_generator
from manga_pix2pix.models import generator_inputs
from manga_pix2pix.training.data import held_out_images

log = logging.getLogger(__name__)

#: Report rows: method name -> what it is.
METHODS = {
    "model_cues": "model, full cues",
    "model_no_cues": "model, no cues",
    "cue_layer": "baseline: cue layer (blurred colour)",
    "cue_lines": "baseline: cue layer x sketch lines",
    "sketch_only": "baseline: sketch only (grey)",
}
#: Report sections: every held-out image, then the three tasks.
SECTIONS = ("all",) + tasks.TASKS
DEFAULT_SYNTHETIC_COUNT = 64
FULL_CUES = CueMaskConfig(p_full=1.0, p_partial=0.0, p_none=0.0)


@dataclass
class EvaluatedModel:
    """A generator to evaluate, and what its run directory says about how it was trained.

    Attributes:
        path: the model path as given.
        loaded: the generator, as inference loads it.
        config: the run's config.json, when there is one next to the model.
    """

    path: Path
    loaded: LoadedModel
    config: Config | None


def load_model(path: str | Path) -> EvaluatedModel:
    """Loads a run directory, a `.keras` file or an exported SavedModel, as inference does.

    The run's `config.json` (which gives the complexity ceiling and the synthetic training
    seeds) is read from the run directory, or from the folder of a `generator.keras`.

    Raises:
        UserError: a missing, corrupt or wrong kind of model, or an unreadable config.
    """
    path = Path(path)
    loaded = load_generator(path)
    run_dir = path if path.is_dir() else path.parent
    config_file = run_dir / CONFIG_FILE
    config = None
    if (path.is_dir() or path.name == GENERATOR_FILE) and config_file.is_file():
        try:
            config = Config.from_dict(json.loads(config_file.read_text(encoding="utf-8")))
        except (OSError, ValueError) as err:
            raise UserError(f"{config_file}: cannot read the run config ({err})") from None
    return EvaluatedModel(path=path, loaded=loaded, config=config)


@dataclass
class _Source:
    images: tf.data.Dataset  # {image uint8, complexity, tags?}
    total: int | None
    has_tags: bool
    train_examples: Callable[[], list[tuple[list[str], float | None]]] | None


def _is_folder(data: str) -> bool:
    return Path(data).expanduser().is_dir()


def _tfds_source(data, data_dir, split, train_split, image_size, max_images) -> _Source:
    import tensorflow_datasets as tfds

    images = load_images(data, data_dir=data_dir, split=split, image_size=image_size)
    builder = tfds.builder(data, data_dir=data_dir)
    try:
        total = int(builder.info.splits[split].num_examples)
    except (KeyError, ValueError):
        total = None
    features = builder.info.features
    has_tags = "tags" in features
    stored_size = tuple(features["image"].shape[:2])

    def train_examples():
        # The trainer filters by the complexity at the model's size: the stored one where the
        # sizes agree (read without decoding a pixel), else computed again here.
        if "complexity" in features and stored_size == (image_size, image_size):
            try:
                ds = builder.as_dataset(
                    split=train_split, decoders={"image": tfds.decode.SkipDecoding()}
                )
            except (ValueError, KeyError) as err:
                raise UserError(
                    f"{data}: cannot read the training split {train_split!r}: {err}"
                ) from None
        else:
            ds = load_images(data, data_dir=data_dir, split=train_split, image_size=image_size)
        return [
            ([t.decode() for t in ex["tags"]], float(ex["complexity"]))
            for ex in ds.as_numpy_iterator()
        ]

    if max_images is not None:
        images = images.take(max_images)
        total = max_images if total is None else min(total, max_images)
    return _Source(images, total, has_tags, train_examples if has_tags else None)


def synthetic_test_seed(config: Config | None) -> int:
    """The first held-out synthetic seed for a run's config (defaults without one)."""
    data = config.data if config is not None else DataConfig()
    train = config.train if config is not None else TrainConfig()
    return train.seed + data.synthetic_count


def _synthetic_source(config: Config | None, image_size: int, max_images: int | None) -> _Source:
    count = max_images or DEFAULT_SYNTHETIC_COUNT
    images = load_images(
        "synthetic", image_size=image_size, seed=synthetic_test_seed(config), synthetic_count=count
    )
    data = config.data if config is not None else DataConfig()
    train = config.train if config is not None else TrainConfig()

    def train_examples():
        ds = load_images(
            "synthetic",
            image_size=image_size,
            seed=train.seed,
            synthetic_count=data.synthetic_count,
        )
        return [
            ([t.decode() for t in ex["tags"]], float(ex["complexity"]))
            for ex in ds.as_numpy_iterator()
        ]

    return _Source(images, count, True, train_examples)


def _same_folder(a: str, b: str) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _folder_source(
    folder: str, config: Config | None, image_size: int, max_images: int | None
) -> _Source:
    total = len(list_images(Path(folder).expanduser()))
    if (
        config is not None
        and config.data.holdout_fraction > 0
        and _is_folder(config.data.source)
        and _same_folder(folder, config.data.source)
    ):
        # The folder the run trained on: only the images it held out are unseen.
        held_out = held_out_images(config)
        images = held_out.map(lambda im: {"image": im, "complexity": image_complexity(im)})
        total = int(total * config.data.holdout_fraction)
    else:
        images = load_images(folder, image_size=image_size)
    if max_images is not None:
        images = images.take(max_images)
        total = min(total, max_images)
    return _Source(images, total, False, None)


def _open_source(data, data_dir, split, train_split, config, image_size, max_images) -> _Source:
    if max_images is not None and max_images < 1:
        raise UserError(f"--max-images: must be at least 1, got {max_images}")
    if data == "synthetic":
        return _synthetic_source(config, image_size, max_images)
    if _is_folder(data):
        return _folder_source(data, config, image_size, max_images)
    return _tfds_source(data, data_dir, split, train_split, image_size, max_images)


def _to_uint8(x01) -> np.ndarray:
    return np.clip(np.round(np.asarray(x01) * 255.0), 0, 255).astype(np.uint8)


@dataclass
class EvaluationReport:
    """What `evaluate` measured.

    Attributes:
        info: how it was run (model, data, split, image size, ceiling, ...).
        counts: held-out images per section (`all` and each task).
        metrics: `metrics[section][method]` -> `{"l1", "psnr", "ssim"}`, or None where the
            method does not apply (model_cues for a cue-free model) or the section is empty.
        figures: section -> figure file name (relative to the output folder).
    """

    info: dict
    counts: dict[str, int]
    metrics: dict[str, dict[str, dict[str, float | None] | None]]
    figures: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        """The report as JSON (`metrics.json`); an infinite PSNR is written as null."""

        def finite(obj):
            if isinstance(obj, float) and not np.isfinite(obj):
                return None
            if isinstance(obj, dict):
                return {k: finite(v) for k, v in obj.items()}
            return obj

        body = {
            "info": self.info,
            "methods": METHODS,
            "counts": self.counts,
            "metrics": finite(self.metrics),
            "figures": self.figures,
        }
        return json.dumps(body, indent=2) + "\n"

    def to_markdown(self) -> str:
        """The report as Markdown tables (`metrics.md`), one per section."""
        info = self.info
        lines = [
            "# Evaluation",
            "",
            f"- model: `{info['model']}` ({info['image_size']} px, "
            f"{'trained with cues' if info['uses_cues'] else 'trained without cues'})",
            f"- data: `{info['data']}`, split `{info['split']}`, {self.counts['all']} images",
            f"- tasks: interpolation = complexity >= {info['interpolation_threshold']:.1f} % "
            f"(1.2 x ceiling {info['complexity_ceiling']:g} %); color / transfer = a character "
            f"tag (`{info['character_tags']}`) seen / not seen in `{info['train_split']}`",
            "",
        ]
        for section in SECTIONS:
            lines.append(f"## {section} ({self.counts[section]} images)")
            lines.append("")
            if section in self.figures:
                lines += [f"![{section}]({self.figures[section]})", ""]
            if not self.counts[section]:
                lines += [self.info["empty_reasons"].get(section, "No images."), ""]
                continue
            lines.append("| method | L1 ↓ | PSNR (dB) ↑ | SSIM ↑ |")
            lines.append("|---|---:|---:|---:|")
            for method, label in METHODS.items():
                values = self.metrics[section][method]
                cells = [format_metric(m, None if values is None else values[m]) for m in METRICS]
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
            lines.append("")
        return "\n".join(lines)


def evaluate(
    model: EvaluatedModel,
    data: str,
    *,
    data_dir: str | None = None,
    split: str = "test",
    train_split: str = "train",
    character_tags: tasks.CharacterTags | None = None,
    complexity_ceiling: float | None = None,
    max_images: int | None = None,
    batch_size: int = 8,
    figure_rows: int = 6,
    output_dir: str | Path | None = None,
    on_start: Callable[[int | None], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> EvaluationReport:
    """Evaluates `model` on held-out images and (with `output_dir`) writes the report.

    Args:
        model: from `load_model`.
        data: `synthetic`, a folder of images, or a TFDS name (see the module docstring).
        data_dir: the TFDS data folder.
        split: the held-out TFDS split.
        train_split: the TFDS split the model was trained on (for the color/transfer split).
        character_tags: which tags name characters (default `character_*`).
        complexity_ceiling: the training ceiling; None: the run config's, else 40.
        max_images: evaluate at most this many images (synthetic: how many to draw, 64).
        batch_size: images per generator call.
        figure_rows: examples per task figure (the first ones of each task, in data order).
        output_dir: where to write `metrics.json`, `metrics.md` and `figures/<task>.png`
            (created if missing); None writes nothing.
        on_start: called once with the number of images (None if unknown).
        on_batch: called with the number of images in each batch done.

    Returns:
        The report.

    Raises:
        UserError: unusable data (unknown, unbuilt, empty) or an unwritable output folder.
    """
    if batch_size < 1:
        raise UserError(f"--batch-size: must be at least 1, got {batch_size}")
    character_tags = character_tags or tasks.CharacterTags((tasks.DEFAULT_CHARACTER_TAGS,))
    config = model.config
    if complexity_ceiling is None and config is not None:
        complexity_ceiling = config.data.complexity_ceiling
    threshold = tasks.interpolation_threshold(complexity_ceiling)
    ceiling_shown = tasks.DEFAULT_CEILING if complexity_ceiling is None else complexity_ceiling
    loaded = model.loaded
    size = loaded.image_size

    out_dir = None
    if output_dir is not None:
        out_dir = Path(output_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise UserError(f"{out_dir}: exists and is not a folder")

    source = _open_source(data, data_dir, split, train_split, config, size, max_images)
    seen = None
    if source.has_tags and source.train_examples is not None:
        seen = tasks.training_characters(
            source.train_examples(), character_tags, complexity_ceiling
        )

    def prepare(index, ex):
        out = prepare_example(
            ex["image"],
            seed=tf.stack([tf.constant(0, tf.int64), index]),
            training=False,
            cue_masks=FULL_CUES,
            cue_sigma=loaded.cue_sigma,
            image_size=size,
        )
        out["complexity"] = ex["complexity"]
        # One string per image (tags joined) so that examples batch despite their tag counts.
        out["tags"] = tf.strings.reduce_join(ex["tags"], separator="\n") if "tags" in ex else ""
        return out

    ds = source.images.enumerate().map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    def run(sketch, cues, mask):
        x = generator_inputs(sketch, cues, mask if loaded.use_cue_mask else None)
        return (tf.clip_by_value(loaded.generate(x), -1.0, 1.0) + 1.0) / 2.0

    methods = list(METHODS)
    per_image = {m: {k: [] for k in METRICS} for m in methods}
    assigned: list[str | None] = []
    figure_tiles: dict[str, list[list[np.ndarray]]] = {t: [] for t in tasks.TASKS}
    labels = ["sketch", "cues", "output, cues", "output, no cues", "truth"]
    if not loaded.uses_cues:
        labels = ["sketch", "cues (unused)", "output, no cues", "truth"]

    if on_start is not None:
        on_start(source.total)
    for batch in ds:
        truth = (batch["image"] + 1.0) / 2.0
        lines = (batch["sketch"] + 1.0) / 2.0
        cue01 = (batch["cues"] + 1.0) / 2.0
        zeros_cues = tf.zeros_like(batch["cues"])
        zeros_mask = tf.zeros_like(batch["cue_mask"])
        outputs = {
            "model_no_cues": run(batch["sketch"], zeros_cues, zeros_mask),
            "cue_layer": cue01,
            "cue_lines": cue01 * lines,
            "sketch_only": tf.repeat(lines, 3, axis=-1),
        }
        if loaded.uses_cues:
            outputs["model_cues"] = run(batch["sketch"], batch["cues"], batch["cue_mask"])
        for method, prediction in outputs.items():
            for name, values in image_metrics(prediction, truth).items():
                per_image[method][name].extend(values.numpy().tolist())

        for i in range(int(truth.shape[0])):
            tag_text = batch["tags"][i].numpy().decode()
            tags = tag_text.split("\n") if source.has_tags and tag_text else []
            task = tasks.assign_task(
                tags if source.has_tags else None,
                float(batch["complexity"][i]),
                seen,
                character_tags,
                threshold,
            )
            assigned.append(task)
            if task is not None and len(figure_tiles[task]) < figure_rows:
                row = [_to_uint8(lines[i]), _to_uint8(cue01[i])]
                if loaded.uses_cues:
                    row.append(_to_uint8(outputs["model_cues"][i]))
                row += [_to_uint8(outputs["model_no_cues"][i]), _to_uint8(truth[i])]
                figure_tiles[task].append(row)
        if on_batch is not None:
            on_batch(int(truth.shape[0]))

    if not assigned:
        raise UserError(f"{data}: no held-out images to evaluate (split {split!r})")

    assigned_arr = np.array([t or "" for t in assigned])
    members = {"all": np.ones(len(assigned), bool)}
    members.update({t: assigned_arr == t for t in tasks.TASKS})
    counts = {s: int(members[s].sum()) for s in SECTIONS}
    metrics: dict[str, dict] = {}
    for section in SECTIONS:
        metrics[section] = {}
        for method in methods:
            if not per_image[method]["l1"] or not counts[section]:
                metrics[section][method] = None
                continue
            chosen = members[section]
            metrics[section][method] = mean_metrics(
                {k: np.asarray(v)[chosen] for k, v in per_image[method].items()}
            )

    empty_reasons = {}
    no_split = "color and transfer need character tags of the held-out and training images"
    for t in tasks.TASKS:
        if counts[t]:
            continue
        if t != "interpolation" and seen is None:
            empty_reasons[t] = f"No images: {no_split}, and this source has none."
        elif t == "interpolation":
            empty_reasons[t] = f"No images: none has a complexity >= {threshold:.1f} %."
        elif t == "transfer":
            empty_reasons[t] = (
                "No images: every held-out image below the interpolation threshold shares a "
                "character tag with the training set."
            )
        else:
            empty_reasons[t] = (
                "No images: no held-out image shares a character tag with the training set."
            )
    info = {
        "model": str(model.path),
        "image_size": size,
        "uses_cues": loaded.uses_cues,
        "data": data,
        "data_dir": data_dir,
        "split": (
            f"seeds from {synthetic_test_seed(config)}" if data == "synthetic" else split
        ),
        "train_split": train_split,
        "character_tags": character_tags.describe(),
        "training_characters": sorted(seen) if seen is not None else None,
        "complexity_ceiling": ceiling_shown,
        "interpolation_threshold": threshold,
        "empty_reasons": empty_reasons,
    }
    report = EvaluationReport(info=info, counts=counts, metrics=metrics)
    if out_dir is not None:
        _write(report, out_dir, figure_tiles, labels)
    return report


def _write(report: EvaluationReport, out_dir: Path, figure_tiles, labels) -> None:
    try:
        (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{out_dir}: cannot create the output folder ({err.strerror})") from None
    for task, rows in figure_tiles.items():
        if rows:
            name = f"figures/{task}.png"
            write_image(out_dir / name, figures.grid(rows, labels))
            report.figures[task] = name
    write_bytes_atomic(out_dir / "metrics.md", report.to_markdown().encode())
    write_bytes_atomic(out_dir / "metrics.json", report.to_json().encode())
