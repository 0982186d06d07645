"""Every stage of a BigGAN-128 pipeline timed on one GPU, and the wall time of the whole run projected.

    python benchmarks/gpu.py [--device cuda|cpu] [--config pipelines/biggan-ecssd.yaml] [--tiny] [--json PATH]

The config's generator runs with random weights, so no weights or data are needed. Each stage is
measured at the config's settings (batch sizes, DVN and mask-test sizes, mask rule, U-Net,
run.precision) through the code path of the benchmark that owns it:

- generator: forward images/s in fp32 and under bf16 autocast (``generator_speed.py``);
- discovery: steps/s of the training loop, ortho deformator with K = dim_z (``discover_speed.py``);
- DVN: seconds per direction over one chunk of directions (rank.dvn_chunk, trained together); effect
  check: seconds per candidate direction (``rank_speed.py``);
- synthesis: accepted pairs/s online. A random-weight BigGAN draws no object and its area filter
  accepts nothing, so the filters are open: the figure is the cost of a pair (``synth_speed.py``);
- U-Net: training steps/s at unet.batch_size, and prediction images/s (``unet_speed.py``).

Printed: one table (stage, figure, unit, the peak GPU memory allocated during the measurement, "n/a"
on CPU, and what was measured), the projected time of each stage of the config's run and its total,
and the project's GPU goals, met or not. ``--json PATH`` writes the same. Sized for a few minutes on an
H100-class GPU (ten at most); not yet run on one.

``--tiny`` keeps every code path and shrinks every measurement (batch 2, one timed step, a few DVN
samples, BigGAN-128's layers at channel width 4) so that it runs in seconds on one CPU thread, as
the test suite does: its figures mean nothing, and its projection still counts the config's steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import discover_speed
import generator_speed
import rank_speed
import synth_speed
import torch
import unet_speed

from saliency import distributed, generators
from saliency.config import Config, apply_overrides, load_config
from saliency.datasets import get_spec
from saliency.errors import UserError
from saliency.generators.biggan import CONFIGS, BigGAN
from saliency.masks import MaskRule
from saliency.ranking.stage import dvn_settings, mask_settings
from saliency.segmentation.model import UnetSpec, build_unet
from saliency.segmentation.train import uses_channels_last

T = TypeVar("T")
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "pipelines" / "biggan-ecssd.yaml"


@dataclass(frozen=True)
class Sizes:
    """How long each measurement runs, and the shapes the config leaves open."""

    width: int | None  # BigGAN-128's layers at this channel width instead of the config's generator
    generator_batch: int  # images per call of the generator figure
    iterations: int  # timed generator calls and synthesis batches, each after one untimed
    discover_steps: int  # timed discovery steps, after discover_warmup untimed ones
    discover_warmup: int
    candidates: int  # directions put through the effect check
    unet_steps: int  # timed U-Net steps, after one untimed
    unet_resolution: int
    predictions: int  # photos the U-Net predicts, after one untimed


FULL = Sizes(width=None, generator_batch=64, iterations=10, discover_steps=30, discover_warmup=5, candidates=4,
             unet_steps=10, unet_resolution=128, predictions=20)
# At full width a bf16 BigGAN forward takes over a minute per image on a CPU; at width 4, 0.2 s.
TINY = Sizes(width=4, generator_batch=2, iterations=1, discover_steps=1, discover_warmup=1, candidates=1,
             unet_steps=1, unet_resolution=32, predictions=1)
# --tiny's settings of the measured stages: batch 2 everywhere, DVN of 2 directions on 4 samples, one shift
TINY_SETTINGS = {"discover.batch_size": 2, "rank.dvn_samples": 4, "rank.dvn_steps": 1, "rank.dvn_batch_size": 2,
                 "rank.dvn_chunk": 2, "rank.batch_size": 2, "rank.mask_samples": 2, "rank.mask_shifts": [26.0],
                 "synth.batch_size": 2, "unet.batch_size": 2, "unet.width": 4}


@dataclass(frozen=True)
class Figure:
    """One measurement: its value and unit, the peak GPU memory it allocated (GiB; None off CUDA),
    and what was measured."""

    stage: str
    value: float
    unit: str
    peak_gib: float | None
    setting: str


@dataclass(frozen=True)
class Workload:
    """What a pipeline's wall time scales with, counted from its config."""

    discover_steps: int
    directions: int  # K, every one through DVN
    candidates: int  # directions through the effect check (rank.top, else all K)
    synth_pairs: int
    unet_steps: int
    online_pairs: int  # pairs the U-Net draws on the fly (unet.source: online); 0 from the synth stage's shards
    predictions: int  # U-Net predictions: training's MAE checks and the eval split


