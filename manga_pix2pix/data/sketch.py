"""The original project's sketch, and its complexity metric, as TensorFlow ops.

The sketch is OpenCV's
`adaptiveThreshold(gray, 255, ADAPTIVE_THRESH_GAUSSIAN_C, THRESH_BINARY, blockSize=7, C=2)`
re-done in TensorFlow so that it runs inside `tf.data.Dataset.map`, eagerly, batched or not,
at any size. It follows OpenCV's integer arithmetic: the fixed-point RGB -> gray conversion,
the 7-tap binomial kernel OpenCV uses when sigma is 0 (8, 28, 56, 72, 56, 28, 8) / 256,
replicated borders, and rounding of the local mean to an integer.

Value ranges:
    input image: `uint8` RGB (or one gray channel) in [0, 255], or a float RGB in [0, 1];
        shape `[..., H, W, C]`.
    sketch: `uint8`, one channel, 0 (line) or 255 (paper); shape `[..., H, W, 1]`.
    complexity: `float32` percent of line (0) pixels, in [0, 100]; shape `[...]`.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

BLOCK_SIZE = 7
THRESHOLD_C = 2
#: OpenCV's kernel for a 7-tap Gaussian with sigma <= 0, in 1/256 units (sums to 256).
_KERNEL_7 = (8.0, 28.0, 56.0, 72.0, 56.0, 28.0, 8.0)


def to_uint8(image: tf.Tensor) -> tf.Tensor:
    """Converts a float image in [0, 1] to uint8 (rounded); passes uint8 through."""
    image = tf.convert_to_tensor(image)
    if image.dtype == tf.uint8:
        return image
    scaled = tf.clip_by_value(tf.cast(image, tf.float32), 0.0, 1.0) * 255.0
    return tf.cast(tf.round(scaled), tf.uint8)


def to_gray(image: tf.Tensor) -> tf.Tensor:
    """RGB -> gray exactly as OpenCV's `COLOR_RGB2GRAY` on uint8; int32 `[..., H, W, 1]`."""
    image = tf.cast(to_uint8(image), tf.int32)
    if image.shape[-1] == 1:
        return image
    r, g, b = image[..., 0:1], image[..., 1:2], image[..., 2:3]
    return tf.bitwise.right_shift(r * 4899 + g * 9617 + b * 1868 + 8192, 14)


def _replicate_pad(x: tf.Tensor, pad: int, axis: int) -> tf.Tensor:
    size = tf.shape(x)[axis]
    index = tf.clip_by_value(tf.range(-pad, size + pad), 0, size - 1)
    return tf.gather(x, index, axis=axis)


def _local_mean(gray: tf.Tensor) -> tf.Tensor:
    """OpenCV's bit-exact 7x7 Gaussian mean of an int gray image `[N, H, W, 1]`, as int32."""
    x = tf.cast(gray, tf.float32)
    pad = BLOCK_SIZE // 2
    x = _replicate_pad(_replicate_pad(x, pad, 1), pad, 2)
    k = tf.constant(_KERNEL_7, tf.float32)
    # Integer sums below 2**24 are exact in float32: 255 * 256 * 256 < 2**24.
    x = tf.nn.conv2d(x, tf.reshape(k, [1, BLOCK_SIZE, 1, 1]), 1, "VALID")
    x = tf.nn.conv2d(x, tf.reshape(k, [BLOCK_SIZE, 1, 1, 1]), 1, "VALID")
    return tf.bitwise.right_shift(tf.cast(x, tf.int32) + 32768, 16)


def sketch(image: tf.Tensor) -> tf.Tensor:
    """The binary sketch of a colour image (see the module docstring for ranges and shapes)."""
    image = tf.convert_to_tensor(image)
    gray = to_gray(image)
    batched = gray.shape.rank == 4
    if not batched:
        gray = gray[None]
    mean = _local_mean(gray)
    # OpenCV's THRESH_BINARY with integer C: paper where src - mean > -C.
    paper = (gray - mean) > -THRESHOLD_C
    out = tf.where(paper, tf.constant(255, tf.uint8), tf.constant(0, tf.uint8))
    return out if batched else out[0]


def complexity(binary_sketch: tf.Tensor) -> tf.Tensor:
    """Percent of line pixels in a sketch: `(N - sum(sketch / 255)) / N * 100`."""
    s = tf.cast(tf.convert_to_tensor(binary_sketch), tf.float32) / 255.0
    paper_share = tf.reduce_mean(s, axis=[-3, -2, -1])
    return (1.0 - paper_share) * 100.0


def image_complexity(image: tf.Tensor) -> tf.Tensor:
    """The complexity of a colour image's sketch; shorthand for `complexity(sketch(image))`."""
    return complexity(sketch(image))


