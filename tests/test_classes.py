"""Stage 3: top-5 counting and top-fraction selection with known answers, the real ResNet-18
architecture (random weights) on ECSSD images, and the user errors (missing weights, bad ids)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from saliency import classes
from saliency.classes import (
    ChosenClasses,
    ClassifierSpec,
    count_top_classes,
    load_classes,
    run_classes,
    save_classes,
    selection_size,
    top_fraction,
)
from saliency.config import load_config
from saliency.errors import UserError

NUM_CLASSES = 10
# Logits of the fixed classifier, one row per image; an image's top-5 are the columns listed.
TOP5 = [[3, 1, 7, 0, 9], [3, 7, 1, 2, 8], [7, 3, 5, 4, 1], [3, 1, 2, 7, 5]]
# Counts: 3 -> 4, 1 -> 4, 7 -> 4, 2 -> 2, 5 -> 2, 0/9/8/4 -> 1, 6 -> 0 (9 classes predicted).


def fixed_logits() -> torch.Tensor:
    table = torch.zeros(len(TOP5), NUM_CLASSES)
    for row, top in zip(table, TOP5):
        row[top] = torch.tensor([10.0, 9.0, 8.0, 7.0, 6.0])
    return table


class FixedClassifier(nn.Module):
    """Returns row i of a fixed logit table for an image whose pixels all hold the value i."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.zeros(len(TOP5), NUM_CLASSES))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.table[images[:, 0, 0, 0].long()]


def test_selection_size_and_order_are_exact() -> None:
    counts = torch.tensor([0, 5, 3, 5, 0, 1, 1, 2])  # 6 classes predicted
    assert selection_size(counts, 0.25) == 2  # floor(1.5 + 0.5)
    assert top_fraction(counts, 0.25) == [1, 3]  # tie at 5: lower id first
    assert top_fraction(counts, 0.5) == [1, 3, 2]
    assert top_fraction(counts, 1.0) == [1, 3, 2, 7, 5, 6]  # never 0 or 4: never predicted
    assert top_fraction(counts, 0.05) == []  # floor(0.3 + 0.5) = 0


def test_counting_is_exact_on_a_fixed_classifier() -> None:
    model = FixedClassifier()
    model.table.data = fixed_logits()
    batches = iter([torch.full((2, 3, 4, 4), float(i)) + torch.tensor([0.0, 1.0]).view(2, 1, 1, 1) for i in (0, 2)])
    counts = count_top_classes(model, batches, NUM_CLASSES)
    assert counts.tolist() == [1, 4, 2, 4, 1, 2, 0, 4, 1, 1]
    assert top_fraction(counts, 0.25) == [1, 3]  # 9 predicted: floor(2.25 + 0.5) = 2; ties 1, 3, 7 by id


