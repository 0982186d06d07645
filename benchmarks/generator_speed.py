"""Images per second of every registered generator with random weights, or side by side with the
reference implementations.

Two figures per generator: a forward pass (synthesis, ranking), and a forward plus a backward
pass to z with the generator frozen (what every direction-discovery step does), in fp32 and under
bf16 autocast. Then the pairs (G(z), G(z + h)) every stage makes, by two calls or by one call on the
concatenated batch, with and without the gradient.

With ``--against-references``, biggan-128 and biggan-deep-128 are timed in one process on the same
weights and inputs as their references, each in fp32 and bf16: biggan-deep-128 against
pytorch-pretrained-biggan (a test extra), biggan-128 against its own fp32 path with W/σ recomputed at
every forward as BigGAN-PyTorch does (the authors' code is not installable). Ratios are the
reference's fp32 time over each path's (medians, the paths timed in turns); max |diff| is against
the reference's fp32 images.

    python benchmarks/generator_speed.py [--generators biggan-128 toyworld] [--batch-size 1]
                                         [--device cpu|cuda] [--iterations 2] [--against-references]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import statistics
import time
from collections.abc import Callable
from typing import TypeVar

import torch

from saliency import distributed, generators
from saliency.generators.layers import spectral_norm_cache

Key = TypeVar("Key")  # what names a timed path


def seconds_per_call(fn: Callable[[], object], iterations: int, device: torch.device) -> float:
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
    forward_rate, backward_rate = (
        batch_size / seconds_per_call(functools.partial(path, model, z, classes, device, precision), iterations, device)
        for path in (forward, forward_backward))
    return forward_rate, backward_rate


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


def interleaved_seconds(calls: dict[Key, Callable[[], object]], rounds: int,
                        device: torch.device) -> dict[Key, float]:
    """Median wall time of each call, timed in turns (one call of each per round, after one warm-up
    round), so that a slow spell of the machine falls on every path alike."""
    times: dict[Key, list[float]] = {label: [] for label in calls}
    for round_ in range(rounds + 1):
        for label, call in calls.items():
            start = time.perf_counter()
            call()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if round_:
                times[label].append(time.perf_counter() - start)
    return {label: statistics.median(values) for label, values in times.items()}


def reference_pairs(device: torch.device) -> dict[str, tuple[generators.Generator, Callable[..., torch.Tensor]]]:
    """Each generator with the reference implementation of it, on the same random weights."""
    from pytorch_pretrained_biggan import BigGAN as ReferenceBigGAN
    from pytorch_pretrained_biggan import BigGANConfig as ReferenceConfig

    from saliency.generators.biggan_deep import CONFIGS

    biggan = generators.load("biggan-128", weights="random", device=device).requires_grad_(False)

    def biggan_pytorch(z: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        with spectral_norm_cache(False):
            return biggan(z, classes)

    deep = generators.load("biggan-deep-128", weights="random", device=device, truncation=0.4).requires_grad_(False)
    reference = ReferenceBigGAN(ReferenceConfig.from_dict(dataclasses.asdict(CONFIGS["biggan-deep-128"])))
    reference.load_state_dict(deep.state_dict(), strict=True)
    reference = reference.to(device).eval().requires_grad_(False)

    def pretrained_biggan(z: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return reference(z, torch.nn.functional.one_hot(classes, deep.n_classes).float(), 0.4)

    return {"biggan-128": (biggan, biggan_pytorch), "biggan-deep-128": (deep, pretrained_biggan)}


def forward(call: Callable[..., torch.Tensor], z: torch.Tensor, classes: torch.Tensor, device: torch.device,
            precision: str) -> torch.Tensor:
    with torch.no_grad(), distributed.autocast(device, precision):
        return call(z, classes).float()


def forward_backward(call: Callable[..., torch.Tensor], z: torch.Tensor, classes: torch.Tensor,
                     device: torch.device, precision: str) -> None:
    """What a discovery step asks of a frozen generator: images, then the gradient to z."""
    z_grad = z.clone().requires_grad_()
    with distributed.autocast(device, precision):
        images = call(z_grad, classes)
    images.float().square().mean().backward()


def against_references(batch_size: int, iterations: int, device: torch.device) -> None:
    print(f"{'generator':<16} {'implementation':<10} {'precision':<9} {'forward ms':>10} {'× ref':>6} "
          f"{'fwd+bwd(z) ms':>13} {'× ref':>6} {'max |diff| vs ref fp32':>22}")
    for name, (ours, reference) in reference_pairs(device).items():
        z = ours.sample_z(batch_size, seed=0, truncation=getattr(ours, "truncation", None))
        classes = ours.sample_classes(batch_size, seed=0)
        paths = {(label, precision): call for precision in distributed.PRECISIONS
                 for label, call in (("reference", reference), ("saliency", ours))}

        forwards = interleaved_seconds({path: functools.partial(forward, call, z, classes, device, path[1])
                                        for path, call in paths.items()}, iterations, device)
        backwards = interleaved_seconds({path: functools.partial(forward_backward, call, z, classes, device, path[1])
                                         for path, call in paths.items()}, iterations, device)
        baseline = ("reference", "fp32")
        expected = forward(paths[baseline], z, classes, device, "fp32")
        for (label, precision), call in paths.items():
            difference = (forward(call, z, classes, device, precision) - expected).abs().max().item()
            print(f"{name:<16} {label:<10} {precision:<9} {1000 * forwards[label, precision]:>10.0f} "
                  f"{forwards[baseline] / forwards[label, precision]:>6.2f} "
                  f"{1000 * backwards[label, precision]:>13.0f} "
                  f"{backwards[baseline] / backwards[label, precision]:>6.2f} {difference:>22.2e}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generators", nargs="+", default=None, help="default: every registered generator")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--against-references", action="store_true",
                        help="time biggan-128 and biggan-deep-128 side by side with their references")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    print(f"device {device}, batch {args.batch_size}, {args.iterations} timed iterations, "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"bf16 fast here: {distributed.bf16_is_fast(device)}")
    if args.against_references:
        against_references(args.batch_size, args.iterations, device)
        return
    print(f"{'generator':<18} {'precision':<9} {'forward img/s':>14} {'fwd+bwd(z) img/s':>17}")
    for name in args.generators or generators.available():
        model = generators.load(name, weights="random", device=device).requires_grad_(False)
        for label in distributed.PRECISIONS:
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
