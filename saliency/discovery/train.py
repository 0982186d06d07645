"""Stage 1, ``saliency discover``: learn (or compute) K latent directions and measure RCA.

One training loop serves every objective: per step it draws z (and classes), lets the objective
build image pairs and a loss, and updates the deformator A (when it learns) and the reconstructor
R with Adam. Randomness of step s on rank r comes from its own key (seed, stream, r, s), so a run resumed
from a checkpoint draws exactly what the uninterrupted run would have drawn. Checkpoints hold both
models, both optimizers, the step and the per-step loss history.

Closed-form methods skip A's training; with ``steps > 0`` R is still trained against their fixed
directions, which is how the paper measures the RCA of its random and coordinate baselines.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from saliency import distributed, generators
from saliency.config import Config, DiscoverConfig
from saliency.discovery.artifacts import (
    DIRECTIONS_FILE,
    RECONSTRUCTOR_FILE,
    Directions,
    save_directions,
    save_reconstructor,
)
from saliency.discovery.closed_form import CLOSED_FORM, ClosedFormRequest
from saliency.discovery.deformators import Deformator, FixedDeformator, build_deformator
from saliency.discovery.figures import save_direction_grids
from saliency.discovery.objectives import (
    OBJECTIVES,
    Objective,
    OptimizeObjective,
    ShiftSampler,
    VoynovObjective,
    build_objective,
)
from saliency.discovery.reconstructors import build_reconstructor
from saliency.errors import UserError
from saliency.generators.base import Generator
from saliency.runs import Stage, run_stage
from saliency.seeding import Stream, derive_seed
from saliency.training import CHECKPOINT, History, ProgressLog, load_checkpoint, save_checkpoint, save_curves, step_rng

log = logging.getLogger("saliency")

LOG_EVERY = 50  # steps between progress updates (and cross-rank averaging of the logged values)
OPTIMIZE_RESTARTS = 4  # directions `optimize` learns at once by default; rank keeps the best


@dataclass(frozen=True)
class TrainSettings:
    """How long and how to train; ``classes``/``truncation`` shape the latents drawn."""

    steps: int
    batch_size: int
    lr: float
    seed: int
    classes: list[int] | None = None
    truncation: float | None = None
    checkpoint_every: int = 1000


def sample_latents(generator: Generator, n: int, rng: torch.Generator, classes: list[int] | None,
                   truncation: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """z ``(n, dim_z)`` and class ids ``(n,)`` on the generator's device."""
    return generator.sample_z(n, rng, truncation), generator.sample_classes(n, rng, choices=classes)


def train(generator: Generator, deformator: Deformator, reconstructor: torch.nn.Module | None, objective: Objective,
          settings: TrainSettings, device: torch.device, checkpoint: Path | None = None,
          fingerprint: dict[str, Any] | None = None, on_step: Callable[[int], None] | None = None,
          precision: str = "fp32", compile: str | None = None) -> History:
    """Train ``deformator`` (if it has parameters) and ``reconstructor`` (when the objective has one)
    for ``settings.steps`` steps.

    With ``checkpoint``, resume from it when its ``fingerprint`` matches and save to it every
    ``checkpoint_every`` steps and at the end (rank 0 only). ``on_step(step)`` runs after each step.
    ``precision`` ``"bf16"`` runs the generator and reconstructor under bf16 autocast; ``compile``
    (a backend name) runs the generator's forward through ``torch.compile``.
    """
    generator.eval().requires_grad_(False)
    forward = torch.compile(generator, backend=compile) if compile else generator
    learners = {name: model.to(device).train() for name, model in
                (("deformator", deformator), ("reconstructor", reconstructor)) if model is not None}
    optimizers = {name: torch.optim.Adam(model.parameters(), lr=settings.lr) for name, model in learners.items()
                  if any(p.requires_grad for p in model.parameters())}
    accuracy = ("accuracy",) if objective.needs_reconstructor else ()
    history = History(("loss", *objective.terms, *accuracy), [])
    resumed = load_checkpoint(checkpoint, fingerprint, settings.steps, "discover") if checkpoint is not None else None
    if resumed is not None:
        for name, model in learners.items():
            model.load_state_dict(resumed[name])
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(resumed["optimizers"][name])
        history.rows = resumed["history"].tolist()
        log.info("discover: resumed from %s at step %d", checkpoint, len(history.rows))
    wrapped = {name: distributed.data_parallel(model, device) for name, model in learners.items()}
    amp = functools.partial(distributed.autocast, device, precision)
    shown = {"loss": "loss", **({"rca": "accuracy"} if accuracy else {name: name for name in objective.terms})}
    progress = ProgressLog(history, settings.steps, "discover", LOG_EVERY, shown)
    for step in range(len(history.rows), settings.steps):
        rng = step_rng(settings.seed, Stream.DISCOVER_BATCH, distributed.rank(), step)
        z, classes = sample_latents(generator, settings.batch_size, rng, settings.classes, settings.truncation)
        out = objective(forward, wrapped["deformator"], wrapped.get("reconstructor"), z, classes, rng, amp)
        for optimizer in optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        for optimizer in optimizers.values():
            optimizer.step()
        done = step + 1
        at_checkpoint = done % settings.checkpoint_every == 0 or done == settings.steps
        values = [out.loss, *(out.terms[name] for name in objective.terms), *([out.measured_accuracy()] if accuracy else [])]
        progress.record(done, values, flush=at_checkpoint)
        if at_checkpoint and checkpoint is not None and distributed.is_writer():
            save_checkpoint(checkpoint, fingerprint, history,
                            **{name: model.state_dict() for name, model in learners.items()},
                            optimizers={name: optimizer.state_dict() for name, optimizer in optimizers.items()})
            log.info("discover: step %d/%d, %s", done, settings.steps,
                     ", ".join(f"{label} {history.running(column):.4f}" for label, column in shown.items()))
        if on_step is not None:
            on_step(done)
    progress.close()
    for model in learners.values():  # DDP syncs batch-norm statistics before each forward, not after the last
        distributed.broadcast_module(model)
    return history


