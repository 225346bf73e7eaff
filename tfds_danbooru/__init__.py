"""The `danbooru` TFDS dataset and the clients that gather its images.

Importing this package registers the builder, so `tfds.load("danbooru", data_dir=...)` and
`tfds.builder("danbooru/512", ...)` work; `tfds build tfds_danbooru/danbooru` builds it from the
command line. The scraping clients are in `tfds_danbooru.scrape`.
"""

from tfds_danbooru.danbooru.danbooru_dataset_builder import Builder as Danbooru

__all__ = ["Danbooru"]
