"""toyscene against its known answers: factor geometry, whitening of the background only, the
paper's threshold rule against the true masks, natural-image statistics, determinism, gradients."""

from __future__ import annotations

import pytest
import torch

from saliency.errors import UserError
from saliency.generators import available, load
from saliency.generators.toyscene import FACTOR_NAMES, MASK_THRESHOLD, SHAPES, ToyScene
from saliency.masks import MaskRule, synthesize_batch


@pytest.fixture(scope="module")
def scene() -> ToyScene:
    return load("toyscene")


@pytest.fixture(scope="module")
def batch(scene: ToyScene) -> tuple[torch.Tensor, torch.Tensor]:
    rng = torch.Generator().manual_seed(1)
    return scene.sample_z(256, rng), scene.sample_classes(256, rng)


def z_with(scene: ToyScene, **values: float) -> torch.Tensor:
    """A latent ``(1, d)`` whose factor values are ``values`` (others 0)."""
    f = torch.zeros(len(scene.factor_names))
    for name, value in values.items():
        f[scene.factor_names.index(name)] = value
    return (scene.factor_directions @ f).unsqueeze(0)


def direction(scene: ToyScene, name: str) -> torch.Tensor:
    return scene.factor_directions[:, scene.factor_names.index(name)]


def test_registered_with_options_and_no_weights() -> None:
    assert "toyscene" in available()
    scene = load("toyscene", weights="random", dim_z=40, resolution=32, seed=3)
    assert (scene.dim_z, scene.resolution, scene.seed) == (40, 32, 3)
    assert scene(scene.sample_z(2), scene.sample_classes(2)).shape == (2, 3, 32, 32)
    with pytest.raises(UserError, match="toyscene has no weights"):
        load("toyscene", weights="G_ema.pth")
    with pytest.raises(UserError, match="dim_z"):
        load("toyscene", dim_z=len(FACTOR_NAMES) - 1)
    assert scene.class_names == list(SHAPES)


def test_factor_directions_orthonormal_and_factors_are_projections(scene: ToyScene) -> None:
    directions = scene.factor_directions
    assert torch.allclose(directions.T @ directions, torch.eye(len(FACTOR_NAMES)), atol=1e-5)
    assert directions.abs().max() < 0.9, "no factor is a coordinate of z"
    z = z_with(scene, obj_x=1.5, bg_blur=-0.5)
    factors = scene.factors(z)
    assert factors["obj_x"].item() == pytest.approx(1.5, abs=1e-5)
    assert factors["bg_blur"].item() == pytest.approx(-0.5, abs=1e-5)
    assert factors["bg_white"].item() == pytest.approx(0.0, abs=1e-5)


def test_whitening_changes_the_background_only_and_makes_it_white(scene: ToyScene, batch) -> None:
    z, classes = batch
    before, after = scene(z, classes), scene(z + 26 * direction(scene, "bg_white"), classes)
    mask = scene.object_mask(z, classes)
    # The shift moves the other factors by float rounding only (z + 26·d is not exact).
    assert (mask - scene.object_mask(z + 26 * direction(scene, "bg_white"), classes)).abs().max() < 1e-3
    inside = mask > 0.9999  # the background shows through a coverage of c by at most 2·(1 - c)
    assert torch.allclose(before * inside, after * inside, atol=5e-4), "the object is untouched"
    outside = scene.object_mask(z, classes) < 0.001
    assert float(after.add(1).div(2)[outside.expand_as(after)].min()) > 0.99


def test_threshold_rule_recovers_the_true_masks(scene: ToyScene, batch) -> None:
    """The paper's rule along the true direction: the known answer the quickstart's masks rest on."""
    z, classes = batch
    found = synthesize_batch(scene, z, classes, direction(scene, "bg_white"), 26.0, MaskRule())
    truth = (scene.object_mask(z, classes) > MASK_THRESHOLD)[:, 0]
    iou = (found.masks & truth).flatten(1).sum(1) / (found.masks | truth).flatten(1).sum(1).clamp_min(1)
    assert iou.median() >= 0.97 and (iou >= 0.95).float().mean() >= 0.85
    assert found.keep.float().mean() >= 0.85, "most objects cover 5-50 % of the image"


