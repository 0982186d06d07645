"""A run whose evaluation dataset is missing: fetched when possible, else scored on held-out
generator samples with their true masks (eval.fallback: generated), else a one-line error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from saliency import generators
from saliency.config import load_config
from saliency.datasets import resolve
from saliency.datasets.heldout import HELDOUT_SAMPLES, evaluation_target
from saliency.errors import UserError
from saliency.generators.toyworld import MASK_THRESHOLD

REPO = Path(__file__).resolve().parents[1]
TOY = {"generator.name": "toyworld", "generator.options": {"dim_z": 32, "resolution": 32}}


def test_missing_dataset_is_replaced_by_held_out_samples_with_true_masks(no_data: Path,
                                                                          tmp_path: Path) -> None:
    cfg = load_config(overrides={**TOY, "eval.fallback": "generated"})
    target = evaluation_target(cfg, tmp_path / "run")
    assert target.stands_in_for == "ecssd/test"
    assert "saliency data ecssd --from DIR" in (target.advice() or "")
    folder = resolve(target.dataset, target.split)
    assert len(folder) == HELDOUT_SAMPLES and folder.stems[0] == "0000"
    # The first pair is the generator's first draw of that stream, and the mask its true object mask.
    world = generators.load("toyworld", dim_z=32, resolution=32)
    image, mask = folder.image("0000"), folder.mask("0000")
    assert image.shape == (32, 32, 3) and mask.shape == (32, 32) and set(np.unique(mask)) <= {0.0, 1.0}
    import torch

    from saliency.seeding import Stream, derive_seed

    rng = torch.Generator().manual_seed(derive_seed(cfg.run.seed, Stream.HELDOUT))
    z = world.sample_z(50, rng)
    classes = world.sample_classes(50, rng)
    with torch.no_grad():
        expected_image = world(z, classes)[0].add(1).mul(127.5).round().clamp(0, 255).permute(1, 2, 0).numpy()
        expected_mask = (world.object_mask(z, classes)[0, 0] > MASK_THRESHOLD).numpy()
    assert np.array_equal(image, expected_image.astype(np.uint8))
    assert np.array_equal(mask > 0.5, expected_mask) and 0 < expected_mask.mean() < 1
    # Written once: a second run reuses the same folder untouched.
    written = (Path(target.dataset) / "recipe.json").stat().st_mtime_ns
    again = evaluation_target(cfg, tmp_path / "run")
    assert again == target and (Path(again.dataset) / "recipe.json").stat().st_mtime_ns == written


def test_missing_dataset_without_fallback_is_one_line_naming_data_from(no_data: Path,
                                                                        tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"saliency data ecssd --from DIR") as raised:
        evaluation_target(load_config(overrides=TOY), tmp_path / "run")
    assert "\n" not in str(raised.value) and not (tmp_path / "run").exists()


def test_a_linked_dataset_is_used_as_it_is(data_root: Path, tmp_path: Path) -> None:
    target = evaluation_target(load_config(overrides={**TOY, "eval.fallback": "generated"}), tmp_path / "run")
    assert (target.dataset, target.split, target.advice()) == ("ecssd", "test", None)
