"""Training objectives: how a batch of latents becomes image pairs, predictions and a loss.

``voynov`` (paper eq. 1): one shift, cross-entropy on the direction plus λ·L1 on the magnitude.
``lu`` (Lu et al. 2020): two consecutive shifts, both pairs reconstructed, plus a centroid loss
pulling each shift code toward the mean code of its direction in the batch. ``optimize`` (in the
spirit of Melas-Kyriazi et al. 2022): no reconstructor; each direction is pushed straight toward
the background-removal effect (docs/method.md §1b). All return a :class:`StepOutput`, so one
training loop serves them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch
import torch.nn.functional as F
from torch import nn

from saliency.discovery.deformators import Deformator
from saliency.distributed import unwrap
from saliency.errors import UserError
from saliency.masks import brightness

Amp = Callable[[], ContextManager[None]]
# The generator as the objectives call it, ``(z, classes) -> images``: the module or its compiled forward.
GeneratorFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def num_directions(deformator: nn.Module) -> int:
    """K of a deformator, or of the one inside a DDP wrapper."""
    inner = unwrap(deformator)
    if not isinstance(inner, Deformator):
        raise TypeError(f"expected a Deformator (or DDP around one), got {type(inner).__name__}")
    return inner.num_directions


def _needs(reconstructor: nn.Module | None, objective: str) -> nn.Module:
    """The reconstructor an objective cannot do without."""
    if reconstructor is None:
        raise ValueError(f"the {objective} objective needs a reconstructor (needs_reconstructor is True); got None")
    return reconstructor


@dataclass(frozen=True)
class ShiftSampler:
    """k ~ U{0..K-1}, eps ~ U[-scale, scale] pushed to |eps| >= min_shift (paper §3.3)."""

    scale: float = 6.0
    min_shift: float = 0.5

    def __call__(self, n: int, num_directions: int, rng: torch.Generator,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        k = torch.randint(num_directions, (n,), generator=rng)
        eps = (torch.rand(n, generator=rng) * 2 - 1) * self.scale
        sign = torch.where(eps < 0, -1.0, 1.0)
        eps = sign * eps.abs().clamp_min(self.min_shift)
        return k.to(device), eps.to(device)


@dataclass
class StepOutput:
    """A step's loss, its named parts (logged) and the direction accuracy of the batch (None for
    objectives without a reconstructor)."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    accuracy: torch.Tensor | None

    def measured_accuracy(self) -> torch.Tensor:
        """:attr:`accuracy`, for objectives that have a reconstructor (an error for the others)."""
        if self.accuracy is None:
            raise ValueError("this objective measures no direction accuracy (it has no reconstructor)")
        return self.accuracy


class VoynovObjective:
    """Pairs (G(z), G(z + A(eps e_k))); loss = CE(k) + λ·|eps − eps_hat|."""

    terms = ("classification", "shift")
    needs_reconstructor = True

    def __init__(self, sampler: ShiftSampler, shift_weight: float) -> None:
        self.sampler = sampler
        self.shift_weight = shift_weight

    def __call__(self, generator: GeneratorFn, deformator: nn.Module, reconstructor: nn.Module | None,
                 z: torch.Tensor, classes: torch.Tensor, rng: torch.Generator, amp: Amp) -> StepOutput:
        reconstructor = _needs(reconstructor, "voynov")
        k, eps = self.sampler(len(z), num_directions(deformator), rng, z.device)
        shift = deformator(k, eps)
        with amp():
            with torch.no_grad():
                original = generator(z, classes)
            shifted = generator(z + shift, classes)
            logits, eps_hat = reconstructor(original, shifted)
        classification = F.cross_entropy(logits.float(), k)
        regression = (eps_hat.float() - eps).abs().mean()
        return StepOutput(loss=classification + self.shift_weight * regression,
                          terms={"classification": classification, "shift": regression},
                          accuracy=(logits.argmax(1) == k).float().mean())


