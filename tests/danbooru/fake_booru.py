"""A booru site on 127.0.0.1 for the tests: the Danbooru JSON API, the Safebooru dapi (XML and
JSON) and Gelbooru-style HTML pages, over one set of generated posts, with faults.

Per-file faults (`FakePost.fault`):
    "500_once": the first request answers HTTP 500.
    "429_once": the first request answers 429 with `Retry-After: 1`.
    "429_long_once": the same with `Retry-After: 86400` (a day).
    "slow_once": the first request gets no answer for `slow_seconds`, then the connection drops.
    "broken_once": the first answer announces the full length but stops half-way.
The server counts requests per path (`requests`) and image bodies sent in full (`completed`).
`stall_after=N` makes every image request after the N-th full body hang until `release()`, then
drop the connection unanswered (`stalled` counts them).
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import hashlib
import html
import json
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np

from manga_pix2pix.data.synthetic import synthetic_image
from manga_pix2pix.imageio import encode_image

_RATING_WORDS = {"g": "general", "s": "safe", "q": "questionable", "e": "explicit"}


@dataclasses.dataclass
class FakePost:
    """One post of the fake site.

    Attributes:
        id: the post id (JSON may send `raw_id` instead, to test validation).
        data: the file's bytes (None: no file).
        path: the URL path the file is served at.
        file_url: what the API says the file URL is (default: `path`; "" for none).
        md5: the md5 the API states (default: the md5 of `data`).
        rating: g, s, q or e.
        tags: the post's tags.
        ext: the extension the API states.
        width: the width the API states.
        height: the height the API states.
        fault: a per-file fault (see the module docstring).
        valid: whether the dataset must hold this image.
        raw_id: a value sent as the id instead of `id` (e.g. a malformed string).
    """

    id: int
    data: bytes | None
    path: str | None
    file_url: str | None = None
    md5: str | None = None
    rating: str = "g"
    tags: tuple[str, ...] = ("solo",)
    ext: str = "png"
    width: int = 48
    height: int = 48
    fault: str | None = None
    valid: bool = True
    raw_id: object = None

    def __post_init__(self):
        if self.file_url is None:
            self.file_url = self.path or ""
        if self.md5 is None and self.data is not None:
            self.md5 = hashlib.md5(self.data).hexdigest()


def png(seed: int, height: int = 48, width: int = 48) -> bytes:
    """A small synthetic drawing as PNG."""
    return encode_image(synthetic_image(seed, (height, width)))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size (a decompression bomb's first bytes)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def standard_posts() -> list[FakePost]:
    """Posts covering every case a build must handle; `valid` marks those it must keep."""
    original = png(1)
    truncated_full = png(4)
    rgba = np.dstack([synthetic_image(9, (48, 48)), np.full((48, 48), 180, np.uint8)])
    return [
        FakePost(120, original, "/data/120.png", tags=("solo", "staff")),
        FakePost(119, encode_image(synthetic_image(2, (48, 56)), ".jpg"), "/data/119.jpg",
                 ext="jpg", width=56),
        FakePost(118, png(3), "/data/118.png", fault="500_once"),
        FakePost(117, png(5), "/data/117.png", fault="429_once"),
        FakePost(116, png(6), "/data/116.png", fault="slow_once"),
        FakePost(115, png(7), "/data/115.png", fault="broken_once"),
        FakePost(114, truncated_full[: len(truncated_full) // 2], "/data/114.png",
                 md5=hashlib.md5(truncated_full).hexdigest(), valid=False),
        FakePost(113, png(17)[:41] + bytes(range(256)) * 4, "/data/113.png",
                 valid=False),  # a PNG header, then garbage
        FakePost(112, original, "/data/112.png", valid=False),  # the same file as 120
        FakePost(111, None, None, valid=False),  # no file URL
        FakePost(110, png(8), "/x.png", file_url="../../x.png"),  # hostile name
        FakePost(109, png(10), "/data/109.png", rating="e", valid=False),
        FakePost(108, png(11), "/data/108.png", rating="s", valid=False),
        FakePost(107, b"\x00\x00\x00\x18ftypmp42", "/data/107.mp4", ext="mp4", valid=False),
        FakePost(106, png(12), "/data/106.png", tags=("solo", "animated"), valid=False),
        FakePost(105, png(13, 16, 16), "/data/105.png", width=16, height=16, valid=False),
        FakePost(104, encode_image(synthetic_image(14, (40, 48)), ".webp"), "/data/104.webp",
                 ext="webp", height=40),
        FakePost(103, png(15), "/data/103.png", raw_id="103x", valid=False),
        FakePost(102, encode_image(rgba), "/images/7/102.png"),
        FakePost(101, png(16, 64, 40), "/images/7/101.png", width=40, height=64),
        FakePost(100, png_claiming(20000, 20000), "/data/100.png", valid=False),
    ]


class BooruServer:
    """The fake site, served by a `ThreadingHTTPServer` on 127.0.0.1 (port chosen by the OS).

    Args:
        posts: the site's posts (any order; listings are newest first).
        auth: (login, api key) that `/posts.json` requires, or None.
        slow_seconds: how long a "slow_once" request hangs.
        stall_after: after this many full image bodies, image requests hang.
        html_page_size: posts per HTML listing page.
        deep_limit: the dapi answers an error for offsets at or past this many posts.
        listing_errors: how many listing requests (any API) answer HTTP 503 first.
    """

    def __init__(self, posts: list[FakePost], *, auth: tuple[str, str] | None = None,
                 slow_seconds: float = 1.5, stall_after: int | None = None,
                 html_page_size: int = 4, deep_limit: int = 10**9, listing_errors: int = 0):
        self.posts = sorted(posts, key=lambda p: -p.id)
        self.by_path = {p.path: p for p in posts if p.path}
        self.auth = auth
        self.slow_seconds = slow_seconds
        self.stall_after = stall_after
        self.html_page_size = html_page_size
        self.deep_limit = deep_limit
        self.listing_errors = listing_errors
        #: When set, the raw body of every `/posts.json` answer (a hostile listing).
        self.listing_body: bytes | None = None
        self.requests: collections.Counter = collections.Counter()
        self.completed: collections.Counter = collections.Counter()
        self.stalled = 0
        self.queries: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        daemon=True)

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:40123/."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    def start(self) -> BooruServer:
        """Starts serving in a thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving and releases any hanging request."""
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def release(self) -> None:
        """Ends `stall_after`: hanging and later image requests are answered again."""
        self.stall_after = None
        self._release.set()

    def images_completed(self) -> int:
        """Image bodies sent in full so far."""
        with self._lock:
            return sum(self.completed.values())

    # -- listings ----------------------------------------------------------------------------

    def _matching(self, tags: list[str]) -> list[FakePost]:
        ratings, cursor, wanted = None, None, []
        for tag in tags:
            if tag.startswith("rating:"):
                ratings = set(tag[len("rating:"):].split(","))
            elif tag.startswith("id:<"):
                cursor = int(tag[len("id:<"):])
            else:
                wanted.append(tag)
        return [p for p in self.posts
                if all(t in p.tags for t in wanted)
                and (ratings is None or p.rating in ratings)
                and (cursor is None or p.id < cursor)]

    def danbooru_page(self, query: dict) -> list[dict]:
        """The `/posts.json` answer."""
        posts = self._matching(query.get("tags", [""])[0].split())
        limit = int(query.get("limit", ["20"])[0])
        page = query.get("page", ["1"])[0]
        if page.startswith("b"):
            posts = [p for p in posts if p.id < int(page[1:])][:limit]
        else:
            start = (int(page) - 1) * limit
            posts = posts[start : start + limit]
        out = []
        for p in posts:
            item = {"id": p.raw_id if p.raw_id is not None else p.id, "md5": p.md5,
                    "rating": p.rating, "tag_string": " ".join(p.tags), "file_ext": p.ext,
                    "image_width": p.width, "image_height": p.height}
            if p.file_url:
                item["file_url"] = p.file_url
            out.append(item)
        return out

    def dapi_page(self, query: dict) -> tuple[int, str, bytes]:
        """The dapi answer: (status, content type, body)."""
        posts = self._matching(query.get("tags", [""])[0].split())
        limit = int(query.get("limit", ["100"])[0])
        pid = int(query.get("pid", ["0"])[0])
        if pid * limit >= self.deep_limit:
            return 200, "text/xml", (b'<?xml version="1.0"?><response success="false" '
                                     b'reason="Too deep! Pull it back some."/>')
        posts = posts[pid * limit : (pid + 1) * limit]
        if query.get("json") == ["1"]:
            items = []
            for p in posts:
                item = {"id": p.raw_id if p.raw_id is not None else p.id, "hash": p.md5,
                        "rating": _RATING_WORDS[p.rating], "tags": " " + " ".join(p.tags) + " ",
                        "width": p.width, "height": p.height}
                if p.file_url and p.file_url.startswith("/images/"):
                    directory, image = p.file_url[len("/images/"):].split("/")
                    item.update(directory=directory, image=image)
                elif p.file_url:
                    item["file_url"] = p.file_url
                items.append(item)
            return 200, "application/json", json.dumps(items).encode() if items else b""
        rows = []
        for p in posts:
            attrs = {"id": p.raw_id if p.raw_id is not None else p.id, "md5": p.md5 or "",
                     "rating": p.rating, "tags": " " + " ".join(p.tags) + " ",
                     "width": p.width, "height": p.height, "file_url": p.file_url or ""}
            rows.append("<post " + " ".join(
                f'{k}="{html.escape(str(v), quote=True)}"' for k, v in attrs.items()) + "/>")
        body = (f'<?xml version="1.0" encoding="UTF-8"?><posts count="{len(self.posts)}" '
                f'offset="{pid * limit}">' + "".join(rows) + "</posts>")
        return 200, "text/xml", body.encode()

    def html_list(self, query: dict) -> bytes:
        """An HTML listing page (pid is an offset in posts)."""
        posts = [p for p in self._matching(query.get("tags", [""])[0].split())
                 if p.raw_id is None]
        offset = int(query.get("pid", ["0"])[0])
        page = posts[offset : offset + self.html_page_size]
        thumbs = "".join(
            f'<span class="thumb" id="s{p.id}"><a id="p{p.id}" '
            f'href="index.php?page=post&amp;s=view&amp;id={p.id}"><img src="/thumbs/{p.id}.jpg" '
            f'alt="{" ".join(p.tags)}" title="{" ".join(p.tags)} rating:{p.rating}"/></a></span>'
            for p in page
        )
        pager = ('<div id="paginator"><a href="index.php?page=post&amp;s=list&amp;pid=0">1</a>'
                 '<a href="index.php?page=post&amp;s=view&amp;id=notanumber">bad</a></div>')
        return f"<html><body><div class='content'>{thumbs}</div>{pager}</body></html>".encode()

    def html_post(self, post: FakePost) -> bytes:
        """An HTML post page."""
        tags = "".join(
            f'<li class="tag-type-general"><a href="index.php?page=post&amp;s=list&amp;'
            f'tags={t}">{t.replace("_", " ")}</a> <span>1</span></li>' for t in post.tags
        )
        original = (f'<li><a href="{html.escape(post.file_url)}" style="font-weight: bold;">'
                    f"Original image</a></li>" if post.file_url else "")
        picture = (f'<img id="image" src="/samples/{post.id}.jpg" alt="{" ".join(post.tags)}"/>'
                   if post.file_url else "")
        return (
            f'<html><body><ul id="tag-sidebar">{tags}</ul><div id="stats"><ul>'
            f"<li>Id: {post.id}</li><li>Size: {post.width}x{post.height}</li>"
            f"<li>Rating: {_RATING_WORDS[post.rating].title()}</li></ul></div>"
            f"<div><ul>{original}</ul></div>{picture}</body></html>"
        ).encode()

    # -- HTTP --------------------------------------------------------------------------------

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def send(self, status: int, body: bytes, content_type: str = "text/html",
                     headers: dict | None = None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                parts = urlsplit(self.path)
                query = parse_qs(parts.query, keep_blank_values=True)
                with server._lock:
                    server.requests[parts.path] += 1
                    count = server.requests[parts.path]
                    server.queries.append((parts.path, query))
                try:
                    self.route(parts.path, query, count)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def route(self, path, query, count):
                if path in ("/posts.json", "/index.php") and server.listing_errors > 0:
                    server.listing_errors -= 1
                    return self.send(503, b"busy")
                if path == "/posts.json" and server.listing_body is not None:
                    return self.send(200, server.listing_body, "application/json")
                if path == "/posts.json":
                    if server.auth is not None:
                        expected = "Basic " + base64.b64encode(
                            ":".join(server.auth).encode()).decode()
                        if self.headers.get("Authorization") != expected:
                            return self.send(401, json.dumps(
                                {"success": False, "message": "Invalid API key"}).encode(),
                                "application/json")
                    return self.send(200, json.dumps(server.danbooru_page(query)).encode(),
                                     "application/json")
                if path == "/index.php":
                    kind = (query.get("page", [""])[0], query.get("s", [""])[0])
                    if kind == ("dapi", "post"):
                        status, content_type, body = server.dapi_page(query)
                        return self.send(status, body, content_type)
                    if kind == ("post", "list"):
                        return self.send(200, server.html_list(query))
                    if kind == ("post", "view"):
                        post_id = query.get("id", [""])[0]
                        for post in server.posts:
                            if str(post.id) == post_id:
                                return self.send(200, server.html_post(post))
                    return self.send(404, b"not found")
                post = server.by_path.get(path)
                if post is None or post.data is None:
                    return self.send(404, b"not found")
                self.image(post, count)

            def image(self, post, count):
                if server.stall_after is not None and \
                        server.images_completed() >= server.stall_after:
                    with server._lock:
                        server.stalled += 1
                    server._release.wait(60)
                    self.close_connection = True  # the client is gone: answer nothing
                    return None
                first = count == 1
                if post.fault == "500_once" and first:
                    return self.send(500, b"oops")
                if post.fault == "429_once" and first:
                    return self.send(429, b"slow down", headers={"Retry-After": "1"})
                if post.fault == "429_long_once" and first:
                    return self.send(429, b"come back tomorrow", headers={"Retry-After": "86400"})
                if post.fault == "slow_once" and first:
                    time.sleep(server.slow_seconds)
                    self.close_connection = True
                    return None
                if post.fault == "broken_once" and first:
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(post.data)))
                    self.end_headers()
                    self.wfile.write(post.data[: len(post.data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return None
                self.send(200, post.data, "application/octet-stream")
                with server._lock:
                    server.completed[post.path] += 1

        return Handler
