"""Pictures of a discovery run: direction grids, what each direction does.

A person judges directions by eye before trusting the automatic choice of stage 2, so every block
of directions gets one PNG: a row per direction, a column per shift, all from one latent code.
"""

from __future__ import annotations

from pathlib import Path

import torch

from saliency.discovery.deformators import Deformator
from saliency.generators.base import Generator, as_torch_generator
from saliency.images import tile, write_grid

GRID_SHIFTS = (-9.0, -6.0, -3.0, 0.0, 3.0, 6.0, 9.0)
GRID_BLOCK = 16
_SMOOTHING = 100  # steps averaged per point of the curves (at most)


@torch.no_grad()
def save_direction_grids(generator: Generator, deformator: Deformator, folder: Path, seed: int,
                         classes: list[int] | None = None, truncation: float | None = None,
                         shifts: tuple[float, ...] = GRID_SHIFTS, block: int = GRID_BLOCK) -> list[Path]:
    """One PNG per ``block`` directions: row k shows G(z + A(s·e_k)) for s in ``shifts``."""
    rng = as_torch_generator(seed)
    z = generator.sample_z(1, rng, truncation)
    label = generator.sample_classes(1, rng, choices=classes)
    eps = torch.tensor(shifts, dtype=z.dtype, device=z.device)
    deformator.eval()
    paths = []
    for first in range(0, deformator.num_directions, block):
        rows = range(first, min(first + block, deformator.num_directions))
        images = [generator(z + deformator(torch.full_like(eps, k, dtype=torch.long), eps), label.expand(len(eps)))
                  for k in rows]
        grid = tile(torch.cat(images).float().cpu().add(1).div(2).clamp(0, 1), len(shifts))
        paths.append(write_grid(Path(folder) / f"directions_{rows[0]:03d}-{rows[-1]:03d}.png", grid))
    return paths
