"""The pix2pix building blocks: a strided down block and a transposed up block.

Both use the paper's N(0, 0.02) weight initialisation and no conv bias (a norm follows).
"""

from __future__ import annotations

import keras

PACKAGE = "manga_pix2pix"


def conv_init() -> keras.initializers.Initializer:
    """The paper's weight initialisation."""
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


def make_norm(norm: str | None, name: str) -> keras.layers.Layer | None:
    """A batch norm, an instance norm (per-sample, per-channel) or nothing."""
    if norm is None:
        return None
    if norm == "batch":
        return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3, name=name)
    if norm == "instance":
        return keras.layers.GroupNormalization(groups=-1, epsilon=1e-5, name=name)
    raise ValueError(f"norm: must be 'batch', 'instance' or None, got {norm!r}")


@keras.saving.register_keras_serializable(package=PACKAGE)
class DownBlock(keras.layers.Layer):
    """Conv 4x4 stride 2 -> optional norm -> LeakyReLU(0.2): halves the spatial size.

    Args:
        filters: output channels.
        norm: `batch`, `instance` or None (the first generator and discriminator block).
        strides: 2 (down-sampling) or 1 (the discriminator's last blocks use padding instead).
        padding: `same` or `valid`.
    """

    def __init__(self, filters: int, norm: str | None = "batch", strides: int = 2,
                 padding: str = "same", **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.norm = norm
        self.strides = strides
        self.padding = padding
        self.conv = keras.layers.Conv2D(
            filters, 4, strides=strides, padding=padding, use_bias=False,
            kernel_initializer=conv_init(), name="conv",
        )
        self.norm_layer = make_norm(norm, "norm")
        self.act = keras.layers.LeakyReLU(negative_slope=0.2, name="act")

    def build(self, input_shape):
        self.conv.build(input_shape)
        out_shape = self.conv.compute_output_shape(input_shape)
        if self.norm_layer is not None:
            self.norm_layer.build(out_shape)
        self.built = True

    def call(self, x, training=None):
        x = self.conv(x)
        if self.norm_layer is not None:
            x = self.norm_layer(x, training=training)
        return self.act(x)

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, norm=self.norm, strides=self.strides,
                      padding=self.padding)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class UpBlock(keras.layers.Layer):
    """ConvTranspose 4x4 stride 2 -> norm -> optional dropout -> ReLU: doubles the size.

    Args:
        filters: output channels.
        norm: `batch` or `instance` (None for no norm).
        dropout: dropout rate (0 for none); the paper uses 0.5 on the first three blocks.
    """

    def __init__(self, filters: int, norm: str | None = "batch", dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.norm = norm
        self.dropout = dropout
        self.conv = keras.layers.Conv2DTranspose(
            filters, 4, strides=2, padding="same", use_bias=False,
            kernel_initializer=conv_init(), name="conv",
        )
        self.norm_layer = make_norm(norm, "norm")
        self.drop = keras.layers.Dropout(dropout, name="dropout") if dropout > 0 else None
        self.act = keras.layers.ReLU(name="act")

    def build(self, input_shape):
        self.conv.build(input_shape)
        out_shape = self.conv.compute_output_shape(input_shape)
        if self.norm_layer is not None:
            self.norm_layer.build(out_shape)
        self.built = True

    def call(self, x, training=None):
        x = self.conv(x)
        if self.norm_layer is not None:
            x = self.norm_layer(x, training=training)
        if self.drop is not None:
            x = self.drop(x, training=training)
        return self.act(x)

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, norm=self.norm, dropout=self.dropout)
        return config
