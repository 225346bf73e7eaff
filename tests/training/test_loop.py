"""The loop and its run directory: learning, exact resume, init-from, NaN guard, bad run dirs."""

from __future__ import annotations

import json
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from manga_pix2pix.config import preset
from manga_pix2pix.errors import UserError
from manga_pix2pix.models import build_models
from manga_pix2pix.training import loop
from manga_pix2pix.training.loop import Trainer, build_config, checkpoint_variables


def _config(steps: int, **train):
    config = preset("smoke")
    config.data.synthetic_count = 8
    config.train.steps = steps
    for key, value in train.items():
        setattr(config.train, key, value)
    return config


def _weights(model) -> list[np.ndarray]:
    return [v.numpy() for v in model.variables]


@pytest.mark.slow
@pytest.mark.parametrize("no_cues", [False, True])
def test_the_smoke_preset_learns(tmp_path, monkeypatch, no_cues):
    config = _config(60, learning_rate=1e-3)
    config.data.no_cues = no_cues
    l1 = []
    monkeypatch.setattr(loop._Progress, "step",
                        lambda self, step, losses: l1.append(losses["g_l1"]))
    trainer = Trainer(config, tmp_path / "run", quiet=True)
    summary = trainer.run()
    start, end = np.mean(l1[:5]), np.mean(l1[-5:])
    assert end < 0.8 * start, (start, end)
    assert summary["final_losses"]["g_l1"] == pytest.approx(l1[-1], rel=1e-5)
    assert trainer.generator.uses_cues is (not no_cues)


