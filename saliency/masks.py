"""The mask rules: the one place that turns a latent shift into object masks (docs/method.md §4, §7).

Below every stage that needs them: discovery (`optimize` scores brightness), ranking (the effect
check) and synthesis import this module, so none of them imports another for it.

Moving z along the background direction changes the background and leaves (or lightens) the
object, so comparing the shifted image with a threshold, or with the unshifted image, separates
them. Four rules, each a plain function of image tensors, so every stage (rank's effect check, the
synthetic dataset, online U-Net training) draws masks the same way and each can be checked against
the published computation on the same tensors:

- ``intensity`` (Voynov & Babenko 2020, eq. 2): mean RGB of G(z + h), mapped to [0, 1], ``< θ``;
- ``diff`` (their code): the brightness gain from G(z − h) to G(z + h), normalised per sample to
  [0, 1] by its own min and max, ``< θ``;
- ``lighting`` (Voynov et al. 2021, BigBiGAN): gray(G(z)) < gray(G(z + h)), the pixels the shift
  brightens; gray = 0.2989 R + 0.5870 G + 0.1140 B;
- ``mean_thr`` (their code): gray(G(z + h)) above its per-image mean.

Filters, applied in the authors' order: ``components`` (keep the connected components larger than
0.2 × the largest one) rewrites each mask; the area filter and the ``histogram`` filter (at least
two maxima in the smoothed 12-bin histogram of the shifted image) decide which samples to keep.
Images are ``(N, 3, H, W)`` in [-1, 1], masks ``(N, H, W)`` bool.

``h`` is used as given: a trained direction is a unit column, a published one keeps its stored
length, and the shift multiplies it (:func:`shift_latents`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from saliency.config import SynthConfig
from saliency.generators.base import Generator

THRESHOLD = 0.95
MIN_AREA, MAX_AREA = 0.05, 0.5
GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)
COMPONENT_RATIO = 0.2
HISTOGRAM_BINS, HISTOGRAM_WIDTH, HISTOGRAM_MAXIMA = 12, 3, 2


def brightness(images: torch.Tensor) -> torch.Tensor:
    """Mean over RGB of ``(N, 3, H, W)`` images in [-1, 1], mapped to [0, 1]: ``(N, H, W)``."""
    return images.mean(1).add(1.0).mul(0.5)


def gray(images: torch.Tensor) -> torch.Tensor:
    """Luma ``(N, H, W)`` of ``(N, 3, H, W)`` images, in the images' own range (BigBiGAN code's weights)."""
    red, green, blue = GRAY_WEIGHTS
    return red * images[:, 0] + green * images[:, 1] + blue * images[:, 2]


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


def lighting_masks(original: torch.Tensor, shifted: torch.Tensor) -> torch.Tensor:
    """``lighting`` rule: pixels that the shift makes brighter (gray of ``shifted`` above ``original``'s)."""
    return gray(original) < gray(shifted)


def mean_threshold_masks(shifted: torch.Tensor) -> torch.Tensor:
    """``mean_thr`` rule: pixels of each shifted image brighter (in gray) than that image's mean."""
    luma = gray(shifted)
    return luma > luma.mean(dim=(1, 2), keepdim=True)


def largest_components(masks: torch.Tensor, ratio: float = COMPONENT_RATIO) -> torch.Tensor:
    """Each mask with only its connected components (8-connected) whose area is more than ``ratio``
    times the largest one's; an empty mask stays empty."""
    kept = []
    for mask in masks.cpu().numpy().astype(np.uint8):
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        areas = stats[1:count, cv2.CC_STAT_AREA]
        if len(areas) == 0:
            kept.append(np.zeros(mask.shape, bool))
            continue
        good = np.concatenate([[False], areas / areas.max() > ratio])
        kept.append(good[labels])
    return torch.from_numpy(np.stack(kept)).to(masks.device)


def histogram_maxima_filter(shifted: torch.Tensor) -> torch.Tensor:
    """``(N,)`` bool: keep a sample when the 12-bin histogram of its shifted image over [-1, 1] (all
    channels), smoothed by a width-3 box (zero padded), has at least two local maxima; a bin is a
    maximum when it is >= both neighbours (an end bin: its one neighbour), so plateaus count."""
    counts = torch.stack([torch.histc(image.float(), HISTOGRAM_BINS, -1.0, 1.0) for image in shifted])
    box = torch.ones(1, 1, HISTOGRAM_WIDTH, device=counts.device)
    smooth = F.conv1d(counts.unsqueeze(1), box, padding=HISTOGRAM_WIDTH // 2).squeeze(1)
    edge = torch.ones(len(smooth), 1, dtype=torch.bool, device=smooth.device)
    rises = torch.cat([edge, smooth[:, 1:] >= smooth[:, :-1]], dim=1)
    falls = torch.cat([smooth[:, :-1] >= smooth[:, 1:], edge], dim=1)
    return (rises & falls).sum(1) >= HISTOGRAM_MAXIMA


def area_fraction(masks: torch.Tensor) -> torch.Tensor:
    """Share of each mask's pixels that are object: ``(N,)`` floats in [0, 1]."""
    return masks.flatten(1).float().mean(1)


def area_filter(masks: torch.Tensor, min_area: float | None = MIN_AREA, max_area: float = MAX_AREA,
                inclusive: bool = True) -> torch.Tensor:
    """Which samples to keep ``(N,)`` bool: area within [min_area, max_area] (paper), or strictly
    between them with ``inclusive=False`` (authors' code); ``min_area=None`` sets no lower bound
    (BigBiGAN code: area < max_area only)."""
    area = area_fraction(masks)
    below = area <= max_area if inclusive else area < max_area
    if min_area is None:
        return below
    return below & (area >= min_area if inclusive else area > min_area)


def shift_latents(z: torch.Tensor, direction: torch.Tensor, shift: float) -> torch.Tensor:
    """``z + shift · h`` for a direction ``h`` ``(d,)`` used as given (unit, or at its stored length)."""
    return z + shift * direction.to(z)


# A rule's masks from the unshifted images, the images shifted by +shift and by −shift.
RuleFunction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None, float], torch.Tensor]


