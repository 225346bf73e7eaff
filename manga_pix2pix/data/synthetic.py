"""A procedural source of cel-style illustrations, so nothing needs the network.

Each image is a "character" drawn from flat-colour shapes (a head, hair, eyes, a body and
props) over a gradient or patterned background, with cel shading (a darker tone on the side
away from the light), highlights, dark outlines and a little paper texture. Images are
deterministic by seed and can be drawn at any size. Each seed also has tags in the style of a
booru post: a character tag (`character_<k>`, the palette the figure is drawn in, so several
images share a character), a style tag, and `synthetic`; and a rating (`g`).

A `detail` above 1 draws busier images (more props, patches of hatching), whose sketches are
more complex than any of the plain style's: the evaluation's "interpolation" task uses them.
"""

from __future__ import annotations

import cv2
import numpy as np

#: How many distinct characters (palettes) the source draws.
NUM_CHARACTERS = 12
#: Hatching patches per unit of `detail` above 1.
HATCH_PATCHES = 28


def _palette(character: int) -> dict[str, tuple[int, int, int]]:
    rng = np.random.default_rng(10_000 + character)

    def colour(lo=40, hi=255):
        return tuple(int(v) for v in rng.integers(lo, hi, 3))

    return {
        "hair": colour(),
        "skin": tuple(int(v) for v in rng.integers([225, 185, 160], [256, 225, 200])),
        "eyes": colour(0, 200),
        "body": colour(),
        "accent": colour(),
    }


def character_of(seed: int) -> int:
    """The character (palette index) drawn for `seed`."""
    return int(np.random.default_rng(seed).integers(NUM_CHARACTERS))


def tags_of(seed: int, detail: float = 1.0) -> list[str]:
    """Booru-style tags for the image of `seed`."""
    style = "busy_style" if detail > 1.0 else "cel_style"
    return [f"character_{character_of(seed)}", style, "synthetic"]


def _shade(colour, factor):
    return tuple(int(np.clip(c * factor, 0, 255)) for c in colour)


