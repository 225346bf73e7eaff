"""Scores a generator on held-out images: metrics per method and task, and figures.

Methods (the rows of the report), each compared with the true colour image in [0, 1]:
    model_cues: the model given the full cue layer (the paper's setting); n/a for a model
        trained without cues.
    model_partial_cues: the model given the cue layer only inside a stroke- and blob-shaped
        mask, as an artist gives a few rough strokes; n/a for a model trained without cues.
    model_no_cues: the model with cues withheld (cues and cue mask 0).
    cue_layer: the cue layer itself, the blurred colour image (a baseline).
    cue_lines: the cue layer with the sketch's lines multiplied over it (a baseline).
    sketch_only: the sketch as a grey image (a baseline).

Each held-out image is derived deterministically by the pipeline's `prepare_example`: no
augmentation, the image resized and centre-cropped to the model's size, the full cue layer.
The stroke mask of `model_partial_cues` is drawn as training draws a partial mask
(`random_cue_mask` with only partial masks), keyed by `PARTIAL_CUE_SEED` and the image's index
among the held-out images, so every run gives the same masks; cues outside it are 0.
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
from manga_pix2pix.data.cues import CueMaskConfig, apply_mask, random_cue_mask
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
    "model_partial_cues": "model, stroke cues",
    "model_no_cues": "model, no cues",
    "cue_layer": "baseline: cue layer (blurred colour)",
    "cue_lines": "baseline: cue layer x sketch lines",
    "sketch_only": "baseline: sketch only (grey)",
}
#: Report sections: every held-out image, then the three tasks.
SECTIONS = ("all",) + tasks.TASKS
DEFAULT_SYNTHETIC_COUNT = 64
FULL_CUES = CueMaskConfig(p_full=1.0, p_partial=0.0, p_none=0.0)
#: The `model_partial_cues` row's masks: always strokes and blobs, with training's defaults.
PARTIAL_CUES = CueMaskConfig(p_full=0.0, p_partial=1.0, p_none=0.0)
#: With the image's index, the stateless seed of its stroke mask.
PARTIAL_CUE_SEED = 1


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
            config = Config.from_dict(json.loads(config_file.read_text(encoding="utf-8")),
                                     source=str(config_file))
        except (OSError, ValueError) as err:
            raise UserError(f"{config_file}: cannot read the run config ({err})") from None
    return EvaluatedModel(path=path, loaded=loaded, config=config)


@dataclass
class _Source:
    """Held-out images, and how to read the tags of the training set."""

    images: tf.data.Dataset  # {image uint8, complexity, tags?}
    total: int | None
    has_tags: bool
    train_examples: Callable[[], list[tuple[list[str], float | None]]] | None
    held_out: str  # which images these are, for the report
    training_set: str | None  # what the training set is, for the report


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
    return _Source(
        images, total, has_tags, train_examples if has_tags else None,
        held_out=f"split {split}", training_set=f"split {train_split}" if has_tags else None,
    )


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

    first = synthetic_test_seed(config)
    return _Source(
        images, count, True, train_examples,
        held_out=f"seeds {first}-{first + count - 1}",
        training_set=f"seeds {train.seed}-{train.seed + data.synthetic_count - 1}",
    )


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
        held_out = f"the run's hold-out ({config.data.holdout_fraction:g}) of the folder"
    else:
        images = load_images(folder, image_size=image_size)
        held_out = "every image in the folder"
    if max_images is not None:
        images = images.take(max_images)
        total = min(total, max_images)
    return _Source(images, total, False, None, held_out=held_out, training_set=None)


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
            method does not apply (model_cues and model_partial_cues for a cue-free model) or
            the section is empty.
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
            f"- data: `{info['data']}`, {info['held_out']}: {self.counts['all']} images",
            f"- interpolation: complexity >= {info['interpolation_threshold']:.1f} % "
            f"(1.2 x the training ceiling of {info['complexity_ceiling']:g} %)",
        ]
        if info["training_set"] is not None:
            lines.append(
                f"- color / transfer: a character tag (`{info['character_tags']}`) seen / not "
                f"seen in the training set ({info['training_set']})"
            )
        lines.append("")
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


def _examples(source: _Source, loaded: LoadedModel, batch_size: int) -> tf.data.Dataset:
    """Batches of evaluation examples: full cues, no augmentation, with complexity and tags.

    For a model trained with cues each example also has `partial_cue_mask`, its stroke mask.
    """

    def prepare(index, ex):
        out = prepare_example(
            ex["image"],
            seed=tf.stack([tf.constant(0, tf.int64), index]),
            training=False,
            cue_masks=FULL_CUES,
            cue_sigma=loaded.cue_sigma,
            image_size=loaded.image_size,
        )
        if loaded.uses_cues:
            size = loaded.image_size
            seed = tf.stack([tf.constant(PARTIAL_CUE_SEED, tf.int64), index])
            out["partial_cue_mask"] = random_cue_mask(size, size, seed, PARTIAL_CUES)
        out["complexity"] = ex["complexity"]
        # One string per image (tags joined) so that examples batch despite their tag counts.
        out["tags"] = tf.strings.reduce_join(ex["tags"], separator="\n") if "tags" in ex else ""
        return out

    ds = source.images.enumerate().map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _predictions(
    loaded: LoadedModel, batch: dict[str, tf.Tensor], norm_stats: str = "moving"
) -> dict[str, tf.Tensor]:
    """Every method's colour image in [0, 1] for a batch (see the module docstring)."""
    generate = loaded.generator(norm_stats)

    def colour(cues, mask):
        x = generator_inputs(batch["sketch"], cues, mask if loaded.use_cue_mask else None)
        return (tf.clip_by_value(generate(x), -1.0, 1.0) + 1.0) / 2.0

    lines = (batch["sketch"] + 1.0) / 2.0
    cue_layer = (batch["cues"] + 1.0) / 2.0
    out = {
        "model_no_cues": colour(tf.zeros_like(batch["cues"]), tf.zeros_like(batch["cue_mask"])),
        "cue_layer": cue_layer,
        "cue_lines": cue_layer * lines,
        "sketch_only": tf.repeat(lines, 3, axis=-1),
    }
    if loaded.uses_cues:
        out["model_cues"] = colour(batch["cues"], batch["cue_mask"])
        strokes = batch["partial_cue_mask"]
        out["model_partial_cues"] = colour(apply_mask(batch["cues"], strokes), strokes)
    return out