def _diff_rule(original: torch.Tensor, plus: torch.Tensor, minus: torch.Tensor | None, threshold: float) -> torch.Tensor:
    """The ``diff`` rule, which needs the images shifted by −shift."""
    if minus is None:
        raise ValueError("mask mode 'diff' needs the images shifted by -shift (minus); pass them")
    return diff_masks(minus, plus, threshold)


MASK_MODES: dict[str, RuleFunction] = {
    "intensity": lambda original, plus, minus, threshold: threshold_masks(plus, threshold),
    "diff": _diff_rule,
    "lighting": lambda original, plus, minus, threshold: lighting_masks(original, plus),
    "mean_thr": lambda original, plus, minus, threshold: mean_threshold_masks(plus),
}
# What each rule expects the direction to do to the background (rank's effect check measures it).
BACKGROUND_EFFECT: dict[str, str] = {"intensity": "whiten", "diff": "whiten", "lighting": "darken",
                                     "mean_thr": "darken"}


@dataclass(frozen=True)
class MaskRule:
    """A mask rule with its filters: everything that decides a sample's mask and whether it is kept."""

    mode: str = "intensity"
    threshold: float = THRESHOLD
    min_area: float | None = MIN_AREA
    max_area: float = MAX_AREA
    inclusive: bool = True
    components: bool = False
    histogram: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MASK_MODES:
            raise ValueError(f"unknown mask mode {self.mode!r}; choose one of {', '.join(MASK_MODES)}")

    @classmethod
    def from_config(cls, options: SynthConfig) -> "MaskRule":
        """The rule of a run's ``synth`` section: rank, synth-dataset and online training all use it."""
        return cls(mode=options.mask_mode, threshold=options.threshold, min_area=options.min_area,
                   max_area=options.max_area, inclusive=options.area_bounds == "inclusive",
                   components=options.components, histogram=options.histogram)

    @property
    def needs_minus(self) -> bool:
        """Whether the rule also looks at G(z − shift·h)."""
        return self.mode == "diff"

    @property
    def background_effect(self) -> str:
        """``whiten`` (the object stays) or ``darken`` (the object lightens) the background."""
        return BACKGROUND_EFFECT[self.mode]

    def masks(self, original: torch.Tensor, plus: torch.Tensor, minus: torch.Tensor | None = None) -> torch.Tensor:
        """Masks ``(N, H, W)`` bool, after the ``components`` post-filter when it is on."""
        masks = MASK_MODES[self.mode](original.float(), plus.float(),
                                      None if minus is None else minus.float(), self.threshold)
        return largest_components(masks) if self.components else masks

    def keep(self, masks: torch.Tensor, plus: torch.Tensor) -> torch.Tensor:
        """``(N,)`` bool: the samples that pass the area filter (and the histogram filter when on)."""
        kept = area_filter(masks, self.min_area, self.max_area, self.inclusive)
        if self.histogram:
            kept &= histogram_maxima_filter(plus.float()).to(kept.device)
        return kept


@dataclass(frozen=True)
class SynthBatch:
    """One batch of samples: the images, the shifted images, their masks and the filters' verdict."""

    images: torch.Tensor
    shifted: torch.Tensor
    masks: torch.Tensor
    keep: torch.Tensor


@torch.no_grad()
def synthesize_batch(generator: Generator, z: torch.Tensor, classes: torch.Tensor, direction: torch.Tensor,
                     shift: float, rule: MaskRule = MaskRule(), images: torch.Tensor | None = None) -> SynthBatch:
    """The images ``G(z, c)`` ``(N, 3, R, R)`` in [-1, 1], ``G(z + shift·h, c)``, their masks and
    which samples the rule's filters keep. A negative ``shift`` moves the other way; ``images`` =
    ``G(z, c)`` when the caller has made them already (several shifts of the same samples).

    The latents still to render (unshifted, shifted, and G(z − shift·h) for ``diff``) go through
    the generator as one batch: one call instead of two or three.
    """
    moves = ([z] if images is None else []) + [shift_latents(z, direction, shift)]
    if rule.needs_minus:
        moves.append(shift_latents(z, direction, -shift))
    outputs = list(generator(torch.cat(moves), classes.repeat(len(moves))).float().chunk(len(moves)))
    if images is None:
        images = outputs.pop(0)
    plus = outputs[0]
    masks = rule.masks(images, plus, outputs[1] if rule.needs_minus else None)
    return SynthBatch(images, plus, masks, rule.keep(masks, plus))
