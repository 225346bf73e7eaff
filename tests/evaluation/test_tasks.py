"""The three tasks on a small hand-made set of tags and complexities."""

import pytest

from manga_pix2pix.errors import UserError
from manga_pix2pix.evaluation.tasks import (
    CharacterTags,
    assign_task,
    interpolation_threshold,
    parse_character_tags,
    training_characters,
)

DEFAULT = CharacterTags(("character_*",))


def test_parse_character_tags_from_globs_and_files(tmp_path):
    assert parse_character_tags("character_*").patterns == ("character_*",)
    assert parse_character_tags(" a_*, b ,").patterns == ("a_*", "b")
    listing = tmp_path / "characters.txt"
    listing.write_text("# characters of my set\nhatsune_miku\n\nkagamine_*\n")
    tags = parse_character_tags(str(listing))
    assert tags.patterns == ("hatsune_miku", "kagamine_*")
    assert tags.select(["hatsune_miku", "kagamine_rin", "1girl", "hatsune"]) == {
        "hatsune_miku", "kagamine_rin"
    }
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(UserError, match="no tag"):
        parse_character_tags(str(empty))
    with pytest.raises(UserError, match="no tag"):
        parse_character_tags(" , ")


def test_glob_matching_is_case_sensitive_and_whole_tag():
    assert DEFAULT.select(["character_3", "Character_4", "my_character_5", "character_"]) == {
        "character_3", "character_"
    }


def test_interpolation_threshold():
    assert interpolation_threshold(None) == pytest.approx(48.0)
    assert interpolation_threshold(12) == pytest.approx(14.4)


def test_training_characters_leave_out_images_above_the_ceiling():
    train = [
        (["character_1", "cel_style"], 10.0),
        (["character_2"], 40.0),  # at the ceiling: trained on
        (["character_3", "character_4"], 40.1),  # above it: never seen
        (["character_5"], None),  # complexity unknown: counted
        (["1girl"], 5.0),  # no character tag
    ]
    assert training_characters(train, DEFAULT, 40.0) == {
        "character_1", "character_2", "character_5"
    }
    assert training_characters(train, DEFAULT, None) == {
        "character_1", "character_2", "character_3", "character_4", "character_5"
    }


def test_task_split_on_a_small_generated_set():
    seen = {"character_1", "character_2"}
    threshold = interpolation_threshold(40.0)  # 48 %
    # (tags, complexity) -> task, each checked by hand against the definitions.
    cases = [
        ((["character_1", "solo"], 20.0), "color"),
        ((["character_2", "character_9"], 47.9), "color"),  # one shared character suffices
        ((["character_9"], 20.0), "transfer"),
        ((["solo"], 30.0), "transfer"),  # no character tag at all: none shared
        ((["character_1"], 48.0), "interpolation"),  # exactly 1.2 x ceiling
        ((["character_9"], 60.0), "interpolation"),  # interpolation wins over transfer
        ((["character_2"], 75.0), "interpolation"),  # and over color
    ]
    got = [assign_task(tags, c, seen, DEFAULT, threshold) for (tags, c), _ in cases]
    assert got == [task for _, task in cases]


def test_without_tags_only_interpolation_is_defined():
    threshold = interpolation_threshold(40.0)
    assert assign_task(None, 20.0, {"character_1"}, DEFAULT, threshold) is None
    assert assign_task(["character_1"], 20.0, None, DEFAULT, threshold) is None
    assert assign_task(None, 50.0, None, DEFAULT, threshold) == "interpolation"
