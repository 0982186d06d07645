"""Stages 5 and 6 as a pipeline calls them (``run_train_unet``, ``run_eval_checkpoint``): their
artifacts, manifests, the seed they record, and a finished stage skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from saliency.config import load_config
from saliency.datasets import resolve
from saliency.evaluation.stage import read_results, run_eval_checkpoint
from saliency.images import read_gray
from saliency.runs import read_manifest
from saliency.segmentation.model import MODEL_FILE
from saliency.segmentation.train import run_train_unet
from tests.segmentation.test_train import Squares

TINY_UNET = {"unet.arch": "classic", "unet.width": 4, "unet.steps": 6, "unet.batch_size": 4, "unet.lr": 0.005,
             "unet.temperature": 10.0, "unet.checkpoint_every": 3, "unet.eval_every": 3, "unet.eval_images": 2,
             "unet.workers": 0}


@pytest.fixture
def trained(tiny_dataset: Path, tmp_path: Path):
    cfg = load_config(overrides={**TINY_UNET, "eval.dataset": str(tiny_dataset)})
    run_dir = tmp_path / "run"
    return cfg, run_dir, run_train_unet(cfg, run_dir, "cpu", pairs=Squares(size=32, n=16))


def test_train_unet_stage_writes_its_artifacts_and_skips_when_complete(trained) -> None:
    cfg, run_dir, metrics = trained
    stage = run_dir / "unet"
    assert metrics["steps"] == 6 and 0 <= metrics["sample_mae"] <= 1
    for name in (MODEL_FILE, "losses.csv", "curves.png"):
        assert (stage / name).is_file(), name
    assert len((stage / "losses.csv").read_text().splitlines()) == 1 + 6
    manifest = read_manifest(stage)
    assert manifest["status"] == "complete" and manifest["seed"] == cfg.seed_of("unet")
    assert run_train_unet(cfg, run_dir, "cpu", pairs=Squares(size=32, n=16)) == metrics
    assert read_manifest(stage)["ended"] == manifest["ended"]  # skipped, not redone


def test_eval_stage_scores_the_saved_predictions(trained, tiny_dataset: Path) -> None:
    cfg, run_dir, _ = trained
    metrics = run_eval_checkpoint(cfg, run_dir, "cpu")
    results = read_results(run_dir / "eval")
    assert results["images"] == 3 and results["metrics"] == {k: v for k, v in metrics.items() if k != "seconds"}
    # The recorded MAE is that of the saved prediction PNGs (original size) against the masks.
    dataset = resolve(str(tiny_dataset), "test")
    errors = []
    for stem in dataset.stems:
        predicted = read_gray(run_dir / "eval" / "predictions" / f"{stem}.png")
        assert predicted.shape == dataset.mask(stem).shape
        errors.append(np.abs(predicted - dataset.mask(stem)).mean())
    assert metrics["mae"] == pytest.approx(float(np.mean(errors)), abs=1e-6)
    assert run_eval_checkpoint(cfg, run_dir, "cpu") == metrics  # complete: skipped


def _mae_of_saved(folder: Path, dataset) -> float:
    return float(np.mean([np.abs(read_gray(folder / f"{stem}.png") - dataset.mask(stem)).mean() for stem in dataset.stems]))


def test_eval_stage_refines_and_scores_several_datasets_into_one_table(trained, tiny_dataset: Path,
                                                                       tmp_path: Path) -> None:
    """``predict.refine: bilateral-solver`` on two datasets: each dataset's refined and unrefined
    figures are those of its saved PNGs, the second lives in a subfolder, one table lists both, and
    a stage killed after the first dataset scores only the second again."""
    import os
    import shutil

    from saliency.evaluation.stage import TABLE_FILE
    from saliency.runs import MANIFEST, atomic_write_json

    _, run_dir, _ = trained
    other = tmp_path / "other"
    shutil.copytree(tiny_dataset, other)
    cfg = load_config(overrides={**TINY_UNET, "eval.dataset": f"{tiny_dataset},{other}",
                                 "predict.refine": "bilateral-solver"})
    metrics = run_eval_checkpoint(cfg, run_dir, "cpu")
    stage = run_dir / "eval"
    first, second = read_results(stage), read_results(stage / "other")
    assert first["refine"]["name"] == "bilateral-solver" and second["images"] == 3
    assert metrics["unrefined_mae"] == first["unrefined"]["metrics"]["mae"]
    for folder, results in ((stage, first), (stage / "other", second)):
        dataset = resolve(results["dataset"])
        assert results["metrics"]["mae"] == pytest.approx(_mae_of_saved(folder / "refined", dataset), abs=1e-6)
        assert results["unrefined"]["metrics"]["mae"] == pytest.approx(_mae_of_saved(folder / "predictions", dataset),
                                                                       abs=1e-6)
        assert results["metrics"]["mae"] != results["unrefined"]["metrics"]["mae"]
    table = (stage / TABLE_FILE).read_text().splitlines()
    assert len(table) == 2 + 4 and sum("ours + refinement" in line for line in table) == 2

    # Killed after the first dataset: its results stay, only the second is scored again.
    manifest = read_manifest(stage)
    atomic_write_json(stage / MANIFEST, {**manifest, "status": "running"})
    (stage / "other" / "metrics.json").unlink()
    kept = os.stat(stage / "metrics.json").st_mtime_ns
    assert run_eval_checkpoint(cfg, run_dir, "cpu")["mae"] == metrics["mae"]
    assert os.stat(stage / "metrics.json").st_mtime_ns == kept
    assert read_results(stage / "other")["metrics"] == second["metrics"]
