"""Accepted image/mask pairs per second of ``saliency synth-dataset`` and of the online mode.

    python benchmarks/synth_speed.py [--generators toyworld biggan-128] [--device cpu|cuda|auto]
                                     [--batch-size 32] [--batches 4] [--threads N]

Per generator (random weights; toyworld shifted along its true background direction, the others
along a random direction with the authors' shift of 26), and per precision (fp32; on CUDA also
bf16 autocast):

- online: draws/s through the generator, the mask rule and the area filter, the acceptance rate,
  and accepted pairs/s (draws/s × acceptance), the rate at which the online mode feeds a U-Net;
- shards: pairs/s written as PNG shards, the whole ``synth-dataset`` path. A random-weight BigGAN
  draws no object, so its filter accepts nothing; it is timed with the filter open ([0, 1]) and
  marked so — its figure is the cost per pair, not an acceptance.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import tempfile
import time
from pathlib import Path

import torch

from saliency import generators
from saliency.distributed import resolve_device
from saliency.synthesis.online import PairSampler, shard_draws
from saliency.synthesis.shards import write_shards

AUTHORS_SHIFT = 26.0


def build_sampler(name: str, device: torch.device, batch_size: int) -> PairSampler:
    generator = generators.load(name, weights="random", device=device).requires_grad_(False)
    if hasattr(generator, "factor_directions"):
        direction, shift = generator.factor_directions[:, generator.factor_names.index("bg_white")], 6.0
    else:
        direction, shift = torch.randn(generator.dim_z, generator=torch.Generator().manual_seed(0)), AUTHORS_SHIFT
    return PairSampler(generator, direction.to(device), shift, batch_size=batch_size)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def online_rate(sampler: PairSampler, batches: int, device: torch.device) -> tuple[float, float]:
    """(draws/s, acceptance) over ``batches`` batches after one warm-up batch."""
    draws = shard_draws(sampler, shard=0)
    list(itertools.islice(draws, sampler.batch_size))
    synchronize(device)
    start = time.perf_counter()
    kept = sum(draw.kept for draw in itertools.islice(draws, batches * sampler.batch_size))
    synchronize(device)
    return batches * sampler.batch_size / (time.perf_counter() - start), kept / (batches * sampler.batch_size)


def shard_rate(sampler: PairSampler, pairs: int) -> float:
    """Pairs/s written as one shard of ``pairs`` (after a one-batch warm-up shard)."""
    with tempfile.TemporaryDirectory() as tmp:
        write_shards(sampler, Path(tmp) / "warm", sampler.batch_size, sampler.batch_size)
        start = time.perf_counter()
        write_shards(sampler, Path(tmp) / "shards", pairs, pairs)
        return pairs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generators", nargs="+", default=["toyworld", "biggan-128"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 32 on CPU, 64 on CUDA")
    parser.add_argument("--batches", type=int, default=None, help="timed batches; default: 4 on CPU, 10 on CUDA")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = device.type == "cuda"
    batch_size = args.batch_size or (64 if cuda else 32)
    batches = args.batches or (10 if cuda else 4)
    where = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {where}; batch {batch_size}, {batches} timed batches")
    for name in args.generators:
        # BigGAN on a CPU takes about a second per image: fewer, smaller batches keep it to a minute.
        size = batch_size if cuda or name == "toyworld" else min(batch_size, 4)
        count = batches if cuda or name == "toyworld" else 2
        base = build_sampler(name, device, size)
        for precision in ("fp32", "bf16") if cuda else ("fp32",):
            sampler = dataclasses.replace(base, precision=precision)
            draws_per_s, acceptance = online_rate(sampler, count, device)
            open_filter = acceptance == 0
            loose = dataclasses.replace(sampler.rule, min_area=0.0, max_area=1.0)
            writer = dataclasses.replace(sampler, rule=loose) if open_filter else sampler
            written = shard_rate(writer, count * size)
            print(f"{name:>12} {precision}: online {draws_per_s:8.1f} draws/s, acceptance "
                  f"{acceptance:.3f}, {draws_per_s * acceptance:8.1f} accepted pairs/s; shards "
                  f"{written:8.1f} pairs/s{' (filter open: random weights accept nothing)' if open_filter else ''}")


if __name__ == "__main__":
    main()
