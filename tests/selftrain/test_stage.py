"""The self-train stage through the CLI: unlabeled sources, bad input, no images, and the loss it trains with."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from saliency.datasets.registry import resolve, resolve_images
from saliency.errors import UserError
from saliency.images import decode_labels
from saliency.report import build_report
from saliency.runs import MANIFEST
from saliency.segmentation.model import MODEL_FILE, UnetSpec, build_unet, save_unet
from saliency.segmentation.train import IGNORE_LABEL, segmentation_loss
from saliency.selftrain.pairs import PseudoPairs
from saliency.selftrain.pseudo import frame_share, mask_iou


def random_unet_run(run_dir: Path) -> Path:
    """A run folder whose U-Net stage left a (random, width 4) model.pt: what self-train starts from."""
    torch.manual_seed(0)
    spec = UnetSpec(width=4)
    return save_unet(build_unet(spec), run_dir / "unet" / MODEL_FILE, spec, {"resolution": 32})


def few_images(source: Path, into: Path, count: int = 6) -> Path:
    into.mkdir(parents=True)
    for path in sorted(source.glob("*.jpg"))[:count]:
        shutil.copy(path, into / path.name)
    return into


SMALL = ("--steps", "2", "--set", "selftrain.batch_size=2", "--set", "selftrain.min_stability=0",
         "--set", "selftrain.min_area=0", "--set", "selftrain.max_area=1")


def test_unlabeled_images_are_registered_verified_and_never_scored(run_cli, unlabeled_root: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALIENCY_DATA", str(tmp_path / "data"))
    done = run_cli("data", "ecssd-unlabeled", "--from", unlabeled_root)
    assert done.code == 0, done.err
    assert "300 images verified" in done.out and "300 files matched its SHA256SUMS; 0 differ" in done.out
    images = resolve_images("ecssd-unlabeled", "train")
    assert len(images) == 300 and images.stems[0] == "0201" and images.image("0201").ndim == 3
    with pytest.raises(UserError, match="images without masks"):
        resolve("ecssd-unlabeled")
    with pytest.raises(UserError, match="not in .*duts-tr.*saliency data duts-tr"):
        resolve_images("duts-tr", "train")


def test_a_run_without_unlabeled_images_goes_on_without_self_training(run_cli, tmp_path: Path, no_data: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    run_dir = tmp_path / "run"
    random_unet_run(run_dir)
    done = run_cli("self-train", "--run", run_dir, "--images", "duts-tr", "--rounds", "2")
    assert done.code == 0, done.err
    said = [record.getMessage() for record in caplog.records if "no unlabeled images" in record.getMessage()]
    assert len(said) == 1 and "saliency data duts-tr --from DIR" in said[0]
    assert not (run_dir / "selftrain" / MODEL_FILE).exists()
    assert json.loads((run_dir / "selftrain" / MANIFEST).read_text())["metrics"]["rounds"] == 0
    assert (run_dir / "selftrain" / "rounds.csv").read_text().count("\n") == 1  # the header: no round
    caplog.clear()
    again = run_cli("self-train", "--run", run_dir, "--images", "duts-tr", "--rounds", "2")
    assert again.code == 0 and "selftrain: complete with the same config and inputs, skipped" in caplog.text


@pytest.mark.parametrize("case", ["missing", "empty", "not-an-image", "overlap"])
def test_bad_unlabeled_images_exit_2_with_one_line_and_change_nothing(case: str, run_cli, tmp_path: Path,
                                                                     ecssd_root: Path, unlabeled_root: Path,
                                                                     data_root: Path) -> None:
    run_dir = tmp_path / "run"
    model = random_unet_run(run_dir)
    before = model.read_bytes()
    images = tmp_path / "photos"
    named = images
    if case == "empty":
        images.mkdir()
    elif case == "not-an-image":
        few_images(unlabeled_root / "images", images, 2)
        named = images / "0000.jpg"
        named.write_bytes(b"this is not a JPEG")
    elif case == "overlap":
        few_images(ecssd_root / "images", images, 3)  # ECSSD test images: the run is scored on them (eval.dataset)
        named = images / "0501.jpg"
    done = run_cli("self-train", "--run", run_dir, "--images", images, "--rounds", "1", *SMALL)
    assert done.code == 2, (done.out, done.err)
    errors = [line.strip() for line in done.err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("error:") and str(named) in errors[0], done.err
    assert not (run_dir / "selftrain").exists() and model.read_bytes() == before


def test_self_training_writes_rounds_labels_sheets_and_the_handed_on_model(run_cli, tmp_path: Path,
                                                                         unlabeled_root: Path, no_data: Path) -> None:
    run_dir = tmp_path / "run"
    random_unet_run(run_dir)
    photos = few_images(unlabeled_root / "images", tmp_path / "photos")
    done = run_cli("self-train", "--run", run_dir, "--images", photos, "--rounds", "2", *SMALL)
    assert done.code == 0, done.err
    stage = run_dir / "selftrain"
    for index in (1, 2):
        labels = sorted((stage / f"round-{index}" / "labels").glob("*.png"))
        assert [p.stem for p in labels] == sorted(p.stem for p in photos.iterdir())
        assert (stage / f"round-{index}" / "sheet.png").stat().st_size > 1000
        assert (stage / f"round-{index}" / MODEL_FILE).is_file()
    # Labels are stored as classes (0, 1, 255 ignored) and read back as such for training.
    labels = stage / "round-1" / "labels"
    stored = {int(v) for p in labels.glob("*.png") for v in np.unique(decode_labels(p.read_bytes(), str(p)))}
    assert stored <= {0, 1, IGNORE_LABEL}
    pairs = PseudoPairs(resolve_images(str(photos)), labels, [p.stem for p in photos.iterdir()][:2], 32)
    image, label = pairs[0]
    assert image.shape == (3, 32, 32) and -1 <= image.min() and image.max() <= 1
    assert set(label.unique().tolist()) <= {0, 1, IGNORE_LABEL} and label.dtype == torch.long
    rounds = (stage / "rounds.csv").read_text().splitlines()
    assert rounds[0].startswith("round,images,kept,mean_confidence,agreement") and len(rounds) == 3
    assert (stage / MODEL_FILE).read_bytes() == (stage / "round-2" / MODEL_FILE).read_bytes()
    page = build_report(run_dir).read_text()
    assert "Self-training on unlabeled photographs" in page and "round 2: photograph" in page


def test_the_loss_leaves_ignored_pixels_out() -> None:
    logits = torch.randn(2, 2, 4, 4)
    labels = torch.randint(0, 2, (2, 4, 4))
    ignored = labels.clone()
    ignored[:, :2] = IGNORE_LABEL
    expected = torch.nn.functional.cross_entropy(logits[:, :, 2:], labels[:, 2:])
    assert torch.allclose(segmentation_loss(logits, ignored, 1.0), expected)
    assert torch.allclose(segmentation_loss(logits, labels, 1.0), torch.nn.functional.cross_entropy(logits, labels))
    nothing = torch.full_like(labels, IGNORE_LABEL)  # a batch of uncertain pixels only: loss 0, not NaN
    assert segmentation_loss(logits.requires_grad_(), nothing, 1.0).item() == 0.0


def test_mask_agreement_and_frame_share() -> None:
    square = np.zeros((10, 10), bool)
    square[2:6, 2:6] = True
    shifted = np.roll(square, 2, axis=1)
    assert mask_iou(square, shifted) == pytest.approx(8 / 24)
    assert mask_iou(square & False, shifted & False) == 1.0
    assert frame_share(square) == 0.0 and frame_share(np.ones((10, 10), bool)) == 1.0
