"""`train` end to end by precision, against the float32 tutorial-style step; prints JSON.

What a user runs, measured whole: `manga-pix2pix train --preset paper` (256 px, batch 4) on a
folder of PNG images (read, decode, jitter, flip, sketch, cues, cue masks, the step), in
float32, in `mixed_bfloat16` and with `--precision auto`, each in its own process; images/s is
the run's own `images_per_second` (`train_summary.json`, the first step, which traces, left
out). The reference is `train_step.py`'s step in the TensorFlow pix2pix tutorial's style, in
float32 on a constant batch (no input pipeline at all), in a process of its own: on some CPUs
float32 kernels slow down in a process that has run bfloat16 ones. Rounds run the four in
turn, so a round sees one machine load; each ratio is the median over rounds of
`train / reference`.

The targets (`docs/benchmarks.md`): in bfloat16, >= 2 x the reference on a CPU with bfloat16
units (AMX or AVX512-BF16); with `auto`, never slower than float32 on one without (there auto
is float32). On a CPU without bfloat16 units, `mixed_bfloat16` itself is emulated (about 8 x
slower than float32 at 128 px, far slower at 256) and says nothing about either target, so it
is left out unless `--with-emulated` asks for it.

Examples:

    python benchmarks/train_precision.py                       # paper preset, 2 rounds
    python benchmarks/train_precision.py --rounds 3 --steps 40
    python benchmarks/train_precision.py --preset small --size 128 --steps 200
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = Path(__file__).resolve().parent
CLI = [sys.executable, "-m", "manga_pix2pix"]
TARGET_BF16_RATIO = 2.0
PRECISIONS = ("float32", "mixed_bfloat16", "auto")


def reference_rate(size: int, base: int, batch: int, steps: int, warmup: int) -> dict:
    """Images/s of the float32 tutorial-style step on a constant batch (run in a child)."""
    import numpy as np
    import tensorflow as tf
    from train_step import make_batch, reference_step

    data = make_batch(size, batch)
    inputs = tf.concat([data["sketch"], data["cues"], data["cue_mask"]], axis=-1)
    step, _ = reference_step(size, base)
    for _ in range(warmup):
        float(step(inputs, data["image"]))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        float(step(inputs, data["image"]))
        times.append(time.perf_counter() - start)
    return {"images_per_s": round(batch / float(np.median(times)), 3)}


def write_images(folder: Path, count: int, size: int) -> None:
    """`count` generated `size`-px PNG drawings in `folder`."""
    import cv2

    from manga_pix2pix.data.synthetic import synthetic_image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rgb = synthetic_image(i, size)
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def train_rate(data: Path, run_dir: Path, preset: str, size: int, batch: int, steps: int,
               precision: str) -> dict:
    """Images/s of `manga-pix2pix train` in `precision`, and the precision it ran in."""
    command = CLI + ["train", "--data", str(data), "--run-dir", str(run_dir), "--preset", preset,
                     "--image-size", str(size), "--batch-size", str(batch), "--steps",
                     str(steps), "--precision", precision, "--checkpoint-every",
                     str(steps), "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        lines = done.stderr.strip().splitlines() or ["no message"]
        sys.exit(f"train --precision {precision} failed: {lines[-1]}")
    summary = json.loads((run_dir / "train_summary.json").read_text())
    return {"images_per_s": summary["images_per_second"], "precision": summary["precision"],
            "precision_reason": summary.get("precision_reason")}


def child_reference(args) -> dict:
    """Runs `reference_rate` in a fresh process and returns its result."""
    command = [sys.executable, str(Path(__file__)), "--reference-only", "--size", str(args.size),
               "--base-filters", str(args.base_filters), "--batch", str(args.batch),
               "--reference-steps", str(args.reference_steps)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="paper", help="train preset (paper)")
    parser.add_argument("--size", type=int, default=256, help="image side (256)")
    parser.add_argument("--base-filters", type=int, default=64,
                        help="the reference's width, the preset's (64 for paper)")
    parser.add_argument("--batch", type=int, default=4, help="batch size (4)")
    parser.add_argument("--steps", type=int, default=30, help="train steps per run (30)")
    parser.add_argument("--reference-steps", type=int, default=20,
                        help="timed reference steps (20)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (2)")
    parser.add_argument("--images", type=int, default=32, help="generated PNG images (32)")
    parser.add_argument("--with-emulated", action="store_true",
                        help="also run mixed_bfloat16 on a CPU without bfloat16 units")
    parser.add_argument("--reference-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference_only:
        print(json.dumps(reference_rate(args.size, args.base_filters, args.batch,
                                        args.reference_steps, warmup=2)))
        return

    from machine_info import machine

    from manga_pix2pix.training.strategy import CPU_BF16_FLAGS, cpu_flags

    bf16_units = sorted(cpu_flags().intersection(CPU_BF16_FLAGS))
    precisions = PRECISIONS if bf16_units or args.with_emulated else ("float32", "auto")
    rounds = []
    with tempfile.TemporaryDirectory(prefix="train-precision-") as tmp:
        data = Path(tmp) / "images"
        write_images(data, args.images, args.size)
        for r in range(args.rounds):
            entry = {"reference_float32": child_reference(args)}
            for precision in precisions:
                entry[precision] = train_rate(data, Path(tmp) / f"run-{r}-{precision}",
                                              args.preset, args.size, args.batch, args.steps,
                                              precision)
            rounds.append(entry)
    ratios = {p: round(statistics.median([e[p]["images_per_s"]
                                          / e["reference_float32"]["images_per_s"]
                                          for e in rounds]), 3) for p in precisions}
    print(json.dumps({
        "benchmark": "train_precision",
        "date": datetime.date.today().isoformat(),
        "machine": machine(cpu_bf16_units=bf16_units),
        "preset": args.preset, "size": args.size, "batch": args.batch, "steps": args.steps,
        "rounds": rounds,
        "left_out": [] if precisions == PRECISIONS else
        ["mixed_bfloat16 (emulated: no AMX or AVX512-BF16; --with-emulated runs it)"],
        "ratio_to_reference": ratios,
        "auto_over_float32": round(statistics.median([e["auto"]["images_per_s"]
                                           / e["float32"]["images_per_s"] for e in rounds]), 3),
        "target_bf16_ratio": TARGET_BF16_RATIO if bf16_units else None,
        # Without bfloat16 units auto must be float32 itself, never emulated bfloat16.
        "target_met": (ratios["mixed_bfloat16"] >= TARGET_BF16_RATIO) if bf16_units
        else all(e["auto"]["precision"] == "float32" for e in rounds),
    }, indent=2))


if __name__ == "__main__":
    main()