class _Results:
    """Per-image metrics, the task of each image, and the figure rows, as batches come in."""

    def __init__(self, uses_cues: bool, figure_rows: int):
        self.uses_cues = uses_cues
        self.figure_rows = figure_rows
        self.per_image = {m: {k: [] for k in METRICS} for m in METHODS}
        self.tasks: list[str | None] = []
        self.figure_tiles: dict[str, list[list[np.ndarray]]] = {t: [] for t in SECTIONS}

    @property
    def labels(self) -> list[str]:
        """The figure's column titles."""
        if self.uses_cues:
            return [
                "sketch", "cues", "output, cues", "stroke cues", "output, strokes",
                "output, no cues", "truth",
            ]
        return ["sketch", "cues (unused)", "output, no cues", "truth"]

    def add(self, batch, predictions, batch_tasks: list[str | None]) -> None:
        truth = (batch["image"] + 1.0) / 2.0
        for method, prediction in predictions.items():
            for name, values in image_metrics(prediction, truth).items():
                self.per_image[method][name].extend(values.numpy().tolist())
        self.tasks.extend(batch_tasks)
        if self.uses_cues:
            # What the model is given for the stroke row: grey (cue 0) outside the strokes.
            strokes = batch["partial_cue_mask"]
            stroke_cues = (apply_mask(batch["cues"], strokes) + 1.0) / 2.0
        for i, task in enumerate(batch_tasks):
            # Every image can head the `all` figure; a task's figure takes its own images.
            for section in ("all", task):
                if section is None or len(self.figure_tiles[section]) >= self.figure_rows:
                    continue
                row = [predictions["sketch_only"][i], predictions["cue_layer"][i]]
                if self.uses_cues:
                    row += [
                        predictions["model_cues"][i],
                        stroke_cues[i],
                        predictions["model_partial_cues"][i],
                    ]
                row += [predictions["model_no_cues"][i], truth[i]]
                self.figure_tiles[section].append([_to_uint8(tile) for tile in row])

    def members(self) -> dict[str, np.ndarray]:
        """Section -> boolean mask over the images."""
        assigned = np.array([t or "" for t in self.tasks])
        out = {"all": np.ones(len(assigned), bool)}
        out.update({t: assigned == t for t in tasks.TASKS})
        return out

    def means(self) -> dict[str, dict[str, dict[str, float | None] | None]]:
        """`metrics[section][method]`, None where the method or the section is empty."""
        out = {}
        for section, chosen in self.members().items():
            out[section] = {}
            for method, values in self.per_image.items():
                if not values["l1"] or not chosen.any():
                    out[section][method] = None
                else:
                    out[section][method] = mean_metrics(
                        {k: np.asarray(v)[chosen] for k, v in values.items()}
                    )
        return out