@pytest.fixture
def solid_dataset(tmp_path: Path) -> Path:
    """Four 8×8 images, image i filled with the value i (what FixedClassifier reads)."""
    root = tmp_path / "solid"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(len(TOP5)):
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(root / "images" / f"{i:04d}.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "masks" / f"{i:04d}.png")
    return root


def test_stage_writes_the_exact_selection(solid_dataset: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ClassifierSpec(build=FixedClassifier, weights_url="https://example.invalid/fixed.pth",
                          preprocess=lambda: lambda image: image.float(),
                          categories=tuple(f"class{i}" for i in range(NUM_CLASSES)))
    monkeypatch.setitem(classes.CLASSIFIERS, "resnet18", lambda: spec)
    weights = tmp_path / "fixed.pth"
    torch.save({"table": fixed_logits()}, weights)
    cfg = load_config(None, {"classes.dataset": str(solid_dataset), "classes.split": "all",
                             "classes.classifier_weights": str(weights), "classes.fraction": 0.5,
                             "classes.batch_size": 3})
    metrics = run_classes(cfg, tmp_path / "run", "cpu")
    assert metrics["chosen"] == 5 and metrics["images"] == 4 and metrics["predicted"] == 9
    chosen = load_classes(tmp_path / "run", str(solid_dataset))
    assert chosen.ids == [1, 3, 7, 2, 5]  # floor(4.5 + 0.5) = 5 of the 9 predicted
    assert chosen.counts == [4, 4, 4, 2, 2] and chosen.names == ["class1", "class3", "class7", "class2", "class5"]
    assert chosen.all_counts == [1, 4, 2, 4, 1, 2, 0, 4, 1, 1]
    assert (tmp_path / "run" / "classes" / "classes.png").stat().st_size > 0


def test_real_resnet18_with_random_weights_on_ecssd(run_cli, data_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "few"
    for sub, suffix in (("images", ".jpg"), ("ground_truth_mask", ".png")):
        (folder / sub).mkdir(parents=True)
        for stem in ("0501", "0502", "0503", "0504", "0505", "0506"):
            os.symlink((data_root / "ecssd" / sub / f"{stem}{suffix}").resolve(), folder / sub / f"{stem}{suffix}")
    torch.manual_seed(0)
    model = resnet18().eval()
    weights = tmp_path / "resnet18-random.pth"
    torch.save(model.state_dict(), weights)
    result = run_cli("classes", "--run", tmp_path / "run", "--dataset", folder, "--classifier-weights", weights,
                     "--fraction", "0.25")
    assert result.code == 0, result.err
    saved = json.loads((tmp_path / "run" / "classes" / "classes.json").read_text())
    # The same counts straight from torchvision: its model and its own preprocessing.
    preprocess = ResNet18_Weights.IMAGENET1K_V1.transforms()
    images = torch.stack([preprocess(torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1))
                          for path in sorted((folder / "images").iterdir())])
    with torch.no_grad():
        expected = torch.bincount(model(images).topk(5, dim=1).indices.flatten(), minlength=1000)
    assert saved["all_counts"] == expected.tolist() and sum(saved["all_counts"]) == 30
    assert saved["images"] == 6 and saved["ids"] == top_fraction(expected, 0.25)
    assert saved["names"] == [ResNet18_Weights.IMAGENET1K_V1.meta["categories"][i] for i in saved["ids"]]


def test_missing_weights_offline_is_one_line_naming_the_file(run_cli, data_root: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SALIENCY_OFFLINE", "1")
    result = run_cli("classes", "--run", tmp_path / "run", "--dataset", "ecssd", "--split", "test")
    assert result.code == 2
    expected_path = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(expected_path) in result.err and "--classifier-weights" in result.err
    assert len(result.err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
    # A file in torchvision's cache under the published name must be the published file: its SHA-256
    # starts with the 8 hex digits in that name. Random weights there are refused before use; the
    # same file passed explicitly is the user's own, and used.
    expected_path.parent.mkdir(parents=True)
    torch.save(resnet18().state_dict(), expected_path)
    with pytest.raises(UserError, match="the cached resnet18-f37072fd.pth at .* expected f37072fd; delete it"):
        classes.classifier_weights_path("resnet18", None)
    assert classes.classifier_weights_path("resnet18", expected_path) == expected_path


def test_wrong_state_dict_is_a_user_error(tmp_path: Path) -> None:
    weights = tmp_path / "bad.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, weights)
    with pytest.raises(UserError, match="bad.pth is not a resnet18 classifier checkpoint"):
        classes.load_classifier("resnet18", weights, torch.device("cpu"))


def test_toyworld_classes_without_a_classifier(tmp_path: Path) -> None:
    every = load_config(None, {"generator.name": "toyworld", "classes.select": "all"})
    assert run_classes(every, tmp_path / "all", "cpu")["chosen"] == 8
    chosen = load_classes(tmp_path / "all", "ecssd")
    assert chosen.ids == list(range(8)) and chosen.names[:2] == ["disk", "square"] and chosen.all_counts is None
    listed = load_config(None, {"generator.name": "toyworld", "classes.select": [3, 1]})
    run_classes(listed, tmp_path / "list", "cpu")
    assert load_classes(tmp_path / "list", "ecssd").names == ["star", "square"]
    with pytest.raises(UserError, match="classes.select"):
        run_classes(load_config(None, {"generator.name": "toyworld", "classes.select": [8]}), tmp_path / "bad", "cpu")


def test_classes_for_another_dataset_name_the_command(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"run `saliency classes --run .* --dataset ecssd` first"):
        load_classes(tmp_path, "ecssd")
    save_classes(tmp_path / "classes" / "classes.json",
                 ChosenClasses(dataset="duts", select="all", ids=[0], names=["a"]))
    with pytest.raises(UserError, match="chosen for dataset 'duts', not 'ecssd'.*--dataset ecssd"):
        load_classes(tmp_path, "ecssd")
