"""The training loop and its run directory.

A run directory holds everything a run writes (only the chief writes under multi-worker):

    RUN/config.json              the resolved configuration
    RUN/checkpoints/             `tf.train.CheckpointManager` checkpoints: step, generator,
                                 discriminator (every variable, including the dropout RNG
                                 state), both optimisers, and with `--ema-decay` the
                                 generator's weight average
    RUN/logs/                    TensorBoard: losses and learning rate every `log_every` steps,
                                 the preview grid every epoch
    RUN/previews/epoch_XXXX.png  sketch | cues | output | truth on a fixed batch, per epoch
    RUN/generator.keras          the trained generator (its weight average with
                                 `--ema-decay`), written at the end
    RUN/train_summary.json       steps, epochs, images per second, final losses, ...

Where a run starts from, in this order: the run directory's own latest checkpoint (running the
same command again resumes exactly: step, weights, optimisers, RNG state and the data position),
else `init_from` (weights only, from another run's latest checkpoint or a `.keras` generator),
else fresh weights drawn from the seed.

What the seed makes deterministic: initial weights, the data order, augmentation, cue masks and
dropout, on one machine with one TensorFlow version and thread configuration. Not covered: the
last bits of multi-threaded float arithmetic, which may differ between runs and machines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not on Windows: runs there are not locked
    fcntl = None

import click
import keras
import numpy as np
import tensorflow as tf
from google.protobuf import text_format

from manga_pix2pix.config import Config, ModelConfig
from manga_pix2pix.data.derive import derive_batch
from manga_pix2pix.data.pipeline import to_uint8_image
from manga_pix2pix.errors import UserError
from manga_pix2pix.imageio import write_bytes_atomic, write_image
from manga_pix2pix.models import build_models, generator_inputs
from manga_pix2pix.training import data as training_data
from manga_pix2pix.training.step import LOSS_NAMES, TrainStep, make_optimizer
from manga_pix2pix.training.strategy import (
    device_description,
    is_chief,
    make_strategy,
    precision_policy,
    resolve_derive_on,
    resolve_precision,
    strategy_name,
)

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
PREVIEW_DIR = "previews"
GENERATOR_FILE = "generator.keras"
SUMMARY_FILE = "train_summary.json"
LOCK_FILE = ".lock"

#: With a time limit: the share of it kept back for the last checkpoint and the generator.
TIME_RESERVE = 0.02
#: With a time limit: the share of it by which the planned end comes before the hard stop.
PLAN_MARGIN = 0.01
#: With a time limit, the speed is measured over at least this many steps, and this share of
#: the limit (at most 30 s), before the run's length is fitted to it.
FIT_MIN_STEPS = 5
FIT_MIN_SHARE = 0.05
#: The linear decay's length before a time-limited run has fitted its own (the rate stays
#: constant until half of it).
UNFITTED_STEPS = 2**31

#: Model fields whose change makes a checkpoint unusable (weights of other shapes).
SHAPE_FIELDS = ("image_size", "base_filters", "norm", "sketch_channels", "cue_channels",
                "use_cue_mask")


def variable_key(variable) -> str:
    """A weight's path inside its model (`down_1/norm/gamma`): its key in checkpoints."""
    return variable.path.split("/", 1)[1]


def checkpoint_variables(model: keras.Model) -> dict[str, tf.Variable]:
    """Every variable of a model, keyed by its path inside the model.

    Checkpoints hold these maps rather than the models themselves: TensorFlow's object-graph
    checkpointing does not see layers kept in Python lists under Keras 3, nor the dropout
    layers' RNG state. Seed-generator states have process-wide automatic names, so they are
    keyed by their order in the model instead.
    """
    variables: dict[str, tf.Variable] = {}
    rng = 0
    for variable in model.variables:
        if variable.name == "seed_generator_state":
            key = f"rng/{rng}"
            rng += 1
        else:
            key = variable_key(variable)
        if key in variables:
            raise RuntimeError(f"two variables of {model.name} share the path {key}")
        variables[key] = variable
    return variables


def read_run_config(run_dir: Path) -> Config | None:
    """The config a run directory was made with, or None if it has none."""
    path = run_dir / CONFIG_FILE
    if not path.exists():
        return None
    try:
        return Config.from_dict(json.loads(path.read_text()), source=str(path))
    except (ValueError, OSError) as err:
        raise UserError(f"{path}: not a readable run config ({err})") from None


def _model_differences(a: ModelConfig, b: ModelConfig, fields) -> list[str]:
    return [
        f"{name} {getattr(a, name)!r} -> {getattr(b, name)!r}"
        for name in fields
        if getattr(a, name) != getattr(b, name)
    ]


