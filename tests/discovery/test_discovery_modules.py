"""Deformators, reconstructors and objectives: shapes, invariants and hand-computed losses."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
import torch.nn.functional as F

from saliency.discovery.deformators import DEFORMATORS, FCDeformator, FixedDeformator, build_deformator
from saliency.discovery.objectives import ShiftSampler, build_objective, centroid_loss
from saliency.discovery.reconstructors import RECONSTRUCTORS, build_reconstructor
from saliency.errors import UserError
from saliency.generators import load


def _scramble(module: torch.nn.Module, seed: int = 3) -> None:
    """Move every parameter away from its initial value, as training would."""
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=rng))


def test_ortho_random_start_is_the_authors_distribution() -> None:
    """Authors' code (random_init, on by default): L ~ N(0, 1), A = first K columns of exp(L − Lᵀ)."""
    deformator = build_deformator("ortho", 120, 120, seed=3)
    torch.manual_seed(3)
    assert torch.equal(deformator.log_mat_half.detach(), torch.randn(120, 120)), "L is one N(0, 1) draw of the seed"
    values = deformator.log_mat_half.detach().flatten().double()
    # 14,400 draws: the mean within 4 standard errors of 0, the spread and the share within one
    # standard deviation as a standard normal's (0.6827).
    assert abs(float(values.mean())) < 4 / 120
    assert abs(float(values.std()) - 1) < 0.03
    assert abs(float((values.abs() < 1).double().mean()) - 0.6827) < 0.02
    columns = deformator.directions().double()
    skew = (deformator.log_mat_half - deformator.log_mat_half.T).detach().double()
    assert torch.allclose(columns, torch.linalg.matrix_exp(skew), atol=1e-5)
    assert torch.allclose(columns.T @ columns, torch.eye(120, dtype=torch.float64), atol=1e-5)
    assert float(columns.diagonal().abs().max()) < 0.5, "a random rotation, nowhere near the coordinate axes"


def test_ortho_identity_start_is_the_coordinate_axes_and_stays_orthonormal() -> None:
    deformator = build_deformator("ortho", 12, 7, seed=0, init="identity")
    assert torch.equal(deformator.directions(), torch.eye(12)[:, :7])
    _scramble(deformator)
    columns = deformator.directions().double()
    assert torch.allclose(columns.T @ columns, torch.eye(7, dtype=torch.float64), atol=1e-5)
    assert not torch.allclose(columns, torch.eye(12, dtype=torch.float64)[:, :7], atol=0.1)


@pytest.mark.parametrize("name", ["ortho", "unit-norm"])
def test_column_deformators_shift_by_eps_times_a_unit_column(name: str) -> None:
    deformator = build_deformator(name, 10, 6, seed=0)
    _scramble(deformator)
    k, eps = torch.tensor([0, 5, 2]), torch.tensor([1.5, -3.0, 0.5])
    columns = deformator.directions()
    assert deformator.exact_columns
    assert torch.allclose(columns.norm(dim=0), torch.ones(6), atol=1e-6)
    assert torch.allclose(deformator(k, eps), eps[:, None] * columns.T[k], atol=1e-6)


def test_linear_deformator_adds_its_bias_and_keeps_column_lengths() -> None:
    deformator = build_deformator("linear", 10, 4, seed=0)
    with torch.no_grad():
        deformator.linear.weight.mul_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
        deformator.linear.bias.fill_(0.5)
    shift = deformator(torch.tensor([3]), torch.tensor([2.0]))
    assert torch.allclose(shift[0], 2.0 * deformator.linear.weight[:, 3] + 0.5)
    assert not deformator.exact_columns
    assert torch.allclose(deformator.directions().norm(dim=0), torch.ones(4))


def test_fc_deformator_shifts_by_length_abs_eps_and_summarises_unit_columns() -> None:
    deformator = FCDeformator(8, 5, hidden=32)
    k, eps = torch.tensor([0, 1, 2, 3, 4, 0]), torch.tensor([1.0, -2.0, 4.0, -6.0, 0.5, 3.0])
    assert torch.allclose(deformator(k, eps).norm(dim=1), eps.abs(), atol=1e-5)
    deformator.train()
    columns = deformator.directions()
    assert deformator.training, "directions() must restore the training mode"
    assert columns.shape == (8, 5) and torch.allclose(columns.norm(dim=0), torch.ones(5), atol=1e-5)


def test_fixed_deformator_has_nothing_to_learn() -> None:
    deformator = FixedDeformator(torch.tensor([[3.0, 0.0], [4.0, 2.0]]))
    assert list(deformator.parameters()) == []
    assert torch.allclose(deformator.directions(), torch.tensor([[0.6, 0.0], [0.8, 1.0]]))


