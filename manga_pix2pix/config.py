"""Configuration: documented dataclasses and the named presets.

A run's resolved configuration is written to `config.json` in its run directory; a run
directory can only be resumed with a compatible configuration (same model and data shape).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from manga_pix2pix.errors import UserError

NORMALIZATIONS = ("batch", "instance")
UPSAMPLINGS = ("transpose", "resize")
SKETCH_STYLES = ("adaptive", "xdog", "pencil", "mix")
CUE_STYLES = ("paper", "artist")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "default", "mirrored", "multi-worker", "tpu")
DERIVE_ON = ("auto", "host", "device")

#: Largest cue blur sigma, in pixels (`cues --sigma`, a run's `cue_sigma`): the default for
#: the largest image accepted (8192 px) is 640.
MAX_CUE_SIGMA = 1000.0

#: Largest `colorize --work-size`: a work canvas of 2048 x 2048 for a square page and at most
#: 2048 x 32768 (64 M pixels, the largest image accepted) for the thinnest one.
MAX_WORK_SIZE = 2048


@dataclass
class ModelConfig:
    """The generator and discriminator.

    Attributes:
        image_size: side of the square training images; a power of two from 32 to 1024. The
            U-Net has log2(image_size) down blocks, so the bottleneck is 1x1 as in the paper.
        base_filters: filters of the first generator and discriminator block (paper: 64);
            each block doubles them up to `8 * base_filters`.
        norm: `batch` as in the paper, or `instance` for large batches and many replicas
            (batch statistics are per replica under tf.distribute).
        dropout: dropout rate of the first three up blocks (paper: 0.5).
        sketch_channels: channels of the sketch input (1).
        cue_channels: channels of the cue input (3, RGB).
        use_cue_mask: whether the generator also takes the one-channel cue mask.
        upsample: the generator's up-sampling, `transpose` (paper: ConvTranspose 4x4 s2) or
            `resize` (nearest 2x then Conv 3x3, which cannot draw a checkerboard).
    """

    image_size: int = 256
    base_filters: int = 64
    norm: str = "batch"
    dropout: float = 0.5
    sketch_channels: int = 1
    cue_channels: int = 3
    use_cue_mask: bool = True
    upsample: str = "transpose"

    def __post_init__(self):
        size = self.image_size
        if size < 32 or size > 1024 or size & (size - 1):
            raise ValueError(f"image_size: must be a power of two in [32, 1024], got {size}")
        if self.base_filters < 1:
            raise ValueError(f"base_filters: must be positive, got {self.base_filters}")
        if self.sketch_channels != 1 or self.cue_channels != 3:
            raise ValueError(
                f"sketch_channels: the networks take a 1-channel sketch and 3-channel cues, got "
                f"{self.sketch_channels} and {self.cue_channels}"
            )
        if self.norm not in NORMALIZATIONS:
            raise ValueError(f"norm: must be one of {NORMALIZATIONS}, got {self.norm!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: must be in [0, 1), got {self.dropout}")
        if self.upsample not in UPSAMPLINGS:
            raise ValueError(f"upsample: must be one of {UPSAMPLINGS}, got {self.upsample!r}")

    @property
    def input_channels(self) -> int:
        """Channels of the generator input: sketch, cues and (optionally) the cue mask."""
        return self.sketch_channels + self.cue_channels + int(self.use_cue_mask)


@dataclass
class DataConfig:
    """Where training images come from and how examples are derived.

    Attributes:
        source: `synthetic`, a folder of images, or a TFDS name such as `danbooru`.
        data_dir: the TFDS data directory (for a TFDS source).
        complexity_ceiling: keep training images whose sketch has at most this percent of
            line pixels (paper: 40); None keeps all.
        no_cues: train the paper's cue-free model: cues are always withheld.
        p_full_cues: probability that a training example gets the full cue layer.
        p_partial_cues: probability of random stroke/blob-shaped cue regions.
        p_no_cues: probability of no cues at all.
        cue_sigma: cue blur sigma in pixels at the training size (None: 20 px per 256 px).
        synthetic_count: images drawn by the synthetic source.
        holdout_fraction: for a folder source, the share of files held out for evaluation.
        sketch_style: the training sketches: `adaptive` (the paper's threshold), `xdog`,
            `pencil` (soft grey lines), or `mix` (each example one of them, with the
            probabilities below).
        p_sketch_adaptive, p_sketch_xdog, p_sketch_pencil: the `mix` probabilities.
        line_augment: jitter the sketch lines (thickness, darkness, grey level, noise).
        cue_style: `paper` (the truth blurred; partial cues cut out of it) or `artist`
            (highlighter layers that do not line up with the truth, flat-colour strokes of
            the median true colour under them); see `manga_pix2pix.data.cues`.
        p_mosaic: the share of training examples replaced by a 2 x 2 mosaic of the batch's
            images at half scale (`manga_pix2pix.data.derive.mosaic_batch`).
    """

    source: str = "synthetic"
    data_dir: str | None = None
    complexity_ceiling: float | None = 40.0
    no_cues: bool = False
    p_full_cues: float = 0.5
    p_partial_cues: float = 0.4
    p_no_cues: float = 0.1
    cue_sigma: float | None = None
    synthetic_count: int = 256
    holdout_fraction: float = 0.0
    sketch_style: str = "adaptive"
    p_sketch_adaptive: float = 0.2
    p_sketch_xdog: float = 0.3
    p_sketch_pencil: float = 0.5
    line_augment: bool = False
    cue_style: str = "paper"
    p_mosaic: float = 0.0

    def __post_init__(self):
        for names in (("p_full_cues", "p_partial_cues", "p_no_cues"),
                      ("p_sketch_adaptive", "p_sketch_xdog", "p_sketch_pencil")):
            probs = [getattr(self, name) for name in names]
            if min(probs) < 0 or abs(sum(probs) - 1.0) > 1e-6:
                raise ValueError(f"{names[0]}: {', '.join(names)} must be non-negative and "
                                 f"sum to 1, got {probs}")
        if self.cue_sigma is not None and not 0 < self.cue_sigma <= MAX_CUE_SIGMA:
            raise ValueError(
                f"cue_sigma: must be in (0, {MAX_CUE_SIGMA:g}] or null, got {self.cue_sigma}"
            )
        if self.complexity_ceiling is not None and not self.complexity_ceiling >= 0:
            raise ValueError(
                f"complexity_ceiling: must be 0 or more, or null, got {self.complexity_ceiling}"
            )
        if self.synthetic_count < 1:
            raise ValueError(f"synthetic_count: must be positive, got {self.synthetic_count}")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction: must be in [0, 1), got {self.holdout_fraction}")
        if not 0.0 <= self.p_mosaic <= 1.0:
            raise ValueError(f"p_mosaic: must be in [0, 1], got {self.p_mosaic}")
        if self.sketch_style not in SKETCH_STYLES:
            raise ValueError(
                f"sketch_style: must be one of {SKETCH_STYLES}, got {self.sketch_style!r}"
            )
        if self.cue_style not in CUE_STYLES:
            raise ValueError(f"cue_style: must be one of {CUE_STYLES}, got {self.cue_style!r}")


@dataclass
class TrainConfig:
    """The optimisation and the run.

    Attributes:
        batch_size: global batch size (split over replicas).
        epochs: passes over the training data (ignored when `steps` is set). None only
            with `time_limit_s`: the steps are then whatever fits in the time.
        steps: total train steps; when set it takes precedence over `epochs`.
        time_limit_s: wall-clock seconds a training session may take, or None. The run's
            length is then fitted to the time (see `training.loop.fit_steps`), at most
            `steps` or `epochs` when one is set, and recorded in `steps` once fixed.
        learning_rate: Adam learning rate for both networks (paper: 2e-4).
        beta_1: Adam beta_1 (paper: 0.5).
        l1_weight: weight of the L1 term in the generator loss (paper: 100).
        ema_decay: 0 (off), or the decay of an exponential moving average of the
            generator's trainable weights, updated after every step; the saved generator
            (`generator.keras`) then holds the average, the checkpoints both.
        lr_decay: `constant`, or `linear` decay to 0 over the second half of training.
        seed: seeds data order, augmentation, cue masks and initial weights.
        precision: `auto` (bfloat16 where the hardware has it, see
            `training.strategy.resolve_precision`), `float32`, `mixed_float16` (with loss
            scaling) or `mixed_bfloat16`. A run's `config.json` records the concrete choice.
        xla: compile the train step with XLA.
        derive_on: where the sketch, cues and cue masks are derived from the augmented uint8
            images: `host` (in the input pipeline), `device` (at the start of the train step,
            per replica, on the accelerator or the CPU) or `auto` (device: the faster one with
            an accelerator and, measured, on a CPU too).
            The same examples either way; a run's `config.json` records the concrete choice.
        strategy: `auto`, `default`, `mirrored`, `multi-worker` or `tpu`.
        tpu: TPU name or address for the `tpu` strategy (implies it under `auto`).
        checkpoint_every: save a checkpoint every this many steps (and at the end).
        keep_checkpoints: how many checkpoints to keep.
        log_every: write TensorBoard scalars every this many steps.
    """

    batch_size: int = 4
    epochs: int | None = 20
    steps: int | None = None
    time_limit_s: float | None = None
    learning_rate: float = 2e-4
    beta_1: float = 0.5
    l1_weight: float = 100.0
    ema_decay: float = 0.0
    lr_decay: str = "constant"
    seed: int = 0
    precision: str = "auto"
    xla: bool = False
    derive_on: str = "auto"
    strategy: str = "auto"
    tpu: str | None = None
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10

    def __post_init__(self):
        for name in ("batch_size", "epochs", "steps", "checkpoint_every", "keep_checkpoints",
                     "log_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}: must be positive, got {value}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate: must be positive, got {self.learning_rate}")
        if not 0 <= self.beta_1 < 1:
            raise ValueError(f"beta_1: must be in [0, 1), got {self.beta_1}")
        if self.l1_weight < 0:
            raise ValueError(f"l1_weight: must be non-negative, got {self.l1_weight}")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise ValueError(f"time_limit_s: must be positive, got {self.time_limit_s}")
        if self.epochs is None and self.steps is None and self.time_limit_s is None:
            raise ValueError("epochs: needed when neither steps nor time_limit_s is set")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: must be one of {PRECISIONS}, got {self.precision!r}")
        if self.derive_on not in DERIVE_ON:
            raise ValueError(f"derive_on: must be one of {DERIVE_ON}, got {self.derive_on!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy: must be one of {STRATEGIES}, got {self.strategy!r}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay: must be in [0, 1), got {self.ema_decay}")
        if self.lr_decay not in ("constant", "linear"):
            raise ValueError(f"lr_decay: must be 'constant' or 'linear', got {self.lr_decay!r}")


@dataclass
class Config:
    """A whole run: model, data and training.

    Attributes:
        preset: the preset this config started from.
        model: the networks.
        data: the training data.
        train: the optimisation.
    """

    preset: str = "paper"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Pretty JSON, as written to `config.json`."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Any, *, source: str = "config") -> Config:
        """Builds a config from `to_dict` output (e.g. a run's `config.json`).

        Each field's JSON type is checked against its annotation, and each value against the
        section's own checks; `source` names the file in the message.

        Raises:
            UserError: not an object, an unknown key, a value of the wrong type or out of range,
                e.g. "run/config.json: data.cue_sigma: expected a number or null, got 'abc'".
        """
        if not isinstance(d, dict):
            raise UserError(f"{source}: expected a JSON object")
        unknown = sorted(set(d) - {"preset", "model", "data", "train"})
        if unknown:
            raise UserError(f"{source}: unknown key {unknown[0]!r}")
        preset_name = d.get("preset", "paper")
        if not isinstance(preset_name, str):
            raise UserError(f"{source}: preset: expected a string, got {preset_name!r}")
        sections = {}
        for name, section_cls in (("model", ModelConfig), ("data", DataConfig),
                                  ("train", TrainConfig)):
            values = d.get(name, {})
            if not isinstance(values, dict):
                raise UserError(f"{source}: {name}: expected a JSON object, got {values!r}")
            sections[name] = _section(section_cls, values, f"{source}: {name}")
        return cls(preset=preset_name, **sections)


_JSON_TYPES = {
    "int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
}


def _checked_value(value: Any, annotation: str, where: str) -> Any:
    """`value` as the annotated field type (`int`, `float | None`, ...), or a UserError."""
    kinds = [part.strip() for part in annotation.split("|")]
    if value is None and "None" in kinds:
        return None
    kind = next(k for k in kinds if k != "None")
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        ok = (isinstance(value, int | float) and not isinstance(value, bool)
              and math.isfinite(value))
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        expected = _JSON_TYPES[kind] + (" or null" if "None" in kinds else "")
        raise UserError(f"{where}: expected {expected}, got {value!r}")
    return value


def _section(section_cls: type, values: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(section_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r}")
    checked = {key: _checked_value(value, fields[key].type, f"{where}.{key}")
               for key, value in values.items()}
    try:
        return section_cls(**checked)
    except ValueError as err:
        raise UserError(f"{where}.{err}") from None


PRESETS: dict[str, Config] = {
    # The paper's networks at 256 px, batch 4.
    "paper": Config(preset="paper"),
    # Trainable on 2 CPU cores: 128 px, a quarter of the width; resize-then-convolve
    # up-sampling, which scored better on real line art (docs/results.md).
    "small": Config(
        preset="small",
        model=ModelConfig(image_size=128, base_filters=16, upsample="resize"),
        train=TrainConfig(batch_size=4, epochs=30, checkpoint_every=250),
    ),
    # Seconds, for tests and the quickest look at the flow.
    "smoke": Config(
        preset="smoke",
        model=ModelConfig(image_size=32, base_filters=8),
        data=DataConfig(synthetic_count=16),
        train=TrainConfig(batch_size=2, epochs=1, checkpoint_every=50, log_every=1),
    ),
}


def preset(name: str) -> Config:
    """A fresh copy of the named preset."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return Config.from_dict(PRESETS[name].to_dict())
