"""Batched derivation: colour images -> the model's target and inputs, one set of kernels a batch.

`derive_batch` turns a batch of uint8 colour images (already cropped, jittered and flipped)
and one stateless seed per example into the training example of each: the target image, the
sketch, the cue layer and the cue mask. Every op takes the whole batch `[B, H, W, C]` at once;
nothing loops over examples, so the same function runs in the host's `tf.data` pipeline on a
batch (`--derive-on host`) or at the start of the compiled train step, per replica, on the
accelerator (`--derive-on device`), with the same results.

Randomness is per example and keyed by its seed alone, not by its place in a batch: each
example's random numbers are a counter-based hash of its seed (`per_example_uniform`), so an
example gets the same cue mask whatever batch, replica or device derives it. A new kind of
sketch or cue is one more batched op in `derive_batch`, drawing its numbers from its own
stream of `per_example_uniform`.

Value ranges:
    input images: uint8 `[B, H, W, 3]`; seeds: int32/int64 `[B, 2]`.
    outputs: as `manga_pix2pix.data.pipeline.prepare_example`, with a leading batch dimension:
        image float32 `[B, H, W, 3]` in [-1, 1]; sketch float32 `[B, H, W, 1]`, -1 (line) or 1;
        cues float32 `[B, H, W, 3]` in [-1, 1], 0 where the mask is 0; cue_mask float32
        `[B, H, W, 1]`, 0 or 1.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import tensorflow as tf

from manga_pix2pix.data.cues import (
    CUE_STYLES,
    SIGMA_AT_256,
    CueMaskConfig,
    apply_mask,
    cue_sigma,
    gaussian_blur,
)
from manga_pix2pix.data.sketch import (
    _KERNEL_7,
    BLOCK_SIZE,
    PAPER_SKETCHES,
    THRESHOLD_C,
    XDOG_EPSILON,
    XDOG_GAMMA,
    XDOG_K,
    XDOG_PHI,
    XDOG_SIGMAS,
    SketchConfig,
    gaussian_kernel_1d,
    line_share,
    pencil,
    sketch,
    to_gray,
    xdog,
)

#: Streams of `per_example_uniform`: one per op that draws random numbers.
MASK_STREAM = 1
MASK_KIND_STREAM = 2
SKETCH_STREAM = 3
LINE_STREAM = 4
LINE_NOISE_STREAM = 5
HIGHLIGHTER_STREAM = 6
STROKE_STREAM = 7
MOSAIC_STREAM = 8

_M1 = 0x7FEB352D
_M2 = 0x846CA68B
_GOLDEN = 0x9E3779B9


def _hash32(x: tf.Tensor) -> tf.Tensor:
    """A 32-bit integer mixer (Wellons' `lowbias32`) on uint32 tensors."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))
    x = x * tf.constant(_M1, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(15, tf.uint32)))
    x = x * tf.constant(_M2, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))


def per_example_uniform(seeds: tf.Tensor, count: int, stream: int) -> tf.Tensor:
    """`count` uniform numbers in [0, 1) per example, from its seed alone.

    Args:
        seeds: int32 or int64 `[B, 2]`, one stateless seed per example.
        count: numbers per example.
        stream: which op draws them; different streams give independent numbers.

    Returns:
        float32 `[B, count]`: number `j` of example `i` depends only on `seeds[i]`, `stream`
        and `j`.
    """
    seeds = tf.cast(seeds, tf.int64)
    words = [
        tf.cast(tf.bitwise.bitwise_and(part, 0xFFFFFFFF), tf.uint32)
        for column in (seeds[:, 0], seeds[:, 1])
        for part in (column, tf.bitwise.right_shift(column, 32))
    ]
    key = tf.fill(tf.shape(words[0]), tf.constant(stream * _GOLDEN % (1 << 32), tf.uint32))
    for word in words:
        key = _hash32(tf.bitwise.bitwise_xor(key, word) + tf.constant(_GOLDEN, tf.uint32))
    counter = tf.range(count, dtype=tf.int32)
    counter = _hash32(tf.cast(counter, tf.uint32) * tf.constant(_GOLDEN, tf.uint32) + 1)
    bits = _hash32(tf.bitwise.bitwise_xor(key[:, None], counter[None, :]))
    # The top 24 bits: exactly representable in float32, and always below 1.
    top = tf.bitwise.right_shift(bits, tf.constant(8, tf.uint32))
    return tf.cast(tf.cast(top, tf.int32), tf.float32) * (1.0 / (1 << 24))