def test_deformator_registry_seeds_and_errors() -> None:
    assert set(DEFORMATORS) == {"ortho", "unit-norm", "linear", "fc"}
    first, second = (build_deformator("unit-norm", 6, 3, seed=7) for _ in range(2))
    assert torch.equal(first.weight, second.weight)
    with pytest.raises(UserError, match="exceeds the latent dimension"):
        build_deformator("ortho", 4, 5, seed=0)
    with pytest.raises(UserError, match="discover.deformator"):
        build_deformator("spline", 4, 2, seed=0)
    with pytest.raises(UserError, match="discover.init = 'zeros'"):
        build_deformator("ortho", 4, 2, seed=0, init="zeros")
    with pytest.raises(UserError, match="does not apply to deformator fc"):
        build_deformator("fc", 4, 2, seed=0, init="identity")


def test_linear_and_unit_norm_starts() -> None:
    """Linear: the authors' 0.1·N(0, 1) (random) or the coordinate axes; unit-norm likewise."""
    linear = build_deformator("linear", 10, 4, seed=5)
    torch.manual_seed(5)
    torch.nn.Linear(4, 10)  # the layer's own default draws come first
    assert torch.equal(linear.linear.weight.detach(), 0.1 * torch.randn(10, 4))
    assert torch.equal(build_deformator("linear", 10, 4, seed=5, init="identity").linear.weight.detach(),
                       torch.eye(10, 4))
    assert torch.equal(build_deformator("unit-norm", 10, 4, seed=5, init="identity").directions(), torch.eye(10, 4))


def test_resnet_reconstructor_first_conv_is_kaiming_normal_fan_out() -> None:
    """Authors' code: conv1 (6 -> 64, 7×7) re-initialised with kaiming normal, fan_out, ReLU gain:
    std sqrt(2 / (64·49)) = 0.0253 (PyTorch's layer default would give 0.0337, uniform)."""
    weight = build_reconstructor("resnet18", 9, 64, seed=0).backbone.conv1.weight.detach().double().flatten()
    expected = math.sqrt(2 / (64 * 49))
    assert abs(float(weight.std()) / expected - 1) < 0.03 and abs(float(weight.mean())) < 0.002
    kurtosis = float(((weight - weight.mean()) ** 4).mean() / weight.var() ** 2)
    assert 2.8 < kurtosis < 3.2, "normal (kurtosis 3), not uniform (1.8)"


def test_one_training_step_loss_is_the_paper_formula_on_real_modules() -> None:
    """The objective on toyworld, the random-start ortho deformator and a LeNet reconstructor: the
    loss equals CE(k, R's logits) + 0.25·mean|ε − R's ε̂| recomputed by hand on the same batch."""
    world = load("toyworld", dim_z=16, resolution=32)
    deformator = build_deformator("ortho", 16, 16, seed=0)
    reconstructor = build_reconstructor("lenet", 16, 32, seed=0)
    sampler = ShiftSampler(6.0, 0.5)
    z, classes = world.sample_z(8, 1), world.sample_classes(8, 1)
    out = build_objective("voynov", sampler, 0.25, 0.0)(
        world, deformator, reconstructor, z, classes, torch.Generator().manual_seed(2), contextlib.nullcontext)
    k, eps = sampler(8, 16, torch.Generator().manual_seed(2), torch.device("cpu"))
    shift = eps[:, None] * deformator.directions().T[k]
    logits, eps_hat = reconstructor(world(z, classes), world(z + shift, classes))
    expected = F.cross_entropy(logits, k) + 0.25 * (eps_hat - eps).abs().mean()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.terms["classification"].item() == pytest.approx(F.cross_entropy(logits, k).item(), rel=1e-5)


