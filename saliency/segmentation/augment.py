"""Augmentation of synthetic training pairs (``unet.augment``), with albumentations.

Synthetic images are cleaner than photographs: no sensor noise, no compression, no lens blur,
colours and framing the generator's own. A recipe perturbs each pair so that what the U-Net learns
does not hinge on those differences. Recipes are named (a registry); ``none`` is the paper's
(no augmentation); ``real`` is self-training's, for photographs.
Randomness is per step: sample i of step s draws from its own seed derived
from ``(seed, stream, rank, s)``, so a resumed run augments exactly as the uninterrupted one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from saliency.errors import UserError
from saliency.images import signed_to_uint8, uint8_to_signed

if TYPE_CHECKING:
    import albumentations as A


def _photo(size: int) -> A.Compose:
    """Framing (flip, crop and rescale), colour and light, optics (blur, defocus, downscaling), and
    the sensor and the file (noise, JPEG): what separates a rendered image from a photograph."""
    import albumentations as A  # here, not at the top: 2 s of imports that recipe "none" does not need

    return A.Compose([
        A.HorizontalFlip(p=0.5),
        A.RandomResizedCrop(size=(size, size), scale=(0.5, 1.0), ratio=(0.75, 1.333), p=0.5),
        A.ColorJitter(brightness=(0.7, 1.3), contrast=(0.7, 1.3), saturation=(0.6, 1.4), hue=(-0.05, 0.05), p=0.8),
        A.ToGray(p=0.05),
        A.OneOf([A.GaussianBlur(sigma_limit=(0.3, 1.2)), A.Defocus(radius=(1, 3)),
                 A.Downscale(scale_range=(0.5, 0.9))], p=0.4),
        A.GaussNoise(std_range=(0.01, 0.06), p=0.4),
        A.ImageCompression(quality_range=(40, 95), p=0.4),
    ])


def _real(size: int) -> A.Compose:
    """For photographs with pseudo-masks (self-training): new framings of the same photograph (a
    random resized crop of at least 40 % of it, flips), colour and light, a little blur; the
    photograph already has a sensor's noise and a file's compression."""
    import albumentations as A

    return A.Compose([
        A.HorizontalFlip(p=0.5),
        A.RandomResizedCrop(size=(size, size), scale=(0.4, 1.0), ratio=(0.75, 1.333), p=1.0),
        A.ColorJitter(brightness=(0.7, 1.3), contrast=(0.7, 1.3), saturation=(0.6, 1.4), hue=(-0.05, 0.05), p=0.8),
        A.ToGray(p=0.05),
        A.GaussianBlur(sigma_limit=(0.3, 1.2), p=0.2),
    ])


RECIPES: dict[str, Callable[[int], A.Compose] | None] = {"none": None, "photo": _photo, "real": _real}


class Augmenter:
    """A named recipe for ``size`` px pairs, applied batch by batch with per-sample seeds."""

    def __init__(self, recipe: str, size: int) -> None:
        if recipe not in RECIPES:
            raise UserError(f"unet.augment = {recipe!r} is not known; choose one of {', '.join(RECIPES)}")
        build = RECIPES[recipe]
        self.transform = None if build is None else build(size)

    def __call__(self, images: torch.Tensor, masks: torch.Tensor, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``images`` ``(N, 3, R, R)`` in [-1, 1] and ``masks`` ``(N, R, R)``, augmented on the CPU
        (8-bit, as the recipe's operations expect); seeds from ``rng``."""
        if self.transform is None:
            return images, masks
        seeds = torch.randint(2 ** 31 - 1, (len(images),), generator=rng).tolist()
        pixels = signed_to_uint8(images.detach().cpu()).permute(0, 2, 3, 1)
        arrays, labels = pixels.numpy(), masks.detach().cpu().numpy().astype(np.uint8)
        out_images, out_masks = [], []
        for image, mask, seed in zip(arrays, labels, seeds):
            self.transform.set_random_seed(seed)
            result = self.transform(image=image, mask=mask)
            out_images.append(torch.from_numpy(np.ascontiguousarray(result["image"])))
            out_masks.append(torch.from_numpy(np.ascontiguousarray(result["mask"])))
        augmented = uint8_to_signed(torch.stack(out_images).permute(0, 3, 1, 2))
        return augmented.to(images.device), torch.stack(out_masks).long().to(masks.device)
