"""The interface every generator implements, so that every stage drives any of them the same way."""

from __future__ import annotations

import abc
from typing import Protocol, runtime_checkable

import torch
from torch import nn


def as_torch_generator(seed: int | torch.Generator | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` from a seed (or the one given), so randomness is explicit and repeatable."""
    if isinstance(seed, torch.Generator):
        return seed
    gen = torch.Generator(device=device)
    gen.manual_seed(0 if seed is None else int(seed))
    return gen


class Generator(nn.Module, abc.ABC):
    """A (class-conditional) image generator with a Gaussian latent space.

    Subclasses set ``dim_z``, ``n_classes`` (0 = unconditional), ``resolution`` and
    ``class_names`` and implement :meth:`forward`. Images come out as ``(N, 3, R, R)`` in
    ``[-1, 1]``.
    """

    dim_z: int
    n_classes: int
    resolution: int
    class_names: list[str]

    def sample_z(
        self, n: int, seed: int | torch.Generator | None = None, truncation: float | None = None
    ) -> torch.Tensor:
        """``n`` latent codes z ~ N(0, I); with ``truncation`` t, values are resampled until
        |z| <= 2 and scaled by t (the BigGAN truncation trick)."""
        gen = as_torch_generator(seed)
        z = torch.randn(n, self.dim_z, generator=gen)
        if truncation is not None:
            outside = z.abs() > 2
            while outside.any():
                z[outside] = torch.randn(int(outside.sum()), generator=gen)
                outside = z.abs() > 2
            z = z * truncation
        return z.to(self.device)

    def sample_classes(self, n: int, seed: int | torch.Generator | None = None,
                       choices: list[int] | None = None) -> torch.Tensor:
        """``n`` class ids drawn uniformly from ``choices`` (default: all classes; zeros when
        unconditional)."""
        if self.n_classes == 0:
            return torch.zeros(n, dtype=torch.long, device=self.device)
        gen = as_torch_generator(seed)
        pool = torch.as_tensor(choices if choices is not None else range(self.n_classes), dtype=torch.long)
        return pool[torch.randint(len(pool), (n,), generator=gen)].to(self.device)

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for buffer in self.buffers():
            return buffer.device
        return torch.device("cpu")

    @abc.abstractmethod
    def forward(self, z: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        """Images ``(N, 3, R, R)`` in [-1, 1] for latents ``z`` ``(N, dim_z)`` and int ``classes``
        ``(N,)`` (ignored when unconditional)."""

    def first_layer_weight(self) -> torch.Tensor:
        """Weight ``(out, dim_z)`` of the first layer that maps z (or the part of it that z feeds),
        for closed-form direction methods such as SeFa."""
        raise NotImplementedError(f"{type(self).__name__} declares no first layer")

    def early_features(self, z: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        """Flattened activations ``(N, F)`` of an early layer, for GANSpace-style PCA."""
        raise NotImplementedError(f"{type(self).__name__} declares no early layer")


@runtime_checkable
class KnowsObjects(Protocol):
    """A generator that knows its ground truth (toyworld, toyscene): previews and held-out evaluation use it."""

    def object_mask(self, z: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Object coverage ``(N, 1, R, R)`` in [0, 1]."""
