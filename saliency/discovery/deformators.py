"""Deformators: the learnable map A from a direction index k and a magnitude eps to a latent shift.

Every deformator answers ``forward(k, eps) -> (N, dim_z)`` shifts and ``directions() -> (dim_z, K)``
unit-norm columns, the form later stages use. For ``ortho`` and ``unit-norm`` the shift is exactly
eps times column k (``exact_columns``); for ``linear`` (columns of any length, plus a bias) and
``fc`` (an MLP) the columns are a summary and the artifact also keeps the deformator's state.
"""

from __future__ import annotations

import abc
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from saliency.errors import UserError

Init = Literal["random", "identity"]
INITS: tuple[str, ...] = ("random", "identity")

# Magnitude at which a nonlinear deformator is probed to summarise its directions as columns: the
# middle of the training range U[-6, 6].
PROBE_SHIFT = 3.0


class Deformator(nn.Module, abc.ABC):
    """Maps ``(k, eps)`` to a latent shift; subclasses define :meth:`forward` and :meth:`directions`."""

    exact_columns: bool = True

    def __init__(self, dim_z: int, num_directions: int, init: Init = "random") -> None:
        super().__init__()
        if init not in INITS:
            raise UserError(f"discover.init = {init!r} is not known; choose one of {', '.join(INITS)}")
        self.dim_z = dim_z
        self.num_directions = num_directions

    @abc.abstractmethod
    def forward(self, k: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Shifts ``(N, dim_z)`` for direction indices ``k`` ``(N,)`` and magnitudes ``eps`` ``(N,)``."""

    @abc.abstractmethod
    def directions(self) -> torch.Tensor:
        """``(dim_z, K)`` unit-norm columns, one per direction."""


class _ColumnDeformator(Deformator):
    """Shift = eps times column k of a matrix (d×K): ortho, unit-norm and fixed directions."""

    @abc.abstractmethod
    def matrix(self) -> torch.Tensor:
        """The (dim_z, K) matrix whose columns are the directions."""

    def forward(self, k: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return eps.unsqueeze(1) * self.matrix().T[k]

    @torch.no_grad()
    def directions(self) -> torch.Tensor:
        return self.matrix().detach().float().clone()


class OrthoDeformator(_ColumnDeformator):
    """First K columns of exp(L − Lᵀ): orthonormal by construction (paper's choice for BigGAN).

    ``init="random"`` draws L ~ N(0, 1), a random rotation, as the authors' code does by default
    (``random_init``, docs/method.md §1); ``"identity"`` starts at L = 0, A = the first K coordinate
    axes. ``log_mat_half`` has the name the authors' published state dicts use, so their files load.
    """

    def __init__(self, dim_z: int, num_directions: int, init: Init = "random") -> None:
        if num_directions > dim_z:
            raise UserError(f"discover.directions = {num_directions} exceeds the latent dimension {dim_z}: "
                            f"orthonormal directions need K <= {dim_z}; lower it or use deformator unit-norm")
        super().__init__(dim_z, num_directions, init)
        start = torch.randn(dim_z, dim_z) if init == "random" else torch.zeros(dim_z, dim_z)
        self.log_mat_half = nn.Parameter(start)

    def matrix(self) -> torch.Tensor:
        skew = self.log_mat_half - self.log_mat_half.T
        return torch.linalg.matrix_exp(skew)[:, : self.num_directions]


class UnitNormDeformator(_ColumnDeformator):
    """Free columns divided by their length (paper's choice for MNIST and ProgGAN); they start as
    Gaussian columns (``random``) or the first K coordinate axes (``identity``)."""

    def __init__(self, dim_z: int, num_directions: int, init: Init = "random") -> None:
        super().__init__(dim_z, num_directions, init)
        start = torch.randn(dim_z, num_directions) if init == "random" else torch.eye(dim_z, num_directions)
        self.weight = nn.Parameter(start)

    def matrix(self) -> torch.Tensor:
        return self.weight / self.weight.norm(dim=0, keepdim=True)


class FixedDeformator(_ColumnDeformator):
    """Given directions that do not learn: closed-form methods and the random/coordinate baselines."""

    columns: torch.Tensor  # buffer

    def __init__(self, directions: torch.Tensor) -> None:
        super().__init__(directions.shape[0], directions.shape[1])
        self.register_buffer("columns", directions / directions.norm(dim=0, keepdim=True))

    def matrix(self) -> torch.Tensor:
        return self.columns


class LinearDeformator(Deformator):
    """A general linear map with bias (authors' ``linear``); its columns tend to blow up (paper §3.3).

    Starts as the authors' code does: weight 0.1·N(0, 1) (``random``) or the first K coordinate axes
    (``identity``), the bias at PyTorch's default initialisation in both cases.
    """

    exact_columns = False

    def __init__(self, dim_z: int, num_directions: int, init: Init = "random") -> None:
        super().__init__(dim_z, num_directions, init)
        self.linear = nn.Linear(num_directions, dim_z)
        with torch.no_grad():
            start = 0.1 * torch.randn(dim_z, num_directions) if init == "random" else torch.eye(dim_z, num_directions)
            self.linear.weight.copy_(start)

    def forward(self, k: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return self.linear(eps.unsqueeze(1) * F.one_hot(k, self.num_directions).to(eps.dtype))

    @torch.no_grad()
    def directions(self) -> torch.Tensor:
        weight = self.linear.weight.detach().float()
        return weight / weight.norm(dim=0, keepdim=True)


class FCDeformator(Deformator):
    """Lu et al.'s MLP on eps·e_k: three hidden layers (batch norm, ELU) and an output layer.

    The shift is rescaled to length |eps|, as a unit-norm column would give, so the MLP cannot win
    the classification by growing its shifts (the failure of ``linear``). Layer names follow the
    authors' published ``fc`` state dicts (fc1..fc4, bn1..bn3). Its layers start at PyTorch's default
    initialisation (``random``); an MLP has no identity start.
    """

    exact_columns = False

    def __init__(self, dim_z: int, num_directions: int, init: Init = "random", hidden: int = 1024) -> None:
        if init != "random":
            raise UserError(f"discover.init = {init!r} does not apply to deformator fc (an MLP has no identity "
                            f"start); use init random")
        super().__init__(dim_z, num_directions, init)
        self.fc1, self.bn1 = nn.Linear(num_directions, hidden), nn.BatchNorm1d(hidden)
        self.fc2, self.bn2 = nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden)
        self.fc3, self.bn3 = nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden)
        self.fc4 = nn.Linear(hidden, dim_z)

    def forward(self, k: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        x = eps.unsqueeze(1) * F.one_hot(k, self.num_directions).to(eps.dtype)
        for fc, bn in ((self.fc1, self.bn1), (self.fc2, self.bn2), (self.fc3, self.bn3)):
            x = F.elu(bn(fc(x)))
        shift = self.fc4(x)
        return shift * (eps.abs() / shift.norm(dim=1).clamp_min(1e-12)).unsqueeze(1)

    @torch.no_grad()
    def directions(self) -> torch.Tensor:
        """Unit columns along the chord from −PROBE_SHIFT to +PROBE_SHIFT of each direction (eval mode)."""
        was_training = self.training
        self.eval()
        k = torch.arange(self.num_directions, device=self.fc1.weight.device)
        eps = torch.full((self.num_directions,), PROBE_SHIFT, device=k.device)
        chord = (self(k, eps) - self(k, -eps)).float().T
        self.train(was_training)
        return chord / chord.norm(dim=0, keepdim=True).clamp_min(1e-12)


DEFORMATORS: dict[str, Callable[[int, int, Init], Deformator]] = {
    "ortho": OrthoDeformator,
    "unit-norm": UnitNormDeformator,
    "linear": LinearDeformator,
    "fc": FCDeformator,
}


def build_deformator(name: str, dim_z: int, num_directions: int, seed: int, init: Init = "random") -> Deformator:
    """Deformator ``name`` for a ``dim_z`` latent space with K = ``num_directions``, started as ``init``
    says, its random draws from ``seed``."""
    if name not in DEFORMATORS:
        raise UserError(f"discover.deformator = {name!r} is not known; choose one of {', '.join(DEFORMATORS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DEFORMATORS[name](dim_z, num_directions, init)
