"""Colorize latency, a 2048 x 2048 page's time and peak memory, and the CLI's cold start; JSON.

The generator is the paper's (256 px, 64 base filters, 54.4 M weights), untrained: the
weights do not change the time, so this needs no training run. The sketches are generated
anti-aliased grey line art; the cues an opaque colour layer (the most work: it is blurred).

Figures (all in one run, so the ratios compare like with like):
    * `generator_256`: the bare generator on 256 x 256 inputs, ms per image at batch 1 and 8
      (the reference);
    * `colorize_256`: the full colorize path per 256-px sketch (sketch op, cues, generator, line
      overlay; one sketch per call, as `colorize` runs them), alone and for 8 in a row, and its
      ratio to the bare generator at batch 1;
    * `page_2048`: a 2048 x 2048 page through the full path (read, colour, write PNG) in a fresh
      process: seconds for the first page (including tracing the graph) and for a second one,
      and the process's peak resident memory (its max RSS from `wait4`), against a process that
      only loads the model; also with `--work-size 1024` (colours from 4x the pixels);
    * `cli_cold_start`: `manga-pix2pix colorize` from process start to the written PNG, for a
      256-px sketch and a 2048-px page, against `python -c "import tensorflow"`.

Targets on 2 CPU cores: the 2048 x 2048 page in <= 10 s with < 4 GiB peak memory.

Example:

    python benchmarks/colorize.py > colorize.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from machine_info import machine  # noqa: E402

TARGET_PAGE_SECONDS = 10.0
TARGET_PAGE_GIB = 4.0
PAGE = 2048
GIB = 1024**3


def line_art(size: int, seed: int = 0) -> np.ndarray:
    """Grey anti-aliased line art on white, `size x size` uint8, line widths scaled to size."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size), 255, np.uint8)
    scale = max(1, size // 256)
    for _ in range(60):
        p1 = tuple(int(v) for v in rng.integers(0, size, 2))
        p2 = tuple(int(v) for v in rng.integers(0, size, 2))
        cv2.line(image, p1, p2, int(rng.integers(0, 100)), int(rng.integers(1, 3)) * scale,
                 cv2.LINE_AA)
    for _ in range(12):
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        axes = tuple(int(v) for v in rng.integers(size // 32, size // 6, 2))
        cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, 20, scale,
                    cv2.LINE_AA)
    return image


def cue_layer(size: int) -> np.ndarray:
    """A flat-painted opaque colour layer, RGB uint8."""
    small = np.random.default_rng(1).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_NEAREST)


def _best_ms(fn, repeats: int) -> float:
    """The fastest of `repeats` timed calls after one warm-up, in ms (least disturbed)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000.0


def in_process(model_path: Path, repeats: int) -> dict:
    import tensorflow as tf

    from manga_pix2pix.inference.colorize import Colorizer
    from manga_pix2pix.inference.loading import load_model

    model = load_model(model_path)
    rng = np.random.default_rng(0)
    x1 = tf.constant(rng.uniform(-1, 1, (1, 256, 256, 5)).astype(np.float32))
    x8 = tf.constant(rng.uniform(-1, 1, (8, 256, 256, 5)).astype(np.float32))
    batch1 = _best_ms(lambda: model.generate(x1).numpy(), repeats)
    batch8 = _best_ms(lambda: model.generate(x8).numpy(), max(1, repeats // 2)) / 8
    colorizer = Colorizer(model)
    sketches = [line_art(256, seed)[:, :, None] for seed in range(8)]
    cues = cue_layer(256)
    one = _best_ms(lambda: colorizer(sketches[0], cues), repeats)
    eight = _best_ms(lambda: [colorizer(s, cues) for s in sketches], max(1, repeats // 2)) / 8
    return {
        "generator_256": {
            "batch_1_ms": round(batch1, 1),
            "batch_8_ms_per_image": round(batch8, 1),
        },
        "colorize_256": {
            "ms_per_sketch": round(one, 1),
            "ms_per_sketch_8_in_a_row": round(eight, 1),
            "ratio_to_generator_batch_1": round(one / batch1, 2),
        },
    }


def _child(args: list[str]) -> tuple[dict | None, float, float]:
    """Runs this script (or a command) in a fresh process: its JSON line, wall s, peak RSS GiB."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out = proc.stdout.read().decode()
    proc.stdout.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{args[:4]} failed")
    result = json.loads(out.strip().splitlines()[-1]) if out.strip() else None
    # ru_maxrss is in KiB on Linux.
    return result, wall, usage.ru_maxrss * 1024 / GIB


def page(model_path: Path, folder: Path) -> dict:
    script = [sys.executable, __file__]
    baseline, _, baseline_gib = _child([*script, "--child-load", str(model_path)])
    result = {"baseline_load_model_peak_gib": round(baseline_gib, 2)}
    for work_size in (None, 1024):
        args = [*script, "--child-page", str(model_path), str(folder)]
        if work_size:
            args += ["--work-size", str(work_size)]
        times, _, peak = _child(args)
        key = "default_work_size" if work_size is None else f"work_size_{work_size}"
        result[key] = {
            "first_page_s": round(times["first_s"], 2),
            "second_page_s": round(times["second_s"], 2),
            "peak_rss_gib": round(peak, 2),
        }
    default = result["default_work_size"]
    result["meets_targets"] = bool(
        default["first_page_s"] <= TARGET_PAGE_SECONDS
        and default["peak_rss_gib"] < TARGET_PAGE_GIB
    )
    return result


def cold_start(run_dir: Path, folder: Path) -> dict:
    cli = Path(sys.executable).with_name("manga-pix2pix")
    _, tf_import, _ = _child([sys.executable, "-c", "import tensorflow"])
    result = {"python_import_tensorflow_s": round(tf_import, 2)}
    inputs = {"sketch_256": ("sketch_256.png", "sketch_256_cues.png"),
              "page_2048": ("page.png", "cues.png")}
    for key, (sketch, cues) in inputs.items():
        out = folder / f"cli_{sketch}"
        _, wall, peak = _child([str(cli), "colorize", str(folder / sketch), "--cues",
                                str(folder / cues), "--model", str(run_dir), "-o", str(out),
                                "-q"])
        if not out.exists():
            raise RuntimeError(f"the CLI wrote no {out.name}")
        result[key] = {"wall_s": round(wall, 2), "peak_rss_gib": round(peak, 2)}
    return result


def child_load(model_path: str) -> None:
    from manga_pix2pix.inference.loading import load_model

    load_model(model_path)
    print(json.dumps({}))


def child_page(model_path: str, folder: str, work_size: int | None) -> None:
    from manga_pix2pix.inference.colorize import Colorizer, Job, colorize_file
    from manga_pix2pix.inference.loading import load_model

    colorizer = Colorizer(load_model(model_path), work_size=work_size)
    folder = Path(folder)
    job = Job(folder / "page.png", folder / "cues.png", folder / "page_out.png")
    times = []
    for _ in range(2):
        start = time.perf_counter()
        colorize_file(colorizer, job)
        times.append(time.perf_counter() - start)
    print(json.dumps({"first_s": times[0], "second_s": times[1]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per figure")
    parser.add_argument("--child-load", help=argparse.SUPPRESS)
    parser.add_argument("--child-page", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--work-size", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_load:
        return child_load(args.child_load)
    if args.child_page:
        return child_page(*args.child_page, args.work_size)

    from manga_pix2pix.config import Config
    from manga_pix2pix.imageio import write_image
    from manga_pix2pix.models import build_models

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run_dir = tmp / "run"
        run_dir.mkdir()
        config = Config(preset="paper")
        (run_dir / "config.json").write_text(config.to_json())
        generator, _ = build_models(config.model)
        generator.save(run_dir / "generator.keras")
        del generator
        write_image(tmp / "page.png", line_art(PAGE, seed=7))
        write_image(tmp / "cues.png", cue_layer(PAGE))
        write_image(tmp / "sketch_256.png", line_art(256, seed=8))
        write_image(tmp / "sketch_256_cues.png", cue_layer(256))
        report = {
            "machine": machine(),
            "model": "paper generator (256 px, 64 filters, 54.4 M weights), untrained: "
                     "timing only",
            **in_process(run_dir, args.repeats),
            "page_2048": page(run_dir, tmp),
            "cli_cold_start": cold_start(run_dir, tmp),
            "targets": {"page_2048_s": TARGET_PAGE_SECONDS, "page_2048_peak_gib": TARGET_PAGE_GIB},
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
