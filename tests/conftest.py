"""Fixtures shared by the test files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def random_model(tmp_path_factory) -> Path:
    """Weights of the bundle's 3D network, seeded at random: a model file that loads, fast."""
    from fetalbiometry.segment3d.segmenter import load_bundle_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    torch.save(load_bundle_model().network.state_dict(), path)
    return path
