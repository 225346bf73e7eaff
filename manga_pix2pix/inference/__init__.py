"""Inference: colour sketches of any size with a trained generator, and export it."""
