"""Clients that fill the `danbooru` builder's manual dir from booru sites or local images.

Every source yields `Post`s through one interface (`Source.iter_posts`, `Source.details`,
`Source.fetch`); `collect` downloads, verifies and stores them under the manual dir, recording
each post in a SQLite manifest so that a run can be resumed after any interruption.

Sources:
    * `DanbooruSource`: the Danbooru JSON API (`/posts.json`, `page=b<id>` cursor paging).
    * `SafebooruSource`: the Gelbooru-style `dapi` of Safebooru (XML or JSON, `id:<N` cursor).
    * `HtmlSource`: the HTML listing and post pages, for sites whose API is switched off.
    * `FolderSource`, `SyntheticSource`: local images, no network.
"""

from tfds_danbooru.scrape.cache import CollectStats, Filters, collect
from tfds_danbooru.scrape.danbooru import DanbooruSource
from tfds_danbooru.scrape.html import HtmlSource
from tfds_danbooru.scrape.http import HttpClient
from tfds_danbooru.scrape.local import FolderSource, SyntheticSource
from tfds_danbooru.scrape.manifest import Manifest
from tfds_danbooru.scrape.posts import Post, Source
from tfds_danbooru.scrape.safebooru import SafebooruSource

__all__ = [
    "CollectStats",
    "DanbooruSource",
    "Filters",
    "FolderSource",
    "HtmlSource",
    "HttpClient",
    "Manifest",
    "Post",
    "SafebooruSource",
    "Source",
    "SyntheticSource",
    "collect",
]