def workload(config: Config, dim_z: int, eval_images: int) -> Workload:
    """The counts of ``config``'s run for a generator with latent size ``dim_z``."""
    directions = config.discover.directions or dim_z
    unet = config.unet
    checks = math.ceil(unet.steps / unet.eval_every) * unet.eval_images
    online = unet.steps * unet.batch_size if unet.source == "online" else 0
    return Workload(config.discover.steps, directions, min(config.rank.top or directions, directions), config.synth.n,
                    unet.steps, online, checks + eval_images)


def project(work: Workload, rates: dict[str, float]) -> dict[str, float]:
    """Seconds of each stage of ``work`` at the measured ``rates`` (keyed as the figures), and their "total"."""
    stages = {
        "discover": work.discover_steps / rates["discover_steps_per_s"],
        "rank: DVN": work.directions * rates["dvn_seconds_per_direction"],
        "rank: effect check": work.candidates * rates["effect_check_seconds_per_direction"],
        "synth": work.synth_pairs / rates["synth_pairs_per_s"],
        "unet: training": work.unet_steps / rates["unet_steps_per_s"],
        "unet: online pairs": work.online_pairs / rates["synth_pairs_per_s"],
        "predictions": work.predictions / rates["predict_images_per_s"],
    }
    return {**stages, "total": sum(stages.values())}


def amounts(work: Workload) -> dict[str, str]:
    """What each stage of :func:`project` does, in words."""
    return {"discover": f"{work.discover_steps} steps", "rank: DVN": f"{work.directions} directions",
            "rank: effect check": f"{work.candidates} directions", "synth": f"{work.synth_pairs} pairs",
            "unet: training": f"{work.unet_steps} steps", "unet: online pairs": f"{work.online_pairs} pairs",
            "predictions": f"{work.predictions} images"}


def check_goals(rates: dict[str, float]) -> dict[str, tuple[float, str, bool]]:
    """The project's GPU goals (README, Speed): the figure each is about, its unit, and whether it is met."""
    discover_hours = 1e5 / rates["discover_steps_per_s"] / 3600
    dvn_minutes = 120 * rates["dvn_seconds_per_direction"] / 60
    pairs = rates["synth_pairs_per_s"]
    unet_minutes = 15_000 / rates["unet_steps_per_s"] / 60
    return {"discovery: 1e5 steps ≤ 2 h": (discover_hours, "h", discover_hours <= 2),
            "DVN: 120 directions ≤ 10 min": (dvn_minutes, "min", dvn_minutes <= 10),
            "synthesis: ≥ 2000 accepted pairs/s": (pairs, "pairs/s", pairs >= 2000),
            "U-Net: 15k steps at batch 128 ≤ 20 min": (unet_minutes, "min", unet_minutes <= 20)}


def with_peak(device: torch.device, measure: Callable[[], T]) -> tuple[T, float | None]:
    """``measure()`` and the most GPU memory (GiB) allocated while it ran; None off CUDA. Each
    measurement builds its own models and frees them on return, so none counts another's."""
    if device.type != "cuda":
        return measure(), None
    torch.cuda.reset_peak_memory_stats(device)
    result = measure()
    return result, torch.cuda.max_memory_allocated(device) / 2**30


def narrow_biggan(width: int) -> str:
    """Register BigGAN-128's layers at channel width ``width`` (the release: 96), random weights only,
    and return its name: the benchmarks borrowed here load their generator by name."""
    name = f"biggan-128-ch{width}"
    if name not in generators.available():
        architecture = dataclasses.replace(CONFIGS["biggan-128"], ch=width)
        generators.register(name)(lambda weights: BigGAN(architecture))
    return name


def load_generator(name: str, device: torch.device) -> generators.Generator:
    return generators.load(name, weights="random", device=device).requires_grad_(False)


