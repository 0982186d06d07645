"""Seconds per direction of stage 2 (DVN at the paper's settings, then the background-removal test).

    python benchmarks/rank_speed.py                      # toyworld on CPU, 8 random directions
    python benchmarks/rank_speed.py --device cuda        # biggan-128, random weights, K = 120

Directions are random unit vectors, real images fresh generator samples (``--real generated``), so
no weights or data are needed; what DVN costs does not depend on what the directions do. Printed:
real-image preparation, DVN per direction, and the mask test per candidate direction (2 signs ×
3 magnitudes × M samples).
"""

from __future__ import annotations

import argparse
import time

import torch

from saliency import generators
from saliency.distributed import resolve_device
from saliency.generators import Generator
from saliency.ranking.dvn import DVNSettings, dvn_scores
from saliency.ranking.real import GENERATED, real_images
from saliency.ranking.select import MaskSettings, score_candidates
from saliency.seeding import Stream, seeded_rng

DEFAULTS = {"cpu": ("toyworld", 8), "cuda": ("biggan-128", 120)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=sorted(DEFAULTS))
    parser.add_argument("--generator", default=None, help="registered generator (random weights)")
    parser.add_argument("--directions", type=int, default=None, help="K")
    parser.add_argument("--chunk", type=int, default=DVNSettings.chunk, help="directions trained at once")
    parser.add_argument("--batch-size", type=int, default=None, help="generator batch (default 64 CPU, 256 CUDA)")
    parser.add_argument("--candidates", type=int, default=4, help="directions put through the mask test")
    parser.add_argument("--mask-samples", type=int, default=256)
    args = parser.parse_args()
    device = resolve_device(args.device)
    name, count = DEFAULTS[args.device]
    name, count = args.generator or name, args.directions or count
    batch = args.batch_size or (256 if device.type == "cuda" else 64)
    generator = generators.load(name, weights="random", device=device).requires_grad_(False)
    directions = random_directions(generator.dim_z, count, device)
    settings = DVNSettings(chunk=args.chunk, generator_batch=batch)
    print(f"{name} on {device} ({torch.get_num_threads()} threads), K = {count}, DVN: {settings.samples} samples, "
          f"{settings.steps} steps, {settings.resolution} px, chunks of {settings.chunk}")

    real_seconds, seconds, scores = time_dvn(generator, directions, settings)
    print(f"real images (generated): {real_seconds:.1f} s")
    print(f"DVN: {seconds:.1f} s for {count} directions = {seconds / count:.2f} s per direction "
          f"(mean DVN {float(scores.mean()):.3f})")

    masks = MaskSettings(samples=args.mask_samples, batch_size=batch)
    candidates = min(args.candidates, count)
    per_candidate = time_mask_test(generator, directions, scores, candidates, masks)
    print(f"mask test: {per_candidate * candidates:.1f} s for {candidates} directions = {per_candidate:.2f} s per "
          f"candidate direction ({masks.samples} samples × 2 signs × {len(masks.magnitudes)} magnitudes)")


def random_directions(dim_z: int, count: int, device: torch.device) -> torch.Tensor:
    """``count`` seeded random unit directions ``(dim_z, count)``: what DVN costs does not depend on them."""
    directions = torch.randn(dim_z, count, generator=torch.Generator().manual_seed(0))
    return (directions / directions.norm(dim=0)).to(device)


def time_dvn(generator: Generator, directions: torch.Tensor,
             settings: DVNSettings) -> tuple[float, float, torch.Tensor]:
    """(seconds to generate the stand-in real images, seconds of DVN of every column of ``directions``,
    the DVN scores)."""
    device = generator.device
    start = _sync(device)
    real = real_images(GENERATED, settings.samples, settings.resolution, seeded_rng(0, Stream.RANK_REAL), generator, None,
                       settings.generator_batch)
    prepared = _sync(device)
    scores = dvn_scores(generator, directions, real, settings, seed=0)
    return prepared - start, _sync(device) - prepared, scores


def time_mask_test(generator: Generator, directions: torch.Tensor, scores: torch.Tensor, candidates: int,
                   masks: MaskSettings) -> float:
    """Seconds per candidate direction of the background-removal test of the first ``candidates``
    columns of ``directions`` (the unshifted images, shared by all of them, included)."""
    rng = seeded_rng(0, Stream.RANK_MASK)
    z, classes = generator.sample_z(masks.samples, rng), generator.sample_classes(masks.samples, rng)
    start = _sync(generator.device)
    score_candidates(generator, directions, list(range(candidates)), scores, z, classes, masks)
    return (_sync(generator.device) - start) / candidates


def _sync(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


if __name__ == "__main__":
    main()
