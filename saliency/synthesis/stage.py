"""Stage 4: the synthetic dataset of image/mask pairs under ``runs/NAME/synth`` (docs/method.md §4).

Reads the classes chosen for the dataset (stage 3) and the background direction, its sign and
shift length (``saliency rank``'s choice, the one place they are decided or overridden:
``rank.direction``, ``rank.sign``, ``rank.magnitude``), then writes the shards of
:mod:`saliency.synthesis.shards`. Under torchrun each rank writes its own shards and rank 0 the
summary files; an interrupted run resumes at the first missing shard and produces the same bytes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from saliency import distributed, generators
from saliency.classes import CLASSES_FILE, ChosenClasses, load_classes
from saliency.config import Config
from saliency.errors import UserError
from saliency.generators.base import Generator
from saliency.masks import MaskRule
from saliency.progress import Progress, progress
from saliency.ranking.artifacts import RANK_FILE, load_choice
from saliency.runs import Stage, atomic_write_json, run_stage
from saliency.synthesis.online import OnlinePairs, PairSampler, shard_counts
from saliency.synthesis.shards import (
    SHARDS_DIR,
    my_shards,
    read_stats,
    remove_extra_shards,
    write_shards,
    write_summary,
)

log = logging.getLogger("saliency")

PLAN_FILE = "plan.json"


@dataclass(frozen=True)
class BackgroundShift:
    """The latent move that whitens the background: a direction, a signed shift length, and where
    they came from."""

    direction: torch.Tensor
    shift: float
    source: str


def direction_inputs(run_dir: Path) -> dict[str, Path]:
    """The earlier stage's file the direction is read from (for the manifest's input hashes)."""
    return {"rank": Path(run_dir) / "rank" / RANK_FILE}


def background_shift(run_dir: Path, generator: Generator) -> BackgroundShift:
    """The direction, sign and shift length for the masks: ``saliency rank``'s choice (automatic, or
    as ``rank.direction`` / ``rank.sign`` / ``rank.magnitude`` override it)."""
    path = direction_inputs(run_dir)["rank"]
    if not path.is_file():
        raise UserError(f"synth: no background direction chosen ({path} missing): run `saliency rank --run {run_dir}` "
                        f"(--direction, --sign and --magnitude override its choice)")
    choice = load_choice(path, dim_z=generator.dim_z)
    return BackgroundShift(choice.vector, choice.sign * choice.shift,
                           f"rank: direction {choice.direction}, sign {choice.sign:+d}")


def check_classes(chosen: ChosenClasses, generator: Generator, generator_name: str) -> None:
    """The chosen ids must be classes of this generator (ImageNet ids need a 1000-class generator)."""
    bad = [i for i in chosen.ids if not 0 <= i < max(generator.n_classes, 1)]
    if bad:
        raise UserError(f"classes/{CLASSES_FILE}: class {bad[0]} is not a class of {generator_name} "
                        f"({generator.n_classes} classes); rerun `saliency classes` with classes.select "
                        f"'all' or a list of its ids")


def build_sampler(cfg: Config, generator: Generator, chosen: ChosenClasses, shift: BackgroundShift,
                  device: torch.device) -> PairSampler:
    options = cfg.synth
    return PairSampler(generator=generator, direction=shift.direction.to(device), shift=shift.shift,
                       classes=chosen.ids or None, rule=MaskRule.from_config(options),
                       truncation=cfg.generator.truncation, batch_size=options.batch_size, seed=cfg.seed_of("synth"),
                       precision=cfg.run.precision)


def plan_of(cfg: Config, chosen: ChosenClasses, shift: BackgroundShift, device: torch.device) -> dict[str, Any]:
    """Everything that decides a shard's bytes (not ``n``: growing the dataset keeps its full shards)."""
    vector = shift.direction.detach().float().cpu().contiguous().numpy().tobytes()
    return {"synth": {k: v for k, v in dataclasses.asdict(cfg.synth).items() if k != "n"},
            "generator": dataclasses.asdict(cfg.generator), "classes": chosen.ids,
            "direction_sha256": hashlib.sha256(vector).hexdigest(), "shift": shift.shift, "device": device.type,
            "precision": cfg.run.precision}


def keep_or_clear(stage_dir: Path, plan: dict[str, Any], n: int, shard_size: int) -> None:
    """Keep shards made by the same plan (a resume); clear them when anything else changed."""
    plan_path = stage_dir / PLAN_FILE
    old = json.loads(plan_path.read_text()) if plan_path.is_file() else None
    shards = stage_dir / SHARDS_DIR
    if old != json.loads(json.dumps(plan)) and shards.exists():
        log.info("synth: settings changed since the shards in %s were written; starting over", shards)
        shutil.rmtree(shards)
    atomic_write_json(plan_path, plan)
    remove_extra_shards(shards, n, shard_size)


