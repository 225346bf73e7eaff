"""manga-pix2pix: colour anime and manga sketches with a pix2pix conditional GAN."""

__version__ = "0.1.0"
