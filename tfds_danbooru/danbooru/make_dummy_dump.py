"""Writes small fake Danbooru dumps in both layouts, to try and test the dump source.

    python -m tfds_danbooru.danbooru.make_dummy_dump OUTPUT_DIR [danbooru2021|danbooru2023]

The images are synthetic drawings. `standard_posts` holds, besides ordinary posts, one of
each case the reader must leave out and count: an explicit post, a file the dump lacks, a
corrupt file, a duplicate md5, a video, a post without a file, a deleted post, a too-small
image, a metadata line that is not JSON; and (Danbooru2023) a sensitive post, which the
default rating filter leaves out while Danbooru2021's safe posts are kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from pathlib import Path

from manga_pix2pix.data.synthetic import synthetic_image, tags_of
from manga_pix2pix.imageio import encode_image

#: The malformed metadata line `standard_posts` dumps carry.
MALFORMED_LINE = '{"id": 77, "md5": '


@dataclasses.dataclass
class DummyPost:
    """One post of a fake dump.

    Attributes:
        id: the post id.
        data: the file's bytes; None where the dump lacks the file.
        ext: the file extension, as the metadata states it.
        rating: the rating letter, in the dump's own scheme.
        tags: the post's tags.
        size: (width, height) stated by the metadata.
        md5: the md5 the metadata states (default: that of `data`).
        deleted: marked deleted.
        file_less: the metadata has neither md5 nor file extension.
    """

    id: int
    data: bytes | None
    ext: str = "png"
    rating: str = "g"
    tags: tuple[str, ...] = ()
    size: tuple[int, int] = (0, 0)
    md5: str | None = None
    deleted: bool = False
    file_less: bool = False

    def record(self) -> dict:
        """The post's metadata record, with Danbooru's field names."""
        record = {"id": self.id, "rating": self.rating, "tag_string": " ".join(self.tags),
                  "image_width": self.size[0], "image_height": self.size[1],
                  "is_deleted": self.deleted}
        if not self.file_less:
            record["file_ext"] = self.ext
            record["md5"] = self.md5 or hashlib.md5(self.data or b"").hexdigest()
        return record


def image_post(post_id: int, height: int, width: int, rating: str, ext: str = "png",
               quality: int = 95) -> DummyPost:
    """A post with a synthetic drawing of `height` x `width` as PNG or JPEG."""
    image = synthetic_image(post_id, (height, width))
    data = encode_image(image, f".{ext}") if ext == "png" else _jpeg(image, quality)
    return DummyPost(post_id, data, ext=ext, rating=rating, tags=tuple(tags_of(post_id)),
                     size=(width, height))


def _jpeg(image, quality: int) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def standard_posts(dump_format: str, count: int = 8) -> list[DummyPost]:
    """`count` ordinary posts (ids 1..count, 80-120 px) and one post of every faulty case."""
    safe = "s" if dump_format == "danbooru2021" else "g"
    posts = [image_post(i, 80 + 5 * (i % 9), 120 - 4 * (i % 7), safe) for i in range(1, count + 1)]
    first = posts[0]
    # 103: a truncated PNG (its header is sound); 104: the same file as post 1.
    posts += [
        dataclasses.replace(image_post(101, 90, 90, "e"), tags=("explicit_case",)),
        dataclasses.replace(image_post(102, 90, 90, safe), data=None),  # missing file
        DummyPost(103, first.data[: len(first.data) // 2], rating=safe, size=first.size),
        DummyPost(104, first.data, rating=safe, size=first.size),
        DummyPost(105, b"\x00\x00\x00\x18ftypmp42", ext="mp4", rating=safe, size=(90, 90)),
        DummyPost(106, None, rating=safe, file_less=True),
        dataclasses.replace(image_post(107, 90, 90, safe), deleted=True),
        image_post(108, 40, 90, safe),  # too small for 64 px
    ]
    if dump_format == "danbooru2023":
        posts.append(image_post(109, 90, 90, "s"))  # sensitive: left out by default
    return posts


def write_dump(root: Path, dump_format: str, posts: Sequence[DummyPost], *,
               images: str = "original", shards: int = 3, metadata: str = "lines",
               extra_lines: Sequence[str] = ()) -> Path:
    """Writes a fake dump of `posts` under `root`; returns `root`.

    Args:
        root: the dump folder (created).
        dump_format: "danbooru2021" (JSON-lines metadata in two files, `images`/NNNN/ID.EXT)
            or "danbooru2023" (posts.json, tar shards original/data-NNNN.tar).
        posts: the posts.
        images: danbooru2021's image folder, "original" or "512px".
        shards: danbooru2023's tar shards (a post goes to shard id % shards).
        metadata: danbooru2023's metadata: "lines" (posts.json as JSON lines), "array"
            (posts.json as one JSON array) or "parquet" (metadata/posts.parquet).
        extra_lines: raw lines appended to the (first) JSON-lines metadata file.
    """
    root.mkdir(parents=True, exist_ok=True)
    records = [post.record() for post in posts]
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    if dump_format == "danbooru2021":
        (root / "metadata").mkdir(exist_ok=True)
        half = (len(lines) + 1) // 2
        for i, chunk in enumerate((lines[:half], lines[half:])):
            (root / "metadata" / f"posts{i:012d}.json").write_text("\n".join(chunk) + "\n")
        for post in posts:
            if post.data is not None and not post.file_less:
                folder = root / images / f"{post.id % 1000:04d}"
                folder.mkdir(parents=True, exist_ok=True)
                ext = "jpg" if images == "512px" else post.ext
                (folder / f"{post.id}.{ext}").write_bytes(post.data)
        return root
    if metadata == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        (root / "metadata").mkdir(exist_ok=True)
        columns = {key: [r.get(key) for r in records] for key in sorted(
            {k for r in records for k in r})}
        pq.write_table(pa.table(columns), root / "metadata" / "posts.parquet")
    elif metadata == "array":
        (root / "posts.json").write_text(json.dumps(records))
    else:
        (root / "posts.json").write_text("\n".join(lines) + "\n")
    (root / "original").mkdir(exist_ok=True)
    for shard in range(shards):
        with tarfile.open(root / "original" / f"data-{shard:04d}.tar", "w") as tar:
            for post in posts:
                if post.data is None or post.file_less or post.id % shards != shard:
                    continue
                info = tarfile.TarInfo(f"{post.id}.{post.ext}")
                info.size = len(post.data)
                tar.addfile(info, io.BytesIO(post.data))
    return root


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tfds_danbooru.danbooru.make_dummy_dump",
        description="Write a small fake Danbooru dump (synthetic drawings) into OUTPUT_DIR.",
    )
    parser.add_argument("output_dir", type=Path, metavar="OUTPUT_DIR")
    parser.add_argument("format", nargs="?", default="danbooru2021",
                        choices=["danbooru2021", "danbooru2023"])
    args = parser.parse_args(argv)
    write_dump(args.output_dir, args.format, standard_posts(args.format),
               extra_lines=[MALFORMED_LINE])


if __name__ == "__main__":
    main()