# -- Sketch styles closer to an artist's line art --------------------------------------------
#
# The paper's adaptive threshold marks every shading edge and texture as a line; an artist's
# line art is clean, often grey and anti-aliased. Training mixes the adaptive threshold with
# XDoG (clean binary contours, AlacGAN's values) and a soft grey "pencil" style, then jitters
# the lines (thickness, darkness, grey level, noise). These ops work on float sketches in
# [0, 1] (0 line, 1 paper), one channel, `[..., H, W, 1]`, batched or not.

SKETCH_STYLES = ("adaptive", "xdog", "pencil")
#: AlacGAN's XDoG values: one sigma of these per example, k, gamma, phi, epsilon.
XDOG_SIGMAS = (0.3, 0.4, 0.5)
XDOG_K = 4.5
XDOG_GAMMA = 0.95
XDOG_PHI = 1e9
XDOG_EPSILON = -0.1


def gaussian_kernel_1d(sigma: float) -> tf.Tensor:
    """OpenCV's float Gaussian kernel for `sigma` (size `round(8 sigma + 1) | 1`), float32."""
    size = int(round(sigma * 8 + 1)) | 1
    x = tf.range(size, dtype=tf.float32) - (size - 1) / 2.0
    k = tf.exp(-0.5 * tf.square(x / sigma))
    return k / tf.reduce_sum(k)


def small_blur(gray: tf.Tensor, sigma: float) -> tf.Tensor:
    """`cv2.GaussianBlur(gray, (0, 0), sigma)` of float `[N, H, W, 1]` (reflect-101 borders)."""
    k = gaussian_kernel_1d(sigma)
    pad = (int(k.shape[0]) - 1) // 2
    x = tf.pad(gray, [[0, 0], [pad, pad], [0, 0], [0, 0]], mode="REFLECT")
    x = tf.nn.conv2d(x, tf.reshape(k, [-1, 1, 1, 1]), 1, "VALID")
    x = tf.pad(x, [[0, 0], [0, 0], [pad, pad], [0, 0]], mode="REFLECT")
    return tf.nn.conv2d(x, tf.reshape(k, [1, -1, 1, 1]), 1, "VALID")


def _gray01(image: tf.Tensor) -> tuple[tf.Tensor, bool]:
    """Gray in [0, 1], batched `[N, H, W, 1]`, and whether the input was batched."""
    gray = tf.cast(to_gray(image), tf.float32) / 255.0
    batched = gray.shape.rank == 4
    return (gray if batched else gray[None]), batched


def xdog(
    image: tf.Tensor,
    sigma: float = 0.5,
    k: float = XDOG_K,
    gamma: float = XDOG_GAMMA,
    phi: float = XDOG_PHI,
    epsilon: float = XDOG_EPSILON,
) -> tf.Tensor:
    """The binarised XDoG sketch of a colour image: float 0 (line) / 1 (paper) `[..., H, W, 1]`.

    Winnemoeller's extended difference of Gaussians on the gray image `g` in [0, 1]:
    `u = G_sigma(g) - gamma G_{k sigma}(g)`, then `1` where `u >= epsilon`, else
    `1 + tanh(phi (u - epsilon))`; with AlacGAN's `phi = 1e9` that is already binary, and the
    result is thresholded at 0.5 so that it is exactly 0 or 1.
    """
    gray, batched = _gray01(image)
    u = small_blur(gray, sigma) - gamma * small_blur(gray, k * sigma)
    soft = tf.where(u >= epsilon, 1.0, 1.0 + tf.tanh(phi * (u - epsilon)))
    out = tf.cast(soft >= 0.5, tf.float32)
    return out if batched else out[0]


def pencil(image: tf.Tensor, sigma: float | None = None, floor: float = 0.6) -> tf.Tensor:
    """A soft grey pencil sketch: the gray image divided by its local mean ("colour dodge").

    Edges darker than their surroundings become grey, anti-aliased strokes; flat areas, dark
    or light, become paper. Levels then stretch `[floor, 1]` to `[0, 1]` so that the strokes
    are as dark as drawn lines.

    Args:
        image: uint8 or [0, 1] float RGB (or gray), `[..., H, W, C]`.
        sigma: the local mean's Gaussian sigma in pixels; default 1.5 px per 128 px of side.
        floor: the dodge value mapped to black.

    Returns:
        float32 in [0, 1], `[..., H, W, 1]`, 1 on paper.
    """
    gray, batched = _gray01(image)
    if sigma is None:
        side = gray.shape[1] or 128
        sigma = max(1.5 * min(gray.shape[1] or side, gray.shape[2] or side) / 128.0, 0.8)
    dodge = tf.clip_by_value(gray / tf.maximum(small_blur(gray, sigma), 1e-3), 0.0, 1.0)
    out = tf.clip_by_value((dodge - floor) / (1.0 - floor), 0.0, 1.0)
    return out if batched else out[0]


def adaptive(image: tf.Tensor) -> tf.Tensor:
    """The paper's sketch as a float 0 (line) / 1 (paper) sketch, `[..., H, W, 1]`."""
    return tf.cast(sketch(image), tf.float32) / 255.0