def check_resumable(saved: Config, requested: Config, run_dir: Path) -> None:
    """Refuses to continue a run with a different model; warns about other changes.

    Raises:
        UserError: the model (any `ModelConfig` field) or `no_cues` differs.
    """
    fields = [f.name for f in saved.model.__dataclass_fields__.values()]
    diffs = _model_differences(saved.model, requested.model, fields)
    if saved.data.no_cues != requested.data.no_cues:
        diffs.append(f"no_cues {saved.data.no_cues} -> {requested.data.no_cues}")
    if diffs:
        raise UserError(
            f"{run_dir} holds a run with another model ({'; '.join(diffs)}); use a new "
            "--run-dir, or --init-from to start a new run from its weights"
        )
    if (saved.train.ema_decay > 0) != (requested.train.ema_decay > 0):
        raise UserError(
            f"{run_dir} holds a run with another weight average (ema_decay "
            f"{saved.train.ema_decay} -> {requested.train.ema_decay}): its checkpoints cannot "
            "continue it; use a new --run-dir with --init-from")
    precisions = (saved.train.precision, requested.train.precision)
    if precisions[0] != precisions[1] and "mixed_float16" in precisions:
        raise UserError(
            f"{run_dir} was trained with --precision {precisions[0]}; its optimisers cannot "
            f"continue in {precisions[1]} (mixed_float16 carries a loss scale): use a new "
            "--run-dir with --init-from"
        )
    changed = [
        f"{section}.{key}"
        for section in ("data", "train")
        for key, value in getattr(saved, section).__dict__.items()
        if key not in ("epochs", "steps", "checkpoint_every", "keep_checkpoints", "log_every",
                       "derive_on")
        and getattr(getattr(requested, section), key) != value
    ]
    if changed:
        log.warning("resuming %s with changed settings (%s): the rest of the run will differ "
                    "from the original plan", run_dir, ", ".join(changed))


def fit_steps(step: int, steps_per_second: float, seconds_left: float,
              cap: int | None = None) -> int:
    """The length of a run that fits a time limit.

    The steps done, plus those the time left allows at the measured speed (at least one), at
    most `cap`.
    """
    total = step + max(1, int(seconds_left * steps_per_second))
    return min(total, cap) if cap else total


