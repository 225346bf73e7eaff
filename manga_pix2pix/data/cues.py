"""Colour cues: the original's blurred colour layer, cue masks, and constant cues.

The original derived an artist's "highlighter" cues by blurring the colour image with a
Gaussian of sigma = 20 px at 256 px. Here the sigma scales with the image's short side, the
kernel is normalised and 4 sigma wide on each side (as `cv2.GaussianBlur` picks for float
images), and borders are reflected without repeating the edge pixel (OpenCV's default
`BORDER_REFLECT_101`).

The blur is computed as two matrix products, `K_h @ X @ K_w^T`, with the border reflection
folded into the matrices: on CPUs this is several times faster than a 161-tap convolution
and exact. Above `max_exact_size` the image is first area-reduced by an integer factor, blurred
with a proportionally smaller sigma and resized back bilinearly; the blur is so wide that this
stays well within 1/255 of the exact result.

Cue masks say where an artist gave a cue: `full` (everywhere, the paper), `partial` (random
stroke- and blob-shaped regions) or `none`. Cues outside the mask are set to 0, the middle of
the model's [-1, 1] range, so "no cue here" always looks the same to the model.

Value ranges:
    blur input/output: float32 in [0, 1], shape `[..., H, W, C]`.
    masks: float32, 0 or 1, shape `[H, W, 1]`.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

#: Cue blur sigma at a 256-px short side, as in the original write-up.
SIGMA_AT_256 = 20.0


def cue_sigma(height: int | tf.Tensor, width: int | tf.Tensor) -> tf.Tensor:
    """The cue blur sigma for an image of this size: 20 px per 256 px of short side."""
    short = tf.cast(tf.minimum(height, width), tf.float32)
    return SIGMA_AT_256 * short / 256.0


def _blur_matrix(n: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
    """The `[n, n]` matrix that applies a normalised 1-D Gaussian with reflect-101 borders."""
    radius = tf.maximum(tf.cast(tf.round(sigma * 4.0), tf.int32), 1)
    offsets = tf.range(-radius, radius + 1)
    weights = tf.exp(-0.5 * tf.square(tf.cast(offsets, tf.float32) / sigma))
    weights = weights / tf.reduce_sum(weights)
    rows = tf.range(n)[:, None]
    cols = rows + offsets[None, :]
    # Reflect-101 with period 2(n - 1), valid even when the kernel is wider than the image.
    period = tf.maximum(2 * (n - 1), 1)
    cols = tf.math.floormod(cols, period)
    cols = tf.where(cols >= n, period - cols, cols)
    rows = tf.broadcast_to(rows, tf.shape(cols))
    indices = tf.stack([tf.reshape(rows, [-1]), tf.reshape(cols, [-1])], axis=1)
    updates = tf.reshape(tf.broadcast_to(weights[None, :], tf.shape(cols)), [-1])
    return tf.scatter_nd(indices, updates, tf.stack([n, n]))


def _exact_blur(image: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
    """Blurs a batched float image `[N, H, W, C]` exactly."""
    shape = tf.shape(image)
    kh = _blur_matrix(shape[1], sigma)
    kw = _blur_matrix(shape[2], sigma)
    x = tf.einsum("hk,nkwc->nhwc", kh, image)
    return tf.einsum("wk,nhkc->nhwc", kw, x)


def gaussian_blur(
    image: tf.Tensor, sigma: float | tf.Tensor | None = None, max_exact_size: int = 512
) -> tf.Tensor:
    """Blurs a float image in [0, 1] (batched or not) with a normalised Gaussian.

    Args:
        image: float image `[..., H, W, C]` in [0, 1] (uint8 is scaled to [0, 1]).
        sigma: in pixels; by default `cue_sigma(H, W)`.
        max_exact_size: above this short side, blur at a reduced resolution.

    Returns:
        The blurred image, float32, same shape.
    """
    image = tf.convert_to_tensor(image)
    if image.dtype == tf.uint8:
        image = tf.cast(image, tf.float32) / 255.0
    image = tf.cast(image, tf.float32)
    batched = image.shape.rank == 4
    if not batched:
        image = image[None]
    shape = tf.shape(image)
    height, width = shape[1], shape[2]
    if sigma is None:
        sigma = cue_sigma(height, width)
    sigma = tf.cast(sigma, tf.float32)
    short = tf.minimum(height, width)
    factor = tf.maximum(1, -(-short // max_exact_size))

    def reduced():
        small = tf.image.resize(image, [height // factor, width // factor], method="area")
        blurred = _exact_blur(small, sigma / tf.cast(factor, tf.float32))
        return tf.image.resize(blurred, [height, width], method="bilinear")

    static_short = min(image.shape[1:3]) if None not in image.shape[1:3] else None
    if static_short is not None:
        # Chosen here, not in the graph: XLA (TPUs, `--derive-on device`) has no area resize.
        out = reduced() if static_short > max_exact_size else _exact_blur(image, sigma)
    else:
        out = tf.cond(factor > 1, reduced, lambda: _exact_blur(image, sigma))
    out = tf.ensure_shape(out, image.shape)
    return out if batched else out[0]


@dataclass(frozen=True)
class CueMaskConfig:
    """How often each kind of cue mask is drawn in training.

    Attributes:
        p_full: probability of a full cue layer (the paper's setting).
        p_partial: probability of random stroke- and blob-shaped cue regions.
        p_none: probability of no cues at all.
        max_strokes: most strokes in a partial mask (at least 1 is drawn).
        max_blobs: most blobs in a partial mask (0 or more).
    """

    p_full: float = 0.5
    p_partial: float = 0.4
    p_none: float = 0.1
    max_strokes: int = 8
    max_blobs: int = 4

    def __post_init__(self):
        probs = (self.p_full, self.p_partial, self.p_none)
        if min(probs) < 0 or abs(sum(probs) - 1.0) > 1e-6:
            raise ValueError(
                f"p_full, p_partial, p_none: must be non-negative and sum to 1, got {probs}"
            )


#: Masks for a model trained without cues (`--no-cues`): never any cue.
NO_CUES = CueMaskConfig(p_full=0.0, p_partial=0.0, p_none=1.0)


def partial_mask(height: int, width: int, seed: tf.Tensor, config: CueMaskConfig) -> tf.Tensor:
    """Random highlighter-like strokes and blobs, as a 0/1 mask `[H, W, 1]`.

    Strokes are thick line segments (width 3-10% of the short side) chained into short
    polylines; blobs are rotated ellipses. Deterministic for a given stateless `seed` (shape [2]).
    """
    seeds = tf.random.experimental.stateless_split(seed, 6)
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    short = tf.minimum(h, w)
    ys = (tf.range(h) + 0.5)[:, None, None]
    xs = (tf.range(w) + 0.5)[None, :, None]

    n_strokes = tf.random.stateless_uniform([], seeds[0], 1, config.max_strokes + 1, tf.int32)
    k = config.max_strokes
    start = tf.random.stateless_uniform([k, 2], seeds[1]) * tf.stack([h, w])
    step = tf.random.stateless_normal([k, 2], seeds[2]) * 0.25 * short
    end = start + step
    # At least 2 px wide, so the pixel nearest a stroke's start is always inside it and a
    # partial mask is never empty, even on tiny images.
    stroke_w = tf.maximum(tf.random.stateless_uniform([k], seeds[3], 0.03, 0.10) * short, 2.0)
    d = end - start
    t = ((ys - start[:, 0]) * d[:, 0] + (xs - start[:, 1]) * d[:, 1]) / tf.maximum(
        tf.reduce_sum(d * d, axis=1), 1e-6
    )
    t = tf.clip_by_value(t, 0.0, 1.0)
    dist2 = tf.square(ys - (start[:, 0] + t * d[:, 0])) + tf.square(
        xs - (start[:, 1] + t * d[:, 1])
    )
    active = tf.range(k) < n_strokes
    strokes = tf.reduce_any((dist2 < tf.square(stroke_w / 2)) & active, axis=-1)

    if config.max_blobs > 0:
        b = config.max_blobs
        n_blobs = tf.random.stateless_uniform([], seeds[4], 0, b + 1, tf.int32)
        params = tf.random.stateless_uniform([b, 5], seeds[5])
        cy, cx = params[:, 0] * h, params[:, 1] * w
        ry = (0.05 + 0.15 * params[:, 2]) * short
        rx = (0.05 + 0.15 * params[:, 3]) * short
        angle = params[:, 4] * 3.14159265
        dy, dx = ys - cy, xs - cx
        u = dx * tf.cos(angle) + dy * tf.sin(angle)
        v = -dx * tf.sin(angle) + dy * tf.cos(angle)
        inside = tf.square(u / rx) + tf.square(v / ry) < 1.0
        blobs = tf.reduce_any(inside & (tf.range(b) < n_blobs), axis=-1)
        strokes = strokes | blobs
    return tf.cast(strokes, tf.float32)[..., None]


def random_cue_mask(
    height: int, width: int, seed: tf.Tensor, config: CueMaskConfig = CueMaskConfig()
) -> tf.Tensor:
    """Draws a full, partial or empty cue mask `[H, W, 1]` with the configured probabilities."""
    kind_seed, shape_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    u = tf.random.stateless_uniform([], kind_seed)
    full = tf.ones([height, width, 1], tf.float32)
    none = tf.zeros([height, width, 1], tf.float32)
    if config.p_partial <= 0:
        return tf.where(u < config.p_full, full, none)
    return tf.case(
        [
            (u < config.p_full, lambda: full),
            (u < config.p_full + config.p_partial,
             lambda: partial_mask(height, width, shape_seed, config)),
        ],
        default=lambda: none,
    )


def apply_mask(cues: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Keeps cues (in [-1, 1]) where the mask is 1 and puts 0 (no cue) elsewhere."""
    return cues * mask


# -- Cues as artists paint them ----------------------------------------------------------------
#
# The paper's cues are the truth blurred and perfectly aligned with it: they carry its shading
# (the answer, leaked), and a stroke cut out of them is a mix of the colours under it, not the
# flat colour an artist picks. The "artist" cue style instead draws short strokes, mostly in
# flat regions, each one flat colour: the median true colour under it, kept only where the
# image is close to that colour (so a stroke stays inside its region, as an artist's does); and
# full "highlighter" layers blurred with a random sigma, shifted, colour-jittered and
# posterised, so that they no longer line up with the truth's shading.

CUE_STYLES = ("paper", "artist")


def _segment_distance2(ys, xs, start, end):
    """Squared distance of every pixel `[H, W, 1]` to each segment `[K, 2]`: `[H, W, K]`."""
    d = end - start
    t = ((ys - start[:, 0]) * d[:, 0] + (xs - start[:, 1]) * d[:, 1]) / tf.maximum(
        tf.reduce_sum(d * d, axis=1), 1e-6
    )
    t = tf.clip_by_value(t, 0.0, 1.0)
    return tf.square(ys - (start[:, 0] + t * d[:, 0])) + tf.square(
        xs - (start[:, 1] + t * d[:, 1])
    )


def masked_median(values: tf.Tensor, masks: tf.Tensor) -> tf.Tensor:
    """Per-mask, per-channel median of `values` `[H, W, C]` under masks `[H, W, K]`: `[K, C]`.

    The lower median (element `(n - 1) // 2` of the sorted `n` values); an empty mask gives 0.
    """
    c = tf.shape(values)[-1]
    flat = tf.reshape(values, [-1, c])  # [N, C]
    m = tf.transpose(tf.reshape(masks, [-1, tf.shape(masks)[-1]]))  # [K, N]
    big = tf.constant(3.0e38, tf.float32)
    v = tf.where(m[:, None, :] > 0, tf.transpose(flat)[None], big)  # [K, C, N]
    v = tf.sort(v, axis=-1)
    n = tf.reduce_sum(tf.cast(m > 0, tf.int32), axis=-1)  # [K]
    index = tf.maximum(n - 1, 0) // 2
    med = tf.gather(v, index, axis=2, batch_dims=1)  # [K, C]
    return tf.where((n > 0)[:, None], med, 0.0)


def flatness(image: tf.Tensor, window: int = 5) -> tf.Tensor:
    """How flat an image is around each pixel: `exp(-sd / 0.04)` of the local gray sd, `[H, W]`."""
    gray = tf.reduce_mean(image, axis=-1, keepdims=True)[None]
    mean = tf.nn.avg_pool2d(gray, window, 1, "SAME")
    var = tf.nn.avg_pool2d(tf.square(gray), window, 1, "SAME") - tf.square(mean)
    return tf.exp(-tf.sqrt(tf.maximum(var, 0.0))[0, ..., 0] / 0.04)


def stroke_cues(
    image: tf.Tensor, seed: tf.Tensor, max_strokes: int = 8, tolerance: float = 0.12
) -> tuple[tf.Tensor, tf.Tensor]:
    """Short flat-colour strokes as an artist paints them, derived from a colour image.

    1 to `max_strokes` strokes start at pixels drawn with probability proportional to the
    image's flatness, run in a random direction for 8-25% of the short side and are 3-8% of it
    wide (at least 2 px). Each takes the median true colour under it and keeps only the pixels
    within `tolerance` (RGB distance, [0, 1] units) of that colour, so it stays inside its
    region. Later strokes paint over earlier ones.

    Args:
        image: float RGB in [0, 1] `[H, W, 3]`.
        seed: stateless seed `[2]`.
        max_strokes: most strokes.
        tolerance: how far from its colour a pixel may be and stay in the stroke.

    Returns:
        `(colours, mask)`: float `[H, W, 3]` in [0, 1] (0 outside the mask) and `[H, W, 1]` 0/1.
    """
    seeds = tf.random.experimental.stateless_split(seed, 5)
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    short = tf.minimum(h, w)
    k = max_strokes
    logits = tf.math.log(tf.reshape(flatness(image), [1, -1]) + 1e-4)
    flat_index = tf.random.stateless_categorical(logits, k, seeds[0], dtype=tf.int32)[0]
    start = tf.cast(tf.stack([flat_index // width, flat_index % width], axis=1), tf.float32)
    start = start + 0.5
    angle = tf.random.stateless_uniform([k], seeds[1], 0.0, 2.0 * 3.14159265)
    length = tf.random.stateless_uniform([k], seeds[2], 0.08, 0.25) * short
    end = start + tf.stack([tf.sin(angle), tf.cos(angle)], axis=1) * length[:, None]
    stroke_w = tf.maximum(tf.random.stateless_uniform([k], seeds[3], 0.03, 0.08) * short, 2.0)
    ys = (tf.range(h) + 0.5)[:, None, None]
    xs = (tf.range(w) + 0.5)[None, :, None]
    n_strokes = tf.random.stateless_uniform([], seeds[4], 1, k + 1, tf.int32)
    active = tf.range(k) < n_strokes
    covered = (_segment_distance2(ys, xs, start, end) < tf.square(stroke_w / 2)) & active
    colours = masked_median(image, tf.cast(covered, tf.float32))  # [K, 3]
    near = tf.reduce_sum(tf.square(image[:, :, None, :] - colours), axis=-1) <= tolerance**2
    inside = covered & near  # [H, W, K]
    # The last stroke that covers a pixel wins.
    order = tf.cast(inside, tf.int32) * (tf.range(k) + 1)
    top = tf.reduce_max(order, axis=-1)
    mask = tf.cast(top > 0, tf.float32)[..., None]
    painted = tf.gather(colours, tf.maximum(top - 1, 0)) * mask
    return painted, mask


def highlighter_layer(image: tf.Tensor, seed: tf.Tensor, sigma: float | None = None) -> tf.Tensor:
    """A full cue layer that is not the truth: blurred, shifted, colour-jittered, posterised.

    The blur's sigma is the default (or `sigma`) times 0.7-1.6; the layer is shifted by up to
    4% of the short side (borders reflected); each channel gets a gain in [0.9, 1.1] and an
    offset in [-0.05, 0.05]; half the time it is posterised to 12-24 levels per channel.

    Args:
        image: float RGB in [0, 1] `[H, W, 3]`.
        seed: stateless seed `[2]`.
        sigma: the base blur sigma in pixels (None: 20 px per 256 px of short side).

    Returns:
        float32 `[H, W, 3]` in [0, 1].
    """
    seeds = tf.random.experimental.stateless_split(seed, 6)
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    base = cue_sigma(height, width) if sigma is None else tf.cast(sigma, tf.float32)
    scale = tf.random.stateless_uniform([], seeds[0], 0.7, 1.6)
    short = tf.cast(tf.minimum(height, width), tf.float32)
    pad = tf.cast(tf.math.ceil(0.04 * short), tf.int32)
    shift = tf.random.stateless_uniform([2], seeds[1], -1.0, 1.0) * tf.cast(pad, tf.float32)
    shift = tf.cast(tf.round(shift), tf.int32) + pad
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    moved = tf.slice(padded, tf.stack([shift[0], shift[1], 0]), tf.stack([height, width, 3]))
    layer = gaussian_blur(moved, base * scale)
    gain = tf.random.stateless_uniform([3], seeds[2], 0.9, 1.1)
    offset = tf.random.stateless_uniform([3], seeds[3], -0.05, 0.05)
    layer = tf.clip_by_value(layer * gain + offset, 0.0, 1.0)
    levels = tf.cast(tf.random.stateless_uniform([], seeds[4], 12, 25, tf.int32), tf.float32)
    posterise = tf.random.stateless_uniform([], seeds[5]) < 0.5
    layer = tf.where(posterise, tf.round(layer * (levels - 1.0)) / (levels - 1.0), layer)
    return tf.ensure_shape(layer, image.shape)


def artist_cues(
    image: tf.Tensor, seed: tf.Tensor, config: CueMaskConfig, sigma: float | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """Cues of the `artist` style: a highlighter layer, strokes or none, by `config`'s odds.

    Returns:
        `(cues, mask)`: float `[H, W, 3]` in [-1, 1] (0 outside the mask), `[H, W, 1]` 0/1.
    """
    kind_seed, layer_seed, stroke_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 3)
    )
    u = tf.random.stateless_uniform([], kind_seed)
    shape = tf.shape(image)
    ones = tf.ones(tf.concat([shape[:2], [1]], 0))

    def full():
        return highlighter_layer(image, layer_seed, sigma) * 2.0 - 1.0, ones

    def strokes():
        colours, mask = stroke_cues(image, stroke_seed, config.max_strokes)
        return apply_mask(colours * 2.0 - 1.0, mask), mask

    def none():
        return tf.zeros_like(image), tf.zeros_like(ones)

    cues, mask = tf.case(
        [(u < config.p_full, full), (u < config.p_full + config.p_partial, strokes)],
        default=none,
    )
    return tf.ensure_shape(cues, image.shape), tf.ensure_shape(mask, image.shape[:-1] + [1])
