"""Stage 6: score predictions against a dataset's ground truth."""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from saliency.config import Config
from saliency.datasets import PairFolder, resolve
from saliency.datasets.heldout import evaluation_target
from saliency.errors import UserError
from saliency.evaluation.sources import PredictionSource
from saliency.metrics import EvaluationResult, SaliencyEvaluator
from saliency.runs import Stage, atomic_write_json, atomic_write_text, read_json_file, run_stage

log = logging.getLogger("saliency")


def evaluate(dataset: PairFolder, source: PredictionSource, metrics: list[str]) -> EvaluationResult:
    """Score ``source`` on every pair of ``dataset`` (the source is checked first, before any work)."""
    source.check(dataset)
    evaluator = SaliencyEvaluator(metrics)
    for stem in tqdm(dataset.stems, desc=f"evaluating on {dataset.name}", unit="img", leave=False):
        mask = dataset.mask(stem)
        evaluator.add(stem, source.predict(dataset, stem, mask.shape), mask)
    return evaluator.result()


METRICS_FILE = "metrics.json"
PER_IMAGE_FILE = "per_image.csv"


def write_results(result: EvaluationResult, metrics_path: Path, details: dict[str, Any]) -> tuple[Path, Path]:
    """``metrics.json`` (summary and where it came from) and the per-image CSV beside it."""
    per_image_path = metrics_path.with_name(PER_IMAGE_FILE) if metrics_path.name == METRICS_FILE \
        else metrics_path.with_suffix(f".{PER_IMAGE_FILE}")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(result.per_image[0]))
    writer.writeheader()
    writer.writerows(result.per_image)
    atomic_write_text(per_image_path, buffer.getvalue())
    atomic_write_json(metrics_path, {**details, "metrics": result.summary, "per_image": per_image_path.name})
    return metrics_path, per_image_path


def read_results(eval_dir: Path) -> dict[str, Any]:
    """What an eval stage recorded: ``metrics.json`` (summary, dataset, source, its per-image file)."""
    return read_json_file(Path(eval_dir) / METRICS_FILE, "metrics file", "rerun `saliency eval`")


def per_image_path(eval_dir: Path, results: dict[str, Any]) -> Path:
    """The per-image CSV that ``results`` (from :func:`read_results`) points to."""
    return Path(eval_dir) / str(results.get("per_image") or PER_IMAGE_FILE)


def read_per_image(path: Path) -> list[dict[str, str]]:
    """The rows of a per-image CSV written by :func:`write_results` (image, then one column per metric)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def run_eval(dataset_name: str, split: str | None, source: PredictionSource, metrics: list[str],
             run_dir: Path | None = None, output: Path | None = None, force: bool = False,
             inputs: dict[str, Path] | None = None, settings: dict[str, Any] | None = None,
             precision: str = "fp32", stands_in_for: str | None = None) -> dict[str, float]:
    """Evaluate into ``output`` (a plain file) or into the run folder's ``eval`` stage; ``settings``
    (how the source predicts: activation...) join the stage's recorded config; ``stands_in_for`` names
    the dataset that ``dataset_name`` replaces (:mod:`saliency.datasets.heldout`)."""
    dataset = resolve(dataset_name, split)
    details = {"dataset": dataset_name, "split": split, "images": len(dataset), "source": source.name,
               **({"stands_in_for": stands_in_for} if stands_in_for else {})}
    if output is not None:
        if Path(output).is_dir():
            raise UserError(f"--output {output} is a folder; give a file name such as {Path(output) / METRICS_FILE}")
        result = evaluate(dataset, source, metrics)
        write_results(result, Path(output), details)
        return result.summary
    if run_dir is None:
        raise ValueError("run_eval: give run_dir (the eval stage) or output (a plain file)")

    def body(stage: Stage) -> dict[str, float]:
        result = evaluate(dataset, source, metrics)
        write_results(result, stage.dir / METRICS_FILE, details)
        return result.summary

    stage = Stage(run_dir, "eval", config={**details, "metrics": list(metrics), **(settings or {})},
                  inputs={"masks": dataset.masks_dir, **(inputs or {})}, precision=precision)
    return run_stage(stage, body, force=force)


def run_eval_checkpoint(cfg: Config, run_dir: Path, device: str | torch.device, force: bool = False) -> dict[str, float]:
    """Stage 6 of a pipeline: predict with the run's U-Net, keep the PNGs, score them."""
    from saliency.distributed import resolve_device
    from saliency.evaluation.checkpoint import CheckpointSource
    from saliency.segmentation.model import MODEL_FILE

    checkpoint = Path(run_dir) / "unet" / MODEL_FILE
    source = CheckpointSource(checkpoint, resolve_device(device), save_to=Path(run_dir) / "eval" / "predictions",
                              activation=cfg.predict.activation, offset=cfg.predict.offset, flip=cfg.predict.flip,
                              precision=cfg.run.precision)
    target = evaluation_target(cfg, run_dir)
    return run_eval(target.dataset, target.split, source, cfg.eval.metrics, run_dir=run_dir, force=force,
                    inputs={"checkpoint": checkpoint}, settings={"predict": dataclasses.asdict(cfg.predict)},
                    precision=cfg.run.precision, stands_in_for=target.stands_in_for)
