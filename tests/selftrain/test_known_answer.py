"""Known answer on toyscene: a deliberately under-trained U-Net, self-trained on held-out generated
images whose true masks it never sees, agrees better with those true masks than before.

Two settings differ from the quickstart's, both because the scenes are not photographs: the
bilateral solver's spatial cell is 4 px (its 16 px suits ~400 px photographs; on these 64 px
scenes it coarsens the pseudo-masks: IoU with the truth 0.50 -> 0.44 for one teacher, while 4 px
raises it to 0.57), and no pixel is ignored (this teacher is unsure nearly everywhere, mean
confidence 0.25-0.40; ignoring below 0.5 leaves two thirds of the pixels out, and the student drifts
there: gains of -0.07 to -0.30).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from saliency import generators
from saliency.config import load_config
from saliency.datasets.heldout import write_heldout
from saliency.generators.toyworld import MASK_THRESHOLD
from saliency.segmentation.model import MODEL_FILE, UnetSpec, build_unet, save_unet
from saliency.segmentation.train import UnetSettings, train_unet

RESOLUTION = 64
TEACHER_STEPS = 40  # the under-training: IoU 0.53-0.64 on the held-out scenes
STUDENT_STEPS = 150
SETTINGS = ("predict.refine_sigma_spatial=4", "selftrain.ignore_below=0", "selftrain.batch_size=16",
            "selftrain.lr=0.001", "unet.temperature=1", "predict.activation=softmax", "predict.flip=true")
# IoU gained on the held-out scenes on the machine that wrote this test, run seeds 0-3: +0.149,
# -0.015, +0.096, +0.103 (mean +0.083). The test takes the first two seeds' mean (+0.067) and asks
# for +0.03: self-training does not help every teacher, it helps on average.
SEEDS = (0, 1)
MIN_MEAN_GAIN = 0.03


def under_trained_unet(run_dir: Path, seed: int) -> Path:
    """A width-8 U-Net trained a few steps on toyscene pairs with their true masks: a detector that
    has the idea and little of the detail, as the synthetic one has on photographs."""
    toy = generators.load("toyscene", dim_z=48, resolution=RESOLUTION)
    rng = torch.Generator().manual_seed(10_000 + seed)
    z, classes = toy.sample_z(256, rng), toy.sample_classes(256, rng)
    with torch.no_grad():
        images = toy(z, classes).float()
        masks = (toy.object_mask(z, classes)[:, 0] > MASK_THRESHOLD).long()
    torch.manual_seed(seed)
    spec = UnetSpec(width=8)
    model = build_unet(spec)
    settings = UnetSettings(steps=TEACHER_STEPS, batch_size=16, lr=1e-3, lr_decay=1.0, lr_step=100, temperature=1.0,
                            seed=seed, checkpoint_every=100, eval_every=100)
    train_unet(model, TensorDataset(images, masks), settings, torch.device("cpu"))
    path = run_dir / "unet" / MODEL_FILE
    save_unet(model, path, spec, {"resolution": RESOLUTION, "activation": "softmax", "offset": 0.0, "flip": True})
    return path


def iou_on(run_cli, checkpoint: Path, dataset: Path, out: Path) -> float:
    done = run_cli("eval", "--checkpoint", checkpoint, "--dataset", dataset, "--metric", "iou", "--output", out)
    assert done.code == 0, done.err
    return float(json.loads(out.read_text())["metrics"]["iou"])


def self_training_gain(run_cli, tmp_path: Path, seed: int) -> tuple[float, float]:
    """IoU against the held-out scenes' true masks before and after a round of self-training on them."""
    run_dir = tmp_path / f"run-{seed}"
    cfg = load_config(None, {"generator.name": "toyscene", "generator.options": {"dim_z": 48, "resolution": RESOLUTION},
                             "run.seed": 100 + seed})
    heldout = write_heldout(cfg, tmp_path / "heldout")
    start = under_trained_unet(run_dir, seed)
    settings = [item for setting in (f"run.seed={seed}", *SETTINGS) for item in ("--set", setting)]
    done = run_cli("self-train", "--run", run_dir, "--images", heldout, "--rounds", "1", "--steps", str(STUDENT_STEPS),
                   *settings)
    assert done.code == 0, done.err
    before = iou_on(run_cli, start, heldout, tmp_path / f"before-{seed}.json")
    after = iou_on(run_cli, run_dir / "selftrain" / MODEL_FILE, heldout, tmp_path / f"after-{seed}.json")
    return before, after


@pytest.mark.slow(minutes=1.5)
def test_self_training_raises_iou_against_masks_it_never_saw(run_cli, tmp_path: Path, no_data: Path) -> None:
    gains = [after - before for before, after in (self_training_gain(run_cli, tmp_path, seed) for seed in SEEDS)]
    assert sum(gains) / len(gains) >= MIN_MEAN_GAIN, gains
