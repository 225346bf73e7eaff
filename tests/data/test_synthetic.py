"""The synthetic source: deterministic by seed, any size, tags, and sketch complexity."""

import cv2
import numpy as np
import pytest

from manga_pix2pix.data.sketch import image_complexity
from manga_pix2pix.data.synthetic import NUM_CHARACTERS, character_of, synthetic_image, tags_of


def test_deterministic_by_seed():
    np.testing.assert_array_equal(synthetic_image(5, 48), synthetic_image(5, 48))
    assert not np.array_equal(synthetic_image(5, 48), synthetic_image(6, 48))


@pytest.mark.parametrize(
    "size, shape", [(32, (32, 32)), ((37, 53), (37, 53)), ((80, 20), (80, 20))]
)
def test_any_size(size, shape):
    image = synthetic_image(1, size)
    assert image.shape == (*shape, 3) and image.dtype == np.uint8
    # A real picture, not a flat fill.
    assert image.std() > 10


def test_too_small_is_refused():
    with pytest.raises(ValueError, match="size"):
        synthetic_image(0, (7, 32))


def test_looks_the_same_at_every_size():
    big = synthetic_image(3, 128)
    small = synthetic_image(3, 64)
    shrunk = cv2.resize(big, (64, 64), interpolation=cv2.INTER_AREA)
    other = synthetic_image(4, 64)
    same = np.abs(shrunk.astype(int) - small).mean()
    # The paper texture is drawn per size, so not equal, but far closer than another seed.
    assert same < 20
    assert same < np.abs(other.astype(int) - small).mean() / 3


def test_tags_name_the_character():
    for seed in range(20):
        tags = tags_of(seed)
        assert tags[0] == f"character_{character_of(seed)}"
        assert 0 <= character_of(seed) < NUM_CHARACTERS
        assert "synthetic" in tags and "cel_style" in tags
    assert "busy_style" in tags_of(0, detail=2.0)
    # Several images share a character.
    assert len({character_of(s) for s in range(40)}) < 40


def test_sketch_complexity_in_the_training_range_and_detail_raises_it():
    plain = [float(image_complexity(synthetic_image(s, 256))) for s in range(4)]
    busy = [float(image_complexity(synthetic_image(s, 256, detail=3.0))) for s in range(4)]
    assert all(3.0 < c < 25.0 for c in plain), plain
    assert np.mean(busy) > np.mean(plain) + 1.0, (plain, busy)
