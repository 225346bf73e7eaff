"""What a source says about one post, and checks on the values a server sends.

Nothing from the network is trusted: ids must be positive ints (not bools or strings of
digits with junk), an md5 must be 32 hex digits, URLs must resolve to http(s), and tags are
plain strings. A post whose data fails a check still reaches the collector, with `problem`
set, so that the manifest records why it was skipped.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Callable, Generator, Iterator
from urllib.parse import urljoin, urlsplit

#: Ratings in Danbooru's current scheme: general, sensitive, questionable, explicit.
RATINGS = ("g", "s", "q", "e")

# Gelbooru-style sites spell ratings out; their older "safe" is the nearest to "sensitive"
# (Danbooru split its old "safe" into general and sensitive in 2022).
_RATING_WORDS = {
    "g": "g",
    "general": "g",
    "s": "s",
    "safe": "s",
    "sensitive": "s",
    "q": "q",
    "questionable": "q",
    "e": "e",
    "explicit": "e",
}

_MD5 = re.compile(r"^[0-9a-fA-F]{32}$")
_EXT = re.compile(r"^[a-z0-9]{1,8}$")


@dataclasses.dataclass(frozen=True)
class Post:
    """One post as a source describes it, before anything is downloaded.

    Attributes:
        id: the post id on its site (the dataset's example key), or None if the site sent none.
        md5: lower-case hex md5 of the original file, if the site gives one.
        file_url: absolute http(s) URL of the original file, if known yet.
        tags: the post's tags.
        rating: one of `RATINGS`, or "" when unknown.
        width: width in pixels, if the site gives it.
        height: height in pixels, if the site gives it.
        ext: the file extension the site states (lower case, no dot), if any.
        problem: why the post cannot be used (a skip reason such as "no_file_url"), or None.
    """

    id: int | None
    md5: str | None = None
    file_url: str | None = None
    tags: tuple[str, ...] = ()
    rating: str = ""
    width: int | None = None
    height: int | None = None
    ext: str | None = None
    problem: str | None = None


class Source:
    """The interface of every source of posts.

    Attributes:
        name: the source's name, stored with each example (e.g. "danbooru").
    """

    name = "source"

    def iter_posts(self) -> Iterator[Post]:
        """Yields the posts matching the search, newest first for booru sites."""
        raise NotImplementedError

    def details(self, post: Post) -> Post:
        """Completes a post (file URL, rating, size) where the listing lacks them."""
        return post

    def fetch(self, post: Post, max_bytes: int) -> bytes:
        """Returns the post's original file.

        Raises:
            tfds_danbooru.scrape.http.FetchError: the file could not be fetched.
        """
        raise NotImplementedError


def url_problem(raw_url, file_url: str | None) -> str | None:
    """Why a post's file cannot be fetched: `no_file_url`, `bad_url` (unusable), or None."""
    if raw_url is None or raw_url == "":
        return "no_file_url"
    if file_url is None:
        return "bad_url"
    return None


def emit_page(
    items: list, parse: Callable[[object, str], Post], base_url: str
) -> Generator[Post, None, int | None]:
    """Yields the posts of one listing page; returns the lowest post id on it (for cursors)."""
    lowest = None
    for item in items:
        post = parse(item, base_url)
        if post.id is not None:
            lowest = post.id if lowest is None else min(lowest, post.id)
        yield post
    return lowest


def as_id(value) -> int | None:
    """A post id: a positive int, or a string of digits; anything else gives None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value < 2**63 else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
        number = int(value)
        return number if number > 0 else None
    return None


def as_size(value) -> int | None:
    """A width or height: a non-negative int (or digit string) below 10**6, else None."""
    number = as_id(value)
    return number if number is not None and number < 1_000_000 else None


def as_md5(value) -> str | None:
    """A lower-case md5 hex digest, or None if `value` is not one."""
    if isinstance(value, str) and _MD5.match(value):
        return value.lower()
    return None


def as_rating(value) -> str:
    """A rating letter from any of the spellings booru sites use; "" if unknown."""
    if not isinstance(value, str):
        return ""
    return _RATING_WORDS.get(value.strip().lower(), "")


def _is_text(value: str) -> bool:
    """Whether a string is printable and encodes as UTF-8 (JSON allows lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return value.isprintable()


def as_tags(value) -> tuple[str, ...]:
    """Tags from a space-separated string (or a list of strings); junk is dropped."""
    if isinstance(value, str):
        items = value.split()
    elif isinstance(value, list):
        items = [v for v in value if isinstance(v, str)]
    else:
        return ()
    return tuple(t for t in (s.strip() for s in items) if t and len(t) <= 200 and _is_text(t))


def as_ext(value) -> str | None:
    """A file extension (lower case, no dot), or None."""
    if not isinstance(value, str):
        return None
    value = value.strip().lower().lstrip(".")
    return value if _EXT.match(value) else None


def ext_of_url(url: str | None) -> str | None:
    """The extension of a URL's path, or None."""
    if not url:
        return None
    return as_ext(posixpath.splitext(urlsplit(url).path)[1])


def resolve_url(value, base_url: str) -> str | None:
    """Resolves a (possibly relative or protocol-relative) URL against `base_url`.

    Returns:
        The absolute URL, or None unless it is http(s) with a host.
    """
    if not isinstance(value, str) or not value.strip() or len(value) > 4096:
        return None
    if not _is_text(value):
        return None
    url = urljoin(base_url, value.strip())
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return url
