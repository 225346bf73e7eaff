"""Config dataclasses and presets."""

import json

import pytest

from manga_pix2pix.config import PRESETS, Config, DataConfig, ModelConfig, TrainConfig, preset
from manga_pix2pix.errors import UserError


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_json_round_trip(name):
    config = preset(name)
    again = Config.from_dict(json.loads(config.to_json()))
    assert again == config
    assert again.preset == name


def test_preset_is_a_copy():
    config = preset("small")
    config.train.batch_size = 99
    assert preset("small").train.batch_size != 99


def test_paper_preset_matches_the_original():
    config = preset("paper")
    assert config.model.image_size == 256
    assert config.model.base_filters == 64
    assert config.model.norm == "batch"
    assert config.model.dropout == 0.5
    assert config.train.learning_rate == 2e-4
    assert config.train.beta_1 == 0.5
    assert config.train.l1_weight == 100.0
    assert config.data.complexity_ceiling == 40.0


def test_small_preset_is_a_quarter_width_at_128():
    config = preset("small")
    assert config.model.image_size == 128
    assert config.model.base_filters == 16


def test_input_channels_follow_the_cue_mask():
    assert ModelConfig().input_channels == 5
    assert ModelConfig(use_cue_mask=False).input_channels == 4


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"image_size": 100}, "image_size"),
        ({"image_size": 16}, "image_size"),
        ({"norm": "layer"}, "norm"),
        ({"dropout": 1.0}, "dropout"),
        ({"base_filters": 0}, "base_filters"),
    ],
)
def test_model_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ModelConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"precision": "float64"}, "precision"),
        ({"strategy": "magic"}, "strategy"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr_decay": "cosine"}, "lr_decay"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"ema_decay": -0.1}, "ema_decay"),
    ],
)
def test_train_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**kwargs)


def test_unknown_preset_and_unknown_key_are_user_errors():
    with pytest.raises(UserError, match="unknown preset"):
        preset("huge")
    with pytest.raises(UserError, match="config"):
        Config.from_dict({"model": {"image_size": 64, "colour": "red"}})


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_a_mosaic_share_outside_0_1_names_the_field(share):
    with pytest.raises(ValueError, match="p_mosaic"):
        DataConfig(p_mosaic=share)
    assert DataConfig.__dataclass_fields__["p_mosaic"].default == 0.0


@pytest.mark.parametrize("limit", [0.0, -5.0])
def test_a_time_limit_must_be_positive_and_a_run_needs_some_length(limit):
    with pytest.raises(ValueError, match="time_limit_s"):
        TrainConfig(time_limit_s=limit)
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=None)
    assert TrainConfig(epochs=None, time_limit_s=60.0).steps is None


@pytest.mark.parametrize(("document", "message"), [
    ({"data": {"cue_sigma": "abc"}}, "run/config.json: data.cue_sigma: expected a number or null, "
                                     "got 'abc'"),
    ({"data": {"cue_sigma": -5}}, "run/config.json: data.cue_sigma: must be in"),
    ({"data": {"cue_sigma": 1e7}}, "run/config.json: data.cue_sigma: must be in"),
    ({"model": 5}, "run/config.json: model: expected a JSON object, got 5"),
    ([1, 2], "run/config.json: expected a JSON object"),
    ({"extra": {}}, "run/config.json: unknown key 'extra'"),
    ({"model": {"image_size": 64.0}}, "model.image_size: expected an integer, got 64.0"),
    ({"model": {"use_cue_mask": 1}}, "model.use_cue_mask: expected true or false, got 1"),
    ({"model": {"cue_channels": 4}}, "model.sketch_channels: the networks take"),
    ({"train": {"steps": "100"}}, "train.steps: expected an integer or null, got '100'"),
    ({"train": {"learning_rate": 0}}, "train.learning_rate: must be positive"),
    ({"train": {"checkpoint_every": 0}}, "train.checkpoint_every: must be positive"),
    ({"train": {"l1_weight": float("nan")}}, "train.l1_weight: expected a number"),
    ({"data": {"p_full_cues": 0.9}}, "data.p_full_cues: p_full_cues, p_partial_cues, p_no_cues "
                                     "must be non-negative and sum to 1"),
    ({"data": {"p_sketch_xdog": -0.3, "p_sketch_pencil": 1.1}}, "data.p_sketch_adaptive"),
    ({"data": {"holdout_fraction": 1.0}}, "data.holdout_fraction: must be in [0, 1)"),
    ({"preset": 3}, "preset: expected a string"),
])
def test_a_bad_config_document_names_the_file_and_field(document, message):
    with pytest.raises(UserError) as err:
        Config.from_dict(document, source="run/config.json")
    assert message in str(err.value)
    assert str(err.value).startswith("run/config.json: ")


def test_json_numbers_become_the_field_types():
    config = Config.from_dict({"data": {"cue_sigma": 3, "complexity_ceiling": None},
                               "train": {"learning_rate": 1}})
    assert config.data.cue_sigma == 3.0 and isinstance(config.data.cue_sigma, float)
    assert config.data.complexity_ceiling is None
    assert isinstance(config.train.learning_rate, float)