def _empty_reasons(counts: dict[str, int], seen: set[str] | None, threshold: float) -> dict:
    reasons = {}
    for task in tasks.TASKS:
        if counts[task]:
            continue
        if task == "interpolation":
            reasons[task] = f"No images: none has a complexity >= {threshold:.1f} %."
        elif seen is None:
            reasons[task] = (
                "No images: color and transfer need the character tags of the held-out and "
                "the training images, and this source has none."
            )
        elif task == "transfer":
            reasons[task] = (
                "No images: every held-out image below the interpolation threshold shares a "
                "character tag with the training set."
            )
        else:
            reasons[task] = (
                "No images: no held-out image shares a character tag with the training set."
            )
    return reasons


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
    norm_stats: str = "moving",
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
        norm_stats: batch norm's statistics, `moving` or `image` (as `colorize --norm-stats`).
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
    config, loaded = model.config, model.loaded
    if complexity_ceiling is None and config is not None:
        complexity_ceiling = config.data.complexity_ceiling
    threshold = tasks.interpolation_threshold(complexity_ceiling)
    out_dir = None if output_dir is None else Path(output_dir)
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a folder")

    source = _open_source(data, data_dir, split, train_split, config, loaded.image_size,
                          max_images)
    seen = None
    if source.train_examples is not None:
        seen = tasks.training_characters(
            source.train_examples(), character_tags, complexity_ceiling
        )
        log.info("%d character tags in the training set (%s)", len(seen), source.training_set)

    results = _Results(loaded.uses_cues, figure_rows)
    if on_start is not None:
        on_start(source.total)
    for batch in _examples(source, loaded, batch_size):
        batch_tasks = []
        pairs = zip(batch["tags"].numpy(), batch["complexity"].numpy(), strict=True)
        for tag_text, complexity in pairs:
            tags = [t for t in tag_text.decode().split("\n") if t] if source.has_tags else None
            batch_tasks.append(
                tasks.assign_task(tags, float(complexity), seen, character_tags, threshold)
            )
        results.add(batch, _predictions(loaded, batch, norm_stats), batch_tasks)
        if on_batch is not None:
            on_batch(len(batch_tasks))
    if not results.tasks:
        raise UserError(f"{data}: no held-out images to evaluate ({source.held_out})")

    counts = {section: int(m.sum()) for section, m in results.members().items()}
    info = {
        "model": str(model.path),
        "image_size": loaded.image_size,
        "uses_cues": loaded.uses_cues,
        "norm_stats": norm_stats,
        "data": data,
        "data_dir": data_dir,
        "held_out": source.held_out,
        "training_set": source.training_set,
        "character_tags": character_tags.describe(),
        "training_characters": sorted(seen) if seen is not None else None,
        "complexity_ceiling": (
            tasks.DEFAULT_CEILING if complexity_ceiling is None else complexity_ceiling
        ),
        "interpolation_threshold": threshold,
        "empty_reasons": _empty_reasons(counts, seen, threshold),
    }
    report = EvaluationReport(info=info, counts=counts, metrics=results.means())
    if out_dir is not None:
        _write(report, out_dir, results.figure_tiles, results.labels)
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