class LuObjective:
    """Pairs (G(z), G(z + s1)) and (G(z + s1), G(z + s1 + s2)), s_i = A(eps_i e_k_i); both are
    reconstructed (CE + λ·L1), plus γ times the centroid loss of the shift codes."""

    terms = ("classification", "shift", "centroid")
    needs_reconstructor = True

    def __init__(self, sampler: ShiftSampler, shift_weight: float, centroid_weight: float) -> None:
        self.sampler = sampler
        self.shift_weight = shift_weight
        self.centroid_weight = centroid_weight

    def __call__(self, generator: GeneratorFn, deformator: nn.Module, reconstructor: nn.Module | None,
                 z: torch.Tensor, classes: torch.Tensor, rng: torch.Generator, amp: Amp) -> StepOutput:
        reconstructor = _needs(reconstructor, "lu")
        n = len(z)
        k, eps = self.sampler(2 * n, num_directions(deformator), rng, z.device)
        shifts = deformator(k, eps)  # one call for both steps: DDP allows one forward per backward
        first_step, second_step = shifts[:n], shifts[n:]
        with amp():
            with torch.no_grad():
                original = generator(z, classes)
            shifted = generator(torch.cat([z + first_step, z + first_step + second_step]),
                                torch.cat([classes, classes]))
            once, twice = shifted[:n], shifted[n:]
            logits, eps_hat = reconstructor(torch.cat([original, once]), torch.cat([once, twice]))
        classification = F.cross_entropy(logits.float(), k)
        regression = (eps_hat.float() - eps).abs().mean()
        centroid = centroid_loss(shifts * eps.sign().unsqueeze(1), k, num_directions(deformator))
        loss = classification + self.shift_weight * regression + self.centroid_weight * centroid
        return StepOutput(loss=loss, terms={"classification": classification, "shift": regression,
                                            "centroid": centroid},
                          accuracy=(logits.argmax(1) == k).float().mean())


