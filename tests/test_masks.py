"""The mask rules and filters against known answers: hand-made images, a generator whose masks
are exact, toyworld's true object masks, and the published computations (re-derived here from the
authors' descriptions, loop by loop) on the same random tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from saliency.generators import load
from saliency.generators.base import Generator
from saliency.masks import (
    MASK_MODES,
    MaskRule,
    area_filter,
    area_fraction,
    brightness,
    diff_masks,
    histogram_maxima_filter,
    largest_components,
    lighting_masks,
    mean_threshold_masks,
    shift_latents,
    synthesize_batch,
    threshold_masks,
)


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
    # No lower bound (BigBiGAN code): area < max_area only, an empty mask included.
    empty = torch.zeros(1, 20, 20, dtype=torch.bool)
    assert area_filter(torch.cat([empty, masks]), min_area=None, inclusive=False).tolist() == [
        True, True, True, False, False]


def test_shift_multiplies_the_direction_as_given() -> None:
    """A published direction keeps its stored length: the shift is a multiple of it, never renormalised."""
    z = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    direction = torch.tensor([3.0, 4.0, 0.0, 0.0, 0.0])
    moved = shift_latents(z, direction, 5.0)
    assert torch.allclose(moved - z, torch.tensor([15.0, 20.0, 0.0, 0.0, 0.0]).expand(3, 5))
    assert torch.allclose(shift_latents(z, direction, -2.0), shift_latents(z, -direction, 2.0))


@pytest.mark.parametrize("mode, threshold", [("intensity", 0.95), ("diff", 0.5)])
def test_synthesize_batch_exact_on_a_known_generator(mode: str, threshold: float) -> None:
    generator = Whitener()
    z = torch.randn(6, 4, generator=torch.Generator().manual_seed(1)).clamp(-2, 2)
    direction = torch.tensor([1.0, 0.0, 0.0, 0.0])
    rule = MaskRule(mode=mode, threshold=threshold)
    batch = synthesize_batch(generator, z, generator.sample_classes(6), direction, 26.0, rule)
    assert torch.equal(batch.images, generator(z)) and torch.equal(batch.shifted, generator(z + 26 * direction))
    assert batch.masks.dtype == torch.bool and torch.equal(batch.masks, SQUARE.expand(6, 8, 8))
    assert batch.keep.tolist() == [True] * 6  # area 0.25
    # The wrong sign darkens the background: the intensity rule then calls everything object.
    wrong = synthesize_batch(generator, z, generator.sample_classes(6), direction, -26.0, rule)
    assert not torch.equal(wrong.masks, batch.masks)


def test_unknown_mode_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="intensity"):
        MaskRule(mode="edges")
    assert set(MASK_MODES) == {"intensity", "diff", "lighting", "mean_thr"}


# --- The BigBiGAN follow-up's rules and filters, against the published computation -------------

def random_images(n: int, size: int, seed: int) -> torch.Tensor:
    """Blocky random images in [-1, 1] (4×4 blocks, so masks have real connected components)."""
    rng = torch.Generator().manual_seed(seed)
    blocks = torch.rand(n, 3, size // 4, size // 4, generator=rng) * 2 - 1
    return F.interpolate(blocks, scale_factor=4, mode="nearest")


def published_gray(images: torch.Tensor) -> torch.Tensor:
    return 0.2989 * images[:, 0] + 0.5870 * images[:, 1] + 0.1140 * images[:, 2]


def published_components(mask: np.ndarray, ratio: float = 0.2) -> np.ndarray:
    """Label 8-connected components (the default connectivity of scikit-image's ``label`` in 2-D) by
    flood fill, then keep those whose area / the largest area > ratio."""
    labels = np.zeros(mask.shape, int)
    count = 0
    for start in zip(*np.nonzero(mask)):
        if labels[start]:
            continue
        count += 1
        stack = [start]
        labels[start] = count
        while stack:
            y, x = stack.pop()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not labels[ny, nx]:
                        labels[ny, nx] = count
                        stack.append((ny, nx))
    areas = np.array([0] + [(labels == c).sum() for c in range(1, count + 1)], float)
    kept = np.zeros(mask.shape, bool)
    for component in range(1, count + 1):
        if areas[component] / areas.max() > ratio:
            kept[labels == component] = True
    return kept


def published_maxima_filter(shifted: torch.Tensor) -> list[bool]:
    """12-bin histogram over [-1, 1], summed over a width-3 window (zero padded), then a bin is a
    maximum when >= its left neighbour (or first) and >= its right neighbour (or last)."""
    verdicts = []
    for image in shifted:
        stats = torch.histc(image, 12, -1, 1)
        stats = F.conv1d(stats.view(1, 1, -1), torch.ones(1, 1, 3), padding=1).view(-1).numpy()
        maxima = np.r_[True, stats[1:] >= stats[:-1]] & np.r_[stats[:-1] >= stats[1:], True]
        verdicts.append(len(np.nonzero(maxima)[0]) >= 2)
    return verdicts


@pytest.mark.parametrize("seed", range(3))
def test_lighting_and_mean_threshold_rules_equal_the_published_ones(seed: int) -> None:
    original, shifted = random_images(6, 16, seed), random_images(6, 16, seed + 100)
    assert torch.equal(lighting_masks(original, shifted), published_gray(original) < published_gray(shifted))
    expected = torch.stack([b > torch.mean(b) for b in published_gray(shifted)])
    assert torch.equal(mean_threshold_masks(shifted), expected)


@pytest.mark.parametrize("seed", range(4))
def test_largest_components_equal_the_published_filter(seed: int) -> None:
    masks = random_images(5, 24, seed)[:, 0] > 0.3  # several blobs of many sizes, some touching corners
    expected = np.stack([published_components(mask) for mask in masks.numpy()])
    assert np.array_equal(largest_components(masks).numpy(), expected)
    assert largest_components(masks, ratio=0.0).sum() == masks.sum(), "ratio 0 keeps every component"
    assert not largest_components(torch.zeros(1, 5, 5, dtype=torch.bool)).any()


def test_histogram_filter_equals_the_published_filter() -> None:
    rng = torch.Generator().manual_seed(0)
    bimodal = torch.cat([torch.full((1, 3, 8, 4), -0.9), torch.full((1, 3, 8, 4), 0.9)], dim=3)
    flat = torch.linspace(-1, 1, 3 * 8 * 8).view(1, 3, 8, 8)   # uniform: a plateau, then one maximum each end
    peaked = torch.zeros(1, 3, 8, 8)   # one full bin, but the empty ends are plateaus, and plateaus count
    # Bin i holds i + 1 values: the smoothed histogram rises to bin 10 and falls once: one maximum.
    centres = -1 + (torch.arange(12) + 0.5) / 6
    rising = torch.repeat_interleave(centres, torch.arange(1, 13)).view(1, 3, 2, 13)
    mixed = torch.cat([random_images(8, 8, 5), torch.rand(4, 3, 8, 8, generator=rng) * 2 - 1])
    found = histogram_maxima_filter(torch.cat([bimodal, flat, peaked]))
    assert found.tolist() == [True, True, True] and histogram_maxima_filter(rising).tolist() == [False]
    for images in (mixed, rising, bimodal, peaked):
        assert histogram_maxima_filter(images).tolist() == published_maxima_filter(images)


def test_rule_applies_components_before_the_area_filter_then_the_histogram_filter() -> None:
    """The follow-up's order: masks, components, then the area and histogram filters."""
    original, shifted = random_images(8, 16, 7), random_images(8, 16, 8)
    rule = MaskRule(mode="lighting", min_area=None, max_area=0.5, inclusive=False, components=True, histogram=True)
    masks = rule.masks(original, shifted)
    assert torch.equal(masks, largest_components(lighting_masks(original, shifted)))
    expected = (area_fraction(masks) < 0.5) & histogram_maxima_filter(shifted)
    assert torch.equal(rule.keep(masks, shifted), expected)


@pytest.mark.parametrize("mode, threshold, min_median_iou", [("intensity", 0.95, 0.95), ("diff", 0.3, 0.95)])
def test_toyworld_background_direction_recovers_true_masks(mode: str, threshold: float,
                                                           min_median_iou: float) -> None:
    world = load("toyworld")
    rng = torch.Generator().manual_seed(0)
    z, classes = world.sample_z(128, rng), world.sample_classes(128, rng)
    truth = (world.object_mask(z, classes) > 0.5)[:, 0]
    background = world.factor_directions[:, world.factor_names.index("bg_white")]
    masks = synthesize_batch(world, z, classes, background, 26.0, MaskRule(mode, threshold)).masks
    assert iou(masks, truth).median() > min_median_iou
    assert area_filter(masks).float().mean() > 0.9
    # A direction that does not whiten (object hue) gives nothing like the object.
    hue = world.factor_directions[:, world.factor_names.index("obj_hue")]
    other = synthesize_batch(world, z, classes, hue, 26.0, MaskRule(mode, threshold)).masks
    assert iou(other, truth).median() < 0.7


@pytest.mark.parametrize("mode", ["intensity", "diff"])
def test_images_made_beforehand_give_the_same_batch(mode: str) -> None:
    """Rank's pictures pass G(z) made once for several shifts: the shifted images, masks and
    verdicts are those of rendering everything in one call."""
    world = load("toyworld")
    rng = torch.Generator().manual_seed(1)
    z, classes = world.sample_z(16, rng), world.sample_classes(16, rng)
    background = world.factor_directions[:, world.factor_names.index("bg_white")]
    whole = synthesize_batch(world, z, classes, background, 12.0, MaskRule(mode))
    images = world(z, classes).float()
    given = synthesize_batch(world, z, classes, background, 12.0, MaskRule(mode), images)
    assert given.images is images and torch.allclose(given.images, whole.images, atol=1e-6)
    assert torch.allclose(given.shifted, whole.shifted, atol=1e-6)
    assert torch.equal(given.masks, whole.masks) and torch.equal(given.keep, whole.keep)
    assert whole.masks.any() and not whole.masks.all()
