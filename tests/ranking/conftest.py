"""Shared pieces of the ranking tests: toyworld, its true directions mixed with random ones, and a
run folder holding them as ``discover/directions.pt``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from saliency.discovery.artifacts import DIRECTIONS_FILE, Directions, save_directions
from saliency.generators import load
from saliency.generators.toyworld import ToyWorld


@pytest.fixture(scope="session")
def world() -> ToyWorld:
    return load("toyworld")


def unit_columns(matrix: torch.Tensor) -> torch.Tensor:
    return matrix / matrix.norm(dim=0, keepdim=True)


def inactive_direction(world: ToyWorld) -> torch.Tensor:
    """A unit direction orthogonal to every factor: it changes no pixel of a toyworld image."""
    factors = world.factor_directions
    candidate = torch.randn(world.dim_z, generator=torch.Generator().manual_seed(7))
    candidate = candidate - factors @ (factors.T @ candidate)
    return candidate / candidate.norm()


def mixed_directions(world: ToyWorld, random: int = 17, seed: int = 5) -> tuple[torch.Tensor, int]:
    """The 15 true factor directions and ``random`` random unit directions, shuffled: ``(d, K)`` and
    the column holding the background-whiteness direction."""
    rng = torch.Generator().manual_seed(seed)
    extra = unit_columns(torch.randn(world.dim_z, random, generator=rng))
    matrix = torch.cat([world.factor_directions, extra], dim=1)
    order = torch.randperm(matrix.shape[1], generator=rng)
    background = world.factor_names.index("bg_white")
    return matrix[:, order].contiguous(), int((order == background).nonzero())


def write_directions(run_dir: Path, matrix: torch.Tensor, generator: str = "toyworld") -> Path:
    path = run_dir / "discover" / DIRECTIONS_FILE
    save_directions(path, Directions(unit_columns(matrix), method="test", deformator="fixed", generator=generator))
    return path


def write_config(path: Path, **rank: object) -> Path:
    """A pipeline YAML for toyworld with generated real images and the given ``rank`` settings."""
    settings = {"real": "generated", **rank}
    body = ", ".join(f"{key}: {value}" for key, value in settings.items())
    path.write_text(f"generator: {{name: toyworld}}\nrank: {{{body}}}\n")
    return path
