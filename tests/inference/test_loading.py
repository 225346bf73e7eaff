"""Loading a generator from a run directory, a .keras file or an export, and clean refusals."""

from __future__ import annotations

import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from inference_helpers import TINY, write_run_dir

from manga_pix2pix.config import Config, DataConfig
from manga_pix2pix.errors import UserError
from manga_pix2pix.inference.export import export_model
from manga_pix2pix.inference.loading import load_model
from manga_pix2pix.models import build_models


def _output(model, channels=5, size=32):
    x = tf.random.stateless_uniform([1, size, size, channels], [1, 2], -1.0, 1.0)
    return model.generate(x).numpy()


def test_run_dir_keras_file_and_export_load_the_same_generator(tiny_run, tmp_path):
    run = load_model(tiny_run)
    assert (run.kind, run.image_size, run.uses_cues, run.use_cue_mask) == ("run", 32, True, True)
    keras_file = load_model(tiny_run / "generator.keras")
    assert keras_file.kind == "run"  # next to its config.json: read as the run
    export_model(tiny_run, tmp_path / "export")
    exported = load_model(tmp_path / "export")
    assert exported.kind == "savedmodel" and exported.image_size == 32
    np.testing.assert_allclose(_output(run), _output(exported), atol=1e-6)
    np.testing.assert_allclose(_output(run), _output(keras_file), atol=1e-6)
    # Any multiple of the image size, any aspect ratio.
    assert _output(run, size=64).shape == (1, 64, 64, 3)


def test_a_run_config_supplies_the_training_cue_blur(tmp_path):
    generator, _ = build_models(TINY)
    config = Config(preset="smoke", model=TINY, data=DataConfig(cue_sigma=3.5))
    model = load_model(write_run_dir(tmp_path / "run", generator, config))
    assert model.cue_sigma == 3.5
    assert load_model(tmp_path / "run" / "generator.keras").cue_sigma == 3.5


def test_eval_mode_ignores_the_batch(tiny_run):
    model = load_model(tiny_run)
    x = tf.random.stateless_uniform([3, 32, 32, 5], [3, 4], -1.0, 1.0)
    together = model.generate(x).numpy()
    alone = model.generate(x[1:2]).numpy()
    np.testing.assert_allclose(together[1:2], alone, atol=1e-5)


def test_cue_free_generator_says_so(cue_free_keras):
    assert load_model(cue_free_keras).uses_cues is False


def _bad_models(tmp_path):
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"\x00not a zip at all" * 10)
    wrong_zip = tmp_path / "wrong.keras"
    with zipfile.ZipFile(wrong_zip, "w") as z:
        z.writestr("hello.txt", "hi")
    other = tmp_path / "other.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(other)
    disc = tmp_path / "disc.keras"
    build_models(TINY)[1].save(disc)
    empty_dir = tmp_path / "empty_run"
    empty_dir.mkdir()
    unfinished = tmp_path / "unfinished"
    (unfinished / "checkpoints").mkdir(parents=True)
    bad_config = tmp_path / "bad_config"
    bad_config.mkdir()
    (bad_config / "config.json").write_text("{not json")
    build_models(TINY)[0].save(bad_config / "generator.keras")
    foreign_sm = tmp_path / "foreign_savedmodel"
    module = tf.Module()
    module.v = tf.Variable(1.0)
    tf.saved_model.save(module, str(foreign_sm))
    broken_sm = tmp_path / "broken_savedmodel"
    broken_sm.mkdir()
    (broken_sm / "saved_model.pb").write_bytes(b"garbage")
    (broken_sm / "manga_pix2pix.json").write_text(
        json.dumps({"image_size": 32, "uses_cues": True, "use_cue_mask": True})
    )
    text = tmp_path / "model.txt"
    text.write_text("hello")
    return {
        "missing": (tmp_path / "nope", "no such model"),
        "garbage": (garbage, "not a .keras model file"),
        "wrong_zip": (wrong_zip, "cannot load this .keras model"),
        "other_model": (other, "a Sequential, not a manga-pix2pix generator"),
        "discriminator": (disc, "a PatchDiscriminator, not a manga-pix2pix generator"),
        "empty_dir": (empty_dir, "neither a run directory"),
        "unfinished": (unfinished, "training has not finished"),
        "bad_config": (bad_config, "config.json: not valid JSON"),
        "foreign_savedmodel": (foreign_sm, "not one exported by manga-pix2pix"),
        "broken_savedmodel": (broken_sm, "cannot load this SavedModel"),
        "wrong_suffix": (text, "not a model"),
    }


def test_every_bad_model_path_is_one_clear_user_error(tmp_path):
    for name, (path, message) in _bad_models(tmp_path).items():
        with pytest.raises(UserError) as info:
            load_model(path)
        text = str(info.value)
        assert message in text, name
        assert "\n" not in text and str(path) in text, name


def test_per_image_statistics_equal_training_mode_on_each_image_alone(trained_run):
    model = load_model(trained_run)
    generator = model.keep
    config = dict(generator.get_config(), dropout=0.0)
    clone = type(generator).from_config(config)
    clone.build((None, 32, 32, 5))
    clone.set_weights(generator.get_weights())
    x = tf.random.stateless_uniform([2, 32, 64, 5], [5, 6], -1.0, 1.0)
    expected = np.concatenate([clone(x[i : i + 1], training=True).numpy() for i in range(2)])
    np.testing.assert_allclose(model.generate_per_image(x).numpy(), expected, atol=1e-5)
    # Stateless: the moving averages the default mode uses are untouched.
    before = [v.numpy().copy() for v in generator.non_trainable_variables]
    model.generate_per_image(x)
    for old, new in zip(before, generator.non_trainable_variables, strict=True):
        np.testing.assert_array_equal(old, new.numpy())
    assert not np.allclose(model.generate(x).numpy(), expected, atol=1e-3)
    with pytest.raises(UserError, match="norm stats"):
        model.generator("batch")