class OptimizeObjective:
    """Pairs (G(z), G(z + s·h_k)), s ~ U[min_shift, scale] (always positive, so h_k learns the
    whitening side), sample i on direction i mod K (K independent restarts in one batch).

    loss = −surround_gain + centre_whitening + weight · partial_change, per sample:

    - ``surround_gain``: the mean brightness gain (B in [0, 1]) of the pixels outside a centred disc
      of radius ``surround`` half-widths, the background prior (subjects are centred; the frame's
      rim is background);
    - ``centre_whitening``: the mean brightness gain of the pixels inside a centred disc of radius
      ``surround / 4`` half-widths (0.2 by default, 3 % of the frame), counted when positive, at
      weight 1: the other half of the same prior, the middle is object. Background removal turns
      the background white and leaves the object as it was; whitening the object is the one
      departure ``partial_change`` cannot see (a pixel that turns white costs nothing there), so
      without this term a direction that whitens the whole frame earns the full rim gain for
      free, and beats background removal as soon as the object reaches the rim. At weight 1,
      whitening costs in the middle what it earns at the rim: whitening every pixel instead of the
      background only scores worse by the object's whitening times (its share of the centre disc
      − its share of the rim), whatever the colours, for any subject that fills more of the
      middle than of the rim. The disc is small so that it is object in nearly every image (0.98
      of its pixels on toyscene, against 0.88 at 0.4 and 0.50 at 0.8): background whitened there
      costs the true direction too. The gain is the disc's mean, so a moved, recoloured or
      re-textured object (pixels rising and falling) costs nothing here (``partial_change``
      charges it), and clamped at zero, so darkening the object earns nothing;
    - ``partial_change``: over all pixels, min(|G(z + s·h) − G(z)|, 1 − B(G(z + s·h))), the change
      of pixels that did not turn white. Background removal leaves each pixel either as it was
      (the object) or white (the background); a global brightening, a recolouring or a zoom does
      neither and pays here.

    A direction without effect gains nothing, so the optimum is the one that whitens the rim and
    leaves the rest alone: the background-removal direction.
    """

    terms = ("surround_gain", "centre_whitening", "partial_change")
    needs_reconstructor = False

    def __init__(self, sampler: ShiftSampler, surround: float, weight: float) -> None:
        self.sampler = sampler
        self.surround = surround
        self.weight = weight

    def __call__(self, generator: GeneratorFn, deformator: nn.Module, reconstructor: nn.Module | None,
                 z: torch.Tensor, classes: torch.Tensor, rng: torch.Generator, amp: Amp) -> StepOutput:
        n = len(z)
        k = torch.arange(n, device=z.device) % num_directions(deformator)
        low, high = self.sampler.min_shift, max(self.sampler.scale, self.sampler.min_shift)
        eps = (low + (high - low) * torch.rand(n, generator=rng)).to(z.device)
        shift = deformator(k, eps)
        with amp():
            with torch.no_grad():
                original = generator(z, classes)
            shifted = generator(z + shift, classes)
        loss, terms = self.score(original, shifted)
        return StepOutput(loss=loss.mean(), terms={name: value.mean() for name, value in terms.items()},
                          accuracy=None)

    def score(self, original: torch.Tensor, shifted: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss ``(N,)`` of image pairs ``(N, 3, R, R)`` in [-1, 1] and its terms by name, each ``(N,)``."""
        original, shifted = original.float(), shifted.float()  # bf16 under autocast: measure in fp32
        before, after = brightness(original), brightness(shifted)
        rim = surround_mask(after.shape[-1], self.surround, after.device)
        centre = 1.0 - surround_mask(after.shape[-1], self.surround / 4, after.device)
        gain = ((after - before) * rim).flatten(1).sum(1) / rim.sum().clamp_min(1.0)
        whitening = (((after - before) * centre).flatten(1).sum(1) / centre.sum().clamp_min(1.0)).clamp_min(0.0)
        change = (shifted - original).abs().mean(1) / 2.0
        partial = torch.minimum(change, 1.0 - after).flatten(1).mean(1)
        loss = -gain + whitening + self.weight * partial
        return loss, {"surround_gain": gain, "centre_whitening": whitening, "partial_change": partial}


@functools.lru_cache(maxsize=8)
def surround_mask(resolution: int, radius: float, device: torch.device) -> torch.Tensor:
    """``(R, R)`` float: 1 at pixels farther than ``radius`` half-widths from the image centre (made
    once per size and device: every step uses the same one)."""
    line = torch.linspace(-1.0, 1.0, resolution, device=device)
    y, x = torch.meshgrid(line, line, indexing="ij")
    return (torch.sqrt(x * x + y * y) > radius).float()


def centroid_loss(codes: torch.Tensor, k: torch.Tensor, num_directions: int) -> torch.Tensor:
    """Mean of 1 − cos(code, centroid of its direction in the batch) (Lu et al. eqs. 3–5).

    Codes are taken sign-corrected (A(eps e_k)·sign(eps)), so that shifts of opposite signs along
    one direction agree instead of cancelling in the centroid.
    """
    centroids = torch.zeros(num_directions, codes.shape[1], dtype=codes.dtype, device=codes.device)
    centroids = centroids.index_add(0, k, codes)
    return (1 - F.cosine_similarity(codes, centroids[k], dim=1)).mean()


def _voynov(sampler: ShiftSampler, shift_weight: float, centroid_weight: float) -> VoynovObjective:
    """Voynov & Babenko have no centroid term."""
    return VoynovObjective(sampler, shift_weight)


def _lu(sampler: ShiftSampler, shift_weight: float, centroid_weight: float) -> LuObjective:
    return LuObjective(sampler, shift_weight, centroid_weight)


Objective = VoynovObjective | LuObjective | OptimizeObjective

OBJECTIVES: dict[str, Callable[[ShiftSampler, float, float], Objective]] = {
    "voynov": _voynov,
    "lu": _lu,
}


# λ of each paper: Voynov & Babenko 0.25, Lu et al. 0.5 (docs/method.md §1).
PAPER_SHIFT_WEIGHTS: dict[str, float] = {"voynov": 0.25, "lu": 0.5}


def build_objective(name: str, sampler: ShiftSampler, shift_weight: float | None,
                    centroid_weight: float) -> Objective:
    """Objective ``name`` with the loss weights λ (shift; None = that paper's value) and γ
    (centroid; used by ``lu`` only)."""
    if name not in OBJECTIVES:
        raise UserError(f"discover.method = {name!r} is not a training objective; "
                        f"choose one of {', '.join(OBJECTIVES)}")
    weight = PAPER_SHIFT_WEIGHTS[name] if shift_weight is None else shift_weight
    return OBJECTIVES[name](sampler, weight, centroid_weight)
