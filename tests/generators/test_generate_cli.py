"""`saliency generate`: a grid for the toy world, and the one-line error for missing weights offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from saliency import generators
from saliency.generators.base import as_torch_generator


def test_toyworld_grid(run_cli, tmp_path: Path) -> None:
    """Four 64 px samples of seed 1 in a 2 × 2 grid (2 px grey separators), their true masks in a
    second grid beside it; the first tile is the generator's first sample, to 8-bit rounding."""
    out = tmp_path / "grid.png"
    result = run_cli("generate", "--generator", "toyworld", "--n", "4", "--seed", "1", "--out", out)
    assert result.code == 0, result.err
    grid = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert grid.shape == (134, 2 * 134, 3)
    toy = generators.load("toyworld")
    rng = as_torch_generator(1)
    z, classes = toy.sample_z(4, rng), toy.sample_classes(4, rng)
    with torch.no_grad():
        first = toy(z, classes)[0].add(1).div(2).clamp(0, 1).mul(255).permute(1, 2, 0).numpy()
        mask = toy.object_mask(z, classes)[0, 0].mul(255).numpy()
    assert np.abs(grid[2:66, 2:66] - first).max() <= 1
    assert np.abs(grid[2:66, 136:200, 0] - mask).max() <= 1


@pytest.mark.parametrize("name, file", [("biggan-128", "G_ema.pth"), ("biggan-deep-128", "pytorch_model.bin")])
def test_missing_weights_offline_exit_2(run_cli, tmp_path: Path, monkeypatch, name: str, file: str) -> None:
    monkeypatch.setenv("SALIENCY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SALIENCY_OFFLINE", "1")
    result = run_cli("generate", "--generator", name, "--out", tmp_path / "g.png")
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err
    assert f"put {file} at {tmp_path / 'cache' / name / file}" in lines[0] and "--weights" in lines[0]
    assert not (tmp_path / "g.png").exists()
