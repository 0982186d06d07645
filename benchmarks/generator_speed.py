"""Images per second of every registered generator with random weights.

Two figures per generator: a forward pass (synthesis, ranking), and a forward plus a backward
pass to z with the generator frozen (what every direction-discovery step does). On CUDA each
generator is timed in fp32 and under bf16 autocast. Then the pairs (G(z), G(z + h)) every stage
makes, by two calls or by one call on the concatenated batch, with and without the gradient.

    python benchmarks/generator_speed.py [--generators biggan-128 toyworld] [--batch-size 1]
                                         [--device cpu|cuda] [--iterations 2]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from saliency import distributed, generators


def seconds_per_call(fn: Callable[[], None], iterations: int, device: torch.device) -> float:
    """Mean wall time of ``fn`` over ``iterations`` calls after one warm-up call."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / iterations


def measure(model: generators.Generator, batch_size: int, iterations: int, device: torch.device,
            precision: str) -> tuple[float, float]:
    """(forward images/s, forward+backward images/s)."""
    z = model.sample_z(batch_size, seed=0)
    classes = model.sample_classes(batch_size, seed=0)

    def forward() -> None:
        with torch.no_grad(), distributed.autocast(device, precision):
            model(z, classes)

    def forward_backward() -> None:
        z_grad = z.clone().requires_grad_()
        with distributed.autocast(device, precision):
            images = model(z_grad, classes)
        images.float().square().mean().backward()

    return (batch_size / seconds_per_call(forward, iterations, device),
            batch_size / seconds_per_call(forward_backward, iterations, device))


def pair_rates(model: generators.Generator, batch_size: int, iterations: int, device: torch.device,
               precision: str) -> dict[tuple[str, str], float]:
    """Pairs/s of (G(z), G(z + h)) made by two calls or by one call on [z; z + h], without gradients
    (synthesis and rank) and with the gradient to h through the shifted half (discovery)."""
    z = model.sample_z(batch_size, seed=0)
    classes = model.sample_classes(batch_size, seed=0)
    shift = torch.nn.Parameter(0.1 * torch.ones(model.dim_z, device=device))

    def two_calls(grad: bool) -> None:
        with torch.no_grad(), distributed.autocast(device, precision):
            original = model(z, classes)
        with torch.set_grad_enabled(grad), distributed.autocast(device, precision):
            shifted = model(z + shift, classes)
        if grad:
            (shifted.float() - original.float()).square().mean().backward()

    def one_call(grad: bool) -> None:
        with torch.set_grad_enabled(grad), distributed.autocast(device, precision):
            original, shifted = model(torch.cat([z, z + shift]), torch.cat([classes, classes])).chunk(2)
        if grad:
            (shifted.float() - original.detach().float()).square().mean().backward()

    return {(form.__name__, "backward" if grad else "forward"):
            batch_size / seconds_per_call(lambda form=form, grad=grad: form(grad), iterations, device)
            for grad in (False, True) for form in (two_calls, one_call)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generators", nargs="+", default=None, help="default: every registered generator")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iterations", type=int, default=2)
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    precisions = distributed.PRECISIONS if device.type == "cuda" else ("fp32",)
    print(f"device {device}, batch {args.batch_size}, {args.iterations} timed iterations, "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"{'generator':<18} {'precision':<9} {'forward img/s':>14} {'fwd+bwd(z) img/s':>17}")
    for name in args.generators or generators.available():
        model = generators.load(name, weights="random", device=device).requires_grad_(False)
        for label in precisions:
            forward, forward_backward = measure(model, args.batch_size, args.iterations, device, label)
            print(f"{name:<18} {label:<9} {forward:>14.2f} {forward_backward:>17.2f}", flush=True)
            pairs = pair_rates(model, args.batch_size, args.iterations, device, label)
            for mode in ("forward", "backward"):
                print(f"{'':<18} {'':<9} pairs [z; z+h], {mode:<8}: two calls {pairs['two_calls', mode]:.2f}/s, "
                      f"one call {pairs['one_call', mode]:.2f}/s", flush=True)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