def _normal(u1: tf.Tensor, u2: tf.Tensor) -> tf.Tensor:
    """Standard normal numbers from two uniforms in [0, 1) (Box-Muller)."""
    return tf.sqrt(-2.0 * tf.math.log1p(-u1)) * tf.cos(2.0 * math.pi * u2)


def _take(u: tf.Tensor, start: int, count: int) -> tuple[tf.Tensor, int]:
    return u[:, start : start + count], start + count


#: Partial masks are computed as distance fields on a grid at most this many times coarser
#: than the image, with at least `MIN_FIELD_SIZE` points a side, then interpolated.
MAX_FIELD_FACTOR = 4
MIN_FIELD_SIZE = 64


def _field_factor(height, width) -> int:
    """The coarsening of the mask's distance fields: 1 unless the size is static and large."""
    if not isinstance(height, int) or not isinstance(width, int):
        return 1
    factor = 1
    while (factor < MAX_FIELD_FACTOR and min(height, width) // (2 * factor) >= MIN_FIELD_SIZE
           and height % (2 * factor) == 0 and width % (2 * factor) == 0):
        factor *= 2
    return factor


def partial_masks(height, width, seeds: tf.Tensor, config: CueMaskConfig) -> tf.Tensor:
    """Random highlighter-like strokes and blobs for each example, as 0/1 masks `[B, H, W, 1]`.

    Strokes are thick line segments (width 3-10% of the short side, at least 2 px), 1 to
    `max_strokes` of them; blobs are 0 to `max_blobs` rotated ellipses. Drawn for the whole
    batch at once as one signed distance field per shape (pixels inside a stroke or blob by
    how far): for every pixel, every shape, every example, in one set of kernels. On a large
    static size the fields are computed on a grid up to 4 x coarser and interpolated
    bilinearly before thresholding: the fields are smooth, so the edges stay where they were
    (to a fraction of a pixel) at a sixteenth of the cost.
    """
    factor = _field_factor(height, width)
    k, nb = config.max_strokes, config.max_blobs
    u = per_example_uniform(seeds, 1 + 7 * k + 1 + 5 * nb, MASK_STREAM)
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    short = tf.minimum(h, w)
    # Grid points at the centres of the coarse cells, in image pixels.
    ys = ((tf.range(h / factor) + 0.5) * factor)[None, :, None, None]
    xs = ((tf.range(w / factor) + 0.5) * factor)[None, None, :, None]

    count, at = _take(u, 0, 1)
    n_strokes = 1 + tf.cast(tf.floor(count * k), tf.int32)  # [B, 1] in [1, k]
    sy, at = _take(u, at, k)
    sx, at = _take(u, at, k)
    n1, at = _take(u, at, 2 * k)
    n2, at = _take(u, at, 2 * k)
    width_u, at = _take(u, at, k)
    steps = _normal(n1, n2) * 0.25 * short
    ay, ax = sy * h, sx * w  # [B, k]
    dy, dx = steps[:, :k], steps[:, k:]
    # Inactive strokes get a radius far below zero: no pixel is inside them.
    radius = tf.maximum((0.03 + 0.07 * width_u) * short, 2.0) / 2.0
    radius = tf.where(tf.range(k)[None, :] < n_strokes, radius, -1e9)
    inv_len2 = 1.0 / tf.maximum(dx * dx + dy * dy, 1e-6)

    def per_shape(v):
        return v[:, None, None, :]  # [B, 1, 1, shapes]

    py = ys - per_shape(ay)
    px = xs - per_shape(ax)
    t = tf.clip_by_value((py * per_shape(dy) + px * per_shape(dx)) * per_shape(inv_len2),
                         0.0, 1.0)
    ey = py - t * per_shape(dy)
    ex = px - t * per_shape(dx)
    field = tf.reduce_max(per_shape(radius) - tf.sqrt(ey * ey + ex * ex), axis=-1)

    if nb > 0:
        count, at = _take(u, at, 1)
        n_blobs = tf.cast(tf.floor(count * (nb + 1)), tf.int32)  # [B, 1] in [0, nb]
        cy, at = _take(u, at, nb)
        cx, at = _take(u, at, nb)
        ry_u, at = _take(u, at, nb)
        rx_u, at = _take(u, at, nb)
        angle_u, at = _take(u, at, nb)
        angle = angle_u * math.pi
        cos, sin = tf.cos(angle), tf.sin(angle)
        ry = (0.05 + 0.15 * ry_u) * short
        rx = (0.05 + 0.15 * rx_u) * short
        # In pixels near the edge: (1 - the ellipse's radial coordinate) x its smaller radius.
        scale = tf.where(tf.range(nb)[None, :] < n_blobs, tf.minimum(rx, ry), -1e9)
        by = ys - per_shape(cy * h)
        bx = xs - per_shape(cx * w)
        bu = (bx * per_shape(cos) + by * per_shape(sin)) / per_shape(rx)
        bv = (by * per_shape(cos) - bx * per_shape(sin)) / per_shape(ry)
        blobs = (1.0 - tf.sqrt(bu * bu + bv * bv)) * per_shape(tf.abs(scale))
        blobs = tf.where(per_shape(scale) > 0, blobs, -1e9)
        field = tf.maximum(field, tf.reduce_max(blobs, axis=-1))
    field = field[..., None]
    if factor > 1:
        field = tf.image.resize(field, [height, width], method="bilinear")
    return tf.cast(field > 0.0, tf.float32)


