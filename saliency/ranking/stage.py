"""Stage 2: rank the discovered directions by DVN and choose the background-removal one.

Reads the discovered directions and real images (``rank.real``); writes the choice file (see
:mod:`saliency.ranking.artifacts`), ``rank/dvn.png`` and ``rank/candidates/*.png``. Every input is
checked before any file is written. ``rank.direction`` / ``rank.sign`` override the choice and
``rank.magnitude`` fixes the shift it is made at (the one place these are given: synthesis uses the
choice); the scores are computed and written all the same, the overridden direction and magnitude
added to the candidates when they are not among them. DVN moves along the unit
columns by a length (docs/method.md §2); the effect check and the choice move along each direction
at its stored length (1, or a published vector's own) by a magnitude, with the synth section's mask
rule (docs/method.md §4). A deformator's bias or non-linear part, when the file has one, is not used.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import Any

import torch

from saliency import distributed, generators
from saliency.config import Config, RankConfig, SynthConfig
from saliency.discovery.artifacts import DIRECTIONS_FILE, Directions, check_latent_size, load_directions
from saliency.errors import UserError
from saliency.masks import MaskRule
from saliency.ranking.artifacts import RANK_FILE, Choice, candidate_sheet_path, save_rank
from saliency.ranking.dvn import DVNSettings, dvn_scores, dvn_top
from saliency.ranking.pictures import save_candidate_sheet, save_dvn_chart
from saliency.ranking.real import check_real, real_folder, real_images
from saliency.ranking.select import Candidate, MaskSettings, choose, score_candidates
from saliency.runs import Stage, run_stage
from saliency.seeding import Stream, seeded_rng

log = logging.getLogger("saliency")

SHEETS = 4  # candidate sheets drawn: the best (direction, sign) pairs, plus the choice
DVN_TOP = 50  # the paper's DVN_top averages the 50 highest


def run_rank(cfg: Config, run_dir: Path, device: str | torch.device, force: bool = False) -> dict[str, Any]:
    """Stage 2 into ``run_dir/rank``; returns DVN mean, DVN_top-50 and the choice."""
    device = distributed.resolve_device(device)
    cfg = distributed.settle_precision(cfg, device)
    run_dir = Path(run_dir)
    options = cfg.rank
    check_options(options, cfg.synth)
    check_real(options.real)
    directions_path = run_dir / "discover" / DIRECTIONS_FILE
    found = load_directions(directions_path, generator=cfg.generator.name)
    if options.direction is not None and options.direction >= found.count:
        raise UserError(f"rank.direction = {options.direction} (--direction) is out of range: {directions_path} "
                        f"holds {found.count} directions (0..{found.count - 1})")
    inputs = {"directions": directions_path}
    if (folder := real_folder(options.real)) is not None:
        inputs["real"] = folder
    masks = mask_settings(options, cfg.synth, cfg.run.precision)
    section = {"generator": dataclasses.asdict(cfg.generator), "rank": dataclasses.asdict(options),
               "masks": dataclasses.asdict(masks)}
    stage = Stage(run_dir, "rank", config=section, seed=cfg.seed_of("rank"), inputs=inputs, precision=cfg.run.precision)
    # The generator (a download, perhaps) is loaded only when the stage has work to do.
    body = functools.partial(_rank, cfg=cfg, device=device, found=found, masks=masks)
    return run_stage(stage, body, force=force, device=device)


def check_options(options: RankConfig, rule: SynthConfig) -> None:
    """Settings the config's ranges cannot express, each a one-line error."""
    if options.sign not in (None, 1, -1):
        raise UserError(f"rank.sign = {options.sign} (--sign): use +1 or -1")
    if not options.mask_shifts or any(s <= 0 for s in options.mask_shifts):
        raise UserError(f"rank.mask_shifts = {options.mask_shifts}: give one or more positive magnitudes")
    if options.magnitude is not None and options.magnitude <= 0:
        raise UserError(f"rank.magnitude = {options.magnitude} (--magnitude): give a positive shift length")
    if rule.min_area is not None and rule.min_area > rule.max_area:
        raise UserError(f"synth.min_area = {rule.min_area} is above synth.max_area = {rule.max_area}")


def dvn_settings(options: RankConfig, precision: str = "fp32") -> DVNSettings:
    return DVNSettings(shift=options.shift, samples=options.dvn_samples, steps=options.dvn_steps,
                       batch_size=options.dvn_batch_size, lr=options.dvn_lr, resolution=options.dvn_resolution,
                       chunk=options.dvn_chunk, generator_batch=options.batch_size, precision=precision)


