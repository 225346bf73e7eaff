"""The pix2pix networks: `UNetGenerator` and `PatchDiscriminator`."""

from manga_pix2pix.models.discriminator import PatchDiscriminator
from manga_pix2pix.models.generator import UNetGenerator, generator_inputs

__all__ = ["PatchDiscriminator", "UNetGenerator", "generator_inputs", "build_models"]


def build_models(
    model_config, uses_cues: bool = True, line_input: str = "adaptive"
) -> tuple[UNetGenerator, PatchDiscriminator]:
    """Builds both networks (with variables) from a `ModelConfig`.

    `uses_cues=False` marks a generator trained without cues, `line_input` how inference
    shows it line art (see `UNetGenerator`).
    """
    c = model_config
    generator = UNetGenerator(
        image_size=c.image_size,
        base_filters=c.base_filters,
        norm=c.norm,
        dropout=c.dropout,
        input_channels=c.input_channels,
        uses_cues=uses_cues,
        upsample=c.upsample,
        line_input=line_input,
    )
    discriminator = PatchDiscriminator(
        base_filters=c.base_filters, norm=c.norm, input_channels=c.input_channels
    )
    generator.build((None, c.image_size, c.image_size, c.input_channels))
    discriminator.build((None, c.image_size, c.image_size, c.input_channels + 3))
    return generator, discriminator
