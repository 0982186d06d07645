"""Speed of stage 1 training: steps/s and images/s, and the projected time of the paper's 1e5 steps.

Runs the real training loop (``saliency.discovery.train.train``) with an ``ortho`` deformator and
K = dim_z: toyworld with the lenet reconstructor on CPU and, when a GPU is visible, biggan-128
(random weights) with ResNet-18 at batch 32 in fp32 and under bf16 autocast.

    python benchmarks/discover_speed.py [--steps 30] [--warmup 5] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch

from saliency import generators
from saliency.discovery.deformators import build_deformator
from saliency.discovery.objectives import ShiftSampler, build_objective
from saliency.discovery.reconstructors import build_reconstructor
from saliency.discovery.train import TrainSettings, train

PAPER_STEPS = 100_000


def measure(generator_name: str, reconstructor: str, batch_size: int, steps: int, warmup: int,
            device: torch.device, precision: str) -> dict[str, float]:
    """Seconds per step of ``steps`` training steps after ``warmup`` untimed ones."""
    generator = generators.load(generator_name, weights="random", device=device)
    dim_z = generator.dim_z
    marks: dict[int, float] = {}

    def clock(step: int) -> None:
        if step in (warmup, warmup + steps):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            marks[step] = time.perf_counter()

    train(generator, build_deformator("ortho", dim_z, dim_z, seed=0),
          build_reconstructor(reconstructor, dim_z, generator.resolution, seed=0),
          build_objective("voynov", ShiftSampler(), 0.25, 0.25),
          TrainSettings(steps=warmup + steps, batch_size=batch_size, lr=1e-4, seed=0), device,
          on_step=clock, precision=precision)
    per_step = (marks[warmup + steps] - marks[warmup]) / steps
    # voynov generates 2 images per latent (original and shifted) and shows 1 pair to R
    return {"steps_per_s": 1 / per_step, "images_per_s": 2 * batch_size / per_step,
            "hours_for_1e5_steps": per_step * PAPER_STEPS / 3600}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = [("toyworld", "lenet", 32, torch.device("cpu"), "fp32")]
    if torch.cuda.is_available():
        gpu = torch.device("cuda", 0)
        settings += [("biggan-128", "resnet18", 32, gpu, "fp32"), ("biggan-128", "resnet18", 32, gpu, "bf16")]
    else:
        print("no GPU visible: biggan-128 timings skipped")
    print(f"{'generator':<12} {'reconstructor':<13} {'batch':>5} {'device':<8} {'precision':<9} "
          f"{'steps/s':>8} {'images/s':>9} {'1e5 steps':>10}")
    for name, reconstructor, batch, device, precision in settings:
        figures = measure(name, reconstructor, batch, args.steps, args.warmup, device, precision)
        print(f"{name:<12} {reconstructor:<13} {batch:>5} {device.type:<8} {precision:<9} "
              f"{figures['steps_per_s']:>8.2f} {figures['images_per_s']:>9.1f} "
              f"{figures['hours_for_1e5_steps']:>8.1f} h", flush=True)


if __name__ == "__main__":
    main()
