"""The pix2pix U-Net generator."""

from __future__ import annotations

import math

import keras
from keras import ops

from manga_pix2pix.models.layers import (
    PACKAGE,
    DownBlock,
    UpBlock,
    doubled_shape,
    resize_conv,
    up_conv,
)


def generator_inputs(sketch, cues, cue_mask=None):
    """Concatenates the generator's inputs along channels: sketch, cues and the cue mask.

    All in [-1, 1] (the mask is 0/1); pass `cue_mask=None` for a model built without one.
    """
    parts = [sketch, cues] if cue_mask is None else [sketch, cues, cue_mask]
    return ops.concatenate(parts, axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class UNetGenerator(keras.Model):
    """pix2pix U-Net: log2(image_size) down blocks, mirrored up blocks with skips, tanh output.

    With `image_size=256`, `base_filters=64` this is the paper's generator: down blocks
    64-128-256-512-512-512-512-512 (no norm on the first), up blocks 512-512-512 (dropout)
    -512-256-128-64 with skip concatenations, then a ConvTranspose to 3 channels and tanh.

    Args:
        image_size: training size (a power of two); sets the depth so the bottleneck is 1x1.
            The model runs on any size divisible by 2**depth.
        base_filters: filters of the first block; doubled per block up to 8x.
        norm: `batch` (paper) or `instance`.
        dropout: rate on the first three up blocks.
        input_channels: sketch + cues (+ cue mask) channels.
        output_channels: 3 (RGB).
        uses_cues: False for a model trained without cues (`train --no-cues`); kept in the
            saved config so that inference can refuse cue files such a model never learned.
        upsample: `transpose` (the paper's ConvTranspose 4x4 stride 2 in every up block and
            the output layer) or `resize` (nearest 2x resize then Conv 3x3: no checkerboard).
        line_input: how inference should show line art to this model, `adaptive` (the
            paper's threshold) or `grey` (levelled grey lines); kept in the saved config, as
            it depends on the sketches the model was trained on.
    """

    def __init__(self, image_size: int = 256, base_filters: int = 64, norm: str = "batch",
                 dropout: float = 0.5, input_channels: int = 5, output_channels: int = 3,
                 uses_cues: bool = True, upsample: str = "transpose",
                 line_input: str = "adaptive", **kwargs):
        super().__init__(**kwargs)
        if image_size < 2 or image_size & (image_size - 1):
            raise ValueError(f"image_size: must be a power of two, got {image_size}")
        if norm not in ("batch", "instance"):
            raise ValueError(f"norm: must be 'batch' or 'instance', got {norm!r}")
        self.image_size = image_size
        self.base_filters = base_filters
        self.norm = norm
        self.dropout = dropout
        self.input_channels = input_channels
        self.output_channels = output_channels
        self.uses_cues = uses_cues
        self.upsample = upsample
        if line_input not in ("adaptive", "grey"):
            raise ValueError(f"line_input: must be 'adaptive' or 'grey', got {line_input!r}")
        self.line_input = line_input
        self.depth = int(math.log2(image_size))

        widths = [base_filters * min(2**i, 8) for i in range(self.depth)]
        self.down_blocks = []
        for i, width in enumerate(widths):
            # No norm on the first block (paper); none on a 1x1 bottleneck with instance norm,
            # where it would zero every activation.
            block_norm = None if i == 0 else norm
            if norm == "instance" and i == self.depth - 1:
                block_norm = None
            self.down_blocks.append(DownBlock(width, norm=block_norm, name=f"down_{i}"))
        self.up_blocks = [
            UpBlock(width, norm=norm, dropout=dropout if i < 3 else 0.0, upsample=upsample,
                    name=f"up_{i}")
            for i, width in enumerate(reversed(widths[:-1]))
        ]
        self.last = up_conv(output_channels, upsample, use_bias=True, name="to_rgb")
        # Keep the output in float32 under mixed precision.
        self.out_act = keras.layers.Activation("tanh", dtype="float32", name="tanh")

    def build(self, input_shape):
        shape = tuple(input_shape)
        skips = []
        for block in self.down_blocks:
            block.build(shape)
            shape = tuple(block.compute_output_shape(shape))
            skips.append(shape)
        for block, skip in zip(self.up_blocks, reversed(skips[:-1]), strict=True):
            block.build(shape)
            shape = tuple(block.compute_output_shape(shape))
            shape = shape[:-1] + (shape[-1] + skip[-1],)
        self.last.build(doubled_shape(shape) if self.upsample == "resize" else shape)
        self.built = True

    def call(self, inputs, training=None):
        x = inputs
        skips = []
        for block in self.down_blocks:
            x = block(x, training=training)
            skips.append(x)
        for block, skip in zip(self.up_blocks, reversed(skips[:-1]), strict=True):
            x = block(x, training=training)
            x = ops.concatenate([x, skip], axis=-1)
        if self.upsample == "resize":
            return self.out_act(resize_conv(self.last, x))
        return self.out_act(self.last(x))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.output_channels,)

    def get_config(self):
        return {
            "name": self.name,
            "image_size": self.image_size,
            "base_filters": self.base_filters,
            "norm": self.norm,
            "dropout": self.dropout,
            "input_channels": self.input_channels,
            "output_channels": self.output_channels,
            "uses_cues": self.uses_cues,
            "upsample": self.upsample,
            "line_input": self.line_input,
        }