@pytest.mark.parametrize(("name", "resolution"), [("lenet", 32), ("lenet", 128), ("resnet18", 64)])
def test_reconstructors_take_a_pair_and_give_logits_and_a_shift(name: str, resolution: int) -> None:
    reconstructor = build_reconstructor(name, 9, resolution, seed=0)
    first, second = torch.rand(2, 3, resolution, resolution), torch.rand(2, 3, resolution, resolution)
    logits, shift = reconstructor(first, second)
    assert logits.shape == (2, 9) and shift.shape == (2,)
    convolutions = [m for m in reconstructor.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convolutions[0].in_channels == 6
    assert set(RECONSTRUCTORS) == {"lenet", "resnet18"}
    with pytest.raises(UserError, match="discover.reconstructor"):
        build_reconstructor("vgg", 9, 32, seed=0)


def test_shift_sampler_keeps_eps_off_zero_and_within_scale() -> None:
    k, eps = ShiftSampler(6.0, 0.5)(4000, 7, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert eps.abs().min() >= 0.5 and eps.abs().max() <= 6.0
    assert (eps < 0).float().mean().item() == pytest.approx(0.5, abs=0.05)
    assert set(k.tolist()) == set(range(7))
    # the interval (-0.5, 0.5) is folded onto its ends: about 1/12 of the draws sit at ±0.5
    assert (eps.abs() == 0.5).float().mean().item() == pytest.approx(1 / 12, abs=0.02)


class _Recorder(torch.nn.Module):
    """A reconstructor that predicts fixed logits and shifts and records the pairs it was shown."""

    def __init__(self, logits: torch.Tensor, shifts: torch.Tensor) -> None:
        super().__init__()
        self.logits, self.shifts, self.seen = logits, shifts, []

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.seen.append((first, second))
        return self.logits, self.shifts


def _identity_generator(z: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    return z.view(len(z), 1, 1, -1)


def test_voynov_loss_is_cross_entropy_plus_weighted_l1() -> None:
    """One discovery step's loss on a fixed batch equals the paper's formula, CE(k) + 0.25·|ε − ε̂|."""
    sampler = ShiftSampler(6.0, 0.5)
    deformator = build_deformator("ortho", 4, 3, seed=0, init="identity")
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    logits, shifts = torch.randn(5, 3), torch.randn(5)
    recorder = _Recorder(logits, shifts)
    out = build_objective("voynov", sampler, 0.25, 0.0)(
        _identity_generator, deformator, recorder, z, torch.zeros(5), torch.Generator().manual_seed(1),
        contextlib.nullcontext)
    k, eps = sampler(5, 3, torch.Generator().manual_seed(1), torch.device("cpu"))
    expected = F.cross_entropy(logits, k) + 0.25 * (shifts - eps).abs().mean()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    original, shifted = recorder.seen[0]
    assert torch.equal(original.flatten(1), z)
    assert torch.allclose(shifted.flatten(1) - z, eps[:, None] * torch.eye(4)[:, :3].T[k], atol=1e-6)
    assert out.accuracy.item() == (logits.argmax(1) == k).float().mean().item()


def test_lu_reconstructs_two_consecutive_shifts() -> None:
    sampler = ShiftSampler(6.0, 0.5)
    deformator = build_deformator("unit-norm", 4, 3, seed=0)
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    recorder = _Recorder(torch.zeros(10, 3), torch.zeros(10))
    out = build_objective("lu", sampler, 0.5, 0.25)(
        _identity_generator, deformator, recorder, z, torch.zeros(5), torch.Generator().manual_seed(1),
        contextlib.nullcontext)
    k, eps = sampler(10, 3, torch.Generator().manual_seed(1), torch.device("cpu"))
    first, second = recorder.seen[0]
    columns = deformator.directions()
    once = z + eps[:5, None] * columns.T[k[:5]]
    twice = once + eps[5:, None] * columns.T[k[5:]]
    assert torch.allclose(first.flatten(1), torch.cat([z, once]), atol=1e-6)
    assert torch.allclose(second.flatten(1), torch.cat([once, twice]), atol=1e-6)
    # linear codes of one direction all point the same way once sign-corrected: no centroid loss
    assert out.terms["centroid"].item() == pytest.approx(0.0, abs=1e-6)
    expected = F.cross_entropy(torch.zeros(10, 3), k) + 0.5 * eps.abs().mean()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_centroid_loss_known_values() -> None:
    codes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, -3.0]])
    k = torch.tensor([0, 0, 1, 1])
    # direction 0: centroid (1, 1), cos 1/sqrt(2) for both; direction 1: centroid (2, -3)
    cos_1 = torch.tensor([2.0 / 13**0.5, 3.0 / 13**0.5])
    expected = (2 * (1 - 2**-0.5) + (1 - cos_1).sum()) / 4
    assert centroid_loss(codes, k, 2).item() == pytest.approx(expected.item(), rel=1e-6)
    assert centroid_loss(codes[[0, 2]], torch.tensor([0, 0]), 2).item() == pytest.approx(0.0, abs=1e-7)


def test_unknown_objective_is_a_user_error() -> None:
    with pytest.raises(UserError, match="discover.method"):
        build_objective("sefa", ShiftSampler(), 0.25, 0.25)


def test_shift_weight_defaults_to_each_papers_lambda() -> None:
    from saliency.discovery.objectives import ShiftSampler, build_objective

    sampler = ShiftSampler(6.0, 0.5)
    assert build_objective("voynov", sampler, None, 0.25).shift_weight == 0.25  # Voynov & Babenko
    assert build_objective("lu", sampler, None, 0.25).shift_weight == 0.5  # Lu et al.
    assert build_objective("lu", sampler, 0.1, 0.25).shift_weight == 0.1
