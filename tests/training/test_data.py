"""The training stream: exact positions for resume, hold-out, cue masks, clear data errors."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import tensorflow as tf

from manga_pix2pix.config import preset
from manga_pix2pix.data.derive import derive_batch
from manga_pix2pix.data.synthetic import synthetic_image
from manga_pix2pix.errors import UserError
from manga_pix2pix.imageio import write_image
from manga_pix2pix.training.data import (
    derive_options,
    held_out_images,
    load_training_data,
    training_stream,
)


def _config(**data):
    config = preset("smoke")
    config.data.synthetic_count = 6
    for key, value in data.items():
        setattr(config.data, key, value)
    return config


def _images(config, data, start, count):
    stream = training_stream(config, data, 2, start_step=start).take(count)
    return [batch["image"].numpy() for batch in stream]


def test_the_stream_from_step_k_is_the_uninterrupted_stream_from_k():
    config = _config()
    data = load_training_data(config, 2)
    assert (data.num_images, data.steps_per_epoch) == (6, 3)
    full = _images(config, data, 0, 8)
    resumed = _images(config, data, 5, 3)  # mid-epoch, two epochs in
    for a, b in zip(full[5:], resumed, strict=True):
        np.testing.assert_array_equal(a, b)


def test_every_epoch_has_its_own_order_and_augmentation():
    config = _config()
    data = load_training_data(config, 2)
    first, second = _images(config, data, 0, 6)[:3], _images(config, data, 0, 6)[3:]
    assert not all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    other_seed = _config()
    other_seed.train.seed = 1
    assert not np.array_equal(_images(config, data, 0, 1)[0],
                              _images(other_seed, load_training_data(other_seed, 2), 0, 1)[0])


def test_no_cues_gives_empty_cues_and_masks():
    config = _config(no_cues=True)
    batch = next(iter(training_stream(config, load_training_data(config, 2), 2)))
    assert not batch["cue_mask"].numpy().any()
    assert not batch["cues"].numpy().any()
    with_cues = _config(p_full_cues=1.0, p_partial_cues=0.0, p_no_cues=0.0)
    batch = next(iter(training_stream(with_cues, load_training_data(with_cues, 2), 2)))
    assert batch["cue_mask"].numpy().all()


def test_folder_hold_out_is_evenly_spread_stable_and_disjoint(tmp_path):
    for i in range(10):
        write_image(tmp_path / f"img_{i:02d}.png", synthetic_image(i, 32))
    config = _config(source=str(tmp_path), holdout_fraction=0.2)
    data = load_training_data(config, 2)
    held = [im.numpy() for im in held_out_images(config)]
    assert data.num_images == 8 and len(held) == 2
    # Images 4 and 9 (floor((i + 1) * 0.2) steps up there).
    np.testing.assert_array_equal(held[0], synthetic_image(4, 32))
    np.testing.assert_array_equal(held[1], synthetic_image(9, 32))
    # The preview shows held-out images, without augmentation.
    np.testing.assert_allclose((data.preview["image"][0] + 1) * 127.5, held[0], atol=0.01)


def test_synthetic_hold_out_draws_further_seeds():
    config = _config(holdout_fraction=0.5)
    held = [im.numpy() for im in held_out_images(config)]
    assert len(held) == 3
    np.testing.assert_array_equal(held[0], synthetic_image(6, 32))
    assert held_out_images(_config()) is None


def test_all_images_filtered_out_is_a_clear_error():
    with pytest.raises(UserError, match="complexity above the ceiling of 0.5%"):
        load_training_data(_config(complexity_ceiling=0.5), 2)


def test_fewer_images_than_one_batch_is_a_clear_error():
    with pytest.raises(UserError, match="fewer than one batch of 8"):
        load_training_data(_config(), 8)


@pytest.mark.parametrize("no_cues", [False, True])
def test_host_and_device_derivation_give_the_same_batches(no_cues):
    config = _config()
    config.data.no_cues = no_cues
    data = load_training_data(config, 2)
    host = list(training_stream(config, data, 2, start_step=3, derive=True).take(4))
    raw = list(training_stream(config, data, 2, start_step=3, derive=False).take(4))
    assert raw[0]["image"].dtype == tf.uint8 and raw[0]["seed"].shape == (2, 2)
    # As the train step runs it: inside a tf.function, per replica, under the strategy.
    strategy = tf.distribute.get_strategy()
    derive = functools.partial(derive_batch, **derive_options(config.data))
    on_device = tf.function(
        lambda batch: strategy.run(lambda b: derive(b["image"], b["seed"]), args=(batch,))
    )
    for a, b in zip(host, raw, strict=True):
        derived = on_device(b)
        for key in ("image", "sketch", "cues", "cue_mask"):
            np.testing.assert_allclose(derived[key].numpy(), a[key].numpy(), atol=1e-6)
        np.testing.assert_array_equal(b["image"].numpy(), np.round((a["image"] + 1) * 127.5))


def test_mosaics_are_made_before_derivation_and_resume_exactly():
    config = _config(p_mosaic=1.0)
    data = load_training_data(config, 2)
    plain = _images(_config(), data, 0, 2)
    mosaic = _images(config, data, 0, 2)
    # Every example is its batch's two images, shrunk and tiled (batch 2: i, i+1, i, i+1).
    half = plain[0].reshape(2, 16, 2, 16, 2, 3).mean(axis=(2, 4))
    top = np.concatenate([half[0], half[1]], 1)
    # The images are in [-1, 1]: compare on uint8 levels, within the rounding.
    np.testing.assert_allclose((mosaic[0][0, :16] + 1) * 127.5, (top + 1) * 127.5, atol=1.5)
    np.testing.assert_allclose(mosaic[0][0, 16:], mosaic[0][0, :16], atol=1e-6)
    resumed = _images(config, data, 1, 1)
    np.testing.assert_array_equal(resumed[0], mosaic[1])
    raw = next(iter(training_stream(config, data, 2, derive=False)))
    np.testing.assert_array_equal(np.round((mosaic[0] + 1) * 127.5), raw["image"].numpy())
