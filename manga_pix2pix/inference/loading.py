"""Loading a generator for inference from a run directory, a `.keras` file or an export.

Three kinds of model path are accepted:
    * a run directory (`RUN/generator.keras`, with `RUN/config.json` when present);
    * a `.keras` file written by `UNetGenerator.save`;
    * a folder written by `manga-pix2pix export --format savedmodel` (`saved_model.pb` plus
      `manga_pix2pix.json`).

Each gives a `LoadedModel`: a `generate` function (float32 `[N, H, W, C]` in [-1, 1] ->
`[N, H, W, 3]` in [-1, 1], with H and W any multiple of `image_size`) and what inference needs
to know about the model. Every problem a user can cause (a missing path, a corrupt file, a
Keras model that is not our generator) is a `UserError` with a one-line message.

Batch norm and dropout run in inference mode (`training=False`): moving statistics and no
dropout, so that a sketch always gives the same colours and does not depend on what else is in
the batch.
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

import tensorflow as tf

from manga_pix2pix.errors import UserError

log = logging.getLogger(__name__)

#: Metadata written next to an exported SavedModel (and a TFLite file).
EXPORT_METADATA = "manga_pix2pix.json"
GENERATOR_FILE = "generator.keras"
CONFIG_FILE = "config.json"
#: Channels of the generator's inputs: sketch (1) + cues (3) [+ cue mask (1)].
_CHANNELS_WITHOUT_MASK = 4
_CHANNELS_WITH_MASK = 5


@dataclass
class LoadedModel:
    """A generator ready for inference.

    Attributes:
        generate: float32 `[N, H, W, input_channels]` in [-1, 1] -> `[N, H, W, 3]` in [-1, 1];
            H and W must be multiples of `image_size`.
        image_size: the training size; also the multiple the U-Net needs (2**depth).
        uses_cues: False for a model trained without cues (`train --no-cues`).
        use_cue_mask: whether the generator takes the one-channel cue mask.
        cue_sigma: the cue blur sigma in pixels at `image_size` used in training, or None for
            the default (20 px per 256 px).
        source: the path it was loaded from.
        kind: `run`, `keras` or `savedmodel`.
        keep: the object that owns the variables (a Keras model or a loaded SavedModel); export
            tracks it.
    """

    generate: Callable[[tf.Tensor], tf.Tensor]
    image_size: int
    uses_cues: bool
    use_cue_mask: bool
    cue_sigma: float | None
    source: str
    kind: str
    keep: Any

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


def _generate_fn(model, channels: int) -> Callable[[tf.Tensor], tf.Tensor]:
    spec = tf.TensorSpec([None, None, None, channels], tf.float32)
    return tf.function(lambda x: model(x, training=False), input_signature=[spec])


def _load_keras(path: Path, *, kind: str, cue_sigma: float | None) -> LoadedModel:
    import keras

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
    return LoadedModel(
        generate=_generate_fn(model, model.input_channels),
        image_size=int(model.image_size),
        uses_cues=bool(model.uses_cues),
        use_cue_mask=model.input_channels == _CHANNELS_WITH_MASK,
        cue_sigma=cue_sigma,
        source=str(path),
        kind=kind,
        keep=model,
    )


def _load_run(run_dir: Path) -> LoadedModel:
    cue_sigma = None
    config_path = run_dir / CONFIG_FILE
    if config_path.is_file():
        from manga_pix2pix.config import Config

        config = Config.from_dict(_read_json(config_path))
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
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{meta_path}: missing or bad fields") from None
    # As with Keras: many exception types, one cause (files TensorFlow cannot use).
    try:
        loaded = tf.saved_model.load(str(folder))
    except Exception as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{folder}: cannot load this SavedModel ({message[:200]})") from None
    if not hasattr(loaded, "generate"):
        raise UserError(f"{folder}: this SavedModel has no `generate` function")
    return LoadedModel(
        generate=loaded.generate,
        image_size=image_size,
        uses_cues=uses_cues,
        use_cue_mask=use_cue_mask,
        cue_sigma=cue_sigma,
        source=str(folder),
        kind="savedmodel",
        keep=loaded,
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