@torch.no_grad()
def measure_rca(generator: Generator, deformator: Deformator, reconstructor: torch.nn.Module,
                sampler: ShiftSampler, samples: int, batch_size: int, seed: int, device: torch.device,
                classes: list[int] | None = None, truncation: float | None = None,
                precision: str = "fp32") -> float:
    """Reconstructor classification accuracy on ``samples`` fresh single-shift pairs (paper §4),
    split over ranks; the models are put in eval mode."""
    deformator.eval()
    reconstructor.eval()
    probe = VoynovObjective(sampler, shift_weight=0.0)
    amp = functools.partial(distributed.autocast, device, precision)
    mine = math.ceil(samples / distributed.world_size())
    totals = torch.zeros(2, dtype=torch.float64, device=device)
    for index, first in enumerate(range(0, mine, batch_size)):
        n = min(batch_size, mine - first)
        rng = step_rng(seed, Stream.DISCOVER_RCA, distributed.rank(), index)
        z, labels = sample_latents(generator, n, rng, classes, truncation)
        out = probe(generator, deformator, reconstructor, z, labels, rng, amp)
        totals += torch.tensor([out.measured_accuracy().item() * n, n], dtype=torch.float64, device=device)
    correct, count = distributed.sum_across_ranks(totals).tolist()
    return correct / count


def run_discover(cfg: Config, run_dir: Path, device: str | torch.device, force: bool = False) -> dict[str, Any]:
    """Stage 1 into ``run_dir/discover``: the directions and reconstructor (:mod:`.artifacts`), ``losses.csv``,
    ``curves.png``, ``grids/*.png``; returns the metrics (RCA among them)."""
    device = distributed.resolve_device(device)
    distributed.init(device)
    cfg = distributed.settle_precision(cfg, device)
    section = {"generator": dataclasses.asdict(cfg.generator), "discover": dataclasses.asdict(cfg.discover)}
    inputs = {}
    if cfg.discover.method == "import" and cfg.discover.import_path:
        inputs["import"] = Path(cfg.discover.import_path)
    if cfg.generator.weights and Path(cfg.generator.weights).is_file():
        inputs["weights"] = Path(cfg.generator.weights)
    # A longer run continues a shorter one: a checkpoint stays valid when only the length of the
    # run, the checkpoint spacing or the size of the final RCA measurement changed.
    stage = Stage(run_dir, "discover", config=section, seed=cfg.seed_of("discover"), inputs=inputs,
                  precision=cfg.run.precision, reusable_across=("discover.steps", "discover.optimize_steps",
                                                                "discover.checkpoint_every", "discover.rca_samples"))
    body = functools.partial(_discover, cfg=cfg, device=device)
    return run_stage(stage, body, force=force, every_rank=True)


