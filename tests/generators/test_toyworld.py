"""toyworld against its known answers: factor geometry, the whitening direction and the paper's
threshold rule, shapes drawn where the factors put them, determinism and gradients."""

from __future__ import annotations

import pytest
import torch

from saliency.errors import UserError
from saliency.generators import available, load
from saliency.generators.toyworld import FACTOR_NAMES, MASK_THRESHOLD, SHAPES, ToyWorld

THETA = 0.95  # docs/method.md §4: a pixel is object when its mean RGB in [0, 1] is below θ after the shift


@pytest.fixture(scope="module")
def world() -> ToyWorld:
    return load("toyworld")


@pytest.fixture(scope="module")
def batch(world: ToyWorld) -> tuple[torch.Tensor, torch.Tensor]:
    """512 samples: enough to count the few percent of near-white objects."""
    rng = torch.Generator().manual_seed(1)
    return world.sample_z(512, rng), world.sample_classes(512, rng)


def brightness(images: torch.Tensor) -> torch.Tensor:
    """Mean over RGB, mapped from [-1, 1] to [0, 1]: ``(N, 1, R, R)``."""
    return images.add(1).div(2).mean(1, keepdim=True)


def z_with(world: ToyWorld, **values: float) -> torch.Tensor:
    """A latent ``(1, d)`` whose factor values are ``values`` (others 0): directions are orthonormal."""
    f = torch.zeros(len(world.factor_names))
    for name, value in values.items():
        f[world.factor_names.index(name)] = value
    return (world.factor_directions @ f).unsqueeze(0)


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1), b.flatten(1)
    return (a & b).sum(1) / (a | b).sum(1).clamp_min(1)


def test_registered_with_options_and_no_weights() -> None:
    assert "toyworld" in available()
    world = load("toyworld", weights="random", dim_z=20, resolution=32, seed=3)
    assert (world.dim_z, world.resolution, world.seed) == (20, 32, 3)
    assert world(world.sample_z(2), world.sample_classes(2)).shape == (2, 3, 32, 32)
    with pytest.raises(UserError, match="toyworld has no weights"):
        load("toyworld", weights="G_ema.pth")
    with pytest.raises(UserError, match="dim_z"):
        load("toyworld", dim_z=len(FACTOR_NAMES) - 1)


def test_classes_are_shapes(world: ToyWorld) -> None:
    assert world.class_names == list(SHAPES)
    assert world.n_classes == len(SHAPES) >= 6
    with pytest.raises(ValueError, match="class-conditional"):
        world(world.sample_z(1))
    with pytest.raises(ValueError, match="0..7"):
        world(world.sample_z(1), torch.tensor([8]))


def test_factor_directions_orthonormal_and_not_coordinates(world: ToyWorld) -> None:
    directions = world.factor_directions
    assert directions.shape == (world.dim_z, len(world.factor_names)) == (32, 15)
    torch.testing.assert_close(directions.T @ directions, torch.eye(15), atol=1e-5, rtol=0)
    assert directions.abs().amax(0).max() < 0.9  # every factor mixes several coordinates of z
    assert world.factor_names[0] == "bg_white"


def test_sefa_on_first_layer_recovers_factor_directions(world: ToyWorld) -> None:
    weight = world.first_layer_weight()
    assert weight.shape == (15, 32)
    eigenvalues, eigenvectors = torch.linalg.eigh(weight.T @ weight)
    top = eigenvectors[:, eigenvalues.argsort(descending=True)[:15]]
    cosines = (top.T @ world.factor_directions).abs()
    torch.testing.assert_close(cosines, torch.eye(15), atol=1e-4, rtol=0)  # in order: bg_white first
    z = world.sample_z(4, seed=0)
    torch.testing.assert_close(world.early_features(z), z @ weight.T)


def test_factors_are_projections_of_z(world: ToyWorld) -> None:
    z = z_with(world, obj_x=0.7, bg_white=-1.2)
    f = world.factors(z)
    assert f["obj_x"].item() == pytest.approx(0.7, abs=1e-5)
    assert f["bg_white"].item() == pytest.approx(-1.2, abs=1e-5)
    # Latent dimensions outside the factors' span have no effect on the image.
    rest = torch.randn(1, 32, generator=torch.Generator().manual_seed(0))
    rest = rest - (rest @ world.factor_directions) @ world.factor_directions.T
    classes = torch.tensor([0])
    torch.testing.assert_close(world(z + 3 * rest, classes), world(z, classes), atol=1e-4, rtol=0)


