"""The pix2pix 70x70 PatchGAN discriminator."""

from __future__ import annotations

import keras
from keras import ops

from manga_pix2pix.models.layers import PACKAGE, TF_BACKEND, DownBlock, conv_init, layer_kernel

if TF_BACKEND:
    from manga_pix2pix.models import matmul_conv


@keras.saving.register_keras_serializable(package=PACKAGE)
class PatchDiscriminator(keras.Model):
    """70x70 PatchGAN: judges each overlapping patch of (condition, image) as real or fake.

    Blocks 64 (no norm) -128-256 with stride 2, then Conv 512 stride 1 and Conv 1 stride 1,
    each after a 1-pixel zero pad: 30x30 logits at 256 px (S/8 - 2 in general).

    Call it on `(condition, image)`: the generator's input and a real or generated image,
    concatenated along channels. To judge several images under one condition (the train
    step's real and generated pair), `judge(condition_features(condition), image)` gives the
    same logits and computes the first convolution's share from the condition only once.

    Args:
        base_filters: filters of the first block (paper: 64).
        norm: `batch` (paper) or `instance`.
        input_channels: channels of the condition (the generator's input).
        image_channels: channels of the image (3).
    """

    def __init__(self, base_filters: int = 64, norm: str = "batch", input_channels: int = 5,
                 image_channels: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.base_filters = base_filters
        self.norm = norm
        self.input_channels = input_channels
        self.image_channels = image_channels
        f = base_filters
        self.blocks = [
            DownBlock(f, norm=None, name="down_0"),
            DownBlock(f * 2, norm=norm, name="down_1"),
            DownBlock(f * 4, norm=norm, name="down_2"),
        ]
        self.pad_1 = keras.layers.ZeroPadding2D(name="pad_1")
        self.block_4 = DownBlock(f * 8, norm=norm, strides=1, padding="valid", name="conv_3")
        self.pad_2 = keras.layers.ZeroPadding2D(name="pad_2")
        self.logits = keras.layers.Conv2D(1, 4, strides=1, kernel_initializer=conv_init(),
                                          name="logits")
        self.out_cast = keras.layers.Activation("linear", dtype="float32", name="float32_logits")

    def build(self, input_shape):
        """Builds from the shape of the concatenated (condition, image) input."""
        if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(
            input_shape[0], (list, tuple)
        ):
            a, b = input_shape
            input_shape = tuple(a[:-1]) + (a[-1] + b[-1],)
        shape = tuple(input_shape)
        for block in self.blocks:
            block.build(shape)
            shape = block.compute_output_shape(shape)
        shape = self.pad_1.compute_output_shape(shape)
        self.block_4.build(shape)
        shape = self.pad_2.compute_output_shape(self.block_4.compute_output_shape(shape))
        self.logits.build(shape)
        self.built = True

    def call(self, inputs, training=None):
        condition, image = inputs
        return self.judge(self.condition_features(condition), image, training=training)

    def _first_conv(self, x, channels: slice):
        """The first block's convolution restricted to some input channels (no activation)."""
        kernel = ops.cast(self.blocks[0].conv.kernel[:, :, channels, :], self.compute_dtype)
        return ops.conv(ops.cast(x, self.compute_dtype), kernel, strides=2, padding="same")

    def condition_features(self, condition):
        """The condition's share of the first convolution, to pass to `judge`."""
        return self._first_conv(condition, slice(0, self.input_channels))

    def judge(self, condition_features, image, training=None):
        """Patch logits of `image` under the condition whose `condition_features` are given.

        The first convolution over the concatenated (condition, image) is the sum of its
        parts over the condition's channels and over the image's, so only the image's part is
        computed here.
        """
        x = condition_features + self._first_conv(image, slice(self.input_channels, None))
        x = self.blocks[0].act(x)
        for block in self.blocks[1:]:
            x = block(x, training=training)
        x = self.block_4(self.pad_1(x), training=training)
        x = self.pad_2(x)
        if TF_BACKEND and matmul_conv.on_cpu():
            # One filter: a matmul over the 16 taps beats the CPU convolution kernel (2-3x).
            logits = matmul_conv.single_filter_conv(x, layer_kernel(self.logits, x))
            logits = logits + ops.cast(self.logits.bias, x.dtype)
        else:
            logits = self.logits(x)
        return self.out_cast(logits)

    def get_config(self):
        return {
            "name": self.name,
            "base_filters": self.base_filters,
            "norm": self.norm,
            "input_channels": self.input_channels,
            "image_channels": self.image_channels,
        }
