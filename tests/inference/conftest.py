"""Fixtures for the inference tests: tiny generators in run directories and .keras files."""

from __future__ import annotations

import pytest
from inference_helpers import TINY, train_tiny, write_run_dir

from manga_pix2pix.models import build_models


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run directory with an untrained tiny generator (uses cues, with a cue mask)."""
    generator, _ = build_models(TINY)
    return write_run_dir(tmp_path_factory.mktemp("tiny_run"), generator)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A run directory with a tiny generator trained briefly (see `train_tiny`)."""
    return write_run_dir(tmp_path_factory.mktemp("trained_run"), train_tiny())


@pytest.fixture(scope="session")
def cue_free_keras(tmp_path_factory):
    """A .keras file of a generator trained without cues (`uses_cues=False`)."""
    generator, _ = build_models(TINY, uses_cues=False)
    path = tmp_path_factory.mktemp("cue_free") / "cue_free.keras"
    generator.save(path)
    return path
