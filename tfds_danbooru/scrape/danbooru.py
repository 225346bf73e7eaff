"""The Danbooru JSON API: `GET /posts.json?tags=...&limit=...&page=...`.

The first page is requested without `page`; later pages use the cursor `page=b<id>` (posts
with an id below the lowest seen), which works at any depth, unlike numbered pages that stop
at page 1000 for anonymous users and shift when posts are added. Anonymous searches allow two
tags; a rating filter (`rating:g,s`) is added to the search when a slot is free, and ratings
are checked again on every post either way. HTTP Basic credentials (login and API key) are
read from DANBOORU_LOGIN and DANBOORU_API_KEY when both are set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence

from tfds_danbooru.scrape.http import MAX_PAGE_BYTES, FetchError, HttpClient
from tfds_danbooru.scrape.posts import (
    Post,
    Source,
    as_ext,
    as_id,
    as_md5,
    as_rating,
    as_size,
    as_tags,
    emit_page,
    ext_of_url,
    resolve_url,
    url_problem,
)
from tfds_danbooru.scrape.remote import listing_error

DEFAULT_URL = "https://danbooru.donmai.us"
#: The API's largest page.
MAX_LIMIT = 200
#: Tags an anonymous search may use.
ANONYMOUS_TAG_LIMIT = 2


def credentials_from_env() -> tuple[str, str] | None:
    """(login, api key) from DANBOORU_LOGIN and DANBOORU_API_KEY, or None unless both are set."""
    login = os.environ.get("DANBOORU_LOGIN", "").strip()
    key = os.environ.get("DANBOORU_API_KEY", "").strip()
    return (login, key) if login and key else None


def parse_post(item, base_url: str) -> Post:
    """A `Post` from one element of the `/posts.json` array (never raises)."""
    if not isinstance(item, dict):
        return Post(id=None, problem="malformed")
    post_id = as_id(item.get("id"))
    if post_id is None:
        return Post(id=None, problem="malformed")
    raw_url = item.get("file_url")
    file_url = resolve_url(raw_url, base_url)
    problem = url_problem(raw_url, file_url)
    md5 = item.get("md5")
    if md5 not in (None, "") and as_md5(md5) is None:
        problem = "malformed"  # an md5 that is not one: the answer cannot be trusted
    tags = as_tags(item.get("tag_string"))
    return Post(
        id=post_id,
        md5=as_md5(md5),
        file_url=file_url,
        tags=tags,
        rating=as_rating(item.get("rating")),
        width=as_size(item.get("image_width")),
        height=as_size(item.get("image_height")),
        ext=as_ext(item.get("file_ext")) or ext_of_url(file_url),
        problem=problem,
    )


class DanbooruSource(Source):
    """Posts from a Danbooru-compatible `/posts.json`.

    Args:
        client: the HTTP client for the site.
        tags: search tags (at most two without credentials).
        ratings: rating letters to ask the server for when a tag slot is free.
        page_size: posts per request (at most 200).
    """

    name = "danbooru"

    def __init__(self, client: HttpClient, tags: Sequence[str] = (),
                 ratings: Sequence[str] | None = ("g",), page_size: int = 100):
        self.client = client
        self.tags = list(tags)
        self.ratings = list(ratings) if ratings else []
        self.page_size = max(1, min(MAX_LIMIT, page_size))

    def _query(self) -> str:
        tags = list(self.tags)
        if self.ratings and len(tags) < ANONYMOUS_TAG_LIMIT:
            tags.append("rating:" + ",".join(self.ratings))
        return " ".join(tags)

    def iter_posts(self) -> Iterator[Post]:
        """Yields posts, newest first, one page request at a time."""
        url = self.client.base_url + "posts.json"
        page: str | None = None
        while True:
            params = {"tags": self._query(), "limit": str(self.page_size)}
            if page is not None:
                params["page"] = page
            try:
                body = self.client.get(url, params, max_bytes=MAX_PAGE_BYTES)
            except FetchError as err:
                raise listing_error(err, self.client, credentials_hint=True) from None
            try:
                items = json.loads(body)
            except (ValueError, RecursionError):  # RecursionError: nested too deep
                raise listing_error(FetchError(url, "bad_page", "the answer is not JSON"),
                                    self.client) from None
            if not isinstance(items, list):
                raise listing_error(
                    FetchError(url, "bad_page", "the answer is not a list of posts"), self.client
                )
            if not items:
                return
            lowest = yield from emit_page(items, parse_post, self.client.base_url)
            # Pages may come back short (hidden posts), so only an empty page ends the search;
            # a server that ignores the cursor would otherwise be paged forever.
            if lowest is None or (page is not None and lowest >= int(page[1:])):
                return
            page = f"b{lowest}"

    def fetch(self, post: Post, max_bytes: int) -> bytes:
        """Downloads the post's original file."""
        return self.client.get(post.file_url, max_bytes=max_bytes)