class _Progress:
    """A one-line progress bar on a terminal; elsewhere (logs, CI) a line per epoch and at
    most one a minute in between."""

    def __init__(self, total: int, start: int, batch: int, enabled: bool):
        self.total, self.start, self.batch = total, start, batch
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.last_line = time.monotonic()
        self.timing_from: tuple[int, float] | None = None
        self.rate = 0.0

    def step(self, step: int, losses: dict[str, float]) -> None:
        now = time.monotonic()
        # Speed and time left from the wall clock after the first (compiling) step, so that
        # previews and checkpoints are counted too.
        if self.timing_from is None:
            self.timing_from = (step, now)
        elif now > self.timing_from[1]:
            self.rate = (step - self.timing_from[0]) * self.batch / (now - self.timing_from[1])
        if not self.enabled:
            return
        if self.tty and (now - self.last_line >= 0.2 or step == self.total):
            # Padded, so that a shorter line fully covers the one it replaces.
            click.echo("\r" + self._line(step, losses).ljust(100), err=True, nl=False)
            self.last_line = now
        elif not self.tty and now - self.last_line >= 60:
            click.echo(self._line(step, losses), err=True)
            self.last_line = now

    def epoch(self, epoch: int, step: int, losses: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self.tty:
            click.echo("\r" + f"{self._line(step, losses)}  (epoch {epoch})".ljust(100), err=True)
        else:
            click.echo(f"epoch {epoch}: " + self._line(step, losses), err=True)
        self.last_line = time.monotonic()

    def _line(self, step: int, losses: dict[str, float]) -> str:
        width = 24
        filled = int(width * step / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        text = " ".join(f"{k} {losses[k]:.3f}" for k in ("g_gan", "g_l1", "d_real", "d_fake"))
        speed = ""
        if self.rate > 0:
            seconds = int((self.total - step) * self.batch / self.rate)
            speed = (f" {self.rate:.1f} img/s ETA {seconds // 3600}:{seconds // 60 % 60:02d}:"
                     f"{seconds % 60:02d}")
        return f"[{bar}] {step}/{self.total} {text}{speed}"

    def close(self) -> None:
        if self.tty:
            click.echo("", err=True)


def preview_grid(generator: keras.Model, batch: dict[str, np.ndarray],
                 use_cue_mask: bool) -> np.ndarray:
    """A uint8 grid, one row per example: sketch | cues | output | truth.

    The generator runs in inference mode (moving batch-norm statistics, no dropout), as an
    exported model would, and without side effects on the training state.
    """
    mask = batch["cue_mask"] if use_cue_mask else None
    inputs = generator_inputs(batch["sketch"], batch["cues"], mask)
    output = generator(inputs, training=False)
    sketch = np.repeat(batch["sketch"], 3, axis=-1)
    columns = [sketch, batch["cues"], np.asarray(output, np.float32), batch["image"]]
    rows = np.concatenate(columns, axis=2)  # [N, S, 4S, 3]
    grid = np.concatenate(list(rows), axis=0)
    return to_uint8_image(grid).numpy()


def _save_generator(generator: keras.Model, path: Path) -> None:
    """Saves the generator as `.keras` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.stem}-{os.getpid()}.tmp.keras")
    try:
        generator.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def averaged_weights(generator: keras.Model, ema: list[tf.Variable] | None):
    """Within: the generator holds its weight average (if any); after, its own weights."""
    if not ema:
        yield generator
        return
    weights = generator.trainable_variables
    own = [tf.identity(w) for w in weights]
    try:
        for weight, average in zip(weights, ema, strict=True):
            weight.assign(tf.cast(average, weight.dtype))
        yield generator
    finally:
        for weight, value in zip(weights, own, strict=True):
            weight.assign(value)


class Trainer:
    """Trains, or resumes, one run in a run directory.

    Args:
        config: the resolved configuration.
        run_dir: where the run lives (created if needed).
        init_from: another run directory or a `.keras` generator to start from (weights
            only; ignored when the run directory has a checkpoint).
        quiet: no progress output.

    After `run()`, `generator` and `discriminator` hold the trained networks.
    """

    def __init__(self, config: Config, run_dir: str | os.PathLike, *,
                 init_from: str | os.PathLike | None = None, quiet: bool = False):
        self.config = config
        self.run_dir = Path(run_dir)
        self.init_from = Path(init_from) if init_from else None
        self.quiet = quiet
        self.generator: keras.Model | None = None
        self.discriminator: keras.Model | None = None
        self.ema: list[tf.Variable] | None = None  # the generator's weight average, if any
        # Whether the run's length is known (always, but for a time-limited run before its
        # speed is measured).
        self.fitted = False
        self.fixed_at: tuple[int, float] | None = None  # (step, wall clock) when it was fixed
        self.fixed_steps: int | None = None  # the length fixed (or given): never exceeded

    def _echo(self, message: str) -> None:
        if not self.quiet and self.chief:
            click.echo(message, err=True)

    def run(self) -> dict[str, Any]:
        """Trains to the configured number of steps; returns the summary (also written).

        Raises:
            UserError: an unusable run directory or `init_from`, no training data, a batch
                that does not split over the replicas, or losses that stopped being finite.
        """
        # A time limit counts from here: loading the data and compiling the step are part of
        # the time the user waits.
        self.began = time.monotonic()
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise UserError(f"{self.run_dir}: exists and is not a folder")
        saved = read_run_config(self.run_dir)
        # A run directory without weights (a run stopped before its first checkpoint) is
        # started afresh, whatever config it holds.
        has_weights = (tf.train.latest_checkpoint(str(self.run_dir / CHECKPOINT_DIR))
                       or (self.run_dir / GENERATOR_FILE).exists())
        self.strategy = make_strategy(self.config.train.strategy, self.config.train.tpu)
        self.chief = is_chief(self.strategy)
        self._resolve_precision(saved if has_weights else None)
        derive_on = resolve_derive_on(self.config.train.derive_on, self.strategy)
        self.config = dataclasses.replace(
            self.config, train=dataclasses.replace(self.config.train, derive_on=derive_on)
        )
        if saved is not None and has_weights:
            check_resumable(saved, self.config, self.run_dir)
            self._keep_fitted_length(saved)
        train = self.config.train
        if train.time_limit_s is not None and strategy_name(self.strategy) == "multi-worker":
            raise UserError("--time-limit cannot be used with several workers (each would fit "
                            "its own length); give --steps")
        replicas = self.strategy.num_replicas_in_sync
        if train.batch_size % replicas:
            raise UserError(f"--batch-size {train.batch_size} does not split over {replicas} "
                            "replicas; use a multiple of it")
        with precision_policy(train.precision):
            return self._run()

    def _keep_fitted_length(self, saved: Config) -> None:
        """A run resumed with a time limit and no length keeps its own.

        That is the length it recorded: the one a time-limited run fitted (in `steps`), or the
        steps or epochs it was started with, so its learning-rate schedule goes on unchanged.
        Only a time-limited run stopped before it fitted one fits it now.
        """
        train = self.config.train
        if train.time_limit_s is None or train.steps is not None or train.epochs is not None:
            return
        if saved.train.steps is None and saved.train.epochs is None:
            return
        self.config = dataclasses.replace(self.config, train=dataclasses.replace(
            train, steps=saved.train.steps, epochs=saved.train.epochs))
        self.fitted = True

    def _resolve_precision(self, saved: Config | None) -> None:
        """Replaces a precision of `auto` by the concrete one (so `config.json` records it).

        A resumed run keeps the precision it was trained in.
        """
        train = self.config.train
        if train.precision == "auto" and saved is not None:
            precision, reason = saved.train.precision, "auto: the run's own"
        else:
            precision, reason = resolve_precision(train.precision, self.strategy)
        self.config = dataclasses.replace(
            self.config, train=dataclasses.replace(train, precision=precision)
        )
        self.precision_reason = reason

    def _run(self) -> dict[str, Any]:
        config, train, run_dir = self.config, self.config.train, self.run_dir
        batch = train.batch_size
        keras.utils.set_random_seed(train.seed)
        data = training_data.load_training_data(config, batch)
        # With a time limit, an upper bound (or None) until the loop fits the length.
        total_steps = train.steps or (train.epochs * data.steps_per_epoch if train.epochs
                                      else None)
        if train.time_limit_s is None:
            self.fitted = True
        if self.chief:
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise UserError(f"{run_dir}: cannot create the run folder ({err.strerror})"
                                ) from None
        with _exclusive(run_dir, self.chief):
            if self.chief:
                write_bytes_atomic(run_dir / CONFIG_FILE, config.to_json().encode())
            return self._build_and_train(data, total_steps)

    def _build_and_train(self, data, total_steps) -> dict[str, Any]:
        config, train = self.config, self.config.train
        strategy, run_dir = self.strategy, self.run_dir
        batch = train.batch_size
        uses_cues = not config.data.no_cues
        with strategy.scope():
            # The linear decay's length: fixed, or (with a time limit) a variable the loop
            # fits to the time, and shortens if the machine slows down.
            length = (total_steps if train.time_limit_s is None else
                      tf.Variable(total_steps or UNFITTED_STEPS, dtype=tf.int64,
                                  trainable=False, name="total_steps"))
            generator, discriminator = build_models(
                config.model,
                uses_cues=uses_cues,
                line_input=training_data.LINE_INPUT,
            )
            g_opt = make_optimizer(train, length)
            d_opt = make_optimizer(train, length)
            # The optimisers must know every variable before the first (traced) step.
            g_opt.build(generator.trainable_variables)
            d_opt.build(discriminator.trainable_variables)
            step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            # The generator's weight average (`--ema-decay`), in float32 whatever the
            # precision; checkpointed beside the weights.
            ema = [tf.Variable(tf.cast(v, tf.float32), trainable=False,
                               name=f"ema_{i}") for i, v in
                   enumerate(generator.trainable_variables)] if train.ema_decay else None
            tracked = dict(
                step=step_var,
                generator=checkpoint_variables(generator),
                discriminator=checkpoint_variables(discriminator),
                g_optimizer=g_opt,
                d_optimizer=d_opt,
            )
            if ema:
                tracked["generator_ema"] = {
                    variable_key(v): average
                    for v, average in zip(generator.trainable_variables, ema, strict=True)}
            checkpoint = tf.train.Checkpoint(**tracked)
            train_step = TrainStep(
                strategy, generator, discriminator, g_opt, d_opt,
                global_batch_size=batch, l1_weight=train.l1_weight,
                use_cue_mask=config.model.use_cue_mask, xla=train.xla, step=step_var,
                derive=functools.partial(derive_batch,
                                         **training_data.derive_options(config.data)),
                ema=ema, ema_decay=train.ema_decay,
            )
        self.generator, self.discriminator = generator, discriminator
        self.ema = ema

        # All workers take part in saving (variables may need collective reads); only the
        # chief's checkpoints land in the run directory.
        ckpt_dir = run_dir / CHECKPOINT_DIR
        scratch = None if self.chief else tempfile.mkdtemp(prefix="manga-pix2pix-worker-")
        manager = tf.train.CheckpointManager(
            checkpoint, str(ckpt_dir) if self.chief else scratch,
            max_to_keep=train.keep_checkpoints,
        )
        try:
            origin = self._restore(checkpoint, ckpt_dir)
            if ema and not origin.startswith("checkpoint"):
                for average, weight in zip(ema, generator.trainable_variables, strict=True):
                    average.assign(tf.cast(weight, tf.float32))  # the weights started from
            if train.lr_decay == "constant":
                # A checkpoint holds the learning rate it was trained with; a resumed run
                # uses the one asked for now (e.g. lower, after the losses went NaN).
                g_opt.learning_rate = train.learning_rate
                d_opt.learning_rate = train.learning_rate
            return self._loop(data, total_steps, length, train_step, step_var, manager, origin)
        finally:
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)

    def _restore(self, checkpoint: tf.train.Checkpoint, ckpt_dir: Path) -> str:
        latest = tf.train.latest_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
        if latest:
            try:
                checkpoint.restore(latest).assert_existing_objects_matched()
            except (AssertionError, ValueError, IndexError, tf.errors.OpError) as err:
                # IndexError: a truncated data file ("Read less bytes than requested").
                raise UserError(f"{latest}: cannot restore this checkpoint ({err}); if it is "
                                "damaged, delete its files to resume from the one before"
                                ) from None
            step = int(checkpoint.step.numpy())
            self._echo(f"Resuming {self.run_dir} from step {step}")
            return f"checkpoint at step {step}"
        if self.init_from:
            return self._init_weights(self.init_from)
        return "scratch"

    def _init_weights(self, source: Path) -> str:
        """Copies weights (only) from another run directory or a `.keras` generator."""
        generator, discriminator = self.generator, self.discriminator
        if source.is_dir():
            other = read_run_config(source)
            if other is not None:
                diffs = _model_differences(other.model, self.config.model, SHAPE_FIELDS)
                if diffs:
                    raise UserError(f"--init-from {source}: another model shape "
                                    f"({'; '.join(diffs)})")
            latest = tf.train.latest_checkpoint(str(source / CHECKPOINT_DIR))
            if latest:
                weights = tf.train.Checkpoint(
                    generator=checkpoint_variables(generator),
                    discriminator=checkpoint_variables(discriminator),
                )
                try:
                    weights.restore(latest).expect_partial().assert_existing_objects_matched()
                except (AssertionError, ValueError, IndexError, tf.errors.OpError) as err:
                    raise UserError(f"--init-from {latest}: unusable checkpoint ({err})") from None
                self._echo(f"Starting from the weights of {latest}")
                return f"init-from {latest}"
            if not (source / GENERATOR_FILE).is_file():
                raise UserError(f"--init-from {source}: no checkpoint and no {GENERATOR_FILE}")
            source = source / GENERATOR_FILE
        if source.suffix != ".keras" or not source.is_file():
            raise UserError(f"--init-from {source}: not a run directory or a .keras file")
        if not zipfile.is_zipfile(source):  # Keras would call it "not found"
            raise UserError(f"--init-from {source}: not a .keras model file (not a zip archive)")
        try:
            loaded = keras.saving.load_model(source, compile=False)
        except Exception as err:  # Keras raises many kinds for a bad file.
            raise UserError(f"--init-from {source}: cannot load the model ({err})") from None
        mine = generator.get_config()
        theirs = loaded.get_config() if isinstance(loaded, keras.Model) else {}
        keys = ("image_size", "base_filters", "norm", "input_channels", "output_channels")
        if type(loaded) is not type(generator) or any(mine[k] != theirs.get(k) for k in keys):
            raise UserError(f"--init-from {source}: a generator of another shape")
        for mine_w, theirs_w in zip(generator.weights, loaded.weights, strict=True):
            mine_w.assign(theirs_w)
        self._echo(f"Starting from the generator weights of {source}")
        return f"init-from {source}"

    def _loop(self, data, total_steps, length, train_step, step_var, manager,
              origin) -> dict[str, Any]:
        config, train = self.config, self.config.train
        run_dir, strategy, chief = self.run_dir, self.strategy, self.chief
        batch, per_epoch = train.batch_size, data.steps_per_epoch
        start = int(step_var.numpy())
        limit = train.time_limit_s
        cap = total_steps
        if not self.fitted:
            # Until the fit below, the loop runs on (the learning rate stays constant).
            total_steps = cap or UNFITTED_STEPS
        else:
            self.fixed_steps = total_steps
        finished = self._finished_summary(start, total_steps)
        if finished is not None:
            return finished
        writer = (tf.summary.create_file_writer(str(run_dir / LOG_DIR)) if chief
                  else tf.summary.create_noop_writer())
        if chief:
            (run_dir / PREVIEW_DIR).mkdir(exist_ok=True)
        progress = _Progress(total_steps, start, batch, enabled=not self.quiet and chief)
        images = f"{data.num_images} images, batch {batch}"
        if self.fitted:
            plan = f"{total_steps} steps ({total_steps / per_epoch:.3g} epochs of {images})"
            if limit is not None:
                plan += f", at most {_duration(limit)} this session"
        else:
            bound = f", at most {cap}" if cap else ""
            plan = f"for {_duration(limit)} (steps fitted to the measured speed{bound}; {images})"
        self._echo(f"Training {plan} on {device_description(strategy)}")
        self._echo(f"Precision: {train.precision} ({self.precision_reason}); examples derived "
                   f"on the {train.derive_on}")
        losses: dict[str, float] = {}
        step_time, timed_steps = 0.0, 0
        began = time.monotonic()
        timed_from: float | None = None  # the wall clock after the session's first step
        stopped_by = "steps"
        if start < total_steps:
            stream = training_data.training_stream(config, data, batch, start_step=start,
                                                   derive=train.derive_on == "host")
            iterator = iter(strategy.experimental_distribute_dataset(stream))
        step = start
        try:
            while step < total_steps:
                t0 = time.monotonic()
                result = train_step(next(iterator))
                losses = {name: float(result[name]) for name in LOSS_NAMES}
                seconds = time.monotonic() - t0
                step += 1
                if step > start + 1:  # the first step of a session traces and compiles
                    step_time += seconds
                    timed_steps += 1
                else:
                    timed_from = time.monotonic()
                if not all(math.isfinite(v) for v in losses.values()):
                    self._diverged(step, losses, manager)
                progress.step(step, losses)
                if step % train.log_every == 0 or step == total_steps:
                    self._log_scalars(writer, step, losses, train_step)
                if step % train.checkpoint_every == 0:
                    manager.save(checkpoint_number=step)
                if step % per_epoch == 0 or step == total_steps:
                    epoch = math.ceil(step / per_epoch)
                    progress.epoch(epoch, step, losses)
                    if chief:
                        self._preview(writer, epoch, step, data)
                if limit is None:
                    continue
                now = time.monotonic()
                total_steps = self._fit(step, start, timed_from, now, cap, length,
                                        total_steps, progress)
                if step < total_steps and now - self.began >= limit * (1 - TIME_RESERVE):
                    stopped_by = "time limit"
                    break
        except KeyboardInterrupt:
            # The counter moves inside the step, so the state is always that of `step` steps.
            if int(step_var.numpy()) > 0:
                manager.save(checkpoint_number=int(step_var.numpy()))
            progress.close()
            raise UserError(f"interrupted at step {int(step_var.numpy())}; run the same "
                            "command again to resume") from None
        progress.close()
        planned = total_steps if total_steps != UNFITTED_STEPS else None
        if self.fitted and limit is not None and planned != self.config.train.steps:
            self._record_length(planned)  # shortened since it was fixed
        if stopped_by == "time limit":
            of = f" of {planned}" if planned else ""
            self._echo(f"Time limit reached at step {step}{of}; run the same command again "
                       "to go on")
        if manager.latest_checkpoint is None or int(step_var.numpy()) != _ckpt_step(manager):
            manager.save(checkpoint_number=int(step_var.numpy()))
        writer.flush()
        summary = {
            "steps": int(step_var.numpy()),
            "epochs": round(int(step_var.numpy()) / per_epoch, 4),
            "steps_this_session": step - start,
            "images_per_second": round(timed_steps * batch / step_time, 3) if step_time else None,
            "final_losses": {k: round(v, 6) for k, v in losses.items()},
            "wall_time_seconds": round(time.monotonic() - began, 2),
            # From the start of `run`, as a time limit counts.
            "session_seconds": round(time.monotonic() - self.began, 2),
            "device": device_description(strategy),
            "strategy": strategy_name(strategy),
            "precision": train.precision,
            "precision_reason": self.precision_reason,
            "xla": train.xla,
            "derive_on": train.derive_on,
            "batch_size": batch,
            "num_images": data.num_images,
            "steps_per_epoch": per_epoch,
            "started_from": origin,
            "uses_cues": not config.data.no_cues,
            "planned_steps": planned,
            "stopped_by": stopped_by,
            "time_limit_seconds": limit,
            "final_learning_rate": float(
                keras.ops.convert_to_numpy(train_step.g_optimizer.learning_rate)),
        }
        if chief:
            with averaged_weights(self.generator, self.ema):
                _save_generator(self.generator, run_dir / GENERATOR_FILE)
            write_bytes_atomic(run_dir / SUMMARY_FILE,
                               (json.dumps(summary, indent=2) + "\n").encode())
        # Not part of train_summary.json: whether this process wrote the run directory, and
        # whether the run had been trained to its length already.
        return dict(summary, wrote_run_dir=chief, already_trained=False)

    def _finished_summary(self, start: int, total_steps: int) -> dict[str, Any] | None:
        """The summary of a run already trained to its length, which is left as it is; else None.

        Run again with the same command, a finished run has nothing to do: its generator and
        `train_summary.json` stay those of the session that trained it.
        """
        summary_path = self.run_dir / SUMMARY_FILE
        if not (self.fitted and start >= total_steps and summary_path.is_file()
                and (self.run_dir / GENERATOR_FILE).is_file()):
            return None
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, ValueError):
            return None  # unreadable: written anew below
        if not isinstance(summary, dict) or summary.get("steps") != start:
            return None
        self._echo(f"{self.run_dir}: already trained, {start} of {total_steps} steps; nothing "
                   "to do (give a larger --steps to train on)")
        return dict(summary, wrote_run_dir=False, already_trained=True)

    def _fit(self, step, start, timed_from, now, cap, length, total_steps, progress) -> int:
        """Fits a time-limited run's length to the speed measured so far in this session.

        Refitted at every step while the learning rate is still constant (before half of the
        length); it is fixed when the step reaches half of it, where the linear decay begins,
        and recorded in `config.json` (`steps`), which a resumed run keeps. After that it is
        shortened when the speed since it was fixed says the rest would not fit (the decay
        then steepens a little, and still reaches 0 within the limit), and lengthened again,
        never beyond the fixed length, when that speed recovers. Returns the steps the loop
        runs to.
        """
        limit = self.config.train.time_limit_s
        timed = step - start - 1
        if timed_from is None or timed < 1 or now <= timed_from:
            return total_steps
        # Planned to end a little before the hard stop, so that a length that follows the
        # speed up and down does not race it on the last steps.
        left = limit * (1 - TIME_RESERVE - PLAN_MARGIN) - (now - self.began)
        if self.fitted:
            # The speed since the length was fixed (or this session began), so a slow-down
            # shows at once; the length follows it, and grows back (up to the fixed length)
            # once a passing slow-down is made up, so a moment's stall does not cut the run.
            since_step, since = self.fixed_at or (start + 1, timed_from)
            if step - since_step < FIT_MIN_STEPS or now - since < self._fit_window():
                return total_steps
            # No step beyond what the time allows (fit_steps allows one at least): the run
            # may end now.
            speed = (step - since_step) / (now - since)
            estimate = min(step + max(0, int(left * speed)), self.fixed_steps, cap or math.inf)
            if estimate == total_steps:
                return total_steps
        else:
            estimate = fit_steps(step, timed / (now - timed_from), left, cap)
            progress.total = estimate
            if timed < FIT_MIN_STEPS or now - timed_from < self._fit_window():
                return total_steps  # too few steps timed yet to fix anything on them
        total_steps = estimate
        length.assign(total_steps)
        progress.total = total_steps
        if not self.fitted and 2 * step >= total_steps:
            self.fitted, self.fixed_at, self.fixed_steps = True, (step, now), total_steps
            self._record_length(total_steps)
            if progress.tty:
                click.echo("", err=True)  # below the progress bar's line
            self._echo(f"Fitted to the time limit: {total_steps} steps in all")
        return total_steps

    def _fit_window(self) -> float:
        """The least wall time a speed is measured over (so previews and checkpoints count)."""
        return min(30.0, FIT_MIN_SHARE * self.config.train.time_limit_s)

    def _record_length(self, steps: int) -> None:
        """Writes a time-limited run's fixed length to `config.json`, as `steps`."""
        train = dataclasses.replace(self.config.train, steps=steps)
        self.config = dataclasses.replace(self.config, train=train)
        if self.chief:
            write_bytes_atomic(self.run_dir / CONFIG_FILE, self.config.to_json().encode())

    def _diverged(self, step: int, losses: dict[str, float], manager) -> None:
        # The losses of step `step` are those of the weights after step `step - 1`: a
        # checkpoint of that state is the first bad one, not the last good one.
        if self.chief and _ckpt_step(manager) == step - 1:
            _drop_latest_checkpoint(manager)
        bad = ", ".join(f"{k}={v}" for k, v in losses.items() if not math.isfinite(v))
        good = tf.train.latest_checkpoint(manager.directory)
        kept = (f"the last good checkpoint ({good}) is kept" if good
                else "no good checkpoint was written")
        hint = "a lower --learning-rate"
        if self.config.train.precision == "mixed_float16":
            hint += " or --precision float32"
        raise UserError(f"training stopped at step {step}: the losses are no longer finite "
                        f"({bad}); {kept}. Try {hint}.")

    def _log_scalars(self, writer, step, losses, train_step) -> None:
        with writer.as_default(step=step):
            for name, value in losses.items():
                _scalar_summary(f"loss/{name}", value)
            lr = keras.ops.convert_to_numpy(train_step.g_optimizer.learning_rate)
            _scalar_summary("learning_rate", float(lr))

    def _preview(self, writer, epoch, step, data) -> None:
        grid = preview_grid(self.generator, data.preview, self.config.model.use_cue_mask)
        write_image(self.run_dir / PREVIEW_DIR / f"epoch_{epoch:04d}.png", grid)
        with writer.as_default(step=step):
            _image_summary("preview/sketch_cues_output_truth", grid)


# TensorBoard's own summary ops live in the `tensorboard` package; these write the same
# events with TensorFlow alone, so training does not depend on it (viewing them does).
def _duration(seconds: float) -> str:
    """`90 s`, `20 min`, `1.5 h`."""
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"


def _plugin_metadata(plugin: str) -> tf.compat.v1.SummaryMetadata:
    return tf.compat.v1.SummaryMetadata(
        plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name=plugin)
    )


def _scalar_summary(tag: str, value: float) -> None:
    tf.summary.write(tag, tf.constant(value, tf.float32), metadata=_plugin_metadata("scalars"))


def _image_summary(tag: str, image: np.ndarray) -> None:
    height, width = image.shape[:2]
    png = tf.io.encode_png(image)
    tensor = tf.stack([tf.as_string(width), tf.as_string(height), png])
    tf.summary.write(tag, tensor, metadata=_plugin_metadata("images"))


@contextlib.contextmanager
def _exclusive(run_dir: Path, enabled: bool) -> Iterator[None]:
    """Holds a lock on the run directory, so that two processes never train one run at once."""
    if not enabled or fcntl is None:
        yield
        return
    path = run_dir / LOCK_FILE
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UserError(f"{run_dir} is being trained by another process") from None
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


def _ckpt_step(manager: tf.train.CheckpointManager) -> int | None:
    latest = manager.latest_checkpoint
    return int(latest.rsplit("-", 1)[1]) if latest else None


def _drop_latest_checkpoint(manager: tf.train.CheckpointManager) -> None:
    """Deletes the newest checkpoint and points the checkpoint index at the one before."""
    latest = manager.latest_checkpoint
    for path in tf.io.gfile.glob(latest + ".*"):
        tf.io.gfile.remove(path)
    state = tf.train.get_checkpoint_state(manager.directory)
    index = os.path.join(manager.directory, "checkpoint")
    keep = [i for i, p in enumerate(state.all_model_checkpoint_paths)
            if os.path.basename(p) != os.path.basename(latest)]
    if not keep:
        tf.io.gfile.remove(index)
        return
    paths = [state.all_model_checkpoint_paths[i] for i in keep]
    times = [state.all_model_checkpoint_timestamps[i] for i in keep
             if i < len(state.all_model_checkpoint_timestamps)]
    del state.all_model_checkpoint_paths[:], state.all_model_checkpoint_timestamps[:]
    state.all_model_checkpoint_paths.extend(paths)
    state.all_model_checkpoint_timestamps.extend(times)
    state.model_checkpoint_path = paths[-1]
    write_bytes_atomic(index, text_format.MessageToString(state).encode())


#: Where each `build_config` override goes.
_OVERRIDES = {
    "image_size": "model", "base_filters": "model", "norm": "model", "upsample": "model",
    "sketch_style": "data", "line_augment": "data", "cue_style": "data", "p_mosaic": "data",
    "source": "data", "data_dir": "data", "no_cues": "data", "complexity_ceiling": "data",
    "holdout_fraction": "data", "synthetic_count": "data",
    "batch_size": "train", "epochs": "train", "steps": "train", "learning_rate": "train",
    "lr_decay": "train", "ema_decay": "train", "seed": "train", "precision": "train",
    "xla": "train", "derive_on": "train", "time_limit_s": "train",
    "strategy": "train", "tpu": "train", "checkpoint_every": "train",
}


def build_config(preset_name: str, **overrides: Any) -> Config:
    """A preset with command-line overrides applied (None leaves the preset's value).

    A folder `source` is stored as an absolute path, so the run's config names it wherever
    the run is resumed or evaluated from.

    Raises:
        UserError: an unknown preset, or a value the config refuses (e.g. an image size
            that is not a power of two).
    """
    from manga_pix2pix.config import preset

    config = preset(preset_name).to_dict()
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in _OVERRIDES:
            raise TypeError(f"build_config: unknown option {key!r}")
        if key == "source" and Path(value).expanduser().is_dir():
            value = str(Path(value).expanduser().resolve())
        config[_OVERRIDES[key]][key] = value
    if overrides.get("steps") is None and overrides.get("epochs") is not None:
        config["train"]["steps"] = None
    if (overrides.get("time_limit_s") is not None and overrides.get("steps") is None
            and overrides.get("epochs") is None):
        # "Train for 20 minutes": the preset's length is no bound.
        config["train"]["steps"] = config["train"]["epochs"] = None
    try:
        return Config.from_dict(config)
    except ValueError as err:
        raise UserError(str(err)) from None


def train(config: Config, run_dir: str | os.PathLike, *,
          init_from: str | os.PathLike | None = None, quiet: bool = False) -> dict[str, Any]:
    """Trains or resumes the run in `run_dir`; see `Trainer`. Returns the summary."""
    return Trainer(config, run_dir, init_from=init_from, quiet=quiet).run()
