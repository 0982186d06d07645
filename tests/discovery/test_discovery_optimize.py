"""``optimize``'s loss on hand-built image pairs: background removal beats whitening the whole frame."""

from __future__ import annotations

import contextlib

import pytest
import torch

from saliency.discovery.deformators import build_deformator
from saliency.discovery.objectives import OptimizeObjective, ShiftSampler, surround_mask
from saliency.masks import brightness

RESOLUTION = 32


def _scene(layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``(1, 3, R, R)`` image in [-1, 1] and its object mask ``(R, R)``: a textured mid-grey
    background and a darker two-tone object that reaches the frame's rim."""
    line = torch.linspace(-1.0, 1.0, RESOLUTION)
    y, x = torch.meshgrid(line, line, indexing="ij")
    if layout == "cut off by the bottom edge":  # a head in the middle, the body running out of the frame
        obj = (x ** 2 + (y + 0.1) ** 2 < 0.45 ** 2) | ((x.abs() < 0.5) & (y > 0.0))
    elif layout == "filling the frame's width":  # a large subject wider than the frame
        obj = (x / 1.3) ** 2 + (y / 0.7) ** 2 < 1.0
    else:
        raise ValueError(layout)
    rng = torch.Generator().manual_seed(0)
    background = 0.55 + 0.1 * torch.rand(3, RESOLUTION, RESOLUTION, generator=rng)
    colour = torch.where(y > 0.3, torch.tensor([0.15, 0.2, 0.4]).view(3, 1, 1), torch.tensor([0.5, 0.3, 0.2]).view(3, 1, 1))
    image = torch.where(obj, colour, background)
    return (image * 2.0 - 1.0).unsqueeze(0), obj


def _loss(objective: OptimizeObjective, original: torch.Tensor, shifted: torch.Tensor) -> float:
    """The objective's loss through its training call, with a generator that draws ``original``
    at z and ``shifted`` anywhere else (the shift of a one-direction deformator)."""
    z = torch.zeros(1, 4)

    def generator(latents: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return original if torch.equal(latents, z) else shifted

    deformator = build_deformator("unit-norm", 4, 1, seed=0)
    out = objective(generator, deformator, None, z, torch.zeros(1, dtype=torch.long),
                    torch.Generator().manual_seed(0), contextlib.nullcontext)
    return out.loss.item()


@pytest.mark.parametrize("layout", ["cut off by the bottom edge", "filling the frame's width"])
def test_erasing_everything_scores_worse_than_erasing_the_background(layout: str) -> None:
    """Known answer: background removal turns the background white and leaves the object as it was;
    turning every pixel white (object too) must score worse, also when the object reaches the rim,
    where whitening it adds to the surround gain."""
    original, obj = _scene(layout)
    rim = surround_mask(RESOLUTION, 0.8, torch.device("cpu")).bool()
    assert (obj & rim).any(), "the object reaches the rim (the case the fix is about)"
    white = torch.ones_like(original)
    erase_background = torch.where(obj, original, white)
    objective = OptimizeObjective(ShiftSampler(), surround=0.8, weight=2.0)

    everything, background_only, nothing = (_loss(objective, original, shifted)
                                            for shifted in (white, erase_background, original))
    assert background_only < nothing, "removing the background is rewarded"
    assert everything > background_only

    # The margin is the object's whitening, counted in the centre disc and not at the rim: the
    # object fills the centre disc, so whitening everything costs (1 − B) there and earns it on
    # the object's rim pixels too.
    lift = 1.0 - brightness(original)[0]
    centre = ~surround_mask(RESOLUTION, 0.2, torch.device("cpu")).bool()
    assert obj[centre].all()
    expected = float(lift[centre].mean()) - float(lift[obj & rim].sum()) / float(rim.sum())
    assert everything - background_only == pytest.approx(expected, abs=1e-5)