def test_resumed_run_equals_the_uninterrupted_run(tmp_path):
    full = Trainer(_config(9), tmp_path / "full", quiet=True)
    full.run()
    # Stopped mid-epoch (4 steps per epoch), then the same run asked for more steps.
    first = Trainer(_config(5), tmp_path / "part", quiet=True)
    first.run()
    resumed = Trainer(_config(9), tmp_path / "part", quiet=True)
    summary = resumed.run()
    assert summary["started_from"] == "checkpoint at step 5"
    assert summary["steps"] == 9 and summary["steps_this_session"] == 4
    for a, b in zip(_weights(full.generator) + _weights(full.discriminator),
                    _weights(resumed.generator) + _weights(resumed.discriminator), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    steps = sorted(int(p.name.split("-")[1].split(".")[0])
                   for p in (tmp_path / "part" / "checkpoints").glob("ckpt-*.index"))
    assert steps == [5, 9]
    # A finished run, run again, trains no more and leaves its results as they were.
    part = tmp_path / "part"
    results = {name: ((part / name).read_bytes(), (part / name).stat().st_mtime_ns)
               for name in ("train_summary.json", "generator.keras")}
    again = Trainer(_config(9), part, quiet=True).run()
    assert again["already_trained"] and again["steps"] == 9
    assert again["steps_this_session"] == summary["steps_this_session"] == 4
    assert results == {name: ((part / name).read_bytes(), (part / name).stat().st_mtime_ns)
                       for name in results}
    assert sorted(p.name for p in (part / "checkpoints").glob("ckpt-*.index")) == [
        "ckpt-5.index", "ckpt-9.index"]


def test_nan_guard_stops_and_keeps_only_good_checkpoints(tmp_path):
    run = tmp_path / "run"
    Trainer(_config(2), run, quiet=True).run()
    # Adam moves every weight by about the learning rate: after one step at 1e20 the
    # activations overflow float32 and the losses of the next step are NaN.
    diverging = _config(8, learning_rate=1e20, checkpoint_every=1, keep_checkpoints=10)
    with pytest.raises(UserError, match="no longer finite") as err:
        Trainer(diverging, run, quiet=True).run()
    message = str(err.value)
    assert "\n" not in message and "--learning-rate" in message
    assert "stopped at step 4" in message
    # Step 4 evaluated the weights after step 3, so checkpoint 3 is bad and was dropped.
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-2")
    assert "ckpt-2" in message
    assert not (run / "checkpoints" / "ckpt-3.index").exists()
    # The run can go on from there with a sane learning rate.
    summary = Trainer(_config(3), run, quiet=True).run()
    assert summary["started_from"] == "checkpoint at step 2"
    assert all(np.isfinite(v) for v in summary["final_losses"].values())


def test_config_json_and_a_run_dir_with_another_model_is_refused(tmp_path):
    trainer = Trainer(_config(1), tmp_path / "run", quiet=True)
    trainer.run()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved == json.loads(trainer.config.to_json())  # with the precision resolved
    model = keras.saving.load_model(tmp_path / "run" / "generator.keras")
    assert model.uses_cues and model.image_size == 32
    # The paper's sketches, but colorize is told to show it levelled grey line art.
    assert trainer.config.data.sketch_style == "adaptive" and model.line_input == "grey"

    wider = _config(1)
    wider.model.base_filters = 16
    with pytest.raises(UserError, match=r"another model \(base_filters 8 -> 16\)"):
        Trainer(wider, tmp_path / "run", quiet=True).run()
    no_cues = _config(1)
    no_cues.data.no_cues = True
    with pytest.raises(UserError, match="no_cues False -> True"):
        Trainer(no_cues, tmp_path / "run", quiet=True).run()
    fp16 = _config(1, precision="mixed_float16")
    with pytest.raises(UserError, match="cannot continue in mixed_float16"):
        Trainer(fp16, tmp_path / "run", quiet=True).run()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        Trainer(_config(1), tmp_path / "file", quiet=True).run()


def test_a_run_dir_in_use_is_refused(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    run = tmp_path / "run"
    run.mkdir()
    with open(run / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(UserError, match="being trained by another process"):
            Trainer(_config(1), run, quiet=True).run()
    assert not (run / "config.json").exists()


def test_init_from_copies_weights_only(tmp_path):
    source = Trainer(_config(3), tmp_path / "source", quiet=True)
    source.run()
    # A learning rate so small that one step leaves the trainable weights as they were.
    for name, init_from in [("from_run", tmp_path / "source"),
                            ("from_keras", tmp_path / "source" / "generator.keras")]:
        target = Trainer(_config(1, learning_rate=1e-30), tmp_path / name,
                         init_from=init_from, quiet=True)
        summary = target.run()
        assert summary["started_from"].startswith("init-from")
        assert summary["steps"] == 1  # the step counter is not copied
        for a, b in zip(source.generator.trainable_variables,
                        target.generator.trainable_variables, strict=True):
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    bigger = _config(1)
    bigger.model.image_size = 64
    with pytest.raises(UserError, match="another model shape"):
        Trainer(bigger, tmp_path / "bigger", init_from=tmp_path / "source", quiet=True).run()
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"not a zip archive at all")
    with pytest.raises(UserError, match="garbage.keras: not a .keras model file"):
        Trainer(_config(1), tmp_path / "g", init_from=garbage, quiet=True).run()


def test_checkpoint_variables_cover_every_variable_including_the_rng():
    generator, discriminator = build_models(preset("smoke").model)
    for model in (generator, discriminator):
        variables = checkpoint_variables(model)
        assert len(variables) == len(model.variables)
    keys = checkpoint_variables(generator)
    assert "down_1/norm/moving_mean" in keys
    assert [k for k in keys if k.startswith("rng/")] == ["rng/0", "rng/1", "rng/2"]


def test_preview_grid_has_a_row_per_example_and_four_columns():
    generator, _ = build_models(preset("smoke").model)
    batch = {
        "sketch": np.ones((3, 32, 32, 1), np.float32),
        "cues": np.zeros((3, 32, 32, 3), np.float32),
        "cue_mask": np.zeros((3, 32, 32, 1), np.float32),
        "image": -np.ones((3, 32, 32, 3), np.float32),
    }
    grid = loop.preview_grid(generator, batch, use_cue_mask=True)
    assert grid.shape == (96, 128, 3) and grid.dtype == np.uint8
    assert (grid[:, :32] == 255).all() and (grid[:, 96:] == 0).all()
    assert (grid[:, 32:64] == 128).all()  # no cue: the middle of the range


def test_build_config_applies_overrides_and_checks_them(tmp_path):
    config = build_config("small", source=str(tmp_path), epochs=3, no_cues=True, seed=None)
    assert config.model.image_size == 128 and config.train.epochs == 3
    assert config.data.source == str(tmp_path.resolve()) and config.data.no_cues
    assert build_config("smoke", steps=5).train.steps == 5
    with pytest.raises(UserError, match="image_size"):
        build_config("smoke", image_size=48)
    with pytest.raises(UserError, match="unknown preset"):
        build_config("huge")
    # "Train for 20 minutes": the preset's length is no bound; --steps or --epochs still are.
    timed = build_config("small", time_limit_s=1200.0)
    assert timed.train.steps is None and timed.train.epochs is None
    assert build_config("small", time_limit_s=60.0, steps=7).train.steps == 7
    assert build_config("small", time_limit_s=60.0, epochs=2).train.epochs == 2


def test_fit_steps_fits_the_time_left_at_the_speed_and_keeps_to_the_cap():
    assert loop.fit_steps(100, 4.0, 50.0) == 300
    assert loop.fit_steps(100, 4.0, 50.0, cap=250) == 250
    # Out of time: one step more, never fewer than done.
    assert loop.fit_steps(100, 4.0, -3.0) == 101


def test_a_time_limited_run_fits_its_length_to_the_time_and_keeps_it(tmp_path):
    limit = 20.0
    config = build_config("smoke", synthetic_count=8, time_limit_s=limit, lr_decay="linear")
    assert config.train.steps is None and config.train.epochs is None
    summary = Trainer(config, tmp_path / "run", quiet=True).run()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    planned = summary["planned_steps"]
    # The length was fixed (and recorded) before the decay began, from the measured speed.
    assert saved["train"]["steps"] == planned and planned > 20
    assert summary["session_seconds"] <= limit + 2.0
    if summary["stopped_by"] == "steps":  # the usual case: the decay ended on time
        assert summary["steps"] == planned and summary["final_learning_rate"] == 0.0
        assert summary["session_seconds"] >= 0.5 * limit
    else:  # the machine slowed down in the second half
        assert summary["stopped_by"] == "time limit" and summary["steps"] < planned
    # Run again, the same command resumes to the same fitted length.
    again = build_config("smoke", synthetic_count=8, time_limit_s=limit, lr_decay="linear")
    resumed = Trainer(again, tmp_path / "run", quiet=True).run()
    assert resumed["planned_steps"] == planned and resumed["steps"] == planned


def test_a_time_limited_run_that_slows_down_shortens_its_decay_to_end_on_time(tmp_path,
                                                                             monkeypatch):
    limit = 20.0
    fixed = []
    record = Trainer._record_length

    def recording(self, steps):
        fixed.append(steps)
        record(self, steps)

    step = loop._Progress.step

    def slower_once_fixed(self, at, losses):  # the machine slows down after the fit
        if fixed:
            time.sleep(0.02)
        step(self, at, losses)

    monkeypatch.setattr(Trainer, "_record_length", recording)
    monkeypatch.setattr(loop._Progress, "step", slower_once_fixed)
    config = build_config("smoke", synthetic_count=8, time_limit_s=limit, lr_decay="linear")
    summary = Trainer(config, tmp_path / "run", quiet=True).run()
    assert len(fixed) == 2 and fixed[1] < fixed[0], fixed  # fixed at half, then shortened
    assert summary["stopped_by"] == "steps" and summary["steps"] == fixed[1]
    assert summary["final_learning_rate"] == 0.0
    assert summary["session_seconds"] <= limit + 2.0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["steps"] == fixed[1]


def test_a_stall_after_the_fit_shortens_the_run_only_while_it_lasts(tmp_path, monkeypatch):
    # A slow second just after the length is fixed (the machine busy for a moment) shortens
    # the length; as the speed since the fix recovers, the length grows back (never past the
    # fixed one), so the run still uses its time instead of ending early.
    limit = 20.0
    fixed, lengths, stall = [], [], []  # fixed: (steps, the index of that fit in lengths)
    record, fit, step = Trainer._record_length, Trainer._fit, loop._Progress.step

    def recording(self, steps):
        fixed.append((steps, len(lengths)))
        record(self, steps)

    def fitting(self, *args):
        lengths.append(fit(self, *args))
        return lengths[-1]

    def stalling_once_fixed(self, at, losses):
        if fixed and not stall:
            stall.append(time.monotonic())
        if stall and time.monotonic() - stall[0] < 1.5:
            time.sleep(0.05)
        step(self, at, losses)

    monkeypatch.setattr(Trainer, "_record_length", recording)
    monkeypatch.setattr(Trainer, "_fit", fitting)
    monkeypatch.setattr(loop._Progress, "step", stalling_once_fixed)
    config = build_config("smoke", synthetic_count=8, time_limit_s=limit, lr_decay="linear")
    summary = Trainer(config, tmp_path / "run", quiet=True).run()
    length, index = fixed[0]
    after = lengths[index:]
    assert after[0] == length
    shortest = min(after)
    assert shortest < length  # the stall shortened it
    assert max(after[after.index(shortest):]) > shortest  # and it grew back
    assert max(after) == length
    assert summary["stopped_by"] == "steps" and summary["final_learning_rate"] == 0.0
    assert 0.85 * limit <= summary["session_seconds"] <= limit + 2.0


def test_a_run_resumed_with_only_a_time_limit_keeps_its_own_length(tmp_path):
    Trainer(_config(4, lr_decay="linear"), tmp_path / "run", quiet=True).run()
    again = build_config("smoke", synthetic_count=8, time_limit_s=60.0, lr_decay="linear")
    resumed = Trainer(again, tmp_path / "run", quiet=True).run()
    assert resumed["already_trained"] and resumed["steps"] == 4
    assert resumed["final_learning_rate"] == 0.0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["steps"] == 4


def test_a_session_out_of_time_stops_at_the_limit_and_resumes_from_there(tmp_path):
    # Half a second is spent before the first step is done (loading, compiling): no time to
    # measure the speed, so the session stops at the limit, with a checkpoint.
    config = build_config("smoke", synthetic_count=8, time_limit_s=0.5, steps=10**6)
    summary = Trainer(config, tmp_path / "run", quiet=True).run()
    assert summary["stopped_by"] == "time limit" and summary["steps"] == 1
    assert summary["planned_steps"] == 10**6
    state = tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))
    assert state.endswith(f"ckpt-{summary['steps']}")
    assert (tmp_path / "run" / "generator.keras").is_file()
    resumed = Trainer(_config(summary["steps"] + 2), tmp_path / "run", quiet=True).run()
    assert resumed["started_from"] == f"checkpoint at step {summary['steps']}"
    assert resumed["steps"] == summary["steps"] + 2


