"""The Safebooru (Gelbooru 0.2) `dapi`: `index.php?page=dapi&s=post&q=index&tags=&pid=&limit=`.

Answers are XML by default (`<posts><post id= md5= file_url= rating= tags= .../></posts>`)
or JSON with `json=1` (a list of objects; `hash` is the md5, and the file URL, when absent, is
`/images/<directory>/<image>`). An empty search may come back as an empty body. Numbered pages
(`pid`) stop working past about 20,000 results, so from there the search goes on with the
cursor `id:<N` (posts older than the lowest id seen) and `pid` starts again at 0.

XML with a DOCTYPE is refused before parsing (no entity expansion), and pages are capped in
size by the HTTP client.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Sequence

from tfds_danbooru.scrape.http import MAX_PAGE_BYTES, FetchError, HttpClient
from tfds_danbooru.scrape.posts import (
    Post,
    Source,
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

DEFAULT_URL = "https://safebooru.org"
#: The API's largest page.
MAX_LIMIT = 1000
#: Results reachable with numbered pages; deeper ones need the `id:<N` cursor.
DEEP_PAGING_LIMIT = 20000


def parse_post(item: dict, base_url: str) -> Post:
    """A `Post` from one post's fields (XML attributes or a JSON object; never raises)."""
    if not isinstance(item, dict):
        return Post(id=None, problem="malformed")
    post_id = as_id(item.get("id"))
    if post_id is None:
        return Post(id=None, problem="malformed")
    raw_url = item.get("file_url")
    directory, image = item.get("directory"), item.get("image")
    if not raw_url and isinstance(directory, (str, int)) and isinstance(image, str) and image:
        raw_url = f"/images/{directory}/{image}"
    file_url = resolve_url(raw_url, base_url)
    problem = url_problem(raw_url, file_url)
    md5 = item.get("md5") or item.get("hash")
    if md5 not in (None, "") and as_md5(md5) is None:
        problem = "malformed"  # an md5 that is not one: the answer cannot be trusted
    return Post(
        id=post_id,
        md5=as_md5(md5),
        file_url=file_url,
        tags=as_tags(item.get("tags")),
        rating=as_rating(item.get("rating")),
        width=as_size(item.get("width")),
        height=as_size(item.get("height")),
        ext=ext_of_url(file_url),
        problem=problem,
    )


def parse_page(body: bytes, url: str) -> list[dict]:
    """The posts' fields in one dapi answer, XML or JSON.

    Raises:
        FetchError: the answer is neither (reason "bad_page").
    """
    text = body.strip()
    if not text:
        return []
    if text[:1] in (b"[", b"{"):
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested too deep
            raise FetchError(url, "bad_page", "the answer is not valid JSON") from None
        if isinstance(data, dict) and isinstance(data.get("post"), list):
            data = data["post"]
        if not isinstance(data, list):
            raise FetchError(url, "bad_page", "the answer is not a list of posts")
        return data
    if b"<!DOCTYPE" in text[:4096].upper() or b"<!ENTITY" in text.upper():
        raise FetchError(url, "bad_page", "XML with a DOCTYPE is not accepted")
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        raise FetchError(url, "bad_page", "the answer is neither XML nor JSON") from None
    if root.tag == "response" and root.get("success") == "false":
        raise FetchError(url, "bad_page", f"the site says: {root.get('reason', '')[:200]}")
    if root.tag != "posts":
        raise FetchError(url, "bad_page", f"unexpected XML element <{root.tag[:40]}>")
    return [dict(element.attrib) for element in root.iter("post")]


class SafebooruSource(Source):
    """Posts from a Gelbooru-0.2-style `dapi`.

    Args:
        client: the HTTP client for the site.
        tags: search tags.
        page_size: posts per request (at most 1000).
        json_api: ask for JSON (`json=1`) rather than XML.
        deep_limit: results reachable by `pid` before switching to the `id:<N` cursor.
    """

    name = "safebooru"

    def __init__(self, client: HttpClient, tags: Sequence[str] = (), page_size: int = 100,
                 json_api: bool = True, deep_limit: int = DEEP_PAGING_LIMIT):
        self.client = client
        self.tags = list(tags)
        self.page_size = max(1, min(MAX_LIMIT, page_size))
        self.json_api = json_api
        self.deep_limit = deep_limit

    def iter_posts(self) -> Iterator[Post]:
        """Yields posts, newest first, one page request at a time."""
        url = self.client.base_url + "index.php"
        pid = 0
        cursor: int | None = None
        while True:
            tags = self.tags + ([f"id:<{cursor}"] if cursor is not None else [])
            params = {"page": "dapi", "s": "post", "q": "index", "tags": " ".join(tags),
                      "pid": str(pid), "limit": str(self.page_size)}
            if self.json_api:
                params["json"] = "1"
            try:
                items = parse_page(self.client.get(url, params, max_bytes=MAX_PAGE_BYTES), url)
            except FetchError as err:
                raise listing_error(err, self.client) from None
            if not items:
                return
            lowest = yield from emit_page(items, parse_post, self.client.base_url)
            if lowest is None:
                return
            if (pid + 2) * self.page_size <= self.deep_limit:
                pid += 1
            elif cursor is not None and lowest >= cursor:
                return  # the server ignores the cursor: stop rather than loop
            else:
                cursor, pid = lowest, 0

    def fetch(self, post: Post, max_bytes: int) -> bytes:
        """Downloads the post's original file."""
        return self.client.get(post.file_url, max_bytes=max_bytes)
