"""The U-Net's bottleneck convolutions as single matrix multiplications.

Near the bottleneck the generator's 4x4 stride-2 convolutions see a few pixels and up to 8
million weights (1x1 to 16x16 maps with 256-1024 channels). A convolution kernel there spends
its time re-laying out the weights, not multiplying; a matrix multiplication reads them once.
These functions give the same result as `tf.nn.conv2d` / `tf.nn.conv2d_transpose` with
`padding="SAME"`, stride 2 and a 4x4 kernel (up to float rounding), on the layers' own
kernels, so checkpoints and saved models do not change:

- `strided_conv`: gathers each output pixel's 4x4 input window into one row (four slices of
  the padded input folded into 2x2 cells by `space_to_depth`) and multiplies by the kernel
  reshaped to (16 * in, out).
- `transposed_conv`: multiplies each input pixel by the kernel reshaped to (16 * out, in),
  giving its 4x4 block of contributions, then adds the overlapping blocks: each of the four
  output phases (even/odd row, even/odd column) is a sum of four shifted slices, and
  `depth_to_space` interleaves the phases.

`use_matmul` says when it pays: on a CPU (GPUs and TPUs keep their own convolution kernels,
which do not have this problem), for a small, statically known number of positions per step
and a large kernel.

The discriminator's last layer, a 4x4 stride-1 `VALID` convolution to one logit, has the
opposite shape (large maps, one filter, which convolution kernels vectorise badly):
`single_filter_conv` multiplies every pixel by the 16 taps at once, a (channels, 16) matmul,
and adds the 16 shifted tap maps.
"""

from __future__ import annotations

import functools

import tensorflow as tf

#: Largest batch x output positions for which `strided_conv` is used (a 4x4 map at batch 4,
#: 8x8 at batch 1): beyond it the convolution kernel is as fast or faster on CPU.
MAX_CONV_POSITIONS = 64
#: Largest batch x input positions for which `transposed_conv` is used (8x8 at batch 4,
#: 16x16 at batch 1).
MAX_TRANSPOSED_POSITIONS = 256
#: Smallest kernel (in weights) worth it: below, the convolution kernel's overhead is small
#: and it wins (the `small` preset's widest layers have 0.5 M weights, the paper's 4-8 M).
MIN_WEIGHTS = 2**20

# For an output row (or column) of parity p: the (offset into the padded input, kernel tap)
# pairs that add up to it. Output 2m takes input m with tap 1 and input m-1 with tap 3;
# output 2m+1 takes input m+1 with tap 0 and input m with tap 2.
_PHASE_TAPS = {0: ((1, 1), (0, 3)), 1: ((2, 0), (1, 2))}


@functools.cache
def on_cpu() -> bool:
    """True when TensorFlow sees no GPU or TPU (asked once, when a model is first called)."""
    return not (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def use_matmul(shape, kernel_shape, max_positions: int) -> bool:
    """True on a CPU for a static, small input `shape` (batch, height, width, channels) and
    a large kernel: a few positions and at least `MIN_WEIGHTS` weights."""
    if len(shape) != 4 or any(d is None for d in shape[:3]) or not on_cpu():
        return False
    weights = 1
    for d in kernel_shape:
        weights *= d
    return shape[0] * shape[1] * shape[2] <= max_positions and weights >= MIN_WEIGHTS


def _same_padding(size: int) -> tuple[int, int, int]:
    """Output size and padding before/after of a 4x4 stride-2 `SAME` convolution."""
    out = -(-size // 2)
    total = max((out - 1) * 2 + 4 - size, 0)
    return out, total // 2, total - total // 2


def strided_conv(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """`tf.nn.conv2d(x, kernel, 2, "SAME")` for a (4, 4, in, out) kernel, as one matmul."""
    _, height, width, channels = x.shape
    out_h, top, bottom = _same_padding(height)
    out_w, left, right = _same_padding(width)
    # The padded input is 2 * out + 2 on each side: 2x2 cells, each window 2x2 cells.
    cells = tf.nn.space_to_depth(tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]]), 2)
    windows = tf.concat([cells[:, i:i + out_h, j:j + out_w, :] for i in (0, 1) for j in (0, 1)],
                        axis=-1)
    # Channels come as (cell row, cell col, row in cell, col in cell, channel); the kernel's
    # rows are (tap row, tap col, channel) = (cell row, row in cell, cell col, col in cell, ...).
    windows = tf.reshape(windows, [-1, 2, 2, 2, 2 * channels])
    windows = tf.reshape(tf.transpose(windows, [0, 1, 3, 2, 4]), [-1, 16 * channels])
    filters = kernel.shape[-1]
    y = tf.matmul(windows, tf.reshape(kernel, [16 * channels, filters]))
    return tf.reshape(y, [-1, out_h, out_w, filters])


def transposed_conv(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """`tf.nn.conv2d_transpose` to twice the size, `SAME`, for a (4, 4, out, in) kernel."""
    _, height, width, channels = x.shape
    filters = kernel.shape[2]
    # Each input pixel's 4x4 block of contributions, channels ordered (tap row, tap col, out).
    blocks = tf.matmul(tf.reshape(x, [-1, channels]),
                       tf.reshape(kernel, [16 * filters, channels]), transpose_b=True)
    blocks = tf.reshape(blocks, [-1, height, width, 16 * filters])
    # One tensor per tap (split, not channel slices: the gradient is then one concat instead
    # of 16 zero-filled tensors of the full size).
    taps = tf.split(tf.pad(blocks, [[0, 0], [1, 1], [1, 1], [0, 0]]), 16, axis=-1)

    def tap(row_offset, row_tap, col_offset, col_tap):
        return taps[row_tap * 4 + col_tap][:, row_offset:row_offset + height,
                                           col_offset:col_offset + width, :]

    phases = [
        tf.add_n([tap(ro, rt, co, ct) for ro, rt in _PHASE_TAPS[a] for co, ct in _PHASE_TAPS[b]])
        for a in (0, 1) for b in (0, 1)
    ]
    # depth_to_space puts channel block (a * 2 + b) at output pixel (2m + a, 2n + b).
    return tf.nn.depth_to_space(tf.concat(phases, axis=-1), 2)


def single_filter_conv(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """`tf.nn.conv2d(x, kernel, 1, "VALID")` for a (4, 4, in, 1) kernel, as one matmul."""
    channels = kernel.shape[2]
    shape = tf.shape(x)
    out_h, out_w = shape[1] - 3, shape[2] - 3
    # taps[4 * i + j]: each pixel's product with kernel tap (i, j).
    taps = tf.matmul(tf.reshape(x, [-1, channels]), tf.reshape(kernel, [16, channels]),
                     transpose_b=True)
    taps = tf.split(tf.reshape(taps, tf.concat([shape[:3], [16]], axis=0)), 16, axis=-1)
    return tf.add_n([taps[4 * i + j][:, i:i + out_h, j:j + out_w, :]
                     for i in range(4) for j in range(4)])
