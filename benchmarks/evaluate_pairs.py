"""`evaluate --pairs` cost: the metrics, and the whole evaluation against its colorize calls; JSON.

The generator is the `small` preset's (128 px, 16 base filters), untrained: the weights do not
change the time. The pairs are generated flat-colour drawings (filled ellipses, black outlines)
with a long side of 512 px, the `--max-side` default.

Figures (all in one run, so the ratios compare like with like):
    * `metrics_512`: L1 + PSNR + SSIM of one 512 x 512 image pair, ms, with TensorFlow's
      `image_metrics` (the reference) and with `fast_image_metrics` (OpenCV), and the speed-up;
    * `evaluate_pairs`: seconds per pair for `evaluate_pairs` (three conditions, baselines,
      regions, strokes, metrics, figures; traced graphs warmed up first), against the three
      colorize calls per pair alone (the reference): the evaluation's overhead ratio.

Example:

    python benchmarks/evaluate_pairs.py > evaluate_pairs.json
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

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from machine_info import machine  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def flat_pair(seed: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Line art (gray) and flat colour image (RGB) of a few filled, outlined ellipses."""
    rng = np.random.default_rng(seed)
    colour = np.full((height, width, 3), 255, np.uint8)
    lineart = np.full((height, width), 255, np.uint8)
    for _ in range(6):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(30, width // 3)), int(rng.integers(30, height // 3)))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        angle = float(rng.uniform(0, 180))
        cv2.ellipse(colour, centre, axes, angle, 0, 360, fill, -1)
        cv2.ellipse(lineart, centre, axes, angle, 0, 360, 255, -1)
        cv2.ellipse(colour, centre, axes, angle, 0, 360, (20, 20, 20), 2, cv2.LINE_AA)
        cv2.ellipse(lineart, centre, axes, angle, 0, 360, 20, 2, cv2.LINE_AA)
    return lineart, colour


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8, help="generated pairs to evaluate")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import tensorflow as tf

    from manga_pix2pix.config import preset
    from manga_pix2pix.evaluation import pairs, regions
    from manga_pix2pix.evaluation.metrics import fast_image_metrics, image_metrics
    from manga_pix2pix.imageio import write_image
    from manga_pix2pix.inference.colorize import Colorizer
    from manga_pix2pix.inference.loading import load_model
    from manga_pix2pix.models import build_models

    rng = np.random.default_rng(0)
    a = rng.uniform(size=(512, 512, 3)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    ta, tb = tf.constant(a), tf.constant(b)
    image_metrics(ta, tb)  # warm up
    tf_ms = 1000 * _best(lambda: {k: v.numpy() for k, v in image_metrics(ta, tb).items()},
                         args.repeats)
    fast_ms = 1000 * _best(lambda: fast_image_metrics(a, b), args.repeats)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = preset("small")
        generator, _ = build_models(config.model)
        generator.save(tmp / "generator.keras")
        folder = tmp / "pairs"
        (folder / "lineart").mkdir(parents=True)
        (folder / "colour").mkdir()
        drawings = []
        for i in range(args.pairs):
            lineart, colour = flat_pair(i, 362, 512)
            write_image(folder / "lineart" / f"p{i:02d}.png", lineart)
            write_image(folder / "colour" / f"p{i:02d}.png", colour)
            drawings.append((np.repeat(lineart[:, :, None], 3, axis=2), colour))
        model = load_model(tmp / "generator.keras")
        colorizer = Colorizer(model)

        def colorize_only():
            for lineart, colour in drawings:
                found = regions.find_regions(lineart)
                strokes = regions.place_strokes(found, 8, np.random.default_rng(0))
                cues = regions.cue_image(lineart.shape[:2], strokes,
                                         [regions.median_colour(colour, s.mask)
                                          for s in strokes])
                colorizer(lineart, pairs.blurred_cue_layer(colour))
                colorizer(lineart, cues)
                colorizer(lineart)

        colorize_only()  # traces both colorize graphs
        colorize_s = _best(colorize_only, args.repeats) / args.pairs
        pairs.evaluate_pairs(model, folder, output_dir=tmp / "warm")
        evaluate_s = _best(lambda: pairs.evaluate_pairs(model, folder, output_dir=tmp / "out"),
                           args.repeats) / args.pairs

    print(json.dumps({
        "machine": machine(),
        "metrics_512": {
            "tensorflow_ms": round(tf_ms, 1),
            "fast_ms": round(fast_ms, 1),
            "speedup": round(tf_ms / fast_ms, 1),
        },
        "evaluate_pairs": {
            "pairs": args.pairs,
            "size": [362, 512],
            "model": "small preset, untrained",
            "colorize_calls_s_per_pair": round(colorize_s, 3),
            "evaluate_s_per_pair": round(evaluate_s, 3),
            "overhead_ratio": round(evaluate_s / colorize_s, 2),
        },
    }, indent=2))


if __name__ == "__main__":
    main()