def _discover(stage: Stage, cfg: Config, device: torch.device) -> dict[str, Any]:
    distributed.barrier()  # rank 0 has cleared the stage folder (--force) before anyone reads it
    options, seed = cfg.discover, cfg.seed_of("discover")
    generator = generators.load(cfg.generator.name, weights=cfg.generator.weights, device=device,
                                **cfg.generator.options)
    distributed.broadcast_module(generator.requires_grad_(False))
    if options.classes is not None:
        _check_classes(generator, options.classes)
    deformator, found = _deformator(cfg, generator)
    deformator.to(device)
    sampler = ShiftSampler(options.shift_scale, options.min_shift)
    objective = _objective(options, sampler)
    reconstructor = None
    if objective.needs_reconstructor:
        reconstructor = build_reconstructor(options.reconstructor, deformator.num_directions, generator.resolution,
                                            derive_seed(seed, Stream.DISCOVER_RECONSTRUCTOR))
    optimizing = options.method == "optimize"
    settings = TrainSettings(steps=options.optimize_steps if optimizing else options.steps,
                             batch_size=options.batch_size, lr=options.optimize_lr if optimizing else options.lr,
                             seed=seed, classes=options.classes, truncation=cfg.generator.truncation,
                             checkpoint_every=options.checkpoint_every)
    history = train(generator, deformator, reconstructor, objective, settings, device,
                    checkpoint=stage.dir / CHECKPOINT, fingerprint=stage.resume_key(), precision=cfg.run.precision,
                    compile=cfg.run.compile)
    rca = None
    if reconstructor is not None and settings.steps > 0:
        rca = measure_rca(generator, deformator, reconstructor, sampler, options.rca_samples, options.batch_size,
                          seed, device, options.classes, cfg.generator.truncation, cfg.run.precision)
    if found is None:
        kind = "unit-norm" if options.method == "optimize" else options.deformator
        found = Directions(directions=deformator.directions(), method=options.method, deformator=kind,
                           generator=cfg.generator.name,
                           deformator_state=None if deformator.exact_columns else deformator.state_dict())
    if distributed.is_writer():
        _write_outputs(stage.dir, found, history, generator, deformator, reconstructor, cfg)
    distributed.barrier()
    metrics: dict[str, Any] = {"method": options.method, "directions": found.count, "steps": len(history.rows),
                               "rca": rca, "rca_samples": options.rca_samples if rca is not None else 0}
    if history.rows:
        metrics["final_loss"] = history.running("loss")
    return metrics


def _objective(options: DiscoverConfig, sampler: ShiftSampler) -> Objective:
    """The training objective of the method; closed-form directions are measured (RCA) with the
    paper's objective, a reconstructor learning against them (its baseline protocol)."""
    if options.method == "optimize":
        return OptimizeObjective(sampler, options.optimize_surround, options.optimize_weight)
    name = options.method if options.method in OBJECTIVES else "voynov"
    return build_objective(name, sampler, options.shift_weight, options.centroid_weight)


def _deformator(cfg: Config, generator: Generator) -> tuple[Deformator, Directions | None]:
    """A fresh deformator for a training method; fixed directions (and them) for a closed-form one.

    ``optimize`` learns K = ``directions`` (default 4) independent unit columns from a random start,
    whatever ``deformator`` and ``init`` say: restarts must differ, and need not be orthogonal."""
    options, init_seed = cfg.discover, derive_seed(cfg.seed_of("discover"), Stream.DISCOVER_INIT)
    if options.method == "optimize":
        return build_deformator("unit-norm", generator.dim_z, options.directions or OPTIMIZE_RESTARTS,
                                init_seed, "random"), None
    if options.method in OBJECTIVES:
        count = options.directions or generator.dim_z
        return build_deformator(options.deformator, generator.dim_z, count, init_seed, options.init), None
    request = ClosedFormRequest(generator=generator, generator_name=cfg.generator.name,
                                num_directions=options.directions, seed=init_seed, classes=options.classes,
                                truncation=cfg.generator.truncation,
                                import_path=Path(options.import_path) if options.import_path else None,
                                samples=options.ganspace_samples, batch_size=options.batch_size)
    found = CLOSED_FORM[options.method](request)
    return FixedDeformator(found.directions), found


def _write_outputs(folder: Path, found: Directions, history: History, generator: Generator,
                   deformator: Deformator, reconstructor: torch.nn.Module | None, cfg: Config) -> None:
    save_directions(folder / DIRECTIONS_FILE, found)
    if reconstructor is not None and history.rows:
        save_reconstructor(folder / RECONSTRUCTOR_FILE, reconstructor, cfg.discover.reconstructor,
                           deformator.num_directions)
    if history.rows:
        history.write_csv(folder / "losses.csv")
        panels = {"losses": tuple(c for c in history.columns if c != "accuracy")}
        if "accuracy" in history.columns:
            panels["direction accuracy (training batches)"] = ("accuracy",)
        save_curves(history, folder / "curves.png", panels)
    save_direction_grids(generator, deformator, folder / "grids", derive_seed(cfg.seed_of("discover"), Stream.DISCOVER_GRIDS),
                         cfg.discover.classes, cfg.generator.truncation)


def _check_classes(generator: Generator, classes: list[int]) -> None:
    if generator.n_classes == 0 or not classes or any(not 0 <= c < generator.n_classes for c in classes):
        raise UserError(f"discover.classes = {classes}: the generator has classes 0..{generator.n_classes - 1}; "
                        f"pass ids in that range (or leave classes unset)")
