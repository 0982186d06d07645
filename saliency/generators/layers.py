"""Building blocks shared by the BigGAN family.

Both published BigGAN checkpoints store spectrally normalised weights, but in two layouts that
also estimate the top singular value σ differently at inference time:

* :class:`StoredUVSpectralNorm` — the ``torch.nn.utils.spectral_norm`` layout used by
  pytorch-pretrained-biggan (``weight_orig``, ``weight_u``, ``weight_v``): σ = uᵀ W v from the
  stored vectors, as that module computes it in eval mode.
* :class:`PowerStepSpectralNorm` — the BigGAN-PyTorch layout (``weight``, ``u0``, ``sv0``): one
  power-iteration step from the stored ``u0``; the vectors are never written back, as in
  BigGAN-PyTorch's eval mode (``sv0`` is a training log only, kept so checkpoints load strictly).

Both are linear layers when built with :meth:`~_SpectralNormLayer.linear` and "same"-padded
convolutions when built with :meth:`~_SpectralNormLayer.conv`. Generators here are frozen, so
neither layout ever updates its vectors, in train mode either — and W/σ, which then depends on the
stored tensors alone, is computed once and kept (in fp32, and in the autocast dtype when one is
active) until a stored tensor changes: see :meth:`~_SpectralNormLayer.normalized_weight`. The
references recompute it at every forward; :func:`spectral_norm_cache` turns the cache off to time
that path side by side (``benchmarks/generator_speed.py --against-references``).
"""

from __future__ import annotations

import abc
import contextlib
import math
from collections.abc import Iterator
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

_Layer = TypeVar("_Layer", bound="_SpectralNormLayer")
_CACHE_ENABLED = True


@contextlib.contextmanager
def spectral_norm_cache(enabled: bool) -> Iterator[None]:
    """Within the block, frozen layers keep (``True``, the default) or recompute (``False``, as the
    reference implementations do) W/σ at every forward."""
    global _CACHE_ENABLED
    previous, _CACHE_ENABLED = _CACHE_ENABLED, enabled
    try:
        yield
    finally:
        _CACHE_ENABLED = previous


def sigma_stored_uv(weight: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """σ = uᵀ W v with W the weight flattened to (out, in)."""
    return torch.dot(u, weight.flatten(1) @ v)


def sigma_power_step(weight: torch.Tensor, u: torch.Tensor, eps: float) -> torch.Tensor:
    """σ after one power-iteration step from ``u`` (1, out): v = ‖uW‖⁻¹ uW, u' = ‖Wv‖⁻¹ Wv,
    σ = u'ᵀ W v. The vectors carry no gradient (only W does), as in BigGAN-PyTorch."""
    w = weight.flatten(1)
    with torch.no_grad():
        v = F.normalize(u @ w, dim=1, eps=eps)
        u = F.normalize(v @ w.t(), dim=1, eps=eps)
    return ((v @ w.t()) * u).sum()


class _SpectralNormLayer(nn.Module, abc.ABC):
    """A linear (2-d weight) or same-padded conv (4-d weight) layer whose weight is divided by σ."""

    bias: nn.Parameter | None

    def __init__(self, weight_shape: tuple[int, ...], bias: bool) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.empty(weight_shape[0])) if bias else None
        self._kept: dict[torch.dtype, tuple[tuple, torch.Tensor]] = {}  # dtype -> (stored tensors' state, W/σ)

    @classmethod
    def linear(cls: type[_Layer], in_features: int, out_features: int, bias: bool = True, **kwargs: Any) -> _Layer:
        return cls((out_features, in_features), bias, **kwargs)

    @classmethod
    def conv(cls: type[_Layer], in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
             **kwargs: Any) -> _Layer:
        return cls((out_channels, in_channels, kernel_size, kernel_size), bias, **kwargs)

    @abc.abstractmethod
    def raw_weight(self) -> torch.Tensor:
        """The stored, unnormalised weight."""

    @abc.abstractmethod
    def sigma(self) -> torch.Tensor:
        """This layout's estimate of the top singular value of :meth:`raw_weight`."""

    def normalized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """W / σ computed in the weight's own precision even under autocast (σ in bf16 is 0.4 % off),
        then given in ``dtype`` (default: the weight's).

        When no gradient can reach the weight (a frozen generator, or under ``no_grad``) it depends
        on the stored tensors alone, so it is kept and reused until one of them changes in place or
        moves (their version counters and storage are the key): a frozen generator pays for it once."""
        weight = self.raw_weight()
        dtype = dtype or weight.dtype
        if not _CACHE_ENABLED or (torch.is_grad_enabled() and weight.requires_grad) or torch.compiler.is_compiling():
            return self._divide_by_sigma().to(dtype)
        state = tuple((t._version, t.data_ptr(), t.device) for t in (weight, *self.buffers(recurse=False)))
        kept = self._kept.get(dtype)
        if kept is None or kept[0] != state:
            with torch.inference_mode(False), torch.no_grad():  # usable in and out of inference mode
                kept = (state, self._divide_by_sigma().to(dtype))
            self._kept[dtype] = kept
        return kept[1]

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        """``.to()``, ``.float()``…: new storage, whose address may be one the kept W/σ was keyed by."""
        self._kept.clear()
        return super()._apply(fn, recurse)

    def _divide_by_sigma(self) -> torch.Tensor:
        weight = self.raw_weight()
        with torch.autocast(device_type=weight.device.type, enabled=False):
            return weight / self.sigma()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device_type = x.device.type
        autocasting = torch.is_autocast_enabled(device_type)
        weight = self.normalized_weight(torch.get_autocast_dtype(device_type) if autocasting else None)
        if weight.dim() == 2:
            return F.linear(x, weight, self.bias)
        return F.conv2d(x, weight, self.bias, padding=weight.shape[-1] // 2)

    def _init_weight_and_bias(self, weight: torch.Tensor) -> None:
        """The default init of ``nn.Linear``/``nn.Conv2d``, for random-weight models."""
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)


