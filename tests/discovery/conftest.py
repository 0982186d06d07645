"""Fixtures of the discovery tests: a generator with a known first layer, and small toyworld runs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import pytest
import torch

from saliency.config import Config, load_config
from saliency.generators.base import Generator


class LinearGenerator(Generator):
    """Images tanh(P·W z): the first layer W (out×d) is given, so closed-form answers are known."""

    def __init__(self, weight: torch.Tensor, resolution: int = 8, seed: int = 0) -> None:
        super().__init__()
        self.dim_z = weight.shape[1]
        self.n_classes = 0
        self.class_names = []
        self.resolution = resolution
        self.register_buffer("weight", weight.float())
        rng = torch.Generator().manual_seed(seed)
        projection = torch.randn(3 * resolution * resolution, weight.shape[0], generator=rng)
        self.register_buffer("projection", projection / math.sqrt(weight.shape[0]))

    def forward(self, z: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        images = torch.tanh(self.early_features(z) @ self.projection.T)
        return images.view(-1, 3, self.resolution, self.resolution)

    def first_layer_weight(self) -> torch.Tensor:
        return self.weight

    def early_features(self, z: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        return z @ self.weight.T


def orthogonal(n: int, seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


@pytest.fixture
def known_layer() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """W = U diag(s) Vᵀ (10×6) with distinct singular values s; returns (W, s, V)."""
    u = orthogonal(10, seed=1)[:, :6]
    v = orthogonal(6, seed=2)
    s = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.5, 1.0], dtype=torch.float64)
    return (u * s) @ v.T, s, v


@pytest.fixture
def linear_generator(known_layer) -> LinearGenerator:
    return LinearGenerator(known_layer[0]).eval()


def _toy_config(**discover: object) -> Config:
    overrides = {"generator.name": "toyworld", "generator.options": {"dim_z": 16, "resolution": 16},
                 "discover.reconstructor": "lenet", "discover.steps": 12, "discover.batch_size": 8,
                 "discover.lr": 1e-3, "discover.checkpoint_every": 5}
    overrides.update({f"discover.{key}": value for key, value in discover.items()})
    return load_config(None, overrides)


@pytest.fixture
def toy_config() -> Callable[..., Config]:
    """``toy_config(**discover)``: a small toyworld run (16-dim, 16 px, lenet, 12 steps of 8) that
    trains in seconds, with ``discover`` settings overridden."""
    return _toy_config


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"