def test_auto_precision_is_resolved_printed_recorded_and_kept_on_resume(tmp_path, capsys,
                                                                        monkeypatch):
    config = _config(2)
    assert config.train.precision == "auto"
    expected, _ = loop.resolve_precision("auto", tf.distribute.get_strategy())
    summary = Trainer(config, tmp_path / "run").run()
    assert f"Precision: {expected} (auto:" in capsys.readouterr().err
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["precision"] == expected
    assert summary["precision"] == expected and summary["precision_reason"].startswith("auto:")
    # A run resumed with `auto` on a machine that would choose otherwise keeps its own.
    other = "float32" if expected == "mixed_bfloat16" else "mixed_bfloat16"
    monkeypatch.setattr(loop, "resolve_precision", lambda precision, strategy: (other, "auto"))
    resumed = Trainer(_config(3), tmp_path / "run", quiet=True).run()
    assert resumed["precision"] == expected
    assert resumed["precision_reason"] == "auto: the run's own"


def test_deriving_on_the_device_trains_exactly_as_on_the_host(tmp_path):
    runs = {}
    for where in ("host", "device"):
        # float32 named: where the CPU has bfloat16 units `auto` is bfloat16, whose rounding
        # of the step's arithmetic, not the derivation, would part the two runs.
        trainer = Trainer(_config(3, derive_on=where, precision="float32"), tmp_path / where,
                          quiet=True)
        summary = trainer.run()
        assert summary["derive_on"] == where
        saved = json.loads((tmp_path / where / "config.json").read_text())
        assert saved["train"]["derive_on"] == where
        runs[where] = _weights(trainer.generator) + _weights(trainer.discriminator)
    for a, b in zip(runs["host"], runs["device"], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    auto = Trainer(_config(1), tmp_path / "auto", quiet=True).run()
    assert auto["derive_on"] == "device"


def test_the_saved_generator_holds_the_weight_average_and_a_resume_continues_it(tmp_path):
    full = Trainer(_config(6, ema_decay=0.9), tmp_path / "full", quiet=True)
    full.run()
    run = tmp_path / "full"
    saved = keras.saving.load_model(run / "generator.keras", compile=False)
    # The checkpoint's average is what generator.keras holds, and it is not the last weights.
    generator, _ = build_models(full.config.model, line_input=full.generator.line_input)
    averages = {k: tf.Variable(v) for k, v in checkpoint_variables(generator).items()
                if v.trainable}
    tf.train.Checkpoint(generator_ema=averages).restore(
        tf.train.latest_checkpoint(str(run / "checkpoints"))).expect_partial()
    for weight in saved.trainable_variables:
        np.testing.assert_allclose(weight.numpy(), averages[loop.variable_key(weight)].numpy(),
                                   atol=1e-7)
    assert max(np.abs(a.numpy() - b.numpy()).max() for a, b in zip(
        saved.trainable_variables, full.generator.trainable_variables, strict=True)) > 1e-6
    # Resumed part-way, the average comes out as in the uninterrupted run.
    Trainer(_config(4, ema_decay=0.9), tmp_path / "part", quiet=True).run()
    Trainer(_config(6, ema_decay=0.9), tmp_path / "part", quiet=True).run()
    resumed = keras.saving.load_model(tmp_path / "part" / "generator.keras", compile=False)
    for a, b in zip(saved.weights, resumed.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    # Switching the average on or off is refused with a one-line error, not a bad restore.
    with pytest.raises(UserError, match="weight average"):
        Trainer(_config(8), tmp_path / "part", quiet=True).run()
