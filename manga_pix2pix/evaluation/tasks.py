"""The original's three evaluation tasks, defined from data so anyone can reproduce them.

Every held-out image falls in at most one task:
    interpolation: its sketch's complexity (percent of line pixels) is at least
        `INTERPOLATION_FACTOR` (1.2) times the training complexity ceiling: a busier style than
        the model was trained on.
    color: not interpolation, and it shares a character tag with the training set (a
        character the model has seen, in a new picture).
    transfer: not interpolation, and it has no character tag seen in training (an unseen
        character in the trained style).
Where the character tags of the test or the training images are unknown (a folder of images
has no tags), color and transfer are undefined and their images belong to no task; the
"all" rows of a report still count them.

Which tags name characters is not part of a booru tag itself (Danbooru keeps the category
apart), so it is given by patterns: shell-style globs (`fnmatch`, case-sensitive) such as the
default `character_*` (the synthetic source's tags), or a file listing character tags (and/or
patterns), one per line.

"The training set" is the images the model was trained on: the training split, less the
images above the complexity ceiling when their complexity is known.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from manga_pix2pix.errors import UserError

TASKS = ("color", "transfer", "interpolation")
#: Interpolation images are at least this many times the training ceiling in complexity.
INTERPOLATION_FACTOR = 1.2
#: The training ceiling assumed when a model's config does not give one (the paper's).
DEFAULT_CEILING = 40.0
DEFAULT_CHARACTER_TAGS = "character_*"


@dataclass(frozen=True)
class CharacterTags:
    """Which tags name characters.

    Attributes:
        patterns: `fnmatch` globs (a plain tag name matches only itself).
    """

    patterns: tuple[str, ...]

    def select(self, tags: Iterable[str]) -> set[str]:
        """The character tags among `tags`."""
        return {t for t in tags if any(fnmatch.fnmatchcase(t, p) for p in self.patterns)}

    def describe(self) -> str:
        """The patterns as one comma-separated string (for reports)."""
        return ",".join(self.patterns)


def parse_character_tags(spec: str) -> CharacterTags:
    """Reads `--character-tags`: a file of tags/patterns, one a line, or comma-separated globs.

    In a file, blank lines and lines starting with `#` are ignored.

    Raises:
        UserError: the file cannot be read, or no pattern is given.
    """
    path = Path(spec)
    if path.is_file():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"{spec}: cannot read the character tag list ({err})") from None
        patterns = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    else:
        patterns = [p.strip() for p in spec.split(",") if p.strip()]
    if not patterns:
        raise UserError(f"--character-tags {spec!r}: no tag or pattern given")
    return CharacterTags(tuple(patterns))


def interpolation_threshold(ceiling: float | None) -> float:
    """The complexity from which an image is in the interpolation task."""
    return INTERPOLATION_FACTOR * (DEFAULT_CEILING if ceiling is None else float(ceiling))


def training_characters(
    examples: Iterable[tuple[Iterable[str], float | None]],
    character_tags: CharacterTags,
    ceiling: float | None,
) -> set[str]:
    """The character tags of the training set.

    Args:
        examples: `(tags, complexity)` of each image of the training split; complexity None
            where unknown (the image is then counted).
        character_tags: which tags name characters.
        ceiling: the training complexity ceiling (None: every image was trained on).
    """
    seen: set[str] = set()
    for tags, complexity in examples:
        if ceiling is not None and complexity is not None and complexity > ceiling:
            continue
        seen |= character_tags.select(tags)
    return seen


def assign_task(
    tags: Iterable[str] | None,
    complexity: float,
    seen_characters: set[str] | None,
    character_tags: CharacterTags,
    threshold: float,
) -> str | None:
    """The task of one held-out image (see the module docstring), or None for no task.

    Args:
        tags: the image's tags; None where the source has no tags.
        complexity: its sketch complexity, percent.
        seen_characters: the training set's character tags; None where unknown.
        character_tags: which tags name characters.
        threshold: `interpolation_threshold(ceiling)`.
    """
    if complexity >= threshold:
        return "interpolation"
    if tags is None or seen_characters is None:
        return None
    return "color" if character_tags.select(tags) & seen_characters else "transfer"