def generator_rate(name: str, device: torch.device, sizes: Sizes, precision: str) -> float:
    """Forward images/s at ``sizes.generator_batch``."""
    model = load_generator(name, device)
    z, classes = model.sample_z(sizes.generator_batch, seed=0), model.sample_classes(sizes.generator_batch, seed=0)

    def forward() -> None:
        with torch.no_grad(), distributed.autocast(device, precision):
            model(z, classes)

    return sizes.generator_batch / generator_speed.seconds_per_call(forward, sizes.iterations, device)


def dvn_seconds(name: str, config: Config, device: torch.device, count: int) -> float:
    """Seconds of DVN per direction over ``count`` random directions (generated stand-in real
    images, whose preparation is not counted: the run reads real ones)."""
    generator = load_generator(name, device)
    directions = rank_speed.random_directions(generator.dim_z, count, device)
    _, seconds, _ = rank_speed.time_dvn(generator, directions, dvn_settings(config.rank, config.run.precision))
    return seconds / count


def effect_check_seconds(name: str, config: Config, device: torch.device, count: int) -> float:
    """Seconds per candidate direction of rank's background-removal test, over ``count`` directions."""
    generator = load_generator(name, device)
    directions = rank_speed.random_directions(generator.dim_z, count, device)
    masks = mask_settings(config.rank, config.synth, config.run.precision)
    # DVN scores are only recorded with each candidate: zeros cost the same
    return rank_speed.time_mask_test(generator, directions, torch.zeros(count), count, masks)


def synthesis_rate(name: str, config: Config, device: torch.device, sizes: Sizes) -> float:
    """Accepted pairs/s online with the config's mask rule, its filters open (see the module docstring)."""
    sampler = synth_speed.build_sampler(name, device, config.synth.batch_size)
    rule = dataclasses.replace(MaskRule.from_config(config.synth), min_area=0.0, max_area=1.0, histogram=False)
    sampler = dataclasses.replace(sampler, rule=rule, precision=config.run.precision)
    draws_per_s, acceptance = synth_speed.online_rate(sampler, sizes.iterations, device)
    return draws_per_s * acceptance


def unet_steps_rate(config: Config, device: torch.device, sizes: Sizes) -> float:
    model = build_unet(UnetSpec.from_config(config.unet)).to(device)
    images_per_s = unet_speed.train_speed(model, config.unet.batch_size, sizes.unet_resolution, device,
                                          config.run.precision, sizes.unet_steps,
                                          uses_channels_last(config.unet.channels_last, device))
    return images_per_s / config.unet.batch_size


def prediction_rate(config: Config, device: torch.device, sizes: Sizes) -> float:
    model = build_unet(UnetSpec.from_config(config.unet)).to(device)
    return unet_speed.inference_speed(model, device, sizes.predictions)


def measurements(name: str, config: Config, device: torch.device, sizes: Sizes,
                 dim_z: int) -> dict[str, tuple[str, str, str, Callable[[], float]]]:
    """Figure key -> (stage, unit, what is measured, the measurement), in the order they run."""
    rank, synth, unet = config.rank, config.synth, config.unet
    chunk = min(rank.dvn_chunk, config.discover.directions or dim_z)
    shifts = len(mask_settings(rank, synth).magnitudes)
    generator_setting = f"batch {sizes.generator_batch}"
    return {
        "generator_fp32_images_per_s": ("generator fp32", "images/s", generator_setting,
                                        lambda: generator_rate(name, device, sizes, "fp32")),
        "generator_bf16_images_per_s": ("generator bf16", "images/s", generator_setting,
                                        lambda: generator_rate(name, device, sizes, "bf16")),
        "discover_steps_per_s": (
            "discovery", "steps/s", f"batch {config.discover.batch_size}, K = {dim_z}, {config.discover.reconstructor}",
            lambda: discover_speed.measure(name, config.discover.reconstructor, config.discover.batch_size,
                                           sizes.discover_steps, sizes.discover_warmup, device,
                                           config.run.precision)["steps_per_s"]),
        "dvn_seconds_per_direction": (
            "DVN", "s/direction", f"{rank.dvn_samples} samples, {rank.dvn_steps} steps, {chunk} directions at once",
            lambda: dvn_seconds(name, config, device, chunk)),
        "effect_check_seconds_per_direction": (
            "effect check", "s/direction", f"{rank.mask_samples} samples × 2 signs × {shifts} shifts",
            lambda: effect_check_seconds(name, config, device, sizes.candidates)),
        "synth_pairs_per_s": ("synthesis", "pairs/s", f"batch {synth.batch_size}, filters open",
                              lambda: synthesis_rate(name, config, device, sizes)),
        "unet_steps_per_s": ("U-Net training", "steps/s", f"batch {unet.batch_size}, {sizes.unet_resolution} px",
                             lambda: unet_steps_rate(config, device, sizes)),
        "predict_images_per_s": ("U-Net prediction", "images/s", "300×400 photos, shorter side 128",
                                 lambda: prediction_rate(config, device, sizes)),
    }


