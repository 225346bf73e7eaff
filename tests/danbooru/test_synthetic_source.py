"""The synthetic source keeps some characters out of the train split."""

import itertools

from manga_pix2pix.data.synthetic import NUM_CHARACTERS, character_of
from tfds_danbooru.scrape.local import TEST_ONLY_CHARACTERS, SyntheticSource
from tfds_danbooru.splits import split_hash


def test_test_only_characters_fall_only_in_the_test_split():
    source = SyntheticSource(image_size=32, test_fraction=0.2)
    posts = list(itertools.islice(source.iter_posts(), 300))
    unseen = [p for p in posts if character_of(p.id) >= NUM_CHARACTERS - TEST_ONLY_CHARACTERS]
    seen = [p for p in posts if character_of(p.id) < NUM_CHARACTERS - TEST_ONLY_CHARACTERS]
    assert unseen, "some test-only characters are drawn"
    assert all(split_hash(p.id) < 0.2 for p in unseen)
    assert any(split_hash(p.id) >= 0.2 for p in seen), "other characters reach train"
    assert any(split_hash(p.id) < 0.2 for p in seen), "and test"
    ids = [p.id for p in posts]
    assert ids == sorted(set(ids))
    assert all(f"character_{character_of(p.id)}" in p.tags for p in posts)
