"""The stages of a run, in order: one entry each, which everything that walks the stages reads.

``saliency run`` runs them in this order (each as ``function(cfg, run_dir, device, force=)``), the
table of random streams gives each seeded stage its fixed key, the report has a section per entry
under its title, and evaluation scores the detector handed on by the last stage that made one. So a
new stage is its own folder of code and one entry here (and, where it has settings, its config
section). This module imports nothing heavy: loading a config reads it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StageEntry:
    """One stage: its folder in a run (and name for ``--from``/``--until``), its function as
    ``module:function`` (imported when the stage runs, so the CLI starts fast), the report's heading
    for it, its key in the table of random streams (a stage's for good: a new stage takes the next
    unused number, never a position, so adding one reseeds no other; None = it draws nothing), and
    file it hands on to evaluation if it makes a detector, as ``module:CONSTANT`` of the module that
    writes and reads that file (its one owner)."""

    name: str
    function: str
    title: str
    seed_key: int | None = None
    hands_on: str | None = None


REGISTRY: tuple[StageEntry, ...] = (
    StageEntry("discover", "saliency.discovery.train:run_discover", "Discover directions", seed_key=1_000),
    StageEntry("rank", "saliency.ranking.stage:run_rank",
               "Rank directions (DVN) and choose the background direction", seed_key=1_001),
    StageEntry("classes", "saliency.classes:run_classes", "Classes"),
    StageEntry("synth", "saliency.synthesis.stage:run_synth", "Synthetic data", seed_key=1_002),
    StageEntry("unet", "saliency.segmentation.train:run_train_unet", "U-Net", seed_key=1_003,
               hands_on="saliency.segmentation.model:MODEL_FILE"),
    StageEntry("selftrain", "saliency.selftrain.stage:run_self_train", "Self-training on unlabeled photographs",
               seed_key=1_004, hands_on="saliency.segmentation.model:MODEL_FILE"),
    StageEntry("eval", "saliency.evaluation.stage:run_eval_checkpoint", "Evaluation"),
)
STAGE_NAMES: tuple[str, ...] = tuple(entry.name for entry in REGISTRY)


def _resolve(reference: str) -> str:
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


def handed_on_model(run_dir: Path) -> Path:
    """The detector a run's evaluation scores: the file handed on by the last stage (in run order)
    that hands one on and has written it; the first such stage's file when none has (so that the
    error names the file a user expects)."""
    candidates = [Path(run_dir) / entry.name / _resolve(entry.hands_on) for entry in REGISTRY if entry.hands_on]
    written = [path for path in candidates if path.is_file()]
    return written[-1] if written else candidates[0]