def line_share(sketch01: tf.Tensor) -> tf.Tensor:
    """Share of line pixels (below 0.5) of a float sketch, `[...]`, in [0, 1]."""
    return tf.reduce_mean(tf.cast(sketch01 < 0.5, tf.float32), axis=[-3, -2, -1])


def augment_lines(sketch01: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Random line thickness, darkness, grey level and noise on a float sketch `[H, W, 1]`.

    Thickness: a third of the time thicker (3x3 erosion of the paper), a third thinner and
    lighter (half-way to a 3x3 dilation), else unchanged. Darkness: `x r + 1 - r`, r in
    [0.7, 1]. Grey level: `x ** g`, g in [0.7, 1.4]. Noise: Gaussian, sd up to 0.03.
    Deterministic for a stateless `seed` `[2]`; output in [0, 1].
    """
    seeds = tf.random.experimental.stateless_split(seed, 5)
    x = sketch01[None]
    u = tf.random.stateless_uniform([], seeds[0])
    thick = -tf.nn.max_pool2d(-x, 3, 1, "SAME")
    thin = 0.5 * (x + tf.nn.max_pool2d(x, 3, 1, "SAME"))
    x = tf.where(u < 1 / 3, thick, tf.where(u < 2 / 3, thin, x))[0]
    r = tf.random.stateless_uniform([], seeds[1], 0.7, 1.0)
    x = x * r + 1.0 - r
    g = tf.random.stateless_uniform([], seeds[2], 0.7, 1.4)
    x = tf.pow(tf.maximum(x, 0.0), g)
    sd = tf.random.stateless_uniform([], seeds[3], 0.0, 0.03)
    x = x + sd * tf.random.stateless_normal(tf.shape(x), seeds[4])
    return tf.clip_by_value(x, 0.0, 1.0)


@dataclass(frozen=True)
class SketchConfig:
    """Which sketch style each training example gets, and how its lines are jittered.

    Attributes:
        p_adaptive: probability of the paper's adaptive threshold.
        p_xdog: probability of XDoG (its sigma drawn from `XDOG_SIGMAS`).
        p_pencil: probability of the soft grey pencil style.
        augment: jitter the lines (`augment_lines`).
        min_share, max_share: a sketch with fewer or more line pixels than these shares is
            rejected and replaced by the adaptive threshold (XDoG of a flat image can be
            empty; pencil of a busy one can be a grey mess).
    """

    p_adaptive: float = 1.0
    p_xdog: float = 0.0
    p_pencil: float = 0.0
    augment: bool = False
    min_share: float = 0.01
    max_share: float = 0.4

    def __post_init__(self):
        probs = (self.p_adaptive, self.p_xdog, self.p_pencil)
        if min(probs) < 0 or abs(sum(probs) - 1.0) > 1e-6:
            raise ValueError(
                f"p_adaptive, p_xdog, p_pencil: must be non-negative and sum to 1, got {probs}"
            )

    @classmethod
    def pinned(cls, style: str, augment: bool = False) -> SketchConfig:
        """Always the one `style` (one of `SKETCH_STYLES`)."""
        if style not in SKETCH_STYLES:
            raise ValueError(f"style: must be one of {SKETCH_STYLES}, got {style!r}")
        probs = {s: float(s == style) for s in SKETCH_STYLES}
        return cls(probs["adaptive"], probs["xdog"], probs["pencil"], augment=augment)


#: The paper's sketches only.
PAPER_SKETCHES = SketchConfig()


def styled_sketch(image: tf.Tensor, seed: tf.Tensor, config: SketchConfig) -> tf.Tensor:
    """A training sketch of one colour image in a style drawn from `config`.

    Args:
        image: float RGB in [0, 1] `[H, W, 3]`.
        seed: stateless seed `[2]`; keys the style, the XDoG sigma and the line jitter.
        config: the style mix.

    Returns:
        float32 in [0, 1] `[H, W, 1]`, 0 on lines.
    """
    if config == PAPER_SKETCHES:
        return adaptive(image)
    style_seed, sigma_seed, aug_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    u = tf.random.stateless_uniform([], style_seed)
    sigma_index = tf.random.stateless_uniform([], sigma_seed, 0, len(XDOG_SIGMAS), tf.int32)

    def xdog_any():
        branches = [lambda s=s: xdog(image, s) for s in XDOG_SIGMAS]
        return tf.switch_case(sigma_index, branches)

    base = adaptive(image)
    out = tf.case(
        [(u < config.p_adaptive, lambda: base),
         (u < config.p_adaptive + config.p_xdog, xdog_any)],
        default=lambda: pencil(image),
    )
    share = line_share(out)
    ok = (share >= config.min_share) & (share <= config.max_share)
    out = tf.where(ok, out, base)
    if config.augment:
        out = augment_lines(out, aug_seed)
    return tf.ensure_shape(out, image.shape[:-1].concatenate([1]))
