"""Writes the builder test's dummy manual dir: five tiny images and their manifest.

    python -m tfds_danbooru.danbooru.make_dummy_data [OUTPUT_DIR]

The default output is the `dummy_data/` folder next to this file. The images are synthetic
drawings of a few dozen pixels (portrait, landscape, square), so the folder stays a few KB.
Besides the five "done" rows the manifest holds a skipped post and a "done" row whose file
points outside the folder; the builder must leave both out.
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
from pathlib import Path

from manga_pix2pix.data.synthetic import synthetic_image, tags_of
from manga_pix2pix.imageio import encode_image
from tfds_danbooru.scrape.manifest import DONE, IMAGES_DIR, MANIFEST_NAME, SKIPPED, Manifest

#: (post id, (height, width), rating) of the dummy images.
DUMMY_POSTS = (
    (1001, (40, 28), "g"),
    (1002, (28, 40), "g"),
    (1003, (32, 32), "s"),
    (1004, (36, 30), "g"),
    (1005, (30, 44), "g"),
)


def make_dummy_data(output: Path) -> None:
    """Writes `manifest.sqlite` and `images/` into `output` (replacing what was there)."""
    output.mkdir(parents=True, exist_ok=True)
    (output / IMAGES_DIR).mkdir(exist_ok=True)
    (output / MANIFEST_NAME).unlink(missing_ok=True)
    with Manifest(output) as manifest:
        manifest.set_meta("source", "danbooru")
        for post_id, size, rating in DUMMY_POSTS:
            data = encode_image(synthetic_image(post_id, size))
            name = f"{IMAGES_DIR}/{post_id}.png"
            (output / name).write_bytes(data)
            manifest.record(post_id, status=DONE, md5=hashlib.md5(data).hexdigest(),
                            url=f"https://example.org/data/{post_id}.png",
                            tags=tags_of(post_id), rating=rating, source="danbooru", file=name,
                            width=size[1], height=size[0])
        manifest.record(1006, status=SKIPPED, reason="rating", rating="e", source="danbooru")
    # A forged row (written around `Manifest.record`, which refuses it) that the builder must
    # not follow out of the folder.
    with sqlite3.connect(output / MANIFEST_NAME) as conn:
        conn.execute(
            "INSERT INTO posts (id, md5, tags, rating, source, status, file) VALUES "
            "(1007, '0123456789abcdef0123456789abcdef', '[]', 'g', 'danbooru', 'done', "
            "'../../escape.png')"
        )
    # Small pages keep the committed file a few KB.
    conn = sqlite3.connect(output / MANIFEST_NAME)
    conn.execute("PRAGMA page_size = 1024")
    conn.execute("VACUUM")
    conn.close()
    (output / MANIFEST_NAME).chmod(0o644)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tfds_danbooru.danbooru.make_dummy_data",
        description="Write the builder test's dummy manual dir (images and manifest).",
    )
    parser.add_argument("output_dir", type=Path, nargs="?", metavar="OUTPUT_DIR",
                        default=Path(__file__).parent / "dummy_data",
                        help="default: the dummy_data/ folder next to this file")
    make_dummy_data(parser.parse_args(argv).output_dir)


if __name__ == "__main__":
    main()
