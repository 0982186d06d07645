"""The mask rule and area filter against known answers: hand-made images, a generator whose masks
are exact, and toyworld's true object masks."""

from __future__ import annotations

import pytest
import torch

from saliency.generators import load
from saliency.generators.base import Generator
from saliency.synthesis.masks import (MASK_MODES, area_filter, area_fraction, brightness, diff_masks, shift_latents,
                                      synthesize_batch, threshold_masks)


def grey(values: torch.Tensor) -> torch.Tensor:
    """Images ``(N, 3, H, W)`` in [-1, 1] whose brightness in [0, 1] is ``values`` ``(N, H, W)``."""
    return (values * 2 - 1).unsqueeze(1).expand(-1, 3, -1, -1).clone()


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1), b.flatten(1)
    return (a & b).sum(1) / (a | b).sum(1).clamp_min(1)


class Whitener(Generator):
    """8×8 images: a dark square object (rows/cols 2..5) on a background whose brightness is
    sigmoid(z₀): moving along e₀ whitens the background only, so the true mask is the square."""

    dim_z, n_classes, resolution, class_names = 4, 0, 8, []

    def forward(self, z: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        values = torch.sigmoid(z[:, 0]).view(-1, 1, 1).expand(-1, 8, 8).clone()
        values[:, 2:6, 2:6] = 0.2
        return grey(values)


SQUARE = torch.zeros(8, 8, dtype=torch.bool)
SQUARE[2:6, 2:6] = True


def test_brightness_maps_minus_one_to_zero_and_one_to_one() -> None:
    images = torch.stack([torch.full((3, 2, 2), -1.0), torch.full((3, 2, 2), 1.0)])
    images[1, 0] = 0.0  # one channel at mid-grey: mean of (0.5, 1, 1)
    assert torch.allclose(brightness(images), torch.tensor([0.0, 2.5 / 3]).view(2, 1, 1).expand(2, 2, 2))


def test_threshold_rule_is_strictly_below_theta() -> None:
    values = torch.tensor([[[0.5, 0.94], [0.96, 0.99]]])
    assert threshold_masks(grey(values)).tolist() == [[[True, True], [False, False]]]
    exact = torch.tensor([[[0.5, 0.6875], [0.75, 0.8125]]])  # exact in binary: the boundary is tested as it is
    assert threshold_masks(grey(exact), threshold=0.75).tolist() == [[[True, True], [False, False]]]


def test_diff_rule_normalises_the_gain_per_sample() -> None:
    minus = grey(torch.full((2, 2, 2), 0.2))
    plus = grey(torch.tensor([[[0.2, 0.3], [0.8, 1.0]],     # gains 0, .1, .6, .8 -> 0, .125, .75, 1
                              [[0.2, 0.2], [0.2, 0.2]]]))   # no gain anywhere: no object
    assert diff_masks(minus, plus, threshold=0.5).tolist() == [[[True, True], [False, False]],
                                                               [[False, False], [False, False]]]
    # A uniform scale of the gain does not change the mask.
    assert torch.equal(diff_masks(minus, grey((brightness(plus) - 0.2) * 0.5 + 0.2), 0.5),
                       diff_masks(minus, plus, 0.5))


def test_area_filter_inclusive_by_default_strict_as_an_option() -> None:
    masks = torch.zeros(4, 20, 20, dtype=torch.bool)
    for row, pixels in enumerate([19, 20, 200, 201]):  # areas 0.0475, 0.05, 0.5, 0.5025
        masks[row].view(-1)[:pixels] = True
    assert torch.allclose(area_fraction(masks), torch.tensor([0.0475, 0.05, 0.5, 0.5025]))
    assert area_filter(masks).tolist() == [False, True, True, False]
    assert area_filter(masks, inclusive=False).tolist() == [False, False, False, False]
    assert area_filter(masks, min_area=0.0, max_area=1.0, inclusive=False).tolist() == [True, True, True, True]


def test_shift_has_the_given_length_whatever_the_direction_norm() -> None:
    z = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    direction = torch.tensor([3.0, 4.0, 0.0, 0.0, 0.0])
    moved = shift_latents(z, direction, 10.0)
    assert torch.allclose(moved - z, torch.tensor([6.0, 8.0, 0.0, 0.0, 0.0]).expand(3, 5))
    assert torch.allclose(shift_latents(z, direction, -2.0), shift_latents(z, -direction, 2.0))


@pytest.mark.parametrize("mode, threshold", [("intensity", 0.95), ("diff", 0.5)])
def test_synthesize_batch_exact_on_a_known_generator(mode: str, threshold: float) -> None:
    generator = Whitener()
    z = torch.randn(6, 4, generator=torch.Generator().manual_seed(1)).clamp(-2, 2)
    direction = torch.tensor([2.0, 0.0, 0.0, 0.0])
    images, masks = synthesize_batch(generator, z, generator.sample_classes(6), direction, 26.0, mode, threshold)
    assert torch.equal(images, generator(z))
    assert masks.dtype == torch.bool and torch.equal(masks, SQUARE.expand(6, 8, 8))
    # The wrong sign darkens the background: the intensity rule then calls everything object.
    _, wrong = synthesize_batch(generator, z, generator.sample_classes(6), direction, -26.0, mode, threshold)
    assert not torch.equal(wrong, masks)


def test_unknown_mode_is_a_programming_error() -> None:
    generator = Whitener()
    with pytest.raises(ValueError, match="intensity"):
        synthesize_batch(generator, torch.zeros(1, 4), generator.sample_classes(1), torch.ones(4), 6.0, "edges")
    assert set(MASK_MODES) == {"intensity", "diff"}


@pytest.mark.parametrize("mode, threshold, min_median_iou", [("intensity", 0.95, 0.95), ("diff", 0.3, 0.95)])
def test_toyworld_background_direction_recovers_true_masks(mode: str, threshold: float,
                                                           min_median_iou: float) -> None:
    world = load("toyworld")
    rng = torch.Generator().manual_seed(0)
    z, classes = world.sample_z(128, rng), world.sample_classes(128, rng)
    truth = (world.object_mask(z, classes) > 0.5)[:, 0]
    background = world.factor_directions[:, world.factor_names.index("bg_white")]
    _, masks = synthesize_batch(world, z, classes, background, 26.0, mode, threshold)
    assert iou(masks, truth).median() > min_median_iou
    assert area_filter(masks).float().mean() > 0.9
    # A direction that does not whiten (object hue) gives nothing like the object.
    hue = world.factor_directions[:, world.factor_names.index("obj_hue")]
    _, other = synthesize_batch(world, z, classes, hue, 26.0, mode, threshold)
    assert iou(other, truth).median() < 0.7
