"""Exporting a generator: a SavedModel that colours uint8 images, or a TFLite generator.

SavedModel (`--format savedmodel`): `DIR/saved_model.pb` + `DIR/variables/`, loadable with
plain `tf.saved_model.load` (no manga-pix2pix code needed), and `DIR/manga_pix2pix.json` (the
model's size and inputs). Its functions hold the whole of `colorize` — sketch op, cue resize,
blur and mask, padding, line overlay — inside the graph, at the default work size (the model's
`image_size`):

    serving_default(sketch, cues) -> {"colour": uint8}     (models trained with cues)
    serving_default(sketch) -> {"colour": uint8}           (models trained without cues)
    colorize_without_cues(sketch) -> {"colour": uint8}
    generate(x), generate_per_image(x) -> float32           (the bare generator, [-1, 1])

The serving functions use the batch-norm statistics chosen at export (`--norm-stats`, recorded
in `manga_pix2pix.json`); `generate` uses the moving averages and `generate_per_image` each
image's own statistics.

`sketch` is uint8 `[H, W, C]` or a batch `[N, H, W, C]` with C = 1 (gray), 2 (gray + alpha),
3 (RGB) or 4 (RGBA); transparency is composited on white. `cues` is uint8 `[h, w, C]` (or
`[N, h, w, C]`, or one cue image for the whole batch), any size (stretched to the sketch); an
opaque cue image is a full cue layer, one with alpha gives strokes where alpha > 0 (a fully
transparent one means no cues).
`colour` is uint8 RGB at the sketch's size and rank.

TFLite (`--format tflite`): `DIR/generator.tflite` is the bare generator at a fixed size, the
model's `image_size`: input float32 `[1, S, S, C]` in [-1, 1] (sketch -1 line / 1 paper, cues
in [-1, 1] and 0 where there is no cue, then the cue mask 0/1 when C = 5), output float32
`[1, S, S, 3]` in [-1, 1], with the batch-norm statistics chosen at export. TFLite needs static
shapes, and the sketch op and blur are left to the app (`manga_pix2pix.json` says which inputs
the model takes).

Both are written to a temporary folder next to DIR and renamed into place, so a failed export
leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from pathlib import Path

import keras
import tensorflow as tf

from manga_pix2pix.errors import UserError
from manga_pix2pix.inference.colorize import ColorizeSettings, colorize_tensor
from manga_pix2pix.inference.loading import (
    EXPORT_METADATA,
    NORM_STATS,
    LoadedModel,
    forward_per_image,
    load_model,
)

log = logging.getLogger(__name__)

FORMATS = ("savedmodel", "tflite")
TFLITE_FILE = "generator.tflite"


def _per_image(fn, sketch: tf.Tensor, cues: tf.Tensor | None) -> tf.Tensor:
    """Applies a one-image function to `[H, W, C]` or `[N, H, W, C]` inputs (cues likewise)."""
    shape = tf.shape(sketch)
    rank = tf.rank(sketch)
    tf.debugging.assert_equal(
        (rank == 3) | (rank == 4), True, message="sketch: expected [H, W, C] or [N, H, W, C]"
    )
    batch = tf.reshape(sketch, tf.stack([-1, shape[-3], shape[-2], shape[-1]]))
    size = tf.shape(batch)[0]
    if cues is None:
        out = tf.map_fn(fn, batch, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
    else:
        cue_shape = tf.shape(cues)
        cue_batch = tf.reshape(cues, tf.stack([-1, cue_shape[-3], cue_shape[-2], cue_shape[-1]]))
        cue_batch = tf.cond(
            tf.shape(cue_batch)[0] == 1,
            lambda: tf.tile(cue_batch, tf.stack([size, 1, 1, 1])),
            lambda: cue_batch,
        )
        out = tf.map_fn(
            lambda pair: fn(pair[0], pair[1]),
            (batch, cue_batch),
            fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
        )
    return tf.reshape(out, tf.concat([shape[:-1], [3]], 0))


class ColorizeModule(tf.Module):
    """The exported module: the generator and the colorize graph around it (see above)."""

    def __init__(self, model: LoadedModel, norm_stats: str = "moving"):
        super().__init__(name="manga_pix2pix")
        # Tracking the owner saves the variables the generator reads.
        self.owner = model.keep
        self._model = model
        self._serve_generate = model.generator(norm_stats)
        self._settings = ColorizeSettings(
            image_size=model.image_size,
            use_cue_mask=model.use_cue_mask,
            cue_sigma=model.cue_sigma,
            line_input=model.line_input,
        )
        spec = tf.TensorSpec([None, None, None, model.input_channels], tf.float32, name="x")
        self.generate = tf.function(model.generate, input_signature=[spec])
        self.generate_per_image = tf.function(model.generate_per_image, input_signature=[spec])
        self.colorize_without_cues = tf.function(
            self._without_cues, input_signature=[tf.TensorSpec(None, tf.uint8, name="sketch")]
        )
        if model.uses_cues:
            self.colorize = tf.function(
                self._with_cues,
                input_signature=[tf.TensorSpec(None, tf.uint8, name="sketch"),
                                 tf.TensorSpec(None, tf.uint8, name="cues")],
            )

    def _without_cues(self, sketch):
        def fn(s):
            return colorize_tensor(self._serve_generate, s, None, self._settings)

        return {"colour": _per_image(fn, sketch, None)}

    def _with_cues(self, sketch, cues):
        def fn(s, c):
            return colorize_tensor(self._serve_generate, s, c, self._settings)

        return {"colour": _per_image(fn, sketch, cues)}

    def signatures(self) -> dict:
        """The serving signatures to save."""
        default = self.colorize if self._model.uses_cues else self.colorize_without_cues
        return {"serving_default": default, "colorize_without_cues": self.colorize_without_cues}


def _check_target(target: Path, force: bool) -> None:
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise UserError(f"{target}: is the current folder or holds it; name a new folder")
    parent = target.parent
    if not parent.is_dir():
        raise UserError(f"{target}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{target}: the folder {parent} is not writable")
    if target.exists() and not target.is_dir():
        raise UserError(f"{target}: exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise UserError(f"{target}: exists and is not empty; choose another folder or use --force")


def _move_into_place(tmp: Path, target: Path) -> None:
    """Renames the finished `tmp` folder onto `target`, replacing an old one."""
    old = None
    try:
        if target.exists():
            old = _make_temp_folder(target)
            os.replace(target, old / "export")
        os.replace(tmp, target)
    except OSError as err:
        if old is not None and not target.exists():
            os.replace(old / "export", target)  # put the old export back
        raise UserError(f"{target}: cannot replace it ({err.strerror})") from None
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _write_savedmodel(model: LoadedModel, folder: Path, norm_stats: str) -> None:
    module = ColorizeModule(model, norm_stats)
    tf.saved_model.save(module, str(folder), signatures=module.signatures())


def _write_tflite(model: LoadedModel, folder: Path, norm_stats: str) -> None:
    if model.kind == "savedmodel":
        raise UserError(f"{model.source}: export TFLite from the run directory or the .keras "
                        "file, not from an exported SavedModel")
    generator = model.keep
    size = model.image_size
    spec = tf.TensorSpec([1, size, size, model.input_channels], tf.float32, name="x")
    # A SavedModel written by Keras's ExportArchive lets the converter freeze the weights into
    # the TFLite file; a plain tf.function over the model would leave them as uninitialised
    # resource variables.
    if norm_stats == "moving":
        def serve(x):
            return generator(x, training=False)
    else:
        def serve(x):
            return forward_per_image(generator, x)

    archive = keras.export.ExportArchive()
    archive.track(generator)
    archive.add_endpoint("serve", serve, input_signature=[spec])
    staging = folder / "staging"
    archive.write_out(str(staging), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(staging))
    data = converter.convert()
    shutil.rmtree(staging)
    (folder / TFLITE_FILE).write_bytes(data)


def _make_temp_folder(target: Path) -> Path:
    """A new folder next to `target` (same file system, so it can be renamed onto it)."""
    tmp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        tmp.mkdir()
    except OSError as err:
        raise UserError(f"{target}: cannot write ({err.strerror})") from None
    return tmp


def export_model(
    model_path: str | os.PathLike, output: str | os.PathLike, fmt: str = "savedmodel",
    *, norm_stats: str = "moving", force: bool = False,
) -> Path:
    """Exports the generator at `model_path` to the folder `output` (see the module docstring).

    Args:
        model_path: a run directory, a `.keras` file or an exported SavedModel.
        output: the folder to create; its parent must exist.
        fmt: `savedmodel` or `tflite`.
        norm_stats: batch norm's statistics in the exported graph, `moving` or `image`.
        force: replace `output` if it exists and is not empty.

    Returns:
        The output folder.

    Raises:
        UserError: a bad model or an output that cannot be written.
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if norm_stats not in NORM_STATS:
        raise UserError(f"unknown norm stats {norm_stats!r}; choose one of "
                        f"{', '.join(NORM_STATS)}")
    target = Path(output).resolve()
    _check_target(target, force)
    model = load_model(model_path)
    source = Path(model.source).resolve()
    source_folder = source if source.is_dir() else source.parent
    if target == source_folder or target in source_folder.parents:
        # Replacing it would delete the model (and a run's checkpoints) with it.
        raise UserError(f"{output}: holds the model being exported; choose another folder")
    tmp = _make_temp_folder(target)
    try:
        if fmt == "savedmodel":
            _write_savedmodel(model, tmp, norm_stats)
        else:
            _write_tflite(model, tmp, norm_stats)
        metadata = dict(model.metadata(), export_format=fmt, norm_stats=norm_stats)
        (tmp / EXPORT_METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True))
        _move_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
