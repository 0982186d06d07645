"""The sample grid holds exactly the generator's samples (and toyworld's true masks beside them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from saliency.errors import UserError
from saliency.generators import Generator, as_torch_generator, load
from saliency.generators.preview import write_sample_grid

RES = 16


class Flat(Generator):
    """Unconditional, no masks: each sample one flat grey from its first latent value."""

    dim_z, n_classes, resolution, class_names = 4, 0, RES, []

    def forward(self, z: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        return torch.tanh(z[:, :1, None, None]).expand(-1, 3, RES, RES)


def read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.float32) / 255


def cell(grid: np.ndarray, index: int, nrow: int, x0: int = 0) -> np.ndarray:
    """Sample ``index`` of a make_grid with padding 2, the grid starting at column ``x0``."""
    row, col = divmod(index, nrow)
    top, left = 2 + row * (RES + 2), x0 + 2 + col * (RES + 2)
    return grid[top: top + RES, left: left + RES]


def test_grid_holds_samples_and_true_masks(tmp_path: Path) -> None:
    world = load("toyworld", resolution=RES)
    out = write_sample_grid(world, n=5, seed=7, out=tmp_path / "grid.png")
    grid = read(out)
    width = 3 * (RES + 2) + 2  # 5 samples: 3 per row, 2 rows
    assert grid.shape == (2 * (RES + 2) + 2, 2 * width, 3)
    rng = as_torch_generator(7)
    z = world.sample_z(5, rng)
    classes = world.sample_classes(5, rng)
    with torch.no_grad():
        images = world(z, classes).add(1).div(2).permute(0, 2, 3, 1).numpy()
        masks = world.object_mask(z, classes)[:, 0].numpy()
    for i in range(5):
        np.testing.assert_allclose(cell(grid, i, 3), images[i], atol=1 / 255)
        np.testing.assert_allclose(cell(grid, i, 3, x0=width)[..., 0], masks[i], atol=1 / 255)
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # no temporary file left behind


def test_same_seed_same_file_and_classes_respected(tmp_path: Path) -> None:
    world = load("toyworld", resolution=RES)
    first = write_sample_grid(world, 4, 0, tmp_path / "a.png", classes=[3]).read_bytes()
    assert write_sample_grid(world, 4, 0, tmp_path / "a.png", classes=[3]).read_bytes() == first
    rng = as_torch_generator(0)
    z = world.sample_z(4, rng)
    with torch.no_grad():
        stars = world(z, torch.full((4,), 3)).add(1).div(2).permute(0, 2, 3, 1).numpy()
    grid = read(tmp_path / "a.png")
    for i in range(4):
        np.testing.assert_allclose(cell(grid, i, 2), stars[i], atol=1 / 255)


def test_generator_without_masks_gets_one_grid(tmp_path: Path) -> None:
    grid = read(write_sample_grid(Flat(), 4, 1, tmp_path / "flat.png", truncation=0.5))
    assert grid.shape == (2 * (RES + 2) + 2, 2 * (RES + 2) + 2, 3)
    z = Flat().sample_z(4, as_torch_generator(1), truncation=0.5)
    for i in range(4):
        assert cell(grid, i, 2) == pytest.approx((np.tanh(z[i, 0].item()) + 1) / 2, abs=1 / 255)


def test_bad_requests_are_user_errors(tmp_path: Path) -> None:
    world = load("toyworld", resolution=RES)
    with pytest.raises(UserError, match="--n"):
        write_sample_grid(world, 0, 0, tmp_path / "x.png")
    with pytest.raises(UserError, match="outside 0..7"):
        write_sample_grid(world, 2, 0, tmp_path / "x.png", classes=[8])
    with pytest.raises(UserError, match="unconditional"):
        write_sample_grid(Flat(), 2, 0, tmp_path / "x.png", classes=[0])
    assert not list(tmp_path.iterdir())