#: The low-rank cue blur keeps singular values down to this fraction of the largest.
BLUR_RANK_TOLERANCE = 1e-4


@functools.lru_cache(maxsize=16)
def _blur_factors(n: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """`(A, B)` with `A @ B` close to `cues._blur_matrix(n, sigma)`, of the lowest rank that
    keeps the singular values above `BLUR_RANK_TOLERANCE` of the first."""
    radius = max(int(round(sigma * 4.0)), 1)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * np.square(offsets / sigma))
    weights /= weights.sum()
    cols = np.arange(n)[:, None] + offsets[None, :]
    period = max(2 * (n - 1), 1)
    cols = np.mod(cols, period)
    cols = np.where(cols >= n, period - cols, cols)
    matrix = np.zeros((n, n))
    np.add.at(matrix, (np.broadcast_to(np.arange(n)[:, None], cols.shape), cols),
              np.broadcast_to(weights, cols.shape))
    u, s, vt = np.linalg.svd(matrix)
    rank = max(1, int(np.sum(s > BLUR_RANK_TOLERANCE * s[0])))
    return (u[:, :rank] * s[:rank]).astype(np.float32), vt[:rank].astype(np.float32)


def cue_blur(image: tf.Tensor, sigma: float | None = None) -> tf.Tensor:
    """The cue layer's Gaussian blur of a batch `[B, H, W, C]` in [0, 1], as `gaussian_blur`.

    For a static size of at most 512 px and a Python sigma, the blur matrices are factored
    (SVD, once per size): the Gaussian is so wide that a rank of a few dozen keeps it to about
    1e-4, and the products cost a few times less. Otherwise this is `gaussian_blur`.
    """
    height, width = image.shape[1], image.shape[2]
    if height is None or width is None or min(height, width) > 512:
        return gaussian_blur(image, sigma)
    if sigma is None:
        sigma = SIGMA_AT_256 * min(height, width) / 256.0
    if tf.is_tensor(sigma):
        return gaussian_blur(image, sigma)
    ah, bh = _blur_factors(height, float(sigma))
    aw, bw = _blur_factors(width, float(sigma))
    n, channels = tf.shape(image)[0], image.shape[3]
    # Every product contracts the middle axis of a 3-D tensor: batched matmuls with a
    # broadcast matrix, no transposes. Rows first into the low-rank space, then the columns
    # there (r rows instead of H), then the rows back.
    x = tf.matmul(bh[None], tf.reshape(image, [n, height, width * channels]))
    x = tf.reshape(x, [-1, width, channels])
    x = tf.matmul(aw[None], tf.matmul(bw[None], x))
    x = tf.reshape(x, [n, -1, width * channels])
    return tf.reshape(tf.matmul(ah[None], x), [n, height, width, channels])


def _binomial_pass(x: tf.Tensor) -> tf.Tensor:
    """OpenCV's 7-tap binomial (1/256 units) down the rows of `[B, H, W]`, replicated borders.

    The columns are the channels of a depthwise convolution: one vectorised pass over all of
    them, where a one-channel convolution runs column by column.
    """
    half = BLOCK_SIZE // 2
    x = tf.concat([x[:, :1]] * half + [x] + [x[:, -1:]] * half, axis=1)[:, :, None, :]
    kernel = tf.tile(tf.reshape(tf.constant(_KERNEL_7), [BLOCK_SIZE, 1, 1, 1]),
                     [1, 1, x.shape[3], 1])
    return tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "VALID")[:, :, 0, :]