def eval_images(config: Config) -> int | None:
    """Images of the eval split when its dataset is a registered one; None for a folder, whose size
    is unknown without reading it."""
    try:
        return len(get_spec(config.eval.dataset).splits[config.eval.split]())
    except (UserError, KeyError):
        return None


def number(value: float) -> str:
    return f"{value:,.1f}" if value >= 10 else f"{value:.3f}"


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def measure_all(name: str, config: Config, device: torch.device, sizes: Sizes, dim_z: int) -> dict[str, Figure]:
    """Every figure, each printed as one row of the table as soon as it is measured."""
    print(f"{'stage':<18} {'figure':>10} {'unit':<12} {'peak memory':>11}  measured at")
    figures = {}
    for key, (stage, unit, setting, measure) in measurements(name, config, device, sizes, dim_z).items():
        value, peak = with_peak(device, measure)
        figures[key] = Figure(stage, value, unit, peak, setting)
        print(f"{stage:<18} {number(value):>10} {unit:<12} {'n/a' if peak is None else f'{peak:.2f} GiB':>11}  "
              f"{setting}", flush=True)
    return figures


def print_projection(work: Workload, projection: dict[str, float], eval_known: bool) -> None:
    for stage, text in amounts(work).items():
        print(f"  {stage:<20} {text:>16} {duration(projection[stage]):>12}")
    print(f"  {'total':<20} {'':>16} {duration(projection['total']):>12}")
    print("  left out: the classes stage, discovery's final RCA, metrics, PNG writing, model loading, checkpoints"
          f"{'' if eval_known else ', the eval split (its size is unknown without the data)'};\n  synthesis is "
          "timed with its filters open: at a trained generator's acceptance a, its stages take 1/a as long")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"], help="default: cuda if visible")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="the pipeline whose time is projected")
    parser.add_argument("--tiny", action="store_true", help="smallest sizes, for a CPU test that the script runs")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    device = distributed.resolve_device(args.device)
    config = load_config(args.config)
    sizes = TINY if args.tiny else FULL
    name = narrow_biggan(sizes.width) if sizes.width else config.generator.name
    dim_z = load_generator(name, torch.device("cpu")).dim_z
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{name} (random weights) on {where}; stages at run.precision = {config.run.precision}"
          f"{'; --tiny: sizes for a test, figures mean nothing' if args.tiny else ''}")
    figures = measure_all(name, apply_overrides(config, TINY_SETTINGS) if args.tiny else config, device, sizes, dim_z)

    rates = {key: figure.value for key, figure in figures.items()}
    images = eval_images(config)
    work = workload(config, dim_z, images or 0)
    projection = project(work, rates)
    print(f"\nprojected wall time of {args.config} on {where}:")
    print_projection(work, projection, images is not None)
    goals = check_goals(rates)
    print("\ngoals:")
    for goal, (value, unit, met) in goals.items():
        print(f"  {goal:<40} {number(value):>10} {unit:<8} {'met' if met else 'not met'}")
    if args.json:
        args.json.write_text(json.dumps({
            "device": where, "config": str(args.config), "tiny": args.tiny, "precision": config.run.precision,
            "figures": {key: dataclasses.asdict(figure) for key, figure in figures.items()},
            "workload": dataclasses.asdict(work), "projection": projection,
            "goals": {goal: {"value": value, "unit": unit, "met": met} for goal, (value, unit, met) in goals.items()},
        }, indent=2))


if __name__ == "__main__":
    main()
