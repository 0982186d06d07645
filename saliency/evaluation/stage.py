"""Stage 7: score predictions against the ground truth of one or several datasets.

The first dataset's results are the stage folder's own (``metrics.json``, ``per_image.csv``,
``predictions/``); each further one has the same files in a subfolder named after it; ``table.md``
lists them all in the field's usual columns beside the published figures. With ``predict.refine``
on, the refined maps are what the stage reports, the unrefined figures are kept beside them.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import torch

from saliency.config import Config, dataset_names
from saliency.datasets import PairFolder, resolve
from saliency.datasets.heldout import evaluation_target
from saliency.errors import UserError
from saliency.evaluation.published import published_for
from saliency.evaluation.sources import PredictionSource
from saliency.metrics import EvaluationResult, SaliencyEvaluator
from saliency.progress import progress
from saliency.runs import Stage, atomic_write_bytes, atomic_write_json, atomic_write_text, read_json_file, run_stage
from saliency.segmentation.predict import saved_map
from saliency.segmentation.refine import Refinement

log = logging.getLogger("saliency")


@dataclasses.dataclass
class Scores:
    """One dataset's scores: of the maps as predicted, and of the refined maps when a refinement is on."""

    raw: EvaluationResult
    refined: EvaluationResult | None = None

    @property
    def headline(self) -> EvaluationResult:
        """What the run reports: the refined maps when the config refines them."""
        return self.refined if self.refined is not None else self.raw

    def summary(self) -> dict[str, float]:
        """The headline metrics, and the unrefined ones beside them when refined (:func:`reported`)."""
        return reported(self.headline.summary, self.raw.summary if self.refined is not None else None)


def reported(metrics: dict[str, float], unrefined: dict[str, float] | None = None) -> dict[str, float]:
    """What a stage reports: its metrics, and the unrefined ones beside them as ``unrefined_mae``..."""
    return {**metrics, **{f"unrefined_{key}": value for key, value in (unrefined or {}).items()}}


def evaluate(dataset: PairFolder, source: PredictionSource, metrics: list[str],
             refinement: Refinement | None = None, save_refined: Path | None = None) -> Scores:
    """Score ``source`` on every pair of ``dataset`` (checked first, before any work); with an active
    ``refinement``, also the refined maps (their 8-bit PNGs kept in ``save_refined``)."""
    source.check(dataset)
    refining = refinement is not None and refinement.active
    if refinement is not None:
        refinement.check()
    raw = SaliencyEvaluator(metrics)
    refined = SaliencyEvaluator(metrics) if refining else None
    for stem in progress(dataset.stems, desc=f"evaluating on {dataset.name}", unit="img", leave=False):
        mask = dataset.mask(stem)
        prediction = source.predict(dataset, stem, mask.shape)
        raw.add(stem, prediction, mask)
        if refined is not None and refinement is not None:
            png, better = saved_map(refinement(prediction, dataset.image(stem)))
            if save_refined is not None:
                atomic_write_bytes(save_refined / f"{stem}.png", png)
            refined.add(stem, better, mask)
    return Scores(raw.result(), refined.result() if refined is not None else None)


METRICS_FILE = "metrics.json"
PER_IMAGE_FILE = "per_image.csv"
UNREFINED_PER_IMAGE_FILE = "per_image.unrefined.csv"
TABLE_FILE = "table.md"
TABLE_DATA_FILE = "table.json"
PREDICTIONS_FOLDER = "predictions"
REFINED_FOLDER = "refined"