def sketch_batch(images_uint8: tf.Tensor) -> tf.Tensor:
    """`sketch.sketch` of a batch `[B, H, W, 3]`, bit for bit, vectorised over rows and columns.

    OpenCV's integer arithmetic stays exact in float32 (every sum is an integer below 2**24),
    so the gray conversion and the local mean run in float32: the mean as two depthwise
    passes (`_binomial_pass`), several times faster on CPUs than the one-channel convolutions
    of `sketch.sketch`. For an unknown size this is `sketch.sketch`.
    """
    if images_uint8.shape[1] is None or images_uint8.shape[2] is None:
        return sketch(images_uint8)
    x = tf.cast(images_uint8, tf.float32)
    gray = tf.floor((x[..., 0] * 4899.0 + x[..., 1] * 9617.0 + x[..., 2] * 1868.0 + 8192.0)
                    * (1.0 / 16384.0))
    mean = _binomial_pass(gray)
    mean = tf.transpose(_binomial_pass(tf.transpose(mean, [0, 2, 1])), [0, 2, 1])
    mean = tf.floor((mean + 32768.0) * (1.0 / 65536.0))
    # OpenCV's THRESH_BINARY with integer C: paper where src - mean > -C.
    paper = (gray - mean) > -THRESHOLD_C
    return tf.where(paper, tf.constant(255, tf.uint8), tf.constant(0, tf.uint8))[..., None]


def random_cue_masks(height, width, seeds: tf.Tensor, config: CueMaskConfig) -> tf.Tensor:
    """A full, partial or empty cue mask per example, `[B, H, W, 1]`, by the configured odds."""
    kind = per_example_uniform(seeds, 1, MASK_KIND_STREAM)[:, :, None, None]  # [B, 1, 1, 1]
    full = tf.cast(kind < config.p_full, tf.float32)
    if config.p_partial <= 0:
        return tf.broadcast_to(full, tf.stack([tf.shape(seeds)[0], height, width, 1]))
    partial = (kind >= config.p_full) & (kind < config.p_full + config.p_partial)
    return tf.where(partial, partial_masks(height, width, seeds, config), full)


# -- Sketch styles, batched (see `manga_pix2pix.data.sketch`) ----------------------------------


def augment_lines_batch(sketch01: tf.Tensor, seeds: tf.Tensor) -> tf.Tensor:
    """`sketch.augment_lines` for a batch `[B, H, W, 1]`, each example by its own seed."""
    u = per_example_uniform(seeds, 4, LINE_STREAM)
    pick, r, g, sd = (u[:, i][:, None, None, None] for i in range(4))
    thick = -tf.nn.max_pool2d(-sketch01, 3, 1, "SAME")
    thin = 0.5 * (sketch01 + tf.nn.max_pool2d(sketch01, 3, 1, "SAME"))
    x = tf.where(pick < 1 / 3, thick, tf.where(pick < 2 / 3, thin, sketch01))
    r = 0.7 + 0.3 * r
    x = x * r + 1.0 - r
    x = tf.pow(tf.maximum(x, 0.0), 0.7 + 0.7 * g)
    shape = tf.shape(sketch01)
    pixels = shape[1] * shape[2]
    # One hash per pixel, made normal by the inverse CDF.
    noise = per_example_uniform(seeds, pixels, LINE_NOISE_STREAM) + 0.5 / (1 << 24)
    noise = tf.math.ndtri(noise)
    x = x + 0.03 * sd * tf.reshape(noise, shape)
    return tf.clip_by_value(x, 0.0, 1.0)


def _gaussian_pass(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """A 1-D kernel down the rows of `[B, H, W]`, reflect-101 borders, columns as channels."""
    pad = (int(kernel.shape[0]) - 1) // 2
    x = tf.pad(x, [[0, 0], [pad, pad], [0, 0]], mode="REFLECT")[:, :, None, :]
    taps = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, x.shape[3], 1])
    return tf.nn.depthwise_conv2d(x, taps, [1, 1, 1, 1], "VALID")[:, :, 0, :]


def small_blur_batch(gray: tf.Tensor, sigma: float) -> tf.Tensor:
    """`sketch.small_blur` of a gray batch `[B, H, W]` (static size), as depthwise passes."""
    kernel = gaussian_kernel_1d(sigma)
    x = _gaussian_pass(gray, kernel)
    return tf.transpose(_gaussian_pass(tf.transpose(x, [0, 2, 1]), kernel), [0, 2, 1])


def _xdog_batch(gray: tf.Tensor, sigma: float) -> tf.Tensor:
    """`sketch.xdog` of a gray batch `[B, H, W]` in [0, 1]: float 0/1 `[B, H, W, 1]`."""
    u = small_blur_batch(gray, sigma) - XDOG_GAMMA * small_blur_batch(gray, XDOG_K * sigma)
    soft = tf.where(u >= XDOG_EPSILON, 1.0, 1.0 + tf.tanh(XDOG_PHI * (u - XDOG_EPSILON)))
    return tf.cast(soft >= 0.5, tf.float32)[..., None]


