"""The automatic choice against known answers: a generator whose every effect is known exactly, and
toyworld's true factor directions."""

from __future__ import annotations

import pytest
import torch

from saliency.generators.base import Generator
from saliency.generators.toyworld import ToyWorld
from saliency.ranking.select import Candidate, MaskSettings, choose, score_candidates, score_direction

SETTINGS = MaskSettings(magnitudes=(6.0, 12.0, 26.0), samples=32, batch_size=16)


class Studio(Generator):
    """16×16 images, a dark 8×8 object (area 0.25) on a grey background. z₀ whitens the background
    only (brightness sigmoid(z₀)), z₁ brightens the whole image, z₂ recolours the object, z₃ moves
    the object right by up to 4 pixels."""

    dim_z, n_classes, resolution, class_names = 4, 0, 16, []

    def forward(self, z: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        n = len(z)
        image = torch.sigmoid(z[:, 0]).view(n, 1, 1, 1).expand(n, 3, 16, 16).clone()
        offset = (4 * torch.sigmoid(z[:, 3])).round().long()
        colour = 0.1 + 0.6 * torch.sigmoid(z[:, 2])
        for i in range(n):
            left = 4 + int(offset[i]) - 2
            image[i, 0, 4:12, left:left + 8] = colour[i]
            image[i, 1:, 4:12, left:left + 8] = torch.tensor([0.2, 0.1]).view(2, 1, 1)
        image = image + torch.sigmoid(z[:, 1] - 3).view(n, 1, 1, 1)
        return image.clamp(0, 1) * 2 - 1


@pytest.fixture(scope="module")
def latents() -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.randn(SETTINGS.samples, 4, generator=torch.Generator().manual_seed(0)).clamp(-2, 2)
    return z, torch.zeros(SETTINGS.samples, dtype=torch.long)


def test_background_whitening_scores_near_one_and_its_opposite_zero(latents) -> None:
    z, classes = latents
    scores = score_direction(Studio(), torch.tensor([1.0, 0, 0, 0]), z, classes, SETTINGS)
    assert set(scores) == {(sign, s) for sign in (1, -1) for s in SETTINGS.magnitudes}
    for s in SETTINGS.magnitudes:
        plus = scores[1, s]
        assert plus["passing"] == 1.0 and plus["agreement"] == 1.0
        assert plus["stillness"] == pytest.approx(1.0, abs=1e-6)  # the object keeps its colour exactly
        assert plus["background"] > 0.99
        product = plus["passing"] * plus["background"] * plus["stillness"] * plus["agreement"]
        assert plus["score"] == pytest.approx(product)
        # The minus side darkens the background: the mask is the whole image, nothing passes.
        assert scores[-1, s]["passing"] == 0.0 and scores[-1, s]["score"] == 0.0


@pytest.mark.parametrize("direction, failing", [
    ([0.0, 1.0, 0.0, 0.0], "passing"),     # global brightening: no pixel stays below theta
    ([1.0, 0.0, 1.0, 0.0], "stillness"),   # whitening plus recolouring the object
    ([1.0, 0.0, 0.0, 0.3], "agreement"),   # whitening plus moving the object with the shift
])
def test_each_measure_catches_its_impostor(latents, direction: list[float], failing: str) -> None:
    z, classes = latents
    generator = Studio()
    clean = score_direction(generator, torch.tensor([1.0, 0, 0, 0]), z, classes, SETTINGS)
    impostor = score_direction(generator, torch.tensor(direction), z, classes, SETTINGS)
    best_clean = max(m["score"] for m in clean.values())
    best_impostor = max(impostor.values(), key=lambda m: m["score"])
    assert best_impostor["score"] < best_clean - 0.05
    assert best_impostor[failing] < 0.95


def test_score_candidates_best_first_and_choose_with_overrides(latents) -> None:
    z, classes = latents
    directions = torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]).T
    dvn = torch.tensor([0.9, 0.8, 0.7])
    candidates = score_candidates(Studio(), directions, [0, 1, 2], dvn, z, classes, SETTINGS)
    assert len(candidates) == 3 * 2 * 3
    assert [c.score for c in candidates] == sorted((c.score for c in candidates), reverse=True)
    best = choose(candidates)
    assert (best.direction, best.sign) == (1, 1) and best.dvn == pytest.approx(0.8)
    assert choose(candidates, direction=0).direction == 0
    forced = choose(candidates, direction=1, sign=-1, shift=6.0)
    assert (forced.direction, forced.sign, forced.shift) == (1, -1, 6.0)
    with pytest.raises(ValueError, match="override"):
        choose(candidates, shift=7.0)


def test_ties_go_to_higher_dvn_then_lower_index() -> None:
    def candidate(direction: int, dvn: float, score: float) -> Candidate:
        return Candidate(direction, 1, 6.0, dvn, 1.0, 1.0, 1.0, 1.0, score)

    assert choose([candidate(3, 0.9, 0.5), candidate(1, 0.9, 0.5 + 1e-7), candidate(2, 0.95, 0.5)]).direction == 2
    assert choose([candidate(3, 0.9, 0.5), candidate(1, 0.9, 0.5)]).direction == 1


def test_toyworld_factors_only_background_whitening_scores_high(world: ToyWorld) -> None:
    rng = torch.Generator().manual_seed(0)
    z, classes = world.sample_z(48, rng), world.sample_classes(48, rng)
    count = len(world.factor_names)
    candidates = score_candidates(world, world.factor_directions, list(range(count)), torch.ones(count), z, classes,
                                  MaskSettings(samples=48, batch_size=48))
    background = world.factor_names.index("bg_white")
    best = candidates[0]
    assert (best.direction, best.sign) == (background, 1) and best.score > 0.9
    others = [c.score for c in candidates if c.direction != background]
    assert max(others) < 0.5