def synthetic_image(
    seed: int, size: int | tuple[int, int] = 256, detail: float = 1.0
) -> np.ndarray:
    """Draws the illustration of `seed` as a uint8 RGB array.

    Args:
        seed: any non-negative int; the same seed always gives the same image.
        size: side of a square image, or (height, width).
        detail: 1 for the training style; larger values add props and hatching.

    Returns:
        uint8 array of shape (height, width, 3).
    """
    if isinstance(size, int):
        size = (size, size)
    height, width = size
    if height < 8 or width < 8:
        raise ValueError(f"size: must be at least 8x8, got {size}")
    # Draw on a fixed 512-unit canvas scaled to the requested size, so that an image looks the
    # same at every size.
    scale = min(height, width) / 512.0
    rng = np.random.default_rng(seed)
    character = int(rng.integers(NUM_CHARACTERS))
    pal = _palette(character)
    outline = (25, 20, 30)
    thick = max(1, int(round(3 * scale)))

    # Background: a vertical gradient between two soft colours, sometimes with stripes.
    top = rng.integers(120, 256, 3).astype(np.float32)
    bottom = rng.integers(60, 230, 3).astype(np.float32)
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(top * (1 - t) + bottom * t, (height, width, 3)).copy()
    if rng.random() < 0.5:
        period = max(4, int(rng.integers(24, 64) * scale))
        stripes = ((np.arange(width) // period) % 2).astype(np.float32)[None, :, None]
        img = img * (1 - 0.08 * stripes)
    img = np.ascontiguousarray(img.astype(np.uint8))

    def pt(x, y):
        return (
            int(round(width / 2 + (x - 256) * scale)),
            int(round(height / 2 + (y - 256) * scale)),
        )

    def ln(v):
        return max(1, int(round(v * scale)))

    cx = 256 + rng.integers(-60, 61)
    cy = 230 + rng.integers(-30, 31)
    head_r = int(rng.integers(85, 115))
    light = rng.choice([-1, 1])

    def shaded_ellipse(centre, axes, angle, colour):
        cv2.ellipse(img, pt(*centre), (ln(axes[0]), ln(axes[1])), angle, 0, 360, colour, -1,
                    cv2.LINE_AA)
        # Cel shading: the half away from the light, clipped to the shape.
        mask = np.zeros(img.shape[:2], np.uint8)
        cv2.ellipse(mask, pt(*centre), (ln(axes[0]), ln(axes[1])), angle, 0, 360, 255, -1)
        shade = np.zeros_like(mask)
        off = (centre[0] + light * axes[0] * 0.35, centre[1] + axes[1] * 0.2)
        cv2.ellipse(shade, pt(*off), (ln(axes[0]), ln(axes[1])), angle, 0, 360, 255, -1)
        region = (mask > 0) & (shade == 0)
        img[region] = _shade(colour, 0.72)
        cv2.ellipse(img, pt(*centre), (ln(axes[0]), ln(axes[1])), angle, 0, 360, outline, thick,
                    cv2.LINE_AA)

    # Body (shoulders) below the head.
    body_w = int(rng.integers(150, 210))
    body = np.array([pt(cx - body_w, 520), pt(cx - body_w * 0.6, cy + head_r + 40),
                     pt(cx + body_w * 0.6, cy + head_r + 40), pt(cx + body_w, 520)], np.int32)
    cv2.fillPoly(img, [body], pal["body"], cv2.LINE_AA)
    collar = np.array([pt(cx - 40, cy + head_r + 40), pt(cx, cy + head_r + 90),
                       pt(cx + 40, cy + head_r + 40)], np.int32)
    cv2.fillPoly(img, [collar], pal["accent"], cv2.LINE_AA)
    cv2.polylines(img, [body, collar], True, outline, thick, cv2.LINE_AA)

    # Hair behind the head, the head, then the fringe.
    shaded_ellipse((cx, cy - 10), (head_r + 25, head_r + 30), 0, pal["hair"])
    shaded_ellipse((cx, cy), (head_r, int(head_r * 1.08)), 0, pal["skin"])
    for i in range(int(rng.integers(3, 6))):
        x0 = cx - head_r + (2 * head_r) * (i + 0.5) / 5
        spike = np.array([pt(x0 - 35, cy - head_r + 5), pt(x0 + 35, cy - head_r + 5),
                          pt(x0 + rng.integers(-15, 16), cy - head_r + rng.integers(35, 70))],
                         np.int32)
        cv2.fillPoly(img, [spike], pal["hair"], cv2.LINE_AA)
        cv2.polylines(img, [spike], False, outline, thick, cv2.LINE_AA)

    # Eyes with highlights, and a mouth.
    eye_dx = int(head_r * 0.42)
    eye_y = cy + int(head_r * 0.15)
    for sx in (-1, 1):
        centre = (cx + sx * eye_dx, eye_y)
        cv2.ellipse(img, pt(*centre), (ln(17), ln(24)), 0, 0, 360, (250, 250, 250), -1,
                    cv2.LINE_AA)
        cv2.ellipse(img, pt(*centre), (ln(12), ln(19)), 0, 0, 360, pal["eyes"], -1, cv2.LINE_AA)
        cv2.circle(img, pt(centre[0] - 4, centre[1] - 7), ln(5), (255, 255, 255), -1, cv2.LINE_AA)
        cv2.ellipse(img, pt(*centre), (ln(17), ln(24)), 0, 0, 360, outline, thick, cv2.LINE_AA)
    cv2.ellipse(img, pt(cx, cy + int(head_r * 0.6)), (ln(14), ln(6)), 0, 0, 180, outline, thick,
                cv2.LINE_AA)

    # Props: stars, orbs and a staff, more of them with more detail.
    for _ in range(int(rng.integers(1, 4) * detail)):
        kind = rng.integers(3)
        x, y = rng.integers(30, 482, 2)
        if rng.random() < 0.5:
            colour = pal["accent"]
        else:
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if kind == 0:
            r = rng.integers(15, 40)
            ang = np.linspace(0, 2 * np.pi, 11)[:-1] + rng.random()
            rad = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
            points = [pt(x + rr * np.cos(a), y + rr * np.sin(a))
                      for a, rr in zip(ang, rad, strict=True)]
            star = np.array(points, np.int32)
            cv2.fillPoly(img, [star], colour, cv2.LINE_AA)
            cv2.polylines(img, [star], True, outline, thick, cv2.LINE_AA)
        elif kind == 1:
            shaded_ellipse((x, y), (rng.integers(12, 35),) * 2, 0, colour)
        else:
            x2, y2 = x + rng.integers(-120, 121), y + rng.integers(-160, 161)
            cv2.line(img, pt(x, y), pt(x2, y2), outline, ln(12), cv2.LINE_AA)
            cv2.line(img, pt(x, y), pt(x2, y2), colour, ln(7), cv2.LINE_AA)

    if detail > 1.0:
        # Hatching: patches of parallel strokes all over the picture, as an inker shades. Enough
        # of them that the busy style's sketches (detail 3: 33-41 % lines at 128 px, 25-31 % at
        # 256 px) lie above all of the plain style's (7-26 %, 7-18 %).
        for _ in range(int(HATCH_PATCHES * (detail - 1.0)) + 4):
            x, y = rng.integers(0, 512, 2)
            angle = rng.uniform(0, np.pi)
            along = np.array([np.cos(angle), np.sin(angle)])
            across = np.array([-along[1], along[0]])
            length, gap = rng.uniform(30, 70), rng.uniform(7, 11)
            for k in range(int(rng.integers(5, 10))):
                mid = np.array([x, y]) + across * gap * (k - 4)
                a, b = mid - along * length / 2, mid + along * length / 2
                cv2.line(img, pt(*a), pt(*b), outline, max(1, thick - 1), cv2.LINE_AA)

    # Paper texture: faint, smooth, seeded noise (fine-grained noise would read as lines).
    coarse = rng.normal(0.0, 4.0, (max(2, height // 16), max(2, width // 16))).astype(np.float32)
    noise = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)[..., None]
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