def _pencil_batch(gray: tf.Tensor, floor: float = 0.6) -> tf.Tensor:
    """`sketch.pencil` (default sigma) of a gray batch `[B, H, W]`: `[B, H, W, 1]` in [0, 1]."""
    sigma = max(1.5 * min(gray.shape[1], gray.shape[2]) / 128.0, 0.8)
    dodge = tf.clip_by_value(gray / tf.maximum(small_blur_batch(gray, sigma), 1e-3), 0.0, 1.0)
    return tf.clip_by_value((dodge - floor) / (1.0 - floor), 0.0, 1.0)[..., None]


def styled_sketches(images_uint8: tf.Tensor, seeds: tf.Tensor, config: SketchConfig) -> tf.Tensor:
    """`sketch.styled_sketch` for a batch: float `[B, H, W, 1]` in [0, 1], 0 on lines.

    Each style in the mix is computed for the whole batch, then each example keeps its own
    (drawn from its seed), is rejected back to the adaptive threshold when too empty or
    too dense, and has its lines jittered.
    """
    base = tf.cast(sketch_batch(images_uint8), tf.float32) / 255.0
    if config == PAPER_SKETCHES:
        return base
    static = images_uint8.shape[1] is not None and images_uint8.shape[2] is not None
    gray = tf.cast(to_gray(images_uint8), tf.float32)[..., 0] / 255.0
    u = per_example_uniform(seeds, 2, SKETCH_STREAM)
    style = u[:, 0][:, None, None, None]
    out = base
    if config.p_pencil > 0:
        drawn = _pencil_batch(gray) if static else pencil(images_uint8)
        out = tf.where(style >= config.p_adaptive + config.p_xdog, drawn, out)
    if config.p_xdog > 0:
        sigma_index = tf.cast(tf.floor(u[:, 1] * len(XDOG_SIGMAS)), tf.int32)
        xdogs = tf.stack([_xdog_batch(gray, s) if static else xdog(images_uint8, s)
                          for s in XDOG_SIGMAS], axis=1)
        chosen = tf.gather(xdogs, sigma_index, axis=1, batch_dims=1)
        is_xdog = (style >= config.p_adaptive) & (style < config.p_adaptive + config.p_xdog)
        out = tf.where(is_xdog, chosen, out)
    share = line_share(out)[:, None, None, None]
    out = tf.where((share >= config.min_share) & (share <= config.max_share), out, base)
    if config.augment:
        out = augment_lines_batch(out, seeds)
    return out


# -- Artist cues, batched (see `manga_pix2pix.data.cues`) --------------------------------------


def _blur_matrices(n, sigmas: tf.Tensor) -> tf.Tensor:
    """`cues._blur_matrix(n, sigma)` for one sigma per example: `[B, n, n]`."""
    radii = tf.maximum(tf.cast(tf.round(sigmas * 4.0), tf.int32), 1)  # [B]
    top = tf.reduce_max(radii)
    offsets = tf.range(-top, top + 1)
    weights = tf.exp(-0.5 * tf.square(tf.cast(offsets, tf.float32)[None] / sigmas[:, None]))
    weights = tf.where(tf.abs(offsets)[None] <= radii[:, None], weights, 0.0)
    weights = weights / tf.reduce_sum(weights, axis=1, keepdims=True)  # [B, T]
    rows = tf.range(n)[:, None]
    cols = rows + offsets[None, :]
    period = tf.maximum(2 * (n - 1), 1)
    cols = tf.math.floormod(cols, period)
    cols = tf.where(cols >= n, period - cols, cols)  # [n, T]
    b = tf.shape(sigmas)[0]
    grid = tf.stack([tf.broadcast_to(v, tf.stack([b, n, 2 * top + 1]))
                     for v in (tf.range(b)[:, None, None], rows[None], cols[None])])
    updates = tf.broadcast_to(weights[:, None, :], tf.shape(grid)[1:])
    # Reflected taps that land on the same column add up, as in the single-sigma matrix.
    return tf.scatter_nd(tf.reshape(tf.transpose(grid, [1, 2, 3, 0]), [-1, 3]),
                         tf.reshape(updates, [-1]), tf.stack([b, n, n]))


