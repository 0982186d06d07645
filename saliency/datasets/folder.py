"""A saliency dataset on disk: an image folder and a mask folder paired by file stem."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saliency.datasets.io import list_images
from saliency.errors import UserError
from saliency.images import read_image, read_mask

MASK_FOLDER_NAMES = ("masks", "ground_truth_mask")


@dataclass(frozen=True)
class PairFolder:
    """Images and masks paired by stem; ``stems`` fixes which pairs (a split) and their order."""

    images_dir: Path
    masks_dir: Path
    stems: tuple[str, ...]
    name: str = "folder"

    def __len__(self) -> int:
        return len(self.stems)

    def image_path(self, stem: str) -> Path:
        return self._paths(self.images_dir)[stem]

    def mask_path(self, stem: str) -> Path:
        return self._paths(self.masks_dir)[stem]

    def image(self, stem: str) -> np.ndarray:
        return read_image(self.image_path(stem))

    def mask(self, stem: str) -> np.ndarray:
        return read_mask(self.mask_path(stem))

    def _paths(self, folder: Path) -> dict[str, Path]:
        return _listed(self, folder)


def _listed(owner: object, folder: Path) -> dict[str, Path]:
    """``list_images(folder)``, listed once per (frozen) dataset object and kept on it."""
    cache = owner.__dict__.setdefault("_listing", {})
    if folder not in cache:
        cache[folder] = list_images(folder)
    return cache[folder]


@dataclass(frozen=True)
class ImageFolder:
    """Images without masks (photographs to learn from without labels), by stem; ``stems`` fixes
    which images and their order."""

    images_dir: Path
    stems: tuple[str, ...]
    name: str = "folder"

    def __len__(self) -> int:
        return len(self.stems)

    def image_path(self, stem: str) -> Path:
        return _listed(self, self.images_dir)[stem]

    def image(self, stem: str) -> np.ndarray:
        return read_image(self.image_path(stem))


def open_image_folder(folder: Path, name: str | None = None) -> ImageFolder:
    """The images of ``folder`` (its ``images/`` subfolder when it has one); masks beside them are
    never read. A missing folder, or one without images, is an error naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"image folder {folder} not found; give a folder of .jpg/.png images (or one holding images/)")
    images_dir = folder / "images" if (folder / "images").is_dir() else folder
    stems = tuple(sorted(list_images(images_dir)))
    if not stems:
        raise UserError(f"image folder {images_dir} holds no .jpg or .png images; give a folder of photographs")
    return ImageFolder(images_dir, stems, name or str(folder))


def open_pair_folder(root: Path, stems: list[str] | None = None, name: str = "folder",
                     masks_dir: Path | None = None, images_dir: Path | None = None) -> PairFolder:
    """Open ``root`` holding ``images/`` and ``masks/`` (or ``ground_truth_mask/``), or the given folders.

    Every image needs a mask and every mask an image: a lone file is an error naming it. With
    ``stems`` only those pairs are used (a split).
    """
    root = Path(root)
    images_dir = root / "images" if images_dir is None else Path(images_dir)
    if not images_dir.is_dir():
        raise UserError(f"dataset folder {root}: no images/ folder; expected images/ and masks/ (or ground_truth_mask/)")
    if masks_dir is None:
        masks_dir = next((root / n for n in MASK_FOLDER_NAMES if (root / n).is_dir()), None)
        if masks_dir is None:
            raise UserError(f"dataset folder {root}: no masks/ or ground_truth_mask/ folder beside images/")
    images, masks = list_images(images_dir), list_images(masks_dir)
    if lone := sorted(set(images) - set(masks)):
        raise UserError(f"{images[lone[0]]}: image without a mask in {masks_dir} ({len(lone)} such); "
                        f"add the mask or remove the image")
    if lone := sorted(set(masks) - set(images)):
        raise UserError(f"{masks[lone[0]]}: mask without an image in {images_dir} ({len(lone)} such); "
                        f"add the image or remove the mask")
    available = sorted(images)
    if stems is None:
        stems = available
    elif missing := [s for s in stems if s not in images]:
        raise UserError(f"dataset folder {root}: {len(missing)} pairs of the split are missing (first: {missing[0]})")
    if not stems:
        raise UserError(f"dataset folder {root}: no image/mask pairs found")
    return PairFolder(images_dir, masks_dir, tuple(stems), name)
