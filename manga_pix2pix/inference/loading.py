"""Loading a generator for inference from a run directory, a `.keras` file or an export.

Three kinds of model path are accepted:
    * a run directory (`RUN/generator.keras`, with `RUN/config.json` when present);
    * a `.keras` file written by `UNetGenerator.save`;
    * a folder written by `manga-pix2pix export --format savedmodel` (`saved_model.pb` plus
      `manga_pix2pix.json`).

Each gives a `LoadedModel`: generator functions (float32 `[N, H, W, C]` in [-1, 1] ->
`[N, H, W, 3]` in [-1, 1], with H and W any multiple of `image_size`) and what inference needs
to know about the model. Every problem a user can cause (a missing path, a corrupt file, a
Keras model that is not our generator) is a `UserError` with a one-line message.

Batch norm at inference (`NORM_STATS`), never with dropout, so a sketch always gives the same
colours whatever else is in the batch:
    * `moving` (the default): `training=False`, the moving averages of training.
    * `image`: each image's own statistics, as the pix2pix paper ran its generator at test time
      (batch statistics of a batch of one, i.e. instance normalisation), but without its
      test-time dropout (dropout only adds noise; it did not change the error measured).
      A batch-norm generator trained on a mixture of full, partial and no cues can normalise
      a sketch with few or no cues badly with the moving averages (washed-out colours): with
      a 128-px model trained for 10 minutes on 270 anime faces, held-out PSNR was 20.7 dB
      (`moving`) vs 19.5 dB (`image`) with full cues, but 6.2 vs 13.8 dB with partial
      cues and 6.3 vs 11.6 dB with none. Instance-norm generators are the same either way.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from manga_pix2pix.errors import UserError
from manga_pix2pix.models.layers import double_size

log = logging.getLogger(__name__)

#: Metadata written next to an exported SavedModel (and a TFLite file).
EXPORT_METADATA = "manga_pix2pix.json"
GENERATOR_FILE = "generator.keras"
CONFIG_FILE = "config.json"
#: How batch norm is run at inference (see the module docstring).
NORM_STATS = ("moving", "image")
#: Channels of the generator's inputs: sketch (1) + cues (3) [+ cue mask (1)].
_CHANNELS_WITHOUT_MASK = 4
_CHANNELS_WITH_MASK = 5


@dataclass
class LoadedModel:
    """A generator ready for inference.

    Attributes:
        generate: float32 `[N, H, W, input_channels]` in [-1, 1] -> `[N, H, W, 3]` in [-1, 1];
            H and W must be multiples of `image_size`. Batch norm with moving statistics.
        generate_per_image: the same with each image's own batch-norm statistics.
        image_size: the training size; also the multiple the U-Net needs (2**depth).
        uses_cues: False for a model trained without cues (`train --no-cues`).
        use_cue_mask: whether the generator takes the one-channel cue mask.
        cue_sigma: the cue blur sigma in pixels at `image_size` used in training, or None for
            the default (20 px per 256 px).
        line_input: how colorize shows it line art, `adaptive` or `grey` (from the
            generator's config; `adaptive` for models saved before it was recorded).
        source: the path it was loaded from.
        kind: `run`, `keras` or `savedmodel`.
        keep: the object that owns the variables (a Keras model or a loaded SavedModel); export
            tracks it.
    """

    generate: Callable[[tf.Tensor], tf.Tensor]
    generate_per_image: Callable[[tf.Tensor], tf.Tensor]
    image_size: int
    uses_cues: bool
    use_cue_mask: bool
    cue_sigma: float | None
    source: str
    kind: str
    keep: Any
    line_input: str = "adaptive"

    def generator(self, norm_stats: str = "moving") -> Callable[[tf.Tensor], tf.Tensor]:
        """The generator function for a `NORM_STATS` choice."""
        if norm_stats not in NORM_STATS:
            raise UserError(f"norm stats: must be one of {', '.join(NORM_STATS)}, "
                            f"got {norm_stats!r}")
        return self.generate if norm_stats == "moving" else self.generate_per_image

    @property
    def input_channels(self) -> int:
        """Channels of the generator's input."""
        return _CHANNELS_WITH_MASK if self.use_cue_mask else _CHANNELS_WITHOUT_MASK

    def metadata(self) -> dict[str, Any]:
        """What an export records about the model (see `EXPORT_METADATA`)."""
        return {
            "format": "manga-pix2pix generator",
            "image_size": self.image_size,
            "uses_cues": self.uses_cues,
            "use_cue_mask": self.use_cue_mask,
            "cue_sigma": self.cue_sigma,
            "input_channels": self.input_channels,
            "line_input": self.line_input,
        }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{path}: not valid JSON") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


def _normalize_per_image(layer, x: tf.Tensor) -> tf.Tensor:
    if not isinstance(layer, keras.layers.BatchNormalization):
        return layer(x, training=False)  # instance norm is per image already
    x32 = tf.cast(x, tf.float32)
    mean, variance = tf.nn.moments(x32, axes=[1, 2], keepdims=True)
    out = tf.nn.batch_normalization(x32, mean, variance, tf.cast(layer.beta, tf.float32),
                                    tf.cast(layer.gamma, tf.float32), layer.epsilon)
    return tf.cast(out, x.dtype)


def _block_per_image(block, x: tf.Tensor) -> tf.Tensor:
    if getattr(block, "upsample", "transpose") == "resize":
        x = double_size(x)
    x = block.conv(x)
    if block.norm_layer is not None:
        x = _normalize_per_image(block.norm_layer, x)
    return block.act(x)


def forward_per_image(generator, x: tf.Tensor) -> tf.Tensor:
    """`UNetGenerator.call` with each image's own batch-norm statistics and no dropout.

    Equal to calling the generator with `training=True` on each image alone with dropout off,
    but stateless: the moving averages are neither read nor updated.
    """
    skips = []
    for block in generator.down_blocks:
        x = _block_per_image(block, x)
        skips.append(x)
    for block, skip in zip(generator.up_blocks, reversed(skips[:-1]), strict=True):
        x = tf.concat([_block_per_image(block, x), tf.cast(skip, x.dtype)], axis=-1)
    if getattr(generator, "upsample", "transpose") == "resize":
        x = double_size(x)
    return generator.out_act(generator.last(x))


def _generate_fns(model, channels: int) -> tuple[Callable, Callable]:
    spec = tf.TensorSpec([None, None, None, channels], tf.float32)
    moving = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    per_image = tf.function(lambda x: forward_per_image(model, x), input_signature=[spec])
    return moving, per_image


def _load_keras(path: Path, *, kind: str, cue_sigma: float | None) -> LoadedModel:
    # Registers UNetGenerator and its layers with Keras before deserialising.
    from manga_pix2pix.models import UNetGenerator

    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a .keras model file (not a zip archive)")
    # Keras raises many exception types for one cause, a file it cannot use; safe_mode (the
    # default) refuses to deserialise arbitrary Python code such as lambdas.
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: cannot load this .keras model ({message[:200]})") from None
    if not isinstance(model, UNetGenerator):
        raise UserError(
            f"{path}: a {type(model).__name__}, not a manga-pix2pix generator (UNetGenerator)"
        )
    if model.input_channels not in (_CHANNELS_WITHOUT_MASK, _CHANNELS_WITH_MASK):
        raise UserError(
            f"{path}: a generator with {model.input_channels} input channels; expected "
            "sketch + cues (4) or sketch + cues + cue mask (5)"
        )
    if model.output_channels != 3:
        raise UserError(f"{path}: a generator with {model.output_channels} output channels")
    moving, per_image = _generate_fns(model, model.input_channels)
    return LoadedModel(
        generate=moving,
        generate_per_image=per_image,
        image_size=int(model.image_size),
        uses_cues=bool(model.uses_cues),
        use_cue_mask=model.input_channels == _CHANNELS_WITH_MASK,
        cue_sigma=cue_sigma,
        source=str(path),
        kind=kind,
        keep=model,
        line_input=getattr(model, "line_input", "adaptive"),
    )


def _load_run(run_dir: Path) -> LoadedModel:
    cue_sigma = None
    config_path = run_dir / CONFIG_FILE
    if config_path.is_file():
        from manga_pix2pix.config import Config

        config = Config.from_dict(_read_json(config_path), source=str(config_path))
        cue_sigma = config.data.cue_sigma
    else:
        log.warning("%s: no %s; using the default cue blur", run_dir, CONFIG_FILE)
    return _load_keras(run_dir / GENERATOR_FILE, kind="run", cue_sigma=cue_sigma)


def _load_savedmodel(folder: Path) -> LoadedModel:
    meta_path = folder / EXPORT_METADATA
    if not meta_path.is_file():
        raise UserError(f"{folder}: a SavedModel, but not one exported by manga-pix2pix "
                        f"(no {EXPORT_METADATA})")
    meta = _read_json(meta_path)
    try:
        image_size = int(meta["image_size"])
        uses_cues = bool(meta["uses_cues"])
        use_cue_mask = bool(meta["use_cue_mask"])
        cue_sigma = meta.get("cue_sigma")
        cue_sigma = None if cue_sigma is None else float(cue_sigma)
        line_input = str(meta.get("line_input", "adaptive"))
        if line_input not in ("adaptive", "grey"):
            raise ValueError(line_input)
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{meta_path}: missing or bad fields") from None
    # As with Keras: many exception types, one cause (files TensorFlow cannot use).
    try:
        loaded = tf.saved_model.load(str(folder))
    except Exception as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{folder}: cannot load this SavedModel ({message[:200]})") from None
    if not (hasattr(loaded, "generate") and hasattr(loaded, "generate_per_image")):
        raise UserError(f"{folder}: this SavedModel has no `generate` functions")
    return LoadedModel(
        generate=loaded.generate,
        generate_per_image=loaded.generate_per_image,
        image_size=image_size,
        uses_cues=uses_cues,
        use_cue_mask=use_cue_mask,
        cue_sigma=cue_sigma,
        source=str(folder),
        kind="savedmodel",
        keep=loaded,
        line_input=line_input,
    )


def load_model(path: str | os.PathLike) -> LoadedModel:
    """Loads a generator from a run directory, a `.keras` file or an exported SavedModel.

    Raises:
        UserError: the path is missing, unreadable, corrupt, or not a manga-pix2pix generator.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such model (give a run directory, a .keras file or an "
                        "exported SavedModel folder)")
    if path.is_dir():
        if (path / GENERATOR_FILE).is_file():
            return _load_run(path)
        if (path / "saved_model.pb").is_file():
            return _load_savedmodel(path)
        hint = " (training has not finished?)" if (path / "checkpoints").is_dir() else ""
        raise UserError(
            f"{path}: neither a run directory (no {GENERATOR_FILE}{hint}) nor an exported "
            "SavedModel (no saved_model.pb)"
        )
    if path.suffix != ".keras":
        raise UserError(f"{path}: not a model (expected a run directory, a .keras file or an "
                        "exported SavedModel folder)")
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None
    if path.name == GENERATOR_FILE and (path.parent / CONFIG_FILE).is_file():
        return _load_run(path.parent)
    return _load_keras(path, kind="keras", cue_sigma=None)