def highlighter_layers(images: tf.Tensor, seeds: tf.Tensor, sigma=None) -> tf.Tensor:
    """`cues.highlighter_layer` for a batch `[B, H, W, 3]` in [0, 1], each by its own seed."""
    u = per_example_uniform(seeds, 12, HIGHLIGHTER_STREAM)
    shape = tf.shape(images)
    height = images.shape[1] if images.shape[1] is not None else shape[1]
    width = images.shape[2] if images.shape[2] is not None else shape[2]
    base = cue_sigma(height, width) if sigma is None else tf.cast(sigma, tf.float32)
    sigmas = base * (0.7 + 0.9 * u[:, 0])
    short = tf.cast(tf.minimum(height, width), tf.float32)
    pad = tf.cast(tf.math.ceil(0.04 * short), tf.int32)
    shift = tf.cast(tf.round((u[:, 1:3] * 2.0 - 1.0) * tf.cast(pad, tf.float32)), tf.int32) + pad
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    rows = shift[:, 0:1] + tf.range(height)[None]
    cols = shift[:, 1:2] + tf.range(width)[None]
    moved = tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
    layer = tf.einsum("bhk,bkwc->bhwc", _blur_matrices(height, sigmas), moved)
    layer = tf.einsum("bwk,bhkc->bhwc", _blur_matrices(width, sigmas), layer)
    gain = (0.9 + 0.2 * u[:, 3:6])[:, None, None, :]
    offset = (-0.05 + 0.1 * u[:, 6:9])[:, None, None, :]
    layer = tf.clip_by_value(layer * gain + offset, 0.0, 1.0)
    levels = (12.0 + tf.floor(13.0 * u[:, 9]))[:, None, None, None]
    posterise = (u[:, 10] < 0.5)[:, None, None, None]
    return tf.where(posterise, tf.round(layer * (levels - 1.0)) / (levels - 1.0), layer)


def masked_medians(levels: tf.Tensor, masks: tf.Tensor) -> tf.Tensor:
    """`cues.masked_median` of uint8 levels for a batch, by histograms instead of sorts.

    Args:
        levels: int32 `[B, N, C]` in [0, 255].
        masks: bool `[B, N, K]`.

    Returns:
        float32 `[B, K, C]`: the lower median level under each mask, / 255 (0 for an empty
        mask), exactly as sorting would give.
    """
    b, k, c = tf.shape(levels)[0], tf.shape(masks)[2], tf.shape(levels)[2]
    batch = tf.range(b)[:, None, None, None]
    stroke = tf.range(k)[None, None, :, None]
    channel = tf.range(c)[None, None, None, :]
    ids = (((batch * k + stroke) * c + channel) * 256) + levels[:, :, None, :]  # [B, N, K, C]
    weights = tf.cast(tf.broadcast_to(masks[..., None], tf.shape(ids)), tf.int32)
    counts = tf.math.unsorted_segment_sum(weights, ids, b * k * c * 256)
    cumulative = tf.cumsum(tf.reshape(counts, [b, k, c, 256]), axis=-1)
    n = cumulative[..., -1:]
    middle = tf.maximum(n - 1, 0) // 2
    level = tf.reduce_sum(tf.cast(cumulative <= middle, tf.int32), axis=-1)
    return tf.where(n[..., 0] > 0, tf.cast(level, tf.float32) / 255.0, 0.0)


