"""Packing a Danbooru dump: images/s in one process, and on Beam's local runner at 1 and 2 workers.

    python benchmarks/dump_build.py [--images 2000] [--side 768] [--image-size 256]

A Danbooru2021-layout dump of `--images` JPEGs (about `--side` px on the short side, 4:3) is
written to a temporary folder, then packed to `--image-size` px PNG examples three ways:
`plain` (the builder's generator path, one process), and Beam's DirectRunner with 1 and with 2
worker processes. Each Beam run is preceded by a run on a 16-image dump, whose time is the
fixed cost of starting the pipeline and its workers (TensorFlow is imported in each); the
`per_image` rates leave it out. Ratios are against the same run's figures, so that other jobs
on the machine slow both sides alike. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine_info import machine  # noqa: E402

from manga_pix2pix.dataset_build import pack  # noqa: E402
from tfds_danbooru import dump  # noqa: E402
from tfds_danbooru.danbooru.make_dummy_dump import DummyPost, image_post, write_dump  # noqa: E402

DISTINCT = 64


def make_dump(root: Path, count: int, side: int) -> Path:
    """`count` posts; `DISTINCT` drawings, each file made unique by bytes after its end marker
    (decoders ignore them), so that no two posts share an md5 and every file is decoded."""
    drawings = [image_post(i + 1, side, side * 4 // 3, "s", ext="jpg", quality=90)
                for i in range(DISTINCT)]
    posts = []
    for i in range(count):
        base = drawings[i % DISTINCT]
        data = base.data + (i + 1).to_bytes(4, "big")
        posts.append(DummyPost(i + 1, data, ext="jpg", rating="s", tags=base.tags,
                               size=base.size))
    return write_dump(root, "danbooru2021", posts)


def run(dump_dir: Path, data_dir: Path, image_size: int, workers: int | None) -> float:
    """Seconds to pack the dump (workers None: the plain path)."""
    spec = dump.make_spec(dump_dir, "auto", min_resolution=image_size)
    manual = data_dir / "manual"
    manual.mkdir(parents=True)
    (manual / dump.SPEC_NAME).write_text(spec.to_json())
    options = None
    if workers is not None:
        from tfds_danbooru.dump_beam import pipeline_options

        options = pipeline_options("local", workers)
    start = time.perf_counter()
    pack(data_dir, manual, image_size, "center", 0.05, False, "png", options)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--side", type=int, default=768)
    parser.add_argument("--image-size", type=int, default=256)
    args = parser.parse_args()
    import logging

    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        big = make_dump(tmp / "dump", args.images, args.side)
        small = make_dump(tmp / "small", 16, args.side)
        written = time.perf_counter() - start
        results = {}
        for name, workers in (("plain", None), ("beam_1_worker", 1), ("beam_2_workers", 2)):
            startup = 0.0
            if workers is not None:
                startup = run(small, tmp / f"{name}-small", args.image_size, workers)
            seconds = run(big, tmp / name, args.image_size, workers)
            results[name] = {
                "seconds": round(seconds, 1),
                "images_per_s": round(args.images / seconds, 2),
                "startup_s": round(startup, 1),
                # None where the start-up measured longer than the whole run (a busy machine).
                "per_image_images_per_s": (round(args.images / (seconds - startup), 2)
                                           if seconds > startup else None),
            }
    beam1, beam2 = results["beam_1_worker"], results["beam_2_workers"]
    print(json.dumps({
        "benchmark": "dump_build",
        "images": args.images,
        "input": f"JPEG q90, {args.side}x{args.side * 4 // 3}",
        "output": f"PNG {args.image_size}x{args.image_size}",
        "dump_written_s": round(written, 1),
        "results": results,
        "ratio_2_workers_over_1": round(beam2["images_per_s"] / beam1["images_per_s"], 2),
        "ratio_2_workers_over_1_without_startup": (
            round(beam2["per_image_images_per_s"] / beam1["per_image_images_per_s"], 2)
            if beam1["per_image_images_per_s"] and beam2["per_image_images_per_s"] else None),
        "ratio_beam_1_worker_over_plain": round(
            beam1["images_per_s"] / results["plain"]["images_per_s"], 2),
        "machine": machine(),
    }, indent=1))


if __name__ == "__main__":
    main()