def test_objects_are_off_centre_at_many_sizes(scene: ToyScene, batch) -> None:
    z, classes = batch
    masks = (scene.object_mask(z, classes) > MASK_THRESHOLD)[:, 0].float()
    area = masks.flatten(1).mean(1)
    assert 0.04 < float(area.quantile(0.1)) and float(area.quantile(0.9)) < 0.5
    grid = (torch.arange(64) + 0.5) / 64
    centre_x = (masks.sum(1) * grid).sum(1) / masks.sum((1, 2)).clamp_min(1)
    # Centres spread over ±1/8 of the frame (toyscene._SPREAD); the quartile is 0.075-0.081 over seeds.
    assert float((centre_x - 0.5).abs().quantile(0.75)) > 0.05, "not always centred"


def test_objects_near_the_middle_and_only_large_ones_reach_the_frame_edge(scene: ToyScene, batch) -> None:
    """As the module says: centres within an eighth of the frame's width of the middle, so an object
    touches the frame's rim only when it is large (about a fifth of them: 0.15-0.25 over seeds 1-3)."""
    z, classes = batch
    masks = (scene.object_mask(z, classes) > MASK_THRESHOLD)[:, 0]
    rim = torch.ones(64, 64, dtype=torch.bool)
    rim[1:-1, 1:-1] = False
    touching = (masks & rim).flatten(1).any(1)
    area = masks.float().flatten(1).mean(1)
    assert 0.05 < float(touching.float().mean()) < 0.4
    assert float(area[touching].median()) > 1.5 * float(area[~touching].median())


def test_background_texture_has_a_natural_spectrum(scene: ToyScene) -> None:
    """Power falling about as 1/f² with frequency, as in photographs (a slope between -3 and -1)."""
    z = z_with(scene, bg_texture=3.0, bg_blur=-3.0, bg_clutter=-3.0, bg_saturation=-3.0, obj_scale=-6.0,
               distractor_size=-6.0, bg_gradient=0.0)
    image = scene(z, torch.zeros(1, dtype=torch.long))[0].mean(0)
    power = torch.fft.rfft2(image - image.mean()).abs().square()
    fy, fx = torch.meshgrid(torch.fft.fftfreq(64), torch.fft.rfftfreq(64), indexing="ij")
    radius = torch.sqrt(fx ** 2 + fy ** 2)
    bands = [(0.03, 0.06), (0.06, 0.12), (0.12, 0.24)]
    levels = torch.stack([power[(radius >= a) & (radius < b)].mean() for a, b in bands]).log2()
    slope = float((levels[-1] - levels[0]) / 2)  # per octave, over two octaves
    assert -3.0 < slope < -1.0


def test_blur_defocuses_the_background_not_the_object(scene: ToyScene) -> None:
    sharp = scene(z_with(scene, bg_blur=-3.0, bg_texture=2.0, bg_clutter=2.0), torch.zeros(1, dtype=torch.long))
    soft = scene(z_with(scene, bg_blur=3.0, bg_texture=2.0, bg_clutter=2.0), torch.zeros(1, dtype=torch.long))
    mask = scene.object_mask(z_with(scene), torch.zeros(1, dtype=torch.long))

    def detail(image: torch.Tensor, where: torch.Tensor) -> float:
        dx = (image[..., :, 1:] - image[..., :, :-1]).abs()[..., 1:-1, :]
        return float(dx[where[..., 1:-1, 1:].expand_as(dx)].mean())

    background = mask < 0.01
    assert detail(soft, background) < 0.6 * detail(sharp, background)
    inside = mask > 0.9999
    assert inside.float().mean() > 0.03
    assert torch.allclose(sharp * inside, soft * inside, atol=5e-4)


def test_deterministic_seeded_and_differentiable(scene: ToyScene, batch) -> None:
    z, classes = batch[0][:4], batch[1][:4]
    assert torch.equal(scene(z, classes), load("toyscene")(z, classes))
    other = load("toyscene", seed=1)
    assert not torch.equal(other.factor_directions, scene.factor_directions)
    moved = z.clone().requires_grad_()
    scene(moved, classes).square().mean().backward()
    assert moved.grad is not None and torch.isfinite(moved.grad).all() and moved.grad.abs().sum() > 0
