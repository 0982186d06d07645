"""``saliency run``: every stage in order into one run folder.

Stages are a registry (:mod:`saliency.stages`: name -> stage function ``run_X(cfg, run_dir,
device, force)``), so the runner has no knowledge of any stage's insides. Complete stages are skipped by their manifests,
interrupted ones resume from their own checkpoints.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import time
from pathlib import Path
from typing import Any, Callable

from saliency import distributed
from saliency.config import Config, dump_config
from saliency.errors import UserError
from saliency.report import build_report
from saliency.runs import atomic_write_text, run_lock
from saliency.stages import REGISTRY

log = logging.getLogger("saliency")

StageFunction = Callable[..., dict[str, Any]]

# Stage name -> "module:function", in run order (saliency.stages); imported when the stage runs.
STAGES: dict[str, str] = {entry.name: entry.function for entry in REGISTRY}


def stage_function(name: str) -> StageFunction:
    module, _, function = STAGES[name].partition(":")
    return getattr(importlib.import_module(module), function)


def select_stages(first: str | None = None, last: str | None = None) -> list[str]:
    names = list(STAGES)
    for given in (first, last):
        if given is not None and given not in STAGES:
            raise UserError(f"unknown stage {given!r}; stages in order: {', '.join(names)}")
    start = names.index(first) if first else 0
    stop = names.index(last) + 1 if last else len(names)
    if start >= stop:
        raise UserError(f"--from {first} comes after --until {last}; stages in order: {', '.join(names)}")
    return names[start:stop]


def run_pipeline(cfg: Config, run_dir: Path, stages: list[str], force: bool = False) -> dict[str, dict[str, Any]]:
    """Run ``stages`` in order; ``force`` redoes them. Returns each stage's metrics."""
    run_dir = Path(run_dir)
    # Held across all stages, so no other process slips into the folder between two of them.
    # Rank 0 alone under torchrun (each rank knows its rank from the launcher before any stage joins
    # the process group).
    writer = distributed.is_writer()
    with run_lock(run_dir) if writer else contextlib.nullcontext():
        if writer:
            atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
        results: dict[str, dict[str, Any]] = {}
        for name in stages:
            started = time.time()
            log.info("== %s ==", name)
            results[name] = stage_function(name)(cfg, run_dir, cfg.run.device, force=force)
            log.info("%s: %.1f s", name, time.time() - started)
        if writer:
            log.info("report: %s", build_report(run_dir))
    return results
