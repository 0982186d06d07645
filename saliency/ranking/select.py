"""The automatic choice of the background-removal direction, sign and shift magnitude.

DVN alone does not single out the background direction (mixtures of factors score as high), so the
best directions by DVN are tested for the effect itself. Each candidate (direction k, sign σ,
magnitude s) moves M latents by σ·s·h_k/|h_k| and draws masks with the SPEC.md §4 threshold rule
(:mod:`saliency.synthesis.masks`). Four measures, each in [0, 1]:

- ``passing``: share of samples whose mask area passes the area filter (an object, not nothing or
  everything);
- ``whitening``: outside the mask, the brightness gained as a share of what could be gained,
  Σ(B₁ − B₀) / Σ(1 − B₀) over the passing samples (B = mean RGB in [0, 1]; 0 = unshifted, 1 = shifted);
- ``stillness``: 1 − the mean absolute colour change inside the mask over the passing samples (the
  object must stay as it was);
- ``agreement``: mean IoU of each sample's mask with its masks at the other magnitudes of the same
  direction and sign (a real object mask does not move as the shift grows; 1 with one magnitude).

``score = passing · whitening · stillness · agreement``: a product, so a candidate must do all four
(a global brightening fails ``passing``, an object recolouring fails ``stillness``, a zoom fails
``agreement``). Scores are compared to 4 decimals, so float noise does not decide between equal
candidates; ties go to the higher DVN, then the lower index, the plus sign, the smaller shift.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from saliency import distributed
from saliency.generators.base import Generator
from saliency.synthesis.masks import area_filter, brightness, shift_latents, threshold_masks

SIGNS = (1, -1)


@dataclass(frozen=True)
class MaskSettings:
    """How candidates are tested: the SPEC.md §4 rule and filter, the magnitudes, M samples."""

    magnitudes: tuple[float, ...] = (6.0, 12.0, 26.0)
    samples: int = 256
    threshold: float = 0.95
    min_area: float = 0.05
    max_area: float = 0.5
    inclusive: bool = True
    batch_size: int = 64


@dataclass(frozen=True)
class Candidate:
    """The scores of moving along ``sign`` · direction ``direction`` by ``shift``."""

    direction: int
    sign: int
    shift: float
    dvn: float
    passing: float
    whitening: float
    stillness: float
    agreement: float
    score: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass
class _Tally:
    """Per-sample sums of one (sign, magnitude) over all batches."""

    masks: list[torch.Tensor]
    rise: list[torch.Tensor]
    room: list[torch.Tensor]
    change: list[torch.Tensor]


@torch.no_grad()
def score_direction(generator: Generator, direction: torch.Tensor, z: torch.Tensor, classes: torch.Tensor,
                    settings: MaskSettings) -> dict[tuple[int, float], dict[str, float]]:
    """The four measures and the score of every (sign, magnitude) of one direction ``(d,)``."""
    device = generator.device
    tallies = {(sign, s): _Tally([], [], [], []) for sign in SIGNS for s in settings.magnitudes}
    for start in range(0, len(z), settings.batch_size):
        zz, cc = z[start:start + settings.batch_size].to(device), classes[start:start + settings.batch_size].to(device)
        with distributed.autocast(device):
            base = generator(zz, cc).float()
        base_brightness = brightness(base)
        for (sign, s), tally in tallies.items():
            with distributed.autocast(device):
                shifted = generator(shift_latents(zz, direction, sign * s), cc).float()
            masks = threshold_masks(shifted, settings.threshold)
            outside = (~masks).float()
            tally.masks.append(masks.cpu())
            tally.rise.append(((brightness(shifted) - base_brightness) * outside).flatten(1).sum(1).cpu())
            tally.room.append(((1.0 - base_brightness) * outside).flatten(1).sum(1).cpu())
            change = (shifted - base).abs().mean(1) / 2.0  # colour change in [0, 1] units
            tally.change.append((change * masks.float()).flatten(1).sum(1).cpu())
    masks = {key: torch.cat(tally.masks) for key, tally in tallies.items()}
    scores = {}
    for (sign, s), tally in tallies.items():
        keep = area_filter(masks[sign, s], settings.min_area, settings.max_area, settings.inclusive)
        inside = masks[sign, s].flatten(1).sum(1).float()
        others = [masks[sign, other] for other in settings.magnitudes if other != s]
        measures = {
            "passing": float(keep.float().mean()),
            "whitening": _ratio(torch.cat(tally.rise)[keep].sum(), torch.cat(tally.room)[keep].sum()),
            "stillness": 1.0 - _ratio(torch.cat(tally.change)[keep].sum(), inside[keep].sum()),
            "agreement": float(torch.stack([_iou(masks[sign, s], o) for o in others]).mean()) if others else 1.0,
        }
        measures["score"] = measures["passing"] * measures["whitening"] * measures["stillness"] * measures["agreement"]
        scores[sign, s] = measures
    return scores


def score_candidates(generator: Generator, directions: torch.Tensor, indices: list[int], dvn: torch.Tensor,
                     z: torch.Tensor, classes: torch.Tensor, settings: MaskSettings) -> list[Candidate]:
    """Every (sign, magnitude) of the directions ``indices`` (columns of ``directions`` ``(d, K)``),
    best first, on the latents ``z`` and ``classes``."""
    candidates = []
    for k in indices:
        for (sign, s), measures in score_direction(generator, directions[:, k], z, classes, settings).items():
            candidates.append(Candidate(direction=k, sign=sign, shift=s, dvn=float(dvn[k]), **measures))
    return sorted(candidates, key=_preference)


def choose(candidates: list[Candidate], direction: int | None = None, sign: int | None = None,
           shift: float | None = None) -> Candidate:
    """The best candidate, among those matching the given overrides (``None`` = free)."""
    matching = [c for c in candidates if (direction is None or c.direction == direction)
                and (sign is None or c.sign == sign) and (shift is None or c.shift == shift)]
    if not matching:
        raise ValueError("no candidate matches the override; score the overridden direction and shift first")
    return min(matching, key=_preference)


def _preference(candidate: Candidate) -> tuple[float, float, int, int, float]:
    return (-round(candidate.score, 4), -candidate.dvn, candidate.direction, -candidate.sign, candidate.shift)


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> float:
    """``numerator / denominator`` clipped to [0, 1]; 0 when there is nothing to divide by."""
    if float(denominator) <= 0:
        return 0.0
    return float((numerator / denominator).clamp(0.0, 1.0))


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean per-sample IoU of two mask batches; two empty masks agree fully."""
    a, b = a.flatten(1), b.flatten(1)
    union = (a | b).sum(1)
    return torch.where(union > 0, (a & b).sum(1) / union.clamp_min(1), torch.ones(())).float().mean()
