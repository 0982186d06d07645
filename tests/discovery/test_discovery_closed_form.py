"""Closed-form directions (known answers) and the directions artifact."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from saliency.discovery.artifacts import Directions, load_directions, save_directions
from saliency.discovery.closed_form import CLOSED_FORM, ClosedFormRequest
from saliency.discovery.deformators import OrthoDeformator
from saliency.errors import UserError


def _request(generator, **changes) -> ClosedFormRequest:
    return ClosedFormRequest(**{"generator": generator, "generator_name": "linear", "num_directions": None,
                                "seed": 0, **changes})


def _assert_same_up_to_sign(found: torch.Tensor, expected: torch.Tensor, atol: float) -> None:
    cosines = (found.double() * expected.double()).sum(0).abs()
    assert torch.allclose(cosines, torch.ones_like(cosines), atol=atol), cosines


def test_sefa_returns_the_right_singular_vectors_of_the_first_layer(linear_generator, known_layer) -> None:
    _, _, v = known_layer
    found = CLOSED_FORM["sefa"](_request(linear_generator, num_directions=4))
    assert found.directions.shape == (6, 4) and found.deformator == "ortho" and found.method == "sefa"
    _assert_same_up_to_sign(found.directions, v[:, :4], atol=1e-6)
    peaks = found.directions.gather(0, found.directions.abs().argmax(0, keepdim=True))
    assert (peaks > 0).all(), "each vector's largest entry is made positive"


def test_ganspace_maps_feature_pca_back_to_the_latent_directions(linear_generator, known_layer) -> None:
    _, _, v = known_layer
    found = CLOSED_FORM["ganspace"](_request(linear_generator, num_directions=3, samples=4000, batch_size=1000))
    _assert_same_up_to_sign(found.directions, v[:, :3], atol=1e-2)  # sampling error of a 4000-sample PCA
    assert found.deformator == "unit-norm"


def test_random_and_coordinate_baselines(linear_generator) -> None:
    random = CLOSED_FORM["random"](_request(linear_generator, seed=4)).directions.double()
    assert torch.allclose(random.T @ random, torch.eye(6, dtype=torch.float64), atol=1e-6)
    assert torch.equal(random, CLOSED_FORM["random"](_request(linear_generator, seed=4)).directions.double())
    assert not torch.allclose(random, CLOSED_FORM["random"](_request(linear_generator, seed=5)).directions.double())
    assert torch.equal(CLOSED_FORM["coordinate"](_request(linear_generator, num_directions=2)).directions,
                       torch.eye(6)[:, :2])
    with pytest.raises(UserError, match="discover.directions = 7"):
        CLOSED_FORM["coordinate"](_request(linear_generator, num_directions=7))


def test_import_reads_the_authors_ortho_deformator(linear_generator, tmp_path: Path) -> None:
    published = OrthoDeformator(6, 6)
    with torch.no_grad():
        published.log_mat_half.copy_(torch.randn(6, 6, generator=torch.Generator().manual_seed(0)))
    path = tmp_path / "deformator_0.pt"
    torch.save({"log_mat_half": published.log_mat_half.detach().clone()}, path)
    found = CLOSED_FORM["import"](_request(linear_generator, import_path=path))
    expected = torch.linalg.matrix_exp(published.log_mat_half - published.log_mat_half.T)
    assert torch.allclose(found.directions, expected.detach(), atol=1e-6)
    assert found.deformator == "ortho" and found.deformator_state is None


def test_import_reads_a_linear_deformator_and_keeps_its_state(linear_generator, tmp_path: Path) -> None:
    weight, bias = torch.tensor([[3.0, 0.0]] * 3 + [[0.0, 2.0]] * 3).reshape(6, 2), torch.full((6,), 0.1)
    torch.save({"linear.weight": weight, "linear.bias": bias}, tmp_path / "linear.pt")
    found = CLOSED_FORM["import"](_request(linear_generator, import_path=tmp_path / "linear.pt"))
    assert torch.allclose(found.directions, weight / weight.norm(dim=0))
    assert found.deformator == "linear"
    assert torch.equal(found.deformator_state["linear.weight"], weight)
    assert torch.equal(found.deformator_state["linear.bias"], bias)


def test_import_reads_a_single_published_vector_unnormalised(linear_generator, tmp_path: Path) -> None:
    vector = torch.tensor([[0.0, 2.0, 0.0, 0.0, 0.0, 0.0]])
    torch.save(vector, tmp_path / "bg_direction.pth")
    found = CLOSED_FORM["import"](_request(linear_generator, import_path=tmp_path / "bg_direction.pth"))
    assert torch.equal(found.directions, torch.eye(6)[:, 1:2])
    assert torch.equal(found.lengths, torch.tensor([2.0])), "kept at its stored length, never renormalised"
    assert torch.equal(found.vectors, vector.T) and found.deformator == "vector"


@pytest.mark.parametrize(("content", "message"), [
    ({"something": torch.zeros(3)}, "not a published deformator"),
    ({"log_mat_half": torch.zeros(5, 5)}, r"log_mat_half has shape \(5, 5\)"),
    ({"linear.weight": torch.zeros(6, 2), "linear.bias": torch.zeros(4)}, "linear.bias has shape"),
    (torch.zeros(7), "the vector has shape"),
])
def test_import_rejects_wrong_files_naming_them(linear_generator, tmp_path: Path, content, message: str) -> None:
    path = tmp_path / "wrong.pt"
    torch.save(content, path)
    with pytest.raises(UserError, match=message) as error:
        CLOSED_FORM["import"](_request(linear_generator, import_path=path))
    assert "wrong.pt" in str(error.value)


def test_import_rejects_unreadable_and_missing_files(linear_generator, tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="junk.pt"):
        CLOSED_FORM["import"](_request(linear_generator, import_path=tmp_path / "junk.pt"))
    with pytest.raises(UserError, match="not found"):
        CLOSED_FORM["import"](_request(linear_generator, import_path=tmp_path / "absent.pt"))
    with pytest.raises(UserError, match="import_path"):
        CLOSED_FORM["import"](_request(linear_generator))


def test_directions_round_trip_and_checks(tmp_path: Path) -> None:
    columns = torch.linalg.qr(torch.randn(8, 3, generator=torch.Generator().manual_seed(0)))[0]
    state = {"linear.weight": torch.ones(8, 3), "linear.bias": torch.zeros(8)}
    path = save_directions(tmp_path / "directions.pt", Directions(columns, "voynov", "linear", "toyworld", state))
    loaded = load_directions(path, dim_z=8, generator="toyworld")
    assert torch.allclose(loaded.directions, columns) and loaded.count == 3 and loaded.dim_z == 8
    assert (loaded.method, loaded.deformator, loaded.generator) == ("voynov", "linear", "toyworld")
    assert torch.equal(loaded.deformator_state["linear.weight"], state["linear.weight"])
    with pytest.raises(UserError, match="latent space is 120-dimensional"):
        load_directions(path, dim_z=120)
    with pytest.raises(UserError, match="'toyworld', not 'biggan-128'"):
        load_directions(path, generator="biggan-128")
    with pytest.raises(ValueError, match="unit-norm"):
        save_directions(tmp_path / "bad.pt", Directions(columns * 2, "voynov", "ortho", "toyworld"))


@pytest.mark.parametrize(("content", "message"), [
    (b"garbage", "not a readable directions file"),
    ({"directions": torch.eye(3)}, "expected entries"),
    ({"directions": torch.eye(3) * 2, "method": "m", "deformator": "ortho", "generator": "g", "dim_z": 3},
     "not unit-norm"),
    ({"directions": torch.eye(3), "method": "m", "deformator": "ortho", "generator": "g", "dim_z": 4},
     r"shape \(3, 3\)"),
])
def test_load_directions_rejects_other_files(tmp_path: Path, content, message: str) -> None:
    path = tmp_path / "directions.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(UserError, match=message):
        load_directions(path)
    with pytest.raises(UserError, match="not found"):
        load_directions(tmp_path / "missing.pt")