def _write_csv(path: Path, rows: list[dict[str, float | str]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def write_results(scores: Scores | EvaluationResult, metrics_path: Path, details: dict[str, Any]) -> tuple[Path, Path]:
    """``metrics.json`` (headline summary, where it came from, the unrefined summary when refined)
    and the per-image CSVs beside it."""
    if isinstance(scores, EvaluationResult):
        scores = Scores(scores)
    per_image = metrics_path.with_name(PER_IMAGE_FILE) if metrics_path.name == METRICS_FILE \
        else metrics_path.with_suffix(f".{PER_IMAGE_FILE}")
    _write_csv(per_image, scores.headline.per_image)
    record = {**details, "metrics": scores.headline.summary, "per_image": per_image.name}
    if scores.refined is not None:
        unrefined = per_image.with_name(per_image.name.replace(PER_IMAGE_FILE, UNREFINED_PER_IMAGE_FILE))
        _write_csv(unrefined, scores.raw.per_image)
        record["unrefined"] = {"metrics": scores.raw.summary, "per_image": unrefined.name}
    atomic_write_json(metrics_path, record)
    return metrics_path, per_image


def read_results(eval_dir: Path) -> dict[str, Any]:
    """What an eval stage recorded: ``metrics.json`` (summary, dataset, source, its per-image file)."""
    return read_json_file(Path(eval_dir) / METRICS_FILE, "metrics file", "rerun `saliency eval`")


def read_table(eval_dir: Path) -> list[dict[str, Any]] | None:
    """The per-dataset rows an eval stage wrote (None for a stage older than the table)."""
    path = Path(eval_dir) / TABLE_DATA_FILE
    return read_json_file(path, "table", "rerun `saliency eval`")["rows"] if path.is_file() else None


def per_image_path(eval_dir: Path, results: dict[str, Any]) -> Path:
    """The per-image CSV that ``results`` (from :func:`read_results`) points to."""
    return Path(eval_dir) / str(results.get("per_image") or PER_IMAGE_FILE)


def read_per_image(path: Path) -> list[dict[str, str]]:
    """The rows of a per-image CSV written by :func:`write_results` (image, then one column per metric)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def dataset_folder(stage_dir: Path, index: int, name: str) -> Path:
    """Where a dataset's results go: the stage folder for the first, a subfolder per further one."""
    return Path(stage_dir) if index == 0 else Path(stage_dir) / Path(name.rstrip("/")).name


def run_eval(datasets: str | list[str], split: str | None, source: PredictionSource, metrics: list[str],
             run_dir: Path | None = None, output: Path | None = None, force: bool = False,
             inputs: dict[str, Path] | None = None, settings: dict[str, Any] | None = None,
             precision: str = "fp32", stands_in_for: str | None = None,
             refinement: Refinement | None = None) -> dict[str, Any]:
    """Evaluate into ``output`` (a plain file, one dataset) or into the run folder's ``eval`` stage,
    one dataset after another (``"ecssd,duts-te,dut-omron"``), with one table of all of them.

    ``settings`` (how the source predicts) join the stage's recorded config; ``stands_in_for`` names
    the dataset that the first one replaces (:mod:`saliency.datasets.heldout`); ``refinement``
    (``predict.refine``) also scores the refined maps. Returns the first dataset's metrics.
    """
    names = dataset_names(datasets)
    folders = [resolve(name, split) for name in names]  # every dataset is checked before any work
    refine = {"refine": refinement.settings()} if refinement is not None else {}
    details: list[dict[str, Any]] = [{"dataset": name, "split": split, "images": len(folder), "source": source.name, **refine}
               for name, folder in zip(names, folders)]
    if stands_in_for:
        details[0]["stands_in_for"] = stands_in_for
    if output is not None:
        if len(names) > 1:
            raise UserError(f"--output takes one dataset, not {len(names)}; drop --output to score them all into "
                            f"the run folder's eval stage (one table)")
        if Path(output).is_dir():
            raise UserError(f"--output {output} is a folder; give a file name such as {Path(output) / METRICS_FILE}")
        scores = evaluate(folders[0], source, metrics, refinement)
        write_results(scores, Path(output), details[0])
        return scores.summary()
    if run_dir is None:
        raise ValueError("run_eval: give run_dir (the eval stage) or output (a plain file)")
    config = {**details[0], "datasets": names, "metrics": list(metrics), **(settings or {})}
    if len(names) == 1:
        config.pop("datasets")

    def body(stage: Stage) -> dict[str, Any]:
        # What a dataset's finished scores must match to be reused: the config without machine paths
        # (the source's own path is one), the content of every input, the source's identity.
        same = {"config": {k: v for k, v in config.items() if k != "source"}, "inputs": stage.input_hashes(),
                "source": source.identity()}
        key = hashlib.sha256(json.dumps(same, sort_keys=True, default=str).encode()).hexdigest()[:16]
        rows = []
        for index, (folder, detail) in enumerate(zip(folders, details)):
            where = dataset_folder(stage.dir, index, detail["dataset"])
            rows.append(_score_one(where, folder, source, metrics, refinement, {**detail, "key": key}))
        write_table(stage.dir, rows)
        return reported(rows[0]["metrics"], rows[0].get("unrefined"))

    masks = {"masks" if index == 0 else f"masks:{name}": folder.masks_dir
             for index, (name, folder) in enumerate(zip(names, folders))}
    stage = Stage(run_dir, "eval", config=config, inputs={**masks, **(inputs or {})}, precision=precision)
    return run_stage(stage, body, force=force)


def _score_one(where: Path, dataset: PairFolder, source: PredictionSource, metrics: list[str],
               refinement: Refinement | None, details: dict[str, Any]) -> dict[str, Any]:
    """Score one dataset into ``where``; a dataset an interrupted attempt of the same stage finished
    (its ``metrics.json`` carries the stage's key) is read back instead of scored again."""
    if (where / METRICS_FILE).is_file():
        done = read_results(where)
        if done.get("key") == details["key"]:
            log.info("eval: %s already scored in %s", details["dataset"], where)
            return _row(done)
    source.save_into(where / PREDICTIONS_FOLDER)
    scores = evaluate(dataset, source, metrics, refinement, where / REFINED_FOLDER)  # written only when refining
    write_results(scores, where / METRICS_FILE, details)
    return _row(read_results(where))


def _row(results: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {key: results[key] for key in ("dataset", "split", "images", "metrics") if key in results}
    if "unrefined" in results:
        row["unrefined"] = results["unrefined"]["metrics"]
    if "stands_in_for" in results:
        row["stands_in_for"] = results["stands_in_for"]
    return row


TABLE_METRICS = ("max_fbeta", "iou", "accuracy", "mae")  # the field's usual columns, in its order
TABLE_HEADERS = {"max_fbeta": "max-Fβ", "iou": "IoU", "accuracy": "accuracy", "mae": "MAE"}


def write_table(stage_dir: Path, rows: list[dict[str, Any]]) -> None:
    """``table.json`` (the rows) and ``table.md``: a row per dataset in the field's usual columns, the
    unrefined figures beside the refined when refined, and the published figures below ours."""
    atomic_write_json(Path(stage_dir) / TABLE_DATA_FILE, {"rows": rows})
    atomic_write_text(Path(stage_dir) / TABLE_FILE, format_table(rows))


def table_cells(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of the per-dataset table, as text cells (markdown and the report share them)."""
    header = ["dataset", "images", "method", *(TABLE_HEADERS[m] for m in TABLE_METRICS)]

    def cells(values: dict[str, float]) -> list[str]:
        return [f"{values[m]:.3f}" if m in values else "—" for m in TABLE_METRICS]

    lines = []
    for row in rows:
        if "stands_in_for" in row:
            label = f"held-out samples (for {row['stands_in_for']})"
        else:
            label = f"{row['dataset']}/{row['split']}" if row.get("split") else str(row["dataset"])
        if "unrefined" in row:
            lines.append([label, str(row["images"]), "ours", *cells(row["unrefined"])])
            lines.append([label, str(row["images"]), "ours + refinement", *cells(row["metrics"])])
        else:
            lines.append([label, str(row["images"]), "ours", *cells(row["metrics"])])
        if "stands_in_for" not in row:
            lines += [[str(row["dataset"]), "—", f"{published.method} (published)", *cells(published.metrics)]
                      for published in published_for(str(row["dataset"]))]
    return header, lines


def format_table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of :func:`write_table`."""
    header, lines = table_cells(rows)
    return "".join("| " + " | ".join(cells) + " |\n" for cells in [header, ["---"] * len(header), *lines])


def run_eval_checkpoint(cfg: Config, run_dir: Path, device: str | torch.device, force: bool = False) -> dict[str, Any]:
    """Stage 7 of a pipeline: predict with the detector the run hands on (``stages.handed_on_model``:
    the U-Net's) on every ``eval.dataset``, keep the PNGs, score them."""
    from saliency.distributed import resolve_device, settle_precision
    from saliency.evaluation.checkpoint import CheckpointSource
    from saliency.stages import handed_on_model

    device = resolve_device(device)
    cfg = settle_precision(cfg, device)
    checkpoint = handed_on_model(run_dir)
    source = CheckpointSource(checkpoint, device, activation=cfg.predict.activation,
                              offset=cfg.predict.offset, flip=cfg.predict.flip, precision=cfg.run.precision)
    target = evaluation_target(cfg, run_dir)
    names = [target.dataset, *dataset_names(cfg.eval.dataset)[1:]]
    return run_eval(names, target.split, source, cfg.eval.metrics, run_dir=run_dir, force=force,
                    inputs={"checkpoint": checkpoint}, settings={"predict": dataclasses.asdict(cfg.predict)},
                    precision=cfg.run.precision, stands_in_for=target.stands_in_for,
                    refinement=Refinement.of_config(cfg.predict))
