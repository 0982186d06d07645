"""DVN against known answers: the grouped classifier is K separate ones, a direction with no effect
scores exactly 0.5, the background direction of toyworld scores near 1, the same seed the same DVN."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from saliency.generators.toyworld import ToyWorld
from saliency.ranking.dvn import (
    DVNSettings,
    GroupedLeNet,
    _batches,
    dvn_pixels,
    dvn_scores,
    dvn_top,
    fit,
    fresh_model,
    generated_pairs,
    predict,
)
from saliency.ranking.real import generated_images
from saliency.seeding import Stream, seeded_rng
from tests.ranking.conftest import inactive_direction

QUICK = DVNSettings(samples=640, steps=40)


def test_grouped_network_is_separate_paper_classifiers() -> None:
    """Same seeds, same outputs and gradients as one Table-7 model per direction."""
    seeds = [3, 4, 5]
    grouped = fresh_model([seeded_rng(0, s) for s in seeds], torch.device("cpu"))
    singles = [fresh_model([seeded_rng(0, s)], torch.device("cpu")) for s in seeds]
    x = torch.randn(8, 3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.randint(2, (8, 3), generator=torch.Generator().manual_seed(1))
    out = grouped(x)
    assert out.shape == (8, 3, 2)
    (torch.nn.functional.cross_entropy(out.permute(0, 2, 1), y) * 3).backward()
    for k, single in enumerate(singles):
        alone = single(x[:, k:k + 1])
        assert torch.allclose(alone, out[:, k:k + 1], atol=1e-5)
        torch.nn.functional.cross_entropy(alone[:, 0], y[:, k]).backward()
        first = single.layers[0].weight.grad
        assert torch.allclose(first, grouped.layers[0].weight.grad[6 * k:6 * (k + 1)], atol=1e-5)
    # Table 7 widths: 6, 16, 120 convolution channels, 84 hidden, 2 outputs (per group).
    widths = [m.out_channels // 3 for m in grouped.layers if isinstance(m, torch.nn.Conv2d)]
    assert widths == [6, 16, 120, 84, 2]


def test_thirty_two_pixels_reach_one_by_one_before_the_classifier() -> None:
    model = GroupedLeNet(1)
    features = model.layers[:11](torch.zeros(2, 3, 32, 32))  # through the third convolution
    assert features.shape == (2, 120, 1, 1)


def test_dvn_pixels_resize_and_quantise() -> None:
    images = torch.full((2, 3, 64, 64), -1.0)
    images[1] = 1.0
    small = dvn_pixels(images, 32)
    assert small.dtype == torch.uint8 and small.shape == (2, 3, 32, 32)
    assert small[0].max() == 0 and small[1].min() == 255


def test_balanced_batches_draw_both_pseudo_classes_equally() -> None:
    labels = torch.zeros(1, 1000, dtype=torch.long)
    labels[0, :10] = 1  # 1 % positives
    settings = DVNSettings(steps=200, batch_size=32)
    batches = _batches(0, 0, [0], labels, settings)
    assert batches.shape == (200, 1, 32)
    share = labels[0, batches.flatten()].float().mean()
    assert 0.45 < share < 0.55
    uniform = _batches(0, 0, [0], torch.zeros(1, 1000, dtype=torch.long), settings)
    assert uniform.unique().numel() > 900  # one class: plain uniform sampling


def test_fit_learns_a_plain_split_per_group() -> None:
    """Group 0 sees dark vs bright images, group 1 the same images with random labels."""
    rng = torch.Generator().manual_seed(0)
    labels = torch.randint(2, (256,), generator=rng)
    images = torch.where(labels.view(-1, 1, 1, 1).bool(), 200, 50).to(torch.uint8).expand(-1, 3, 32, 32)
    noise = torch.randint(-30, 30, images.shape, generator=rng)
    images = (images + noise).clamp(0, 255).to(torch.uint8)
    both = torch.stack([labels, torch.randint(2, (256,), generator=rng)])
    model = fresh_model([seeded_rng(0, 1), seeded_rng(0, 2)], torch.device("cpu"))
    settings = DVNSettings(steps=60)
    fit(model, images.expand(2, *images.shape), both, _batches(0, 9, [0, 1], both, settings), 1e-3)
    accuracy = (predict(model, images.expand(2, *images.shape)) == both).float().mean(1)
    assert accuracy[0] > 0.98 and accuracy[1] < 0.8


def test_generated_pairs_are_plus_then_minus(world: ToyWorld) -> None:
    background = world.factor_directions[:, :1]
    z, classes = world.sample_z(4, 0), world.sample_classes(4, 0)
    pairs = generated_pairs(world, background, z, classes, DVNSettings(generator_batch=3))
    assert pairs.shape == (1, 8, 3, 32, 32)
    plus, minus = pairs[0, :4].float(), pairs[0, 4:].float()
    assert plus.mean() > minus.mean() + 40  # +6 along bg_white whitens the background
    expected = dvn_pixels(world(z + 6 * background[:, 0], classes), 32)
    assert (pairs[0, :4].int() - expected.int()).abs().max() <= 1


def test_dvn_known_cases_full_settings(world: ToyWorld) -> None:
    """docs/method.md §2 settings: no effect scores exactly 0.5 (each image twice, once per label); the
    background-whiteness direction (a plain effect) scores at least 0.95."""
    settings = DVNSettings()
    directions = torch.stack([inactive_direction(world),
                              world.factor_directions[:, world.factor_names.index("bg_white")]], dim=1)
    real = generated_images(world, settings.samples, settings.resolution, seeded_rng(0, Stream.RANK_REAL))
    scores = dvn_scores(world, directions, real, settings, seed=0)
    assert scores[0] == 0.5
    assert scores[1] >= 0.95


def test_same_seed_same_dvn_whatever_the_chunks(world: ToyWorld) -> None:
    directions = world.factor_directions[:, [5, 10]]
    real = generated_images(world, QUICK.samples, QUICK.resolution, seeded_rng(0, Stream.RANK_REAL))
    first = dvn_scores(world, directions, real, QUICK, seed=1)
    assert torch.equal(first, dvn_scores(world, directions, real, QUICK, seed=1))
    # Chunks of one direction give each direction the same seeds: equal up to float rounding.
    chunked = dvn_scores(world, directions, real, dataclasses.replace(QUICK, chunk=1), seed=1)
    assert torch.allclose(first, chunked, atol=0.05)


def test_dvn_top_is_the_mean_of_the_highest() -> None:
    scores = torch.tensor([0.5, 0.9, 0.7, 1.0])
    assert dvn_top(scores, 2) == pytest.approx(0.95)
    assert dvn_top(scores, 50) == pytest.approx(0.775)
