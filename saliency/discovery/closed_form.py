"""Directions without training: SeFa, GANSpace, random, coordinate axes, and the authors' published files.

Each method takes a :class:`ClosedFormRequest` and returns :class:`~.artifacts.Directions`, the same
artifact training produces, so every later stage treats them alike.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from saliency.discovery.artifacts import Directions
from saliency.discovery.deformators import LinearDeformator, OrthoDeformator
from saliency.errors import UserError
from saliency.generators.base import Generator, as_torch_generator
from saliency.generators.weights import resolve_published_directions
from saliency.runs import load_torch_file


@dataclass(frozen=True)
class ClosedFormRequest:
    """What a closed-form method may use: the generator, K (None = dim_z) and the method's inputs."""

    generator: Generator
    generator_name: str
    num_directions: int | None
    seed: int
    classes: list[int] | None = None
    truncation: float | None = None
    import_path: Path | None = None
    samples: int = 2048
    batch_size: int = 64


def sefa(request: ClosedFormRequest) -> Directions:
    """Top-K eigenvectors of WᵀW, W the generator's first layer on z (Shen & Zhou 2021)."""
    try:
        weight = request.generator.first_layer_weight().detach().double().cpu()
    except NotImplementedError as error:
        raise UserError(f"method sefa needs the generator's first layer: {error}") from None
    count = _count(request, limit=request.generator.dim_z, why="SeFa has dim_z eigenvectors")
    values, vectors = torch.linalg.eigh(weight.T @ weight)
    order = values.argsort(descending=True)[:count]
    return _found(request, "sefa", "ortho", _signed(vectors[:, order]))


def ganspace(request: ClosedFormRequest) -> Directions:
    """PCA of an early layer's activations, mapped to z by regressing z on the PCA coordinates
    (Härkönen et al. 2020, their recipe for BigGAN)."""
    generator = request.generator
    rng = as_torch_generator(request.seed)
    z = generator.sample_z(request.samples, rng, request.truncation)
    classes = generator.sample_classes(request.samples, rng, choices=request.classes)
    try:
        with torch.no_grad():
            features = torch.cat([generator.early_features(zb, cb).flatten(1).float().cpu()
                                  for zb, cb in zip(z.split(request.batch_size), classes.split(request.batch_size))])
    except NotImplementedError as error:
        raise UserError(f"method ganspace needs the generator's early features: {error}") from None
    limit = min(generator.dim_z, features.shape[1], request.samples - 1)
    count = _count(request, limit=limit, why=f"PCA on {request.samples} samples of {features.shape[1]} features")
    coordinates = _principal_coordinates(features - features.mean(0), count)
    latents = z.double().cpu()
    solution = torch.linalg.lstsq(coordinates, latents - latents.mean(0)).solution  # (K, dim_z)
    return _found(request, "ganspace", "unit-norm", _signed(solution.T))


