"""Generators behind one interface, found by name in a registry.

``load(name, weights=None, device="cpu")`` builds a registered generator; ``weights="random"``
keeps random weights (tests, benchmarks, smoke runs), drawn from a fixed seed so that every stage of
a run builds the same generator; anything else is resolved by :mod:`.weights`.
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch

from saliency.errors import UserError
from saliency.generators.base import Generator, as_torch_generator

_REGISTRY: dict[str, Callable[..., Generator]] = {}
RANDOM_WEIGHTS_SEED = 0


def register(name: str) -> Callable[[Callable[..., Generator]], Callable[..., Generator]]:
    """Decorator: register a builder ``builder(weights=..., **options) -> Generator`` under ``name``."""

    def wrap(builder: Callable[..., Generator]) -> Callable[..., Generator]:
        if name in _REGISTRY:
            raise ValueError(f"generator {name!r} registered twice")
        _REGISTRY[name] = builder
        return builder

    return wrap


def available() -> list[str]:
    _import_builtin()
    return sorted(_REGISTRY)


def load(name: str, weights: str | None = None, device: str | torch.device = "cpu", **options) -> Generator:
    """Build generator ``name`` with ``weights`` (a path, ``"random"``, or None for the published
    weights), in eval mode on ``device``."""
    _import_builtin()
    if name not in _REGISTRY:
        raise UserError(f"unknown generator {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}")
    accepted = [key for key in inspect.signature(_REGISTRY[name]).parameters if key != "weights"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UserError(f"generator.options.{unknown[0]} is not an option of {name}; "
                        f"its options: {', '.join(accepted) or 'none'}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)  # "random" weights: the same ones in every stage and process
        model = _REGISTRY[name](weights=weights, **options)
    return model.to(device).eval()


def _import_builtin() -> None:
    """Import the built-in generator modules so that they register themselves."""
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


_BUILTIN_MODULES: list[str] = [
    "saliency.generators.toyworld",
    "saliency.generators.toyscene",
    "saliency.generators.biggan",
    "saliency.generators.biggan_deep",
]

__all__ = ["Generator", "as_torch_generator", "available", "load", "register"]
