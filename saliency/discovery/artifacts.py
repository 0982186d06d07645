"""The files stage 1 hands to later stages: ``directions.pt`` and ``reconstructor.pt``.

This module is the one place their format is written and read. ``directions.pt`` is a plain dict
(loadable with ``weights_only=True``): ``directions`` (dim_z×K float32, unit-norm columns),
``lengths`` (K float32: each direction's stored length, 1 for trained and closed-form directions,
the published length of an imported vector such as BigBiGAN's ``bg_direction.pth``),
``method``, ``deformator`` (its type), ``deformator_state`` (the deformator's state dict when the
unit columns alone do not reproduce its shifts, else None), ``generator`` (registered name),
``dim_z`` and ``format``. Shifts move along ``unit column × length`` (:attr:`Directions.vectors`),
so a published direction is used at its stored length with its published shift, never silently
renormalised; analyses of direction (cosines, DVN's length-6 shift) use the unit columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from saliency.errors import UserError
from saliency.runs import atomic_torch_save, load_torch_file

DIRECTIONS_FILE = "directions.pt"
RECONSTRUCTOR_FILE = "reconstructor.pt"
FORMAT_VERSION = 2  # 2 added ``lengths``; a version-1 file reads with lengths of 1
_UNIT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Directions:
    """K latent directions of one generator, as unit-norm columns of a (dim_z, K) matrix."""

    directions: torch.Tensor
    method: str
    deformator: str
    generator: str
    deformator_state: dict[str, torch.Tensor] | None = None
    lengths: torch.Tensor | None = None  # (K,); None = every direction of length 1

    @property
    def dim_z(self) -> int:
        return self.directions.shape[0]

    @property
    def vectors(self) -> torch.Tensor:
        """``(dim_z, K)``: the directions at their stored lengths, what a shift multiplies."""
        return self.directions if self.lengths is None else self.directions * self.lengths.to(self.directions)

    @property
    def count(self) -> int:
        return self.directions.shape[1]


def save_directions(path: Path, found: Directions) -> Path:
    """Write ``found`` to ``path`` atomically; columns must be unit-norm (a bug otherwise)."""
    norms = found.directions.norm(dim=0)
    if found.directions.dim() != 2 or not torch.allclose(norms, torch.ones_like(norms), atol=_UNIT_TOLERANCE):
        raise ValueError("directions must be a (dim_z, K) matrix with unit-norm columns")
    state = None if found.deformator_state is None else {
        key: value.detach().cpu().clone() for key, value in found.deformator_state.items()}
    lengths = torch.ones(found.count) if found.lengths is None else found.lengths
    if lengths.shape != (found.count,) or not bool((lengths > 0).all()):
        raise ValueError("lengths must be K positive numbers")
    return atomic_torch_save({
        "format": FORMAT_VERSION,
        "directions": found.directions.detach().float().cpu().contiguous(),
        "lengths": lengths.detach().float().cpu().contiguous(),
        "method": found.method,
        "deformator": found.deformator,
        "deformator_state": state,
        "generator": found.generator,
        "dim_z": found.dim_z,
    }, Path(path))


def load_directions(path: Path, dim_z: int | None = None, generator: str | None = None) -> Directions:
    """Read a ``directions.pt``; with ``dim_z`` / ``generator`` given, check it belongs to that generator.

    Anything wrong (missing, not this format, other generator) is a :class:`UserError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: directions file not found; run `saliency discover` for this run first")
    raw = load_torch_file(path, "directions file", "run `saliency discover` again (--force)")
    found = _parse(raw, path)
    if dim_z is not None:
        check_latent_size(found, dim_z, path)
    if generator is not None and found.generator != generator:
        raise UserError(f"{path}: directions were discovered for generator {found.generator!r}, not {generator!r}; "
                        f"rerun `saliency discover` for this generator")
    return found


def check_latent_size(found: Directions, dim_z: int, path: Path) -> None:
    """``found`` (read from ``path``) lives in a ``dim_z``-dimensional latent space, or a UserError."""
    if found.dim_z != dim_z:
        raise UserError(f"{path}: directions are {found.dim_z}-dimensional ({found.generator}), the generator's "
                        f"latent space is {dim_z}-dimensional; rerun `saliency discover` for this generator")


def save_reconstructor(path: Path, reconstructor: torch.nn.Module, name: str, num_directions: int) -> Path:
    """Write the trained reconstructor (type, K and state dict) atomically."""
    state = {key: value.detach().cpu() for key, value in reconstructor.state_dict().items()}
    return atomic_torch_save({"format": FORMAT_VERSION, "reconstructor": name,
                              "num_directions": num_directions, "state": state}, Path(path))


def _parse(raw: Any, path: Path) -> Directions:
    required = {"directions": torch.Tensor, "method": str, "deformator": str, "generator": str, "dim_z": int}
    if not isinstance(raw, dict) or any(not isinstance(raw.get(key), kind) for key, kind in required.items()):
        raise UserError(f"{path}: not a directions file written by `saliency discover` "
                        f"(expected entries {', '.join(required)})")
    matrix = raw["directions"]
    if matrix.dim() != 2 or matrix.shape[0] != raw["dim_z"] or not matrix.is_floating_point():
        raise UserError(f"{path}: 'directions' has shape {tuple(matrix.shape)}, expected ({raw['dim_z']}, K) floats")
    norms = matrix.norm(dim=0)
    if not torch.allclose(norms, torch.ones_like(norms), atol=_UNIT_TOLERANCE):
        raise UserError(f"{path}: the direction columns are not unit-norm; the file is damaged, rerun discover")
    state = raw.get("deformator_state")
    if state is not None and not isinstance(state, dict):
        raise UserError(f"{path}: 'deformator_state' must be a state dict or None")
    lengths = raw.get("lengths", torch.ones(matrix.shape[1]))
    if not isinstance(lengths, torch.Tensor) or lengths.shape != (matrix.shape[1],) or not bool((lengths > 0).all()):
        raise UserError(f"{path}: 'lengths' must hold {matrix.shape[1]} positive numbers; the file is damaged, "
                        f"rerun discover")
    return Directions(directions=matrix.float(), method=raw["method"], deformator=raw["deformator"],
                      generator=raw["generator"], deformator_state=state, lengths=lengths.float())
