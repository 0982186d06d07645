"""A picture of what a generator draws, so a person can check it before spending a run on it.

``saliency generate`` writes one PNG: a grid of samples and, for generators that know their
ground truth (those with an ``object_mask`` method, such as toyworld), the object masks of the
same samples in a second grid to the right (white = object).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from saliency.errors import UserError
from saliency.generators.base import Generator, KnowsObjects, as_torch_generator
from saliency.images import tile, write_grid

_PADDING = 2
_PAD_VALUE = 0.5  # grey separators, visible against both white masks and dark images


def write_sample_grid(generator: Generator, n: int, seed: int, out: Path, classes: list[int] | None = None,
                      truncation: float | None = None) -> Path:
    """Write ``n`` samples (z and classes from ``seed``; classes drawn from ``classes`` when given)
    as a PNG grid at ``out``, with the true object masks beside them when the generator has them."""
    if n < 1:
        raise UserError(f"--n must be at least 1 (got {n})")
    if classes is not None:
        _check_classes(generator, classes)
    rng = as_torch_generator(seed)
    z = generator.sample_z(n, rng, truncation)
    labels = generator.sample_classes(n, rng, choices=classes)
    nrow = math.ceil(math.sqrt(n))
    with torch.no_grad():
        panels = [generator(z, labels).add(1).div(2).clamp(0, 1)]
        if isinstance(generator, KnowsObjects):
            panels.append(generator.object_mask(z, labels).expand(-1, 3, -1, -1))
    grids = [tile(panel.float().cpu(), nrow, _PADDING, _PAD_VALUE) for panel in panels]
    return write_grid(out, torch.cat(grids, dim=2))


def _check_classes(generator: Generator, classes: list[int]) -> None:
    """Reject class ids the generator does not have, naming the valid range."""
    if generator.n_classes == 0:
        raise UserError("--classes given, but this generator is unconditional; leave --classes out")
    bad = [c for c in classes if not 0 <= c < generator.n_classes]
    if bad or not classes:
        raise UserError(f"--classes {bad or classes} outside 0..{generator.n_classes - 1} (or empty); "
                        f"pass class ids of this generator")
