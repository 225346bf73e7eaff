"""The HTML fallback for Gelbooru-0.2-style sites whose API is switched off.

The listing `index.php?page=post&s=list&tags=...&pid=<offset>` links each post as
`index.php?page=post&s=view&id=<N>`; `pid` is an offset in posts, so the next page starts
after the posts found on this one, and a page with no new post ends the search. A post's page
gives the original file (the "Original image" link, else the `#image` picture), its tags
(the `tags=` of the tag sidebar's links, else the picture's `alt`), its rating
("Rating: General") and size ("Size: 800x600"). Post pages are fetched only for posts the
collector does not already have, so a resumed run costs listing pages only.

Everything is parsed with beautifulsoup4's built-in `html.parser`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from urllib.parse import parse_qs, urlsplit

from bs4 import BeautifulSoup

from tfds_danbooru.scrape.http import MAX_PAGE_BYTES, FetchError, HttpClient
from tfds_danbooru.scrape.posts import (
    Post,
    Source,
    as_id,
    as_rating,
    as_size,
    as_tags,
    ext_of_url,
    resolve_url,
    url_problem,
)
from tfds_danbooru.scrape.remote import listing_error

DEFAULT_URL = "https://safebooru.org"

_RATING = re.compile(r"Rating:\s*([A-Za-z]+)")
_SIZE = re.compile(r"Size:\s*(\d{1,6})\s*x\s*(\d{1,6})")


def _query(href: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(href).query)


def parse_listing(html: bytes) -> list[Post]:
    """The posts linked from a listing page, in page order, each once."""
    soup = BeautifulSoup(html, "html.parser")
    posts: dict[int, Post] = {}
    for link in soup.find_all("a", href=True):
        query = _query(link["href"])
        if query.get("s") != ["view"] or len(query.get("id", [])) != 1:
            continue
        post_id = as_id(query["id"][0])
        if post_id is None or post_id in posts:
            continue
        image = link.find("img")
        tags = as_tags(image.get("alt", "")) if image is not None else ()
        posts[post_id] = Post(id=post_id, tags=tags)
    return list(posts.values())


def parse_post_page(html: bytes, post: Post, base_url: str) -> Post:
    """Completes `post` from its page (file URL, tags, rating, size); never raises."""
    soup = BeautifulSoup(html, "html.parser")
    raw_url = None
    for link in soup.find_all("a", href=True):
        if "original image" in link.get_text(" ", strip=True).lower():
            raw_url = link["href"]
            break
    picture = soup.find("img", id="image")
    if raw_url is None and picture is not None:
        raw_url = picture.get("src")
    file_url = resolve_url(raw_url, base_url)

    tags: list[str] = []
    sidebar = soup.find(id="tag-sidebar")
    if sidebar is not None:
        for link in sidebar.find_all("a", href=True):
            for value in _query(link["href"]).get("tags", []):
                tags.extend(as_tags(value))
    if not tags and picture is not None:
        tags = list(as_tags(picture.get("alt", "")))
    tags = list(dict.fromkeys(tags)) or list(post.tags)

    text = soup.get_text(" ", strip=True)
    rating = _RATING.search(text)
    size = _SIZE.search(text)
    problem = url_problem(raw_url, file_url)
    return Post(
        id=post.id,
        file_url=file_url,
        tags=tuple(tags),
        rating=as_rating(rating.group(1)) if rating else "",
        width=as_size(size.group(1)) if size else None,
        height=as_size(size.group(2)) if size else None,
        ext=ext_of_url(file_url),
        problem=problem,
    )


class HtmlSource(Source):
    """Posts scraped from a Gelbooru-0.2-style site's HTML pages.

    Args:
        client: the HTTP client for the site.
        tags: search tags.
    """

    name = "html"

    def __init__(self, client: HttpClient, tags: Sequence[str] = ()):
        self.client = client
        self.tags = list(tags)

    def iter_posts(self) -> Iterator[Post]:
        """Yields posts (id and listing tags only; see `details`), one listing page at a time."""
        url = self.client.base_url + "index.php"
        offset = 0
        seen: set[int] = set()
        while True:
            params = {"page": "post", "s": "list", "tags": " ".join(self.tags),
                      "pid": str(offset)}
            try:
                body = self.client.get(url, params, max_bytes=MAX_PAGE_BYTES)
            except FetchError as err:
                raise listing_error(err, self.client) from None
            posts = [p for p in parse_listing(body) if p.id not in seen]
            if not posts:
                return
            for post in posts:
                seen.add(post.id)
                yield post
            offset += len(posts)

    def details(self, post: Post) -> Post:
        """Reads the post's page for its file URL, tags, rating and size."""
        url = self.client.base_url + "index.php"
        body = self.client.get(url, {"page": "post", "s": "view", "id": str(post.id)},
                               max_bytes=MAX_PAGE_BYTES)
        return parse_post_page(body, post, self.client.base_url)

    def fetch(self, post: Post, max_bytes: int) -> bytes:
        """Downloads the post's original file."""
        return self.client.get(post.file_url, max_bytes=max_bytes)
