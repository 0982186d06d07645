"""fp32 against bf16 (``run.precision``) for the network of every stage: speed and output difference.

For each model (random weights, fixed inputs) it times the forward pass (and a training step where
the stage trains the model) in fp32 and under bf16 autocast, and prints the largest absolute
difference of the outputs, relative to the fp32 outputs' spread, so docs/method.md §8 can say what
bf16 costs in agreement and buys in speed.

    python benchmarks/precision.py [--device cuda] [--batch-size 32] [--resolution 128] [--iterations 5]

bf16 is fast only where the hardware computes it (``distributed.bf16_is_fast``, printed first:
Ampere or later GPUs, CPUs with AVX-512 BF16 or AMX); elsewhere it is emulated and slower than fp32.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from saliency import distributed, generators
from saliency.classes import load_classifier
from saliency.discovery.reconstructors import build_reconstructor
from saliency.ranking.dvn import GroupedLeNet
from saliency.segmentation.model import UnetSpec, build_unet


@dataclass
class Case:
    """One stage's network: a forward on fixed inputs, and whether the stage trains it."""

    stage: str
    name: str
    model: nn.Module
    inputs: tuple[torch.Tensor, ...]
    trains: bool


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn: Callable[[], object], iterations: int, device: torch.device) -> float:
    fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / iterations


def forward(case: Case, precision: str, device: torch.device) -> torch.Tensor:
    with torch.no_grad(), distributed.autocast(device, precision):
        out = case.model(*case.inputs)
    return (out[0] if isinstance(out, tuple) else out).float()


def train_step(case: Case, precision: str, device: torch.device) -> None:
    with distributed.autocast(device, precision):
        out = case.model(*case.inputs)
    (out[0] if isinstance(out, tuple) else out).float().square().mean().backward()


def cases(device: torch.device, batch: int, resolution: int) -> list[Case]:
    rng = torch.Generator().manual_seed(0)
    images = (torch.rand(batch, 3, resolution, resolution, generator=rng) * 2 - 1).to(device)
    generator = generators.load("biggan-128", weights="random", device=device).requires_grad_(False)
    z, classes = generator.sample_z(batch, 0), generator.sample_classes(batch, 0)
    torch.manual_seed(0)
    return [
        Case("discover/rank/synth", "biggan-128 generator", generator, (z, classes), False),
        Case("discover", "resnet18 reconstructor", build_reconstructor("resnet18", 120, resolution, 0).to(device),
             (images, images.flip(0)), True),
        Case("rank", "DVN LeNets (32 directions)", GroupedLeNet(32).to(device),
             ((torch.rand(batch, 32, 3, 32, 32, generator=rng) * 2 - 1).to(device),), True),
        Case("classes", "ImageNet resnet18", load_classifier("resnet18", "random", device),
             (torch.nn.functional.interpolate(images, size=224),), False),
        Case("train-unet/eval", "classic U-Net", build_unet(UnetSpec("classic")).to(device), (images,), True),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=5)
    args = parser.parse_args(argv)
    device = distributed.resolve_device(args.device)
    print(f"{device}, batch {args.batch_size}, {args.resolution} px, {args.iterations} timed iterations, "
          f"torch {torch.__version__}, bf16 fast here: {distributed.bf16_is_fast(device)} "
          f"(run.precision auto: {distributed.resolve_precision('auto', device)})")
    print(f"{'stage':<20} {'network':<28} {'fp32 ms':>9} {'bf16 ms':>9} {'speed-up':>8} "
          f"{'train fp32/bf16 ms':>19} {'max |diff|':>10} {'/ spread':>8}")
    for case in cases(device, args.batch_size, args.resolution):
        case.model.eval()
        reference, low = forward(case, "fp32", device), forward(case, "bf16", device)
        difference = float((reference - low).abs().max())
        spread = float(reference.max() - reference.min()) or 1.0
        timed = {p: 1000 * seconds(lambda p=p, case=case: forward(case, p, device), args.iterations, device)
                 for p in distributed.PRECISIONS}
        training = "—"
        if case.trains:
            case.model.train()
            steps = [1000 * seconds(lambda p=p, case=case: train_step(case, p, device), args.iterations, device)
                     for p in distributed.PRECISIONS]
            training = f"{steps[0]:.1f} / {steps[1]:.1f}"
        print(f"{case.stage:<20} {case.name:<28} {timed['fp32']:>9.1f} {timed['bf16']:>9.1f} "
              f"{timed['fp32'] / timed['bf16']:>7.2f}x {training:>19} {difference:>10.4f} {difference / spread:>8.4f}",
              flush=True)


if __name__ == "__main__":
    main()
