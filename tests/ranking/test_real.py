"""Real images for DVN: folders with and without images/, registered datasets, generator samples,
crops with replacement when the pool is small, and errors that name the folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from saliency.errors import UserError
from saliency.generators.toyworld import ToyWorld
from saliency.ranking.real import GENERATED, check_real, folder_images, image_paths, real_folder, real_images


def write_images(folder: Path, count: int, size: tuple[int, int] = (40, 60)) -> list[Path]:
    """``count`` images, image i a left-to-right ramp scaled by i, so crops of one image differ."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        ramp = np.linspace(0, 255, size[1], dtype=np.float32)[None, :, None] * (i + 1) / count
        array = np.broadcast_to(ramp, (*size, 3)).astype(np.uint8)
        paths.append(folder / f"{i:02d}.png")
        Image.fromarray(array).save(paths[-1])
    return paths


def test_small_pool_sampled_with_replacement_and_random_crops(tmp_path: Path) -> None:
    write_images(tmp_path / "plain", 3)
    images = real_images(str(tmp_path / "plain"), 12, 32, torch.Generator().manual_seed(0), generator=None)
    assert images.shape == (12, 3, 32, 32) and images.dtype == torch.uint8
    assert len({tuple(image.flatten().tolist()) for image in images}) == 12  # repeats are cut differently


def test_large_pool_gives_distinct_centre_crops(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "pool", 6)
    images = folder_images(paths, 4, 32, torch.Generator().manual_seed(0))
    # Centre square of a 40×60 ramp: columns 10..50 of 60, each image's ramp scaled by its index.
    means = sorted(images.float().mean(dim=(1, 2, 3)).tolist())
    expected = sorted((255 * 0.5 * (i + 1) / 6) for i in range(6))
    assert all(min(abs(m - e) for e in expected) < 3 for m in means)
    assert len(set(round(m) for m in means)) == 4


def test_folder_with_images_subfolder_and_registered_dataset(tmp_path: Path, data_root: Path) -> None:
    write_images(tmp_path / "dataset" / "images", 2)
    assert real_folder(str(tmp_path / "dataset")) == tmp_path / "dataset" / "images"
    assert len(image_paths(str(tmp_path / "dataset"))) == 2
    assert real_folder("ecssd") == (data_root / "ecssd" / "images")
    assert len(image_paths("ecssd")) >= 500
    assert real_folder(GENERATED) is None


def test_generated_source_is_unshifted_generator_samples(world: ToyWorld) -> None:
    images = real_images(GENERATED, 5, 32, torch.Generator().manual_seed(0), world)
    assert images.shape == (5, 3, 32, 32)
    again = real_images(GENERATED, 5, 32, torch.Generator().manual_seed(0), world)
    assert torch.equal(images, again)


@pytest.mark.parametrize("make, message", [
    (lambda root: root.mkdir() or root, "holds no images"),
    (lambda root: root / "missing", "neither a registered dataset"),
])
def test_unusable_sources_are_user_errors(tmp_path: Path, make, message: str) -> None:
    source = make(tmp_path / "real")
    with pytest.raises(UserError, match=message):
        check_real(str(source))
    check_real(GENERATED)