def mask_settings(options: RankConfig, rule: SynthConfig, precision: str = "fp32") -> MaskSettings:
    """The candidates' test with exactly the mask rule and filters synthesis will use (the synth
    section); a fixed magnitude joins the configured ones."""
    magnitudes = set(options.mask_shifts) | ({options.magnitude} if options.magnitude is not None else set())
    return MaskSettings(magnitudes=tuple(sorted(magnitudes)), samples=options.mask_samples,
                        rule=MaskRule.from_config(rule), batch_size=options.batch_size, precision=precision)


def candidate_directions(dvn: torch.Tensor, top: int | None, override: int | None) -> list[int]:
    """The ``top`` directions by DVN (stable order; every direction when ``top`` is None), plus the
    overridden one."""
    chosen = torch.argsort(dvn, descending=True, stable=True)[:top].tolist()
    if override is not None and override not in chosen:
        chosen.append(override)
    return chosen


def _rank(stage: Stage, cfg: Config, device: torch.device, found: Directions, masks: MaskSettings) -> dict[str, Any]:
    options, truncation = cfg.rank, cfg.generator.truncation
    seed = cfg.seed_of("rank")
    generator = generators.load(cfg.generator.name, weights=cfg.generator.weights, device=device,
                                **cfg.generator.options).requires_grad_(False)
    check_latent_size(found, generator.dim_z, Path(stage.run_dir) / "discover" / DIRECTIONS_FILE)
    directions = found.directions.to(generator.device)
    vectors = found.vectors.to(generator.device)
    settings = dvn_settings(options, masks.precision)
    log.info("rank: DVN of %d directions (%d samples, %d px, real images: %s)", found.count, settings.samples,
             settings.resolution, options.real)
    real = real_images(options.real, settings.samples, settings.resolution, seeded_rng(seed, Stream.RANK_REAL),
                       generator, truncation, options.batch_size)
    dvn = dvn_scores(generator, directions, real, settings, seed, truncation)
    indices = candidate_directions(dvn, options.top, options.direction)
    log.info("rank: testing %d candidate directions for background removal", len(indices))
    rng = seeded_rng(seed, Stream.RANK_MASK)
    z, classes = generator.sample_z(masks.samples, rng, truncation), generator.sample_classes(masks.samples, rng)
    candidates = score_candidates(generator, vectors, indices, dvn, z, classes, masks, progress=True)
    # With the magnitude fixed (the authors' 26 for BigGAN), direction and sign are chosen at that shift.
    best = choose(candidates, options.direction, options.sign, options.magnitude)
    overridden = options.direction is not None or options.sign is not None
    choice = Choice(best.direction, best.sign, best.shift, found.vectors[:, best.direction], overridden)
    top_mean = dvn_top(dvn, DVN_TOP)
    save_rank(stage.dir / RANK_FILE, {
        "generator": found.generator, "method": found.method, "directions_file": f"discover/{DIRECTIONS_FILE}",
        "settings": {"dvn": dataclasses.asdict(settings), "masks": dataclasses.asdict(masks), "real": options.real,
                     "seed": seed},
        "dvn": [round(float(v), 6) for v in dvn], "dvn_mean": float(dvn.mean()), f"dvn_top{DVN_TOP}": top_mean,
        "order": torch.argsort(dvn, descending=True, stable=True).tolist(),
        "candidates": [candidate.as_dict() for candidate in candidates],
    }, choice)
    save_dvn_chart(dvn.cpu(), best.direction, stage.dir / "dvn.png")
    for candidate in _sheet_candidates(candidates, best):
        save_candidate_sheet(generator, vectors[:, candidate.direction], candidate.sign, list(masks.magnitudes),
                             z, classes, masks.rule,
                             candidate_sheet_path(stage.dir, candidate.direction, candidate.sign))
    log.info("rank: chose direction %d, sign %+d, shift %g (score %.3f, DVN %.3f)", best.direction, best.sign,
             best.shift, best.score, best.dvn)
    return {"directions": found.count, "dvn_mean": float(dvn.mean()), f"dvn_top{DVN_TOP}": top_mean,
            "direction": best.direction, "sign": best.sign, "shift": best.shift, "score": best.score,
            "dvn_chosen": best.dvn}


def _sheet_candidates(candidates: list[Candidate], best: Candidate) -> list[Candidate]:
    """The best candidate of each of the first ``SHEETS`` (direction, sign) pairs, and the choice."""
    seen: dict[tuple[int, int], Candidate] = {}
    for candidate in [best, *candidates]:
        if len(seen) >= SHEETS + 1:
            break
        seen.setdefault((candidate.direction, candidate.sign), candidate)
    return list(seen.values())
