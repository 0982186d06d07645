"""U-Net checkpoints and inference: format, sizes, the predict and eval --checkpoint commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from saliency.errors import UserError
from saliency.segmentation.model import build_unet, load_unet, save_unet
from saliency.segmentation.predict import predict_image, to_input


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("unet") / "model.pt"
    save_unet(build_unet("resnet18"), path, "resnet18", {"step": 3})
    return path


def test_checkpoint_round_trip(checkpoint: Path) -> None:
    model, extras = load_unet(checkpoint)
    assert extras["step"] == 3 and extras["encoder"] == "resnet18"
    again = build_unet("resnet18")
    again.load_state_dict(torch.load(checkpoint, weights_only=True)["state_dict"])
    x = torch.zeros(1, 3, 64, 64)
    assert torch.equal(model(x), again.eval()(x))


def test_foreign_or_damaged_checkpoint_is_a_user_error(tmp_path: Path) -> None:
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    for name, message in (("other.pt", "is not a saliency U-Net"), ("broken.pt", "is not a readable U-Net checkpoint"),
                          ("absent.pt", "not found")):
        with pytest.raises(UserError, match=message):
            load_unet(tmp_path / name)


def test_inference_resizes_shorter_side_to_128_and_back(checkpoint: Path) -> None:
    image = np.random.default_rng(0).integers(0, 255, (300, 451, 3), dtype=np.uint8)
    assert to_input(image).shape == (1, 3, 128, 192)
    model, _ = load_unet(checkpoint)
    probability = predict_image(model, image)
    assert probability.shape == (300, 451) and probability.dtype == np.float32
    assert 0 <= probability.min() and probability.max() <= 1


def test_predict_and_eval_checkpoint_commands(run_cli, checkpoint: Path, ecssd_root: Path, tmp_path: Path) -> None:
    subset = tmp_path / "subset"
    for sub, suffix in (("images", ".jpg"), ("masks", ".png")):
        (subset / sub).mkdir(parents=True)
        for stem in ("0501", "0502"):
            source = ecssd_root / ("ground_truth_mask" if sub == "masks" else "images") / f"{stem}{suffix}"
            shutil.copy(source, subset / sub / f"{stem}{suffix}")
    out = tmp_path / "pred"
    result = run_cli("predict", "--checkpoint", checkpoint, "--images", subset / "images", "--out", out)
    assert result.code == 0, result.err
    assert sorted(p.name for p in out.iterdir()) == ["0501.png", "0502.png"]
    result = run_cli("eval", "--checkpoint", checkpoint, "--dataset", subset, "--run", tmp_path / "run")
    assert result.code == 0, result.err
    metrics = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())["metrics"]
    from_folder = run_cli("eval", "--predictions", out, "--dataset", subset, "--output", tmp_path / "f.json")
    assert from_folder.code == 0
    # Scoring a checkpoint is scoring the 8-bit PNGs it writes.
    assert json.loads((tmp_path / "f.json").read_text())["metrics"] == pytest.approx(metrics)
    assert sorted(p.name for p in (tmp_path / "run" / "eval" / "predictions").iterdir()) == ["0501.png", "0502.png"]