def test_whiteness_shift_changes_background_only(world: ToyWorld, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    z, classes = batch[0][:64], batch[1][:64]
    h = world.factor_directions[:, 0]
    with torch.no_grad():
        change = (world(z + 12 * h, classes) - world(z, classes)).abs().mean(1, keepdim=True)
        inside = world.object_mask(z, classes) > MASK_THRESHOLD
    assert change[inside].mean() < 0.02
    assert change[~inside].mean() > 0.5


def test_shift_of_six_whitens_backgrounds_that_start_coloured(world: ToyWorld,
                                                               batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    z, classes = batch
    h = world.factor_directions[:, 0]
    with torch.no_grad():
        background = world.object_mask(z, classes) < 0.01
        before = brightness(world(z, classes))
        after = brightness(world(z + 6 * h, classes))
    white_before = ((before >= THETA) & background).flatten(1).sum(1) / background.flatten(1).sum(1)
    white_after = ((after >= THETA) & background).flatten(1).sum(1) / background.flatten(1).sum(1)
    assert (white_before > 0.5).float().mean() < 0.1  # ordinary backgrounds at normal z
    assert (white_after > 0.99).float().mean() > 0.98  # saturated at +6


@pytest.mark.parametrize("shift", [12.0, 26.0])
def test_threshold_rule_recovers_true_mask_except_near_white_objects(
        world: ToyWorld, batch: tuple[torch.Tensor, torch.Tensor], shift: float) -> None:
    z, classes = batch
    h = world.factor_directions[:, 0]
    with torch.no_grad():
        truth = world.object_mask(z, classes) > MASK_THRESHOLD
        found = brightness(world(z + shift * h, classes)) < THETA
        own = brightness(world(z, classes))
    # Near-white: some of the object itself is as bright as the whitened background.
    near_white = ((own > 0.9) & truth).flatten(1).sum(1) / truth.flatten(1).sum(1) > 0.02
    scores = iou(found, truth)
    assert 0.01 <= near_white.float().mean() <= 0.1
    assert scores[~near_white].mean() >= 0.95
    assert scores[~near_white].min() >= 0.85
    assert scores[near_white].mean() < 0.85
    assert near_white[scores < 0.85].all()  # the failures are the near-white objects


@pytest.mark.parametrize("shape", ["disk", "square"])
def test_binary_mask_is_the_shape_where_the_factors_put_it(shape: str) -> None:
    world = ToyWorld(resolution=64)
    # obj_x = obj_y = 0: centred; obj_scale = 0: radius 0.4; obj_rotation = 0: axis-aligned.
    z = z_with(world)
    mask = world.object_mask(z, torch.tensor([world.class_names.index(shape)]))[0, 0] > MASK_THRESHOLD
    coords = (torch.arange(64) + 0.5) / 32 - 1
    y, x = coords.view(-1, 1), coords.view(1, -1)
    scale = 0.4
    if shape == "disk":
        distance = torch.sqrt(x**2 + y**2) - scale
    else:
        distance = torch.maximum(x.abs(), y.abs()) - 0.886 * scale
    expected = distance < 0
    assert iou(mask[None], expected[None]).item() > 0.98
    assert (mask != expected)[distance.abs() * 32 > 0.5].sum() == 0  # only boundary pixels may differ


def test_rendered_object_is_inside_the_mask(world: ToyWorld) -> None:
    # Plain dark object (no texture, no lighting) on a white background: dark pixels = the mask.
    z = z_with(world, bg_white=8.0, obj_shade=-2.0, obj_texture=-8.0, obj_scale=1.0, obj_x=-0.5)
    for index in range(world.n_classes):
        classes = torch.tensor([index])
        with torch.no_grad():
            dark = brightness(world(z, classes)) < 0.5
            truth = world.object_mask(z, classes) > MASK_THRESHOLD
        assert iou(dark, truth).item() > 0.97, world.class_names[index]


def test_deterministic_and_seeded(world: ToyWorld) -> None:
    z = world.sample_z(8, seed=5)
    classes = world.sample_classes(8, seed=5)
    torch.testing.assert_close(z, world.sample_z(8, seed=5))
    torch.testing.assert_close(classes, world.sample_classes(8, seed=5))
    assert not torch.equal(z, world.sample_z(8, seed=6))
    images = world(z, classes)
    torch.testing.assert_close(images, load("toyworld")(z, classes), rtol=0, atol=0)
    assert images.min() >= -1 and images.max() <= 1
    assert images.std() > 0.2
    same = ToyWorld(seed=0).factor_directions
    other = ToyWorld(seed=1).factor_directions
    torch.testing.assert_close(same, world.factor_directions, rtol=0, atol=0)
    assert (same * other).sum(0).abs().max() < 0.99


def test_sample_helpers(world: ToyWorld) -> None:
    z = world.sample_z(1000, seed=0)
    assert z.shape == (1000, 32) and abs(z.mean().item()) < 0.05 and abs(z.std().item() - 1) < 0.05
    assert world.sample_z(100, seed=0, truncation=0.5).abs().max() <= 1.0
    classes = world.sample_classes(1000, seed=0)
    assert classes.dtype == torch.long and set(classes.tolist()) == set(range(world.n_classes))
    assert set(world.sample_classes(100, seed=0, choices=[2, 5]).tolist()) == {2, 5}


def test_differentiable_in_z(world: ToyWorld) -> None:
    z = world.sample_z(16, seed=2).requires_grad_()
    classes = torch.arange(16) % world.n_classes
    (world(z, classes).square().sum() + world.object_mask(z, classes).sum()).backward()
    assert torch.isfinite(z.grad).all()
    # Every factor moves the image; the directions outside the factors do not.
    along = z.grad @ world.factor_directions
    assert (along.abs() > 1e-3).any(0).all()
    residual = z.grad - along @ world.factor_directions.T
    assert residual.abs().max() < 1e-3


def test_object_mask_soft_in_unit_range(world: ToyWorld, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    z, classes = batch[0][:32], batch[1][:32]
    mask = world.object_mask(z, classes)
    assert mask.shape == (32, 1, 64, 64)
    assert mask.min() >= 0 and mask.max() <= 1
    area = (mask > MASK_THRESHOLD).float().mean((1, 2, 3))
    assert ((area > 0.03) & (area < 0.4)).all()
