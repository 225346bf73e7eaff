"""Every command, every option and every `--help` example is in docs/.

In the manner of sqlite-utils' `tests/test_docs.py`: the CLI is the source of truth, and the
tests name what is missing. Only the click objects are imported (no TensorFlow work).
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from manga_pix2pix.cli import main

DOCS = Path(__file__).resolve().parent.parent / "docs"
README = DOCS.parent / "README.md"

COMMANDS = sorted(main.commands)


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _pages() -> dict[str, str]:
    return {path.name: _read(path) for path in sorted(DOCS.glob("*.md"))}


def _lines(text: str) -> list[tuple[str, bool]]:
    """Each line, and whether it is inside a fenced code block."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        lines.append((line, fenced))
    return lines


def _headings(text: str) -> list[str]:
    """Markdown heading lines (outside code blocks)."""
    return [line for line, fenced in _lines(text) if not fenced and line.startswith("#")]


def _headings_and_fences(text: str) -> list[str]:
    """Heading lines, and the lines of fenced code blocks."""
    return [line for line, fenced in _lines(text) if fenced or line.startswith("#")]


def _mentions(command: str) -> re.Pattern:
    return re.compile(rf"manga-pix2pix {re.escape(command)}(?![\w-])")


def _command_pages(command: str) -> dict[str, str]:
    """The pages with a heading naming `manga-pix2pix <command>`."""
    pattern = _mentions(command)
    return {
        name: text
        for name, text in _pages().items()
        if any(pattern.search(line) for line in _headings(text))
    }


def _normalise(text: str) -> str:
    """Shell line continuations joined, runs of whitespace made one space."""
    return " ".join(text.replace("\\\n", " ").split())


def _examples(help_text: str) -> list[str]:
    """The lines of a help text's `Example:` block(s)."""
    examples, inside = [], False
    for line in help_text.splitlines():
        stripped = line.strip()
        if stripped in ("Example:", "Examples:"):
            inside = True
        elif inside and stripped:
            if not line.startswith((" ", "\t")):
                inside = False
            else:
                examples.append(stripped)
    return examples


def _options(command: click.Command) -> list[str]:
    return [
        opt
        for param in command.params
        if isinstance(param, click.Option)
        for opt in (*param.opts, *param.secondary_opts)
        if opt not in ("-h", "--help")
    ]


OPTIONS = [(name, opt) for name in COMMANDS for opt in _options(main.commands[name])]
EXAMPLES = [
    (name, example)
    for name, command in [("manga-pix2pix", main), *((n, main.commands[n]) for n in COMMANDS)]
    for example in _examples(command.help or "")
]


def test_the_cli_has_commands_and_examples():
    assert {"build-dataset", "train", "colorize", "evaluate"} <= set(COMMANDS)
    assert len(EXAMPLES) >= len(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_command_is_documented(command):
    pattern = _mentions(command)
    found = [
        name
        for name, text in _pages().items()
        if any(pattern.search(line) for line in _headings_and_fences(text))
    ]
    assert found, f"no heading or fenced usage in docs/ mentions `manga-pix2pix {command}`"


@pytest.mark.parametrize("command", COMMANDS)
def test_command_has_a_page_with_its_name_in_a_heading(command):
    assert _command_pages(command), f"no docs/ page has a heading `manga-pix2pix {command}`"


@pytest.mark.parametrize(("command", "option"), OPTIONS)
def test_option_is_documented_on_its_command_page(command, option):
    pattern = re.compile(rf"(?<![\w-]){re.escape(option)}(?![\w-])")
    pages = _command_pages(command)
    assert any(pattern.search(text) for text in pages.values()), (
        f"`manga-pix2pix {command} {option}` is not mentioned on its page(s): "
        f"{', '.join(pages) or 'none'}"
    )


@pytest.mark.parametrize(("command", "example"), EXAMPLES)
def test_help_example_is_in_the_docs(command, example):
    """A command's examples are on its own page; the group's anywhere in docs/."""
    pages = _command_pages(command) if command in COMMANDS else _pages()
    docs = _normalise("\n".join(pages.values()))
    assert _normalise(example) in docs, (
        f"{command} --help example not in {', '.join(pages) or 'docs/'}: {example}"
    )


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", [*sorted(p.name for p in DOCS.glob("*.md")), "README.md"])
def test_relative_links_resolve(page):
    path = README if page == "README.md" else DOCS / page
    broken = [
        target
        for target in LINK.findall(_read(path))
        if "://" not in target
        and not target.startswith("mailto:")
        and not (path.parent / target).exists()
        # results.md and benchmarks.md are written from measured runs and may come later.
        and Path(target).name not in ("results.md", "benchmarks.md")
    ]
    assert not broken, f"{page}: links to missing files: {broken}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


ANCHOR = re.compile(r"\]\(([^)\s]*)#([^)\s]+)\)")


@pytest.mark.parametrize("page", [*sorted(p.name for p in DOCS.glob("*.md")), "README.md"])
def test_anchors_resolve(page):
    path = README if page == "README.md" else DOCS / page
    broken = []
    for target, anchor in ANCHOR.findall(_read(path)):
        linked = (path.parent / target) if target else path
        if "://" in target or not linked.exists():
            continue
        headings = [_slug(line.lstrip("#")) for line in _headings(_read(linked))]
        if anchor not in headings:
            broken.append(f"{target}#{anchor}")
    assert not broken, f"{page}: links to missing headings: {broken}"


def test_readme_links_every_command_page():
    readme = _read(README)
    for name in COMMANDS:
        pages = _command_pages(name)
        assert any(f"docs/{page}" in readme for page in pages), f"README: no link for {name}"


@pytest.mark.parametrize("page", [*sorted(p.name for p in DOCS.glob("*.md")), "README.md"])
def test_no_machine_paths(page):
    path = README if page == "README.md" else DOCS / page
    text = _read(path)
    assert not re.search(r"(?<![\w.])/(work|home|root|Users|tmp)/", text), page