class StoredUVSpectralNorm(_SpectralNormLayer):
    """``torch.nn.utils.spectral_norm`` layout: ``weight_orig``, ``bias``, ``weight_u``, ``weight_v``."""

    weight_u: torch.Tensor  # buffer
    weight_v: torch.Tensor  # buffer

    def __init__(self, weight_shape: tuple[int, ...], bias: bool = True, power_iterations: int = 10) -> None:
        super().__init__(weight_shape, bias)
        self.weight_orig = nn.Parameter(torch.empty(weight_shape))
        self.register_buffer("weight_u", torch.empty(weight_shape[0]))
        self.register_buffer("weight_v", torch.empty(math.prod(weight_shape[1:])))
        self.power_iterations = int(power_iterations)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Random weights with u, v from a few power iterations: with arbitrary u and v, uᵀWv
        can be near zero and the layer blow up."""
        self._init_weight_and_bias(self.weight_orig)
        self.reset_singular_vectors()

    @torch.no_grad()
    def reset_singular_vectors(self) -> None:
        w = self.weight_orig.flatten(1)
        v = F.normalize(torch.randn(w.shape[1]), dim=0)
        for _ in range(self.power_iterations):
            u = F.normalize(w @ v, dim=0)
            v = F.normalize(w.t() @ u, dim=0)
        self.weight_u.copy_(F.normalize(w @ v, dim=0))
        self.weight_v.copy_(v)

    def raw_weight(self) -> torch.Tensor:
        return self.weight_orig

    def sigma(self) -> torch.Tensor:
        return sigma_stored_uv(self.weight_orig, self.weight_u, self.weight_v)


class PowerStepSpectralNorm(_SpectralNormLayer):
    """BigGAN-PyTorch layout: ``weight``, ``bias``, ``u0`` (1, out), ``sv0`` (1,)."""

    u0: torch.Tensor  # buffer
    sv0: torch.Tensor  # buffer

    def __init__(self, weight_shape: tuple[int, ...], bias: bool = True, eps: float = 1e-12) -> None:
        super().__init__(weight_shape, bias)
        self.weight = nn.Parameter(torch.empty(weight_shape))
        self.register_buffer("u0", torch.randn(1, weight_shape[0]))
        self.register_buffer("sv0", torch.ones(1))
        self.eps = eps
        self._init_weight_and_bias(self.weight)

    def raw_weight(self) -> torch.Tensor:
        return self.weight

    def sigma(self) -> torch.Tensor:
        return sigma_power_step(self.weight, self.u0, self.eps)

    def extra_repr(self) -> str:
        return f"weight={tuple(self.weight.shape)}, eps={self.eps}"


def self_attention(x: torch.Tensor, theta: nn.Module, phi: nn.Module, g: nn.Module, o: nn.Module,
                   gamma: torch.Tensor) -> torch.Tensor:
    """SAGAN self-attention as both BigGANs use it: queries θ(x) at every position, keys φ(x) and
    values g(x) max-pooled 2×2, unscaled softmax over keys, output x + γ·o(attended values)."""
    n, _, h, w = x.shape
    query = theta(x).flatten(2).transpose(1, 2)                       # (n, hw, c/8)
    key = F.max_pool2d(phi(x), 2).flatten(2).transpose(1, 2)          # (n, hw/4, c/8)
    value = F.max_pool2d(g(x), 2).flatten(2).transpose(1, 2)          # (n, hw/4, c/2)
    attended = F.scaled_dot_product_attention(query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1),
                                              scale=1.0).squeeze(1)   # (n, hw, c/2)
    return x + gamma * o(attended.transpose(1, 2).reshape(n, -1, h, w))