def random_directions(request: ClosedFormRequest) -> Directions:
    """Random orthonormal directions (Q of a Gaussian matrix), the paper's "random" baseline."""
    dim_z = request.generator.dim_z
    count = _count(request, limit=dim_z, why="orthonormal directions number at most dim_z")
    gaussian = torch.randn(dim_z, count, generator=as_torch_generator(request.seed), dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    return _found(request, "random", "ortho", q * torch.sign(torch.diagonal(r)))


def coordinate(request: ClosedFormRequest) -> Directions:
    """The first K coordinate axes of z, the paper's "coordinate" baseline."""
    dim_z = request.generator.dim_z
    count = _count(request, limit=dim_z, why="there are dim_z axes")
    return _found(request, "coordinate", "ortho", torch.eye(dim_z, count, dtype=torch.float64))


def import_published(request: ClosedFormRequest) -> Directions:
    """Directions from a deformator the authors published: an ``ortho`` state dict (``log_mat_half``),
    a ``linear`` one (``linear.weight``, ``linear.bias``) or a single latent vector (``bg_direction.pth``).
    Without ``import_path``, the file the authors published for the generator (cached or downloaded)."""
    if request.import_path is None:
        path = resolve_published_directions(request.generator_name)
    else:
        path = Path(request.import_path)
    if not path.is_file():
        raise UserError(f"discover.import_path {path}: file not found")
    published = load_torch_file(path, "deformator file", "give the authors' published .pt/.pth file")
    reader = _PUBLISHED_FORMATS.get(_format_key(published))
    if reader is None:
        raise UserError(f"{path}: not a published deformator; expected a state dict with 'log_mat_half' "
                        f"(ortho) or 'linear.weight' and 'linear.bias' (linear), or one latent vector")
    return reader(request, path, published)


def _from_ortho(request: ClosedFormRequest, path: Path, state: dict[str, torch.Tensor]) -> Directions:
    dim_z = request.generator.dim_z
    _check_shape(path, "log_mat_half", state["log_mat_half"], (dim_z, dim_z))
    count = _count(request, limit=dim_z, why="the file holds dim_z orthonormal columns")
    deformator = OrthoDeformator(dim_z, count, init="identity")
    deformator.load_state_dict({"log_mat_half": state["log_mat_half"].float()})
    return _found(request, "import", "ortho", deformator.directions())


def _from_linear(request: ClosedFormRequest, path: Path, state: dict[str, torch.Tensor]) -> Directions:
    weight, bias = state["linear.weight"], state["linear.bias"]
    dim_z = request.generator.dim_z
    _check_shape(path, "linear.weight", weight, (dim_z, weight.shape[1] if weight.dim() == 2 else -1))
    _check_shape(path, "linear.bias", bias, (dim_z,))
    count = _count(request, limit=weight.shape[1], why="the file holds that many columns")
    deformator = LinearDeformator(dim_z, count, init="identity")
    deformator.load_state_dict({"linear.weight": weight[:, :count].float(), "linear.bias": bias.float()})
    return _found(request, "import", "linear", deformator.directions(), deformator.state_dict())


def _from_vector(request: ClosedFormRequest, path: Path, vector: torch.Tensor) -> Directions:
    """One published latent vector (BigBiGAN's ``bg_direction.pth``), kept at its stored length: the
    authors shift by ``5 · vector`` as stored, so its length is part of the published shift."""
    vector = vector.reshape(-1).float()
    dim_z = request.generator.dim_z
    _check_shape(path, "the vector", vector, (dim_z,))
    if request.num_directions not in (None, 1):
        raise UserError(f"{path} holds one direction; leave discover.directions unset or 1")
    if not float(vector.norm()) > 0:
        raise UserError(f"{path}: the vector is zero; import the published bg_direction.pth")
    found = _found(request, "import", "vector", vector.unsqueeze(1))
    return dataclasses.replace(found, lengths=vector.norm().reshape(1))


_PUBLISHED_FORMATS: dict[Any, Callable[[ClosedFormRequest, Path, Any], Directions]] = {
    frozenset({"log_mat_half"}): _from_ortho,
    frozenset({"linear.weight", "linear.bias"}): _from_linear,
    "vector": _from_vector,
}


def _format_key(published: Any) -> Any:
    """Key into ``_PUBLISHED_FORMATS``: the set of state-dict keys, or "vector" for one 1-D latent."""
    if isinstance(published, torch.Tensor):
        return "vector" if published.dim() >= 1 and published.numel() == max(published.shape) else None
    if isinstance(published, dict) and all(isinstance(v, torch.Tensor) for v in published.values()):
        return frozenset(published)
    return None


def _check_shape(path: Path, what: str, tensor: torch.Tensor, expected: tuple[int, ...]) -> None:
    if tuple(tensor.shape) != expected:
        raise UserError(f"{path}: {what} has shape {tuple(tensor.shape)}, expected {expected} for this generator's "
                        f"{expected[0]}-dimensional latent space; import a deformator published for this generator")


def _principal_coordinates(centred: torch.Tensor, count: int) -> torch.Tensor:
    """Coordinates ``(N, count)`` of the rows of ``centred`` on its top principal axes.

    Uses the smaller of the Gram (N×N) and covariance (F×F) matrices, so wide features stay cheap.
    """
    rows, columns = centred.shape
    if rows <= columns:
        values, vectors = torch.linalg.eigh((centred @ centred.T).double())
        top = values.argsort(descending=True)[:count]
        return vectors[:, top] * values[top].clamp_min(0).sqrt()
    values, vectors = torch.linalg.eigh((centred.T @ centred).double())
    top = values.argsort(descending=True)[:count]
    return centred.double() @ vectors[:, top]


def _count(request: ClosedFormRequest, limit: int, why: str) -> int:
    count = request.num_directions if request.num_directions is not None else limit
    if count > limit:
        raise UserError(f"discover.directions = {count} is more than this method can give ({limit}: {why})")
    return count


def _found(request: ClosedFormRequest, method: str, deformator: str, matrix: torch.Tensor,
           state: dict[str, torch.Tensor] | None = None) -> Directions:
    """The artifact, columns scaled to unit length."""
    matrix = matrix.double()
    return Directions(directions=(matrix / matrix.norm(dim=0, keepdim=True)).float(), method=method,
                      deformator=deformator, generator=request.generator_name, deformator_state=state)


def _signed(matrix: torch.Tensor) -> torch.Tensor:
    """Columns flipped so each one's largest entry is positive: a fixed sign for eigen/PCA vectors,
    which have none of their own."""
    peaks = matrix.gather(0, matrix.abs().argmax(0, keepdim=True))
    return matrix * torch.where(peaks < 0, -1.0, 1.0).to(matrix.dtype)


CLOSED_FORM: dict[str, Callable[[ClosedFormRequest], Directions]] = {
    "sefa": sefa,
    "ganspace": ganspace,
    "random": random_directions,
    "coordinate": coordinate,
    "import": import_published,
}
