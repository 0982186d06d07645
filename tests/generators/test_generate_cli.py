"""`saliency generate`: a grid for the toy world, and the one-line error for missing weights offline."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image


def test_toyworld_grid(run_cli, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    result = run_cli("generate", "--generator", "toyworld", "--n", "4", "--seed", "1", "--out", out)
    assert result.code == 0, result.err
    width, height = Image.open(out).size
    assert width > height  # images with their true masks beside them


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
