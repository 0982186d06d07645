"""The mask rule (SPEC.md §4): the one place that turns a latent shift into object masks.

Moving z along the background-removal direction whitens the background and leaves the object, so
the pixels that stay darker than a threshold are the object. Two modes, both here so every stage
(ranking, the synthetic dataset, online U-Net training) draws masks the same way:

- ``intensity`` (paper): ``mask = mean over RGB of G(z + s·h), mapped to [0, 1], < θ`` (θ = 0.95).
- ``diff`` (authors' code): the brightness gain ``mean RGB of G(z + s·h) − mean RGB of G(z − s·h)``,
  normalised per sample to [0, 1] by its own min and max, ``< θ``: pixels that brightened less than
  the most-brightened ones are the object.

``h`` is always normalised to unit length first, so ``s`` is the shift's length in latent space.
Masks are boolean ``(N, H, W)``. The area filter keeps samples whose object covers a sensible
share of the image (paper: within [0.05, 0.5]; the authors' code uses strict inequalities).
"""

from __future__ import annotations

from typing import Callable

import torch

from saliency.generators.base import Generator

THRESHOLD = 0.95
MIN_AREA, MAX_AREA = 0.05, 0.5


def brightness(images: torch.Tensor) -> torch.Tensor:
    """Mean over RGB of ``(N, 3, H, W)`` images in [-1, 1], mapped to [0, 1]: ``(N, H, W)``."""
    return images.mean(1).add(1.0).mul(0.5)


def threshold_masks(shifted_images: torch.Tensor, threshold: float = THRESHOLD) -> torch.Tensor:
    """``intensity`` rule: pixels of the shifted images whose brightness stays below ``threshold``."""
    return brightness(shifted_images) < threshold


def diff_masks(minus_images: torch.Tensor, plus_images: torch.Tensor, threshold: float) -> torch.Tensor:
    """``diff`` rule: pixels whose per-sample normalised brightness gain from ``minus_images`` to
    ``plus_images`` is below ``threshold``. A sample whose gain is flat everywhere has no object."""
    gain = brightness(plus_images) - brightness(minus_images)
    low = gain.amin(dim=(1, 2), keepdim=True)
    span = gain.amax(dim=(1, 2), keepdim=True) - low
    normalised = (gain - low) / span.clamp_min(1e-8)
    return (normalised < threshold) & (span > 1e-8)


def area_fraction(masks: torch.Tensor) -> torch.Tensor:
    """Share of each mask's pixels that are object: ``(N,)`` floats in [0, 1]."""
    return masks.flatten(1).float().mean(1)


def area_filter(masks: torch.Tensor, min_area: float = MIN_AREA, max_area: float = MAX_AREA,
                inclusive: bool = True) -> torch.Tensor:
    """Which samples to keep ``(N,)`` bool: area within [min_area, max_area] (paper), or strictly
    between them with ``inclusive=False`` (authors' code)."""
    area = area_fraction(masks)
    if inclusive:
        return (area >= min_area) & (area <= max_area)
    return (area > min_area) & (area < max_area)


def shift_latents(z: torch.Tensor, direction: torch.Tensor, shift: float) -> torch.Tensor:
    """``z + shift · h / |h|`` for a direction ``(d,)``: ``shift`` is the length of the move."""
    unit = direction.to(z) / direction.norm()
    return z + shift * unit


MaskRule = Callable[[Generator, torch.Tensor, torch.Tensor, torch.Tensor, float, float], torch.Tensor]


def _intensity_rule(generator: Generator, z: torch.Tensor, classes: torch.Tensor, direction: torch.Tensor,
                    shift: float, threshold: float) -> torch.Tensor:
    return threshold_masks(generator(shift_latents(z, direction, shift), classes), threshold)


def _diff_rule(generator: Generator, z: torch.Tensor, classes: torch.Tensor, direction: torch.Tensor,
               shift: float, threshold: float) -> torch.Tensor:
    minus = generator(shift_latents(z, direction, -shift), classes)
    plus = generator(shift_latents(z, direction, shift), classes)
    return diff_masks(minus, plus, threshold)


MASK_MODES: dict[str, MaskRule] = {"intensity": _intensity_rule, "diff": _diff_rule}


@torch.no_grad()
def synthesize_batch(generator: Generator, z: torch.Tensor, classes: torch.Tensor, direction: torch.Tensor,
                     shift: float, mode: str = "intensity",
                     threshold: float = THRESHOLD) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of training pairs: the unshifted images ``G(z, c)`` ``(N, 3, R, R)`` in [-1, 1] and
    their masks ``(N, R, R)`` bool from the shift ``shift`` along ``direction`` ``(d,)``.

    A negative ``shift`` moves the other way (a direction whose minus side whitens). The area filter
    is left to the caller, which decides what to do with the rejected samples.
    """
    if mode not in MASK_MODES:
        raise ValueError(f"unknown mask mode {mode!r}; choose one of {', '.join(MASK_MODES)}")
    images = generator(z, classes)
    masks = MASK_MODES[mode](generator, z, classes, direction, shift, threshold)
    return images, masks
