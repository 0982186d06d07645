"""The automatic choice of the background-removal direction, sign and shift magnitude.

DVN alone does not single out the background direction (mixtures of factors score as high), so
directions are tested for the effect itself, by default every direction (``rank.top``). Each
candidate (direction k, sign σ, magnitude s) moves M latents by σ·s·h_k (h_k at its stored length)
and draws masks with exactly the mask rule and filters the synthetic pairs will be made with
(:class:`saliency.masks.MaskRule`, from the synth section). Four measures, each in [0, 1]:

- ``passing``: share of samples the rule's filters keep (area filter, and the histogram filter when
  on: an object, not nothing or everything);
- ``background``: outside the mask, the brightness moved the way the rule expects as a share of
  what could move over the passing samples (B = mean RGB in [0, 1]; 0 = unshifted, 1 = shifted):
  Σ(B₁ − B₀) / Σ(1 − B₀) for rules that whiten the background (intensity, diff),
  Σ(B₀ − B₁) / ΣB₀ for rules that darken it (lighting, mean_thr);
- ``stillness``: 1 − the mean absolute colour change inside the mask over the passing samples (the
  object must stay as it was); 1 for the darkening rules, whose object is meant to lighten;
- ``agreement``: mean IoU of each sample's mask with its masks at the other magnitudes of the same
  direction and sign (a real object mask does not move as the shift grows; 1 with one magnitude).

``score = passing · background · stillness · agreement``: a product, so a candidate must do all four
(a global brightening fails ``passing``, an object recolouring fails ``stillness``, a zoom fails
``agreement``). Scores are compared to 4 decimals, so float noise does not decide between equal
candidates; ties go to the higher DVN, then the lower index, the plus sign, the smaller shift.

Cost: the unshifted images are generated once for all candidates; each direction's 2 signs × the
magnitudes × M samples go through the generator in flat batches of ``batch_size`` images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from saliency import distributed
from saliency.generators.base import Generator
from saliency.masks import MaskRule, brightness, shift_latents
from saliency.progress import progress as progress_bar

SIGNS = (1, -1)


@dataclass(frozen=True)
class MaskSettings:
    """How candidates are tested: the synth section's mask rule, the magnitudes, M samples."""

    magnitudes: tuple[float, ...] = (6.0, 12.0, 26.0)
    samples: int = 256
    rule: MaskRule = field(default_factory=MaskRule)
    batch_size: int = 64
    precision: str = "fp32"


@dataclass(frozen=True)
class Candidate:
    """The scores of moving along ``sign`` · direction ``direction`` by ``shift``."""

    direction: int
    sign: int
    shift: float
    dvn: float
    passing: float
    background: float
    stillness: float
    agreement: float
    score: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass
class _Tally:
    """Per-sample values of one (sign, magnitude), one tensor per chunk of samples."""

    masks: list[torch.Tensor] = field(default_factory=list)
    keep: list[torch.Tensor] = field(default_factory=list)
    moved: list[torch.Tensor] = field(default_factory=list)
    room: list[torch.Tensor] = field(default_factory=list)
    change: list[torch.Tensor] = field(default_factory=list)


@torch.no_grad()
def base_images(generator: Generator, z: torch.Tensor, classes: torch.Tensor, settings: MaskSettings) -> torch.Tensor:
    """G(z) ``(M, 3, R, R)`` on the generator's device: made once, shared by every candidate."""
    device = generator.device
    out = []
    for start in range(0, len(z), settings.batch_size):
        with distributed.autocast(device, settings.precision):
            out.append(generator(z[start:start + settings.batch_size].to(device),
                                 classes[start:start + settings.batch_size].to(device)).float())
    return torch.cat(out)


@torch.no_grad()
def score_direction(generator: Generator, direction: torch.Tensor, z: torch.Tensor, classes: torch.Tensor,
                    settings: MaskSettings, base: torch.Tensor | None = None) -> dict[tuple[int, float], dict[str, float]]:
    """The four measures and the score of every (sign, magnitude) of one direction ``(d,)`` (used at
    its length); ``base`` = :func:`base_images` of ``z`` when already made."""
    device, rule = generator.device, settings.rule
    base = base_images(generator, z, classes, settings) if base is None else base
    moves = [(sign, s) for sign in SIGNS for s in settings.magnitudes]
    tallies = {move: _Tally() for move in moves}
    chunk = max(1, settings.batch_size // len(moves))
    for start in range(0, len(z), chunk):
        zz, cc = z[start:start + chunk].to(device), classes[start:start + chunk].to(device)
        original = base[start:start + chunk]
        latents = torch.cat([shift_latents(zz, direction, sign * s) for sign, s in moves])
        with distributed.autocast(device, settings.precision):
            shifted = dict(zip(moves, generator(latents, cc.repeat(len(moves))).float().chunk(len(moves))))
        before = brightness(original)
        for (sign, s), tally in tallies.items():
            plus = shifted[sign, s]
            masks = rule.masks(original, plus, shifted[-sign, s] if rule.needs_minus else None)
            outside = (~masks).float()
            gain = brightness(plus) - before
            whiten = rule.background_effect == "whiten"
            tally.masks.append(masks.cpu())
            tally.keep.append(rule.keep(masks, plus).cpu())
            tally.moved.append(((gain if whiten else -gain) * outside).flatten(1).sum(1).cpu())
            tally.room.append(((1.0 - before if whiten else before) * outside).flatten(1).sum(1).cpu())
            change = (plus - original).abs().mean(1) / 2.0 if whiten else torch.zeros_like(before)
            tally.change.append((change * masks.float()).flatten(1).sum(1).cpu())
    move_masks = {key: torch.cat(tally.masks) for key, tally in tallies.items()}
    scores = {}
    for (sign, s), tally in tallies.items():
        keep = torch.cat(tally.keep)
        inside = move_masks[sign, s].flatten(1).sum(1).float()
        others = [move_masks[sign, other] for other in settings.magnitudes if other != s]
        measures = {
            "passing": float(keep.float().mean()),
            "background": _ratio(torch.cat(tally.moved)[keep].sum(), torch.cat(tally.room)[keep].sum()),
            "stillness": 1.0 - _ratio(torch.cat(tally.change)[keep].sum(), inside[keep].sum()),
            "agreement": float(torch.stack([_iou(move_masks[sign, s], o) for o in others]).mean()) if others else 1.0,
        }
        measures["score"] = measures["passing"] * measures["background"] * measures["stillness"] * measures["agreement"]
        scores[sign, s] = measures
    return scores


def score_candidates(generator: Generator, directions: torch.Tensor, indices: list[int], dvn: torch.Tensor,
                     z: torch.Tensor, classes: torch.Tensor, settings: MaskSettings,
                     progress: bool = False) -> list[Candidate]:
    """Every (sign, magnitude) of the directions ``indices`` (columns of ``directions`` ``(d, K)`` at
    their stored lengths), best first, on the latents ``z`` and ``classes``."""
    base = base_images(generator, z, classes, settings)
    candidates = []
    for k in progress_bar(indices, desc="rank: effect check", unit="direction", disable=not progress):
        scores = score_direction(generator, directions[:, k], z, classes, settings, base)
        for (sign, s), measures in scores.items():
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