def prepare_sampler(cfg: Config, run_dir: Path, device: torch.device,
                    chosen: ChosenClasses) -> tuple[PairSampler, BackgroundShift]:
    """The generator (same weights on every rank), checked classes and background shift of a run, as a sampler."""
    generator = generators.load(cfg.generator.name, weights=cfg.generator.weights, device=device,
                                **cfg.generator.options)
    distributed.broadcast_module(generator.requires_grad_(False))
    check_classes(chosen, generator, cfg.generator.name)
    shift = background_shift(run_dir, generator)
    return build_sampler(cfg, generator, chosen, shift, device), shift


def online_pairs(cfg: Config, run_dir: Path, device: torch.device) -> OnlinePairs:
    """The endless online stream of a run (``unet.source: online``): the pairs ``synth-dataset``
    would write with the same settings, then more."""
    sampler, _ = prepare_sampler(cfg, run_dir, device, load_classes(run_dir, cfg.classes.dataset))
    return OnlinePairs(sampler, shard_size=cfg.synth.shard_size)


def run_synth(cfg: Config, run_dir: Path, device: str | torch.device, force: bool = False) -> dict[str, Any]:
    """Stage 4 into ``run_dir/synth``: shards of pairs and their records, totals and sheet (:mod:`.shards`)."""
    device = distributed.resolve_device(device)
    distributed.init(device)
    cfg = distributed.settle_precision(cfg, device)
    chosen = load_classes(run_dir, cfg.classes.dataset)
    section = {"synth": dataclasses.asdict(cfg.synth), "generator": dataclasses.asdict(cfg.generator),
               "dataset": cfg.classes.dataset}
    inputs = {"classes": Path(run_dir) / "classes" / CLASSES_FILE, **direction_inputs(run_dir)}
    stage = Stage(run_dir, "synth", config=section, seed=cfg.seed_of("synth"), inputs=inputs, precision=cfg.run.precision,
                  reusable_across=("synth.n",))  # a grown dataset keeps its full shards (keep_or_clear checks the plan)
    body = functools.partial(_synth, cfg=cfg, device=device, chosen=chosen)
    return run_stage(stage, body, force=force, every_rank=True)


class FirstPairClock:
    """A progress bar's stand-in that also notes the seconds from ``start`` to the first pair: the
    last leg of the time to the first masks (docs/architecture.md)."""

    def __init__(self, bar: Progress[Any], start: float) -> None:
        self.bar, self.start = bar, start
        self.seconds: float | None = None

    def update(self, n: int = 1) -> None:
        if self.seconds is None:
            self.seconds = round(time.perf_counter() - self.start, 3)
        self.bar.update(n)


def _synth(stage: Stage, cfg: Config, device: torch.device, chosen: ChosenClasses) -> dict[str, Any]:
    started = time.perf_counter()
    distributed.barrier()  # rank 0 has cleared the stage folder (--force) before anyone writes
    options = cfg.synth
    sampler, shift = prepare_sampler(cfg, stage.run_dir, device, chosen)
    if distributed.is_writer():
        keep_or_clear(stage.dir, plan_of(cfg, chosen, shift, device), options.n, options.shard_size)
    distributed.barrier()
    rank, world = distributed.rank(), distributed.world_size()
    counts = shard_counts(options.n, options.shard_size)
    mine = sum(counts[k] for k in my_shards(options.n, options.shard_size, rank, world))
    with progress(total=mine, desc=f"synth (rank {rank})", unit="pair", disable=not distributed.is_writer()) as bar:
        clock = FirstPairClock(bar, started)
        write_shards(sampler, stage.dir / SHARDS_DIR, options.n, options.shard_size, rank, world, progress=clock)
    distributed.barrier()
    if distributed.is_writer():
        details = {"seed": cfg.seed_of("synth"), "generator": cfg.generator.name, "resolution": sampler.generator.resolution,
                   "dataset": chosen.dataset, "classes": len(chosen.ids), "direction": shift.source,
                   "shift": shift.shift, "mask_mode": options.mask_mode, "threshold": options.threshold,
                   "area_range": [options.min_area, options.max_area], "area_bounds": options.area_bounds,
                   "components": options.components, "histogram": options.histogram,
                   "shard_size": options.shard_size}
        write_summary(stage.dir, options.n, options.shard_size, details)
    distributed.barrier()
    stats = read_stats(stage.dir)
    log.info("synth: %d pairs in %d shards, acceptance rate %.3f", stats["pairs"], len(counts),
             stats["acceptance_rate"])
    return {"pairs": stats["pairs"], "shards": len(counts), "drawn": stats["drawn"],
            "acceptance_rate": stats["acceptance_rate"], "seconds_to_first_pair": clock.seconds}
