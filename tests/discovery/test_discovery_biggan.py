"""Discovery on the paper's generators (random weights): a few real training steps on CPU."""

from __future__ import annotations

import pytest
import torch

from saliency import generators
from saliency.discovery.closed_form import CLOSED_FORM, ClosedFormRequest
from saliency.discovery.deformators import build_deformator
from saliency.discovery.objectives import ShiftSampler, build_objective
from saliency.discovery.reconstructors import build_reconstructor
from saliency.discovery.train import TrainSettings, train


@pytest.fixture(scope="module", params=[("biggan-128", 120), ("biggan-deep-128", 128)], ids=lambda p: p[0])
def biggan(request):
    name, dim_z = request.param
    generator = generators.load(name, weights="random")
    assert generator.dim_z == dim_z and generator.resolution == 128
    return name, generator


def test_three_training_steps_at_batch_2(biggan) -> None:
    _, generator = biggan
    dim_z = generator.dim_z
    deformator = build_deformator("ortho", dim_z, dim_z, seed=0)
    reconstructor = build_reconstructor("resnet18", dim_z, generator.resolution, seed=0)
    objective = build_objective("voynov", ShiftSampler(), 0.25, 0.25)
    settings = TrainSettings(steps=3, batch_size=2, lr=1e-4, seed=0, classes=[239])
    history = train(generator, deformator, reconstructor, objective, settings, torch.device("cpu"))
    rows = torch.tensor(history.rows)
    assert rows.shape == (3, 4) and torch.isfinite(rows).all()
    columns = deformator.directions()
    assert columns.shape == (dim_z, dim_z) and columns.dtype == torch.float32
    assert torch.allclose(columns.T @ columns, torch.eye(dim_z), atol=1e-5)
    assert deformator.log_mat_half.abs().sum() > 0, "the latent shift's gradient reached the deformator"
    assert all(torch.isfinite(p).all() for p in reconstructor.parameters())
    assert not any(p.requires_grad for p in generator.parameters()), "the generator stays frozen"


@pytest.mark.parametrize(("method", "orthonormal"), [("sefa", True), ("ganspace", False)])
def test_closed_form_on_the_declared_first_layer(biggan, method: str, orthonormal: bool) -> None:
    name, generator = biggan
    request = ClosedFormRequest(generator=generator, generator_name=name, num_directions=10, seed=0, classes=[239],
                                samples=256)
    columns = CLOSED_FORM[method](request).directions
    assert columns.shape == (generator.dim_z, 10) and torch.isfinite(columns).all()
    gram = columns.T @ columns
    assert torch.allclose(gram.diagonal(), torch.ones(10), atol=1e-5)
    assert torch.allclose(gram, torch.eye(10), atol=1e-5) == orthonormal