def stroke_cues_batch(images_uint8: tf.Tensor, seeds: tf.Tensor, max_strokes: int,
                      tolerance: float = 0.12) -> tuple[tf.Tensor, tf.Tensor]:
    """`cues.stroke_cues` for a batch: flat-colour strokes of the median colour under them.

    Starts are drawn in proportion to the image's flatness by inverting each example's
    cumulative distribution (`searchsorted`), and medians come from per-stroke histograms
    (of every other row and column at 128 px and more).

    Returns:
        `(colours, mask)`: float `[B, H, W, 3]` in [0, 1] (0 outside), `[B, H, W, 1]` 0/1.
    """
    k = max_strokes
    images = tf.cast(images_uint8, tf.float32) / 255.0
    shape = tf.shape(images)
    height = images.shape[1] if images.shape[1] is not None else shape[1]
    width = images.shape[2] if images.shape[2] is not None else shape[2]
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    short = tf.minimum(h, w)
    u = per_example_uniform(seeds, 4 * k + 1, STROKE_STREAM)
    gray = tf.reduce_mean(images, axis=-1, keepdims=True)
    mean = tf.nn.avg_pool2d(gray, 5, 1, "SAME")
    var = tf.nn.avg_pool2d(tf.square(gray), 5, 1, "SAME") - tf.square(mean)
    flat = tf.exp(-tf.sqrt(tf.maximum(var, 0.0)) / 0.04)
    weights = tf.reshape(flat, [shape[0], -1]) + 1e-4
    cdf = tf.cumsum(weights, axis=1)
    pick = u[:, :k] * cdf[:, -1:]
    index = tf.minimum(tf.searchsorted(cdf, pick, side="right"), height * width - 1)
    start_y = tf.cast(index // width, tf.float32) + 0.5
    start_x = tf.cast(index % width, tf.float32) + 0.5
    angle = u[:, k : 2 * k] * (2.0 * math.pi)
    length = (0.08 + 0.17 * u[:, 2 * k : 3 * k]) * short
    dy, dx = tf.sin(angle) * length, tf.cos(angle) * length
    radius = tf.maximum((0.03 + 0.05 * u[:, 3 * k : 4 * k]) * short, 2.0) / 2.0
    n_strokes = 1 + tf.cast(tf.floor(u[:, 4 * k :] * k), tf.int32)
    active = tf.range(k)[None, :] < n_strokes  # [B, k]
    ys = (tf.range(h) + 0.5)[None, :, None, None]
    xs = (tf.range(w) + 0.5)[None, None, :, None]

    def per_shape(v):
        return v[:, None, None, :]

    py, px = ys - per_shape(start_y), xs - per_shape(start_x)
    inv_len2 = 1.0 / tf.maximum(dx * dx + dy * dy, 1e-6)
    t = tf.clip_by_value((py * per_shape(dy) + px * per_shape(dx)) * per_shape(inv_len2),
                         0.0, 1.0)
    ey, ex = py - t * per_shape(dy), px - t * per_shape(dx)
    covered = (ey * ey + ex * ex < per_shape(radius * radius)) & per_shape(active)
    # Medians from every other row and column on a large static size: a quarter of the
    # histogram work; a stroke is at least 3 % of the short side wide, so never missed.
    step = 2 if isinstance(height, int) and min(height, width) >= 128 else 1
    levels = tf.cast(images_uint8[:, ::step, ::step], tf.int32)
    colours = masked_medians(tf.reshape(levels, [shape[0], -1, 3]),
                             tf.reshape(covered[:, ::step, ::step], [shape[0], -1, k]))
    # |x - c|^2 = |x|^2 - 2 x.c + |c|^2, the cross term one product per example.
    flat = tf.reshape(images, [shape[0], -1, 3])
    cross = tf.matmul(flat, colours, transpose_b=True)  # [B, N, k]
    distance2 = (tf.reduce_sum(tf.square(flat), axis=-1, keepdims=True) - 2.0 * cross
                 + tf.reduce_sum(tf.square(colours), axis=-1)[:, None, :])
    distance2 = tf.reshape(distance2, tf.shape(covered))
    inside = covered & (distance2 <= tolerance**2)
    # The last stroke that covers a pixel wins.
    top = tf.reduce_max(tf.cast(inside, tf.int32) * (tf.range(k) + 1), axis=-1)
    mask = tf.cast(top > 0, tf.float32)[..., None]
    painted = tf.gather(colours, tf.maximum(top - 1, 0), batch_dims=1) * mask
    return painted, mask


def artist_cues_batch(images_uint8: tf.Tensor, seeds: tf.Tensor, config: CueMaskConfig,
                      sigma=None) -> tuple[tf.Tensor, tf.Tensor]:
    """`cues.artist_cues` for a batch: a highlighter layer, strokes or none per example.

    Returns:
        `(cues, mask)`: float `[B, H, W, 3]` in [-1, 1] (0 outside the mask), `[B, H, W, 1]`.
    """
    images = tf.cast(images_uint8, tf.float32) / 255.0
    kind = per_example_uniform(seeds, 1, MASK_KIND_STREAM)[:, :, None, None]
    full = kind < config.p_full
    strokes = (~full) & (kind < config.p_full + config.p_partial)
    mask = tf.cast(tf.broadcast_to(full, tf.shape(images[..., :1])), tf.float32)
    cues = tf.zeros_like(images)
    if config.p_full > 0:
        cues = tf.where(full, highlighter_layers(images, seeds, sigma) * 2.0 - 1.0, cues)
    if config.p_partial > 0:
        colours, stroke_mask = stroke_cues_batch(images_uint8, seeds, config.max_strokes)
        cues = tf.where(strokes, apply_mask(colours * 2.0 - 1.0, stroke_mask), cues)
        mask = tf.where(strokes, stroke_mask, mask)
    return cues, mask


def mosaic_batch(images_uint8: tf.Tensor, seeds: tf.Tensor, share: float) -> tf.Tensor:
    """Replaces a share of a batch's images by 2 x 2 mosaics of the batch at half scale.

    Example `i`, when chosen (probability `share`, keyed by its seed alone), becomes the
    images `i, i+1, i+2, i+3` (modulo the batch size) shrunk to half size (area average) and
    tiled left to right, top to bottom. Face crops then also show figures at the scale of a
    whole illustration shrunk to the model's size, several to a picture, as real pages do.
    The mosaic is built before the sketch and cues are derived, so they follow it.

    Args:
        images_uint8: uint8 `[B, H, W, 3]`, H and W even.
        seeds: int `[B, 2]`, one stateless seed per example.
        share: probability in [0, 1] that an example becomes a mosaic.

    Returns:
        uint8 `[B, H, W, 3]`.
    """
    images_uint8 = tf.convert_to_tensor(images_uint8)
    if images_uint8.dtype != tf.uint8:
        raise ValueError(f"images_uint8: expected uint8, got {images_uint8.dtype.name}")
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share: must be in [0, 1], got {share}")
    if share == 0.0:
        return images_uint8
    shape = tf.shape(images_uint8)
    batch, height, width = shape[0], shape[1], shape[2]
    half = tf.image.resize(tf.cast(images_uint8, tf.float32),
                           tf.stack([height // 2, width // 2]), method="area")
    tiles = tf.gather(half, (tf.range(batch)[:, None] + tf.range(4)[None, :]) % batch)
    top = tf.concat([tiles[:, 0], tiles[:, 1]], axis=2)
    bottom = tf.concat([tiles[:, 2], tiles[:, 3]], axis=2)
    mosaic = tf.cast(tf.round(tf.clip_by_value(tf.concat([top, bottom], axis=1), 0.0, 255.0)),
                     tf.uint8)
    chosen = per_example_uniform(seeds, 1, MOSAIC_STREAM)[:, 0] < share
    return tf.where(chosen[:, None, None, None], mosaic, images_uint8)


def derive_batch(
    images_uint8: tf.Tensor,
    seeds: tf.Tensor,
    cue_masks: CueMaskConfig,
    cue_sigma: float | None = None,
    sketches: SketchConfig = PAPER_SKETCHES,
    cue_style: str = "paper",
) -> dict[str, tf.Tensor]:
    """Derives the training examples of a batch of colour images (see the module docstring).

    Args:
        images_uint8: uint8 `[B, H, W, 3]`, after crop, jitter and flip.
        seeds: int `[B, 2]`, one stateless seed per example; keys its sketch style, line
            jitter, cue mask and cues.
        cue_masks: how cue masks are drawn (`NO_CUES`: none).
        cue_sigma: the cue blur sigma in pixels; None means 20 px per 256 px of image side.
        sketches: the sketch style mix (default: the paper's adaptive threshold only).
        cue_style: `paper` (the image blurred, cut by the cue mask) or `artist`
            (`manga_pix2pix.data.cues.artist_cues`: highlighter layers, flat-colour strokes).

    Returns:
        `{"image", "sketch", "cues", "cue_mask"}`, float32 `[B, H, W, C]`.
    """
    images_uint8 = tf.convert_to_tensor(images_uint8)
    if images_uint8.dtype != tf.uint8:
        raise ValueError(f"images_uint8: expected uint8, got {images_uint8.dtype.name}")
    if images_uint8.shape.rank != 4:
        raise ValueError(f"images_uint8: expected [B, H, W, 3], got {images_uint8.shape}")
    if cue_style not in CUE_STYLES:
        raise ValueError(f"cue_style: must be one of {CUE_STYLES}, got {cue_style!r}")
    shape = tf.shape(images_uint8)
    # Static sizes where known: the masks' coarse distance fields need them.
    height = images_uint8.shape[1] if images_uint8.shape[1] is not None else shape[1]
    width = images_uint8.shape[2] if images_uint8.shape[2] is not None else shape[2]
    image = tf.cast(images_uint8, tf.float32) / 255.0
    if cue_style == "artist":
        cues, mask = artist_cues_batch(images_uint8, seeds, cue_masks, cue_sigma)
    else:
        mask = random_cue_masks(height, width, seeds, cue_masks)
        cues = apply_mask(cue_blur(image, cue_sigma) * 2.0 - 1.0, mask)
    line = styled_sketches(images_uint8, seeds, sketches) * 2.0 - 1.0
    static = images_uint8.shape[:3]
    return {
        "image": tf.ensure_shape(image * 2.0 - 1.0, [*static, 3]),
        "sketch": tf.ensure_shape(line, [*static, 1]),
        "cues": tf.ensure_shape(cues, [*static, 3]),
        "cue_mask": tf.ensure_shape(mask, [*static, 1]),
    }
