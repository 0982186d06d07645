"""Stage 6, ``saliency self-train``: the synthetic detector learns from unlabeled photographs.

Each round (docs/method.md §5b) predicts every unlabeled photograph with the current U-Net,
refines the maps with the images' edges into pseudo-masks (:mod:`.pseudo`), keeps the trustworthy
ones, and trains the U-Net on them from its weights of the round before (with augmentation, and
synthetic pairs mixed in when asked). The round's folder keeps its pseudo-labels
(``labels/STEM.png``: 0 background, 1 object, 255 ignored; ``labels/STEM.json``: the figures that
decided), its weights, a sheet of pictures and a record; the stage's U-Net file is the last
round's, and it is what evaluation scores. A killed stage resumes: finished rounds are read back,
labels already written are kept, and training resumes from its checkpoint.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from saliency import distributed
from saliency.config import Config, dataset_names
from saliency.datasets.folder import ImageFolder
from saliency.datasets.registry import DatasetMissing, resolve, resolve_images
from saliency.errors import UserError
from saliency.evaluation.checkpoint import CheckpointSource
from saliency.evaluation.stage import evaluate
from saliency.images import decode_labels, encode_png, row_figure
from saliency.progress import progress
from saliency.runs import (
    Stage,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    read_json_file,
    run_stage,
    sha256_file,
)
from saliency.seeding import Stream, derive_seed, seeded_rng
from saliency.segmentation.model import MODEL_FILE, UnetSpec, load_unet, save_unet
from saliency.segmentation.predict import SHORTER_SIDE, Inference
from saliency.segmentation.refine import Refinement
from saliency.segmentation.train import IGNORE_LABEL, UnetSettings, train_unet
from saliency.selftrain.pairs import PseudoPairs, mixed_with_synthetic
from saliency.selftrain.pseudo import PseudoLabel, PseudoRules, mask_iou, pseudo_label
from saliency.training import CHECKPOINT

log = logging.getLogger("saliency")

LABELS_FOLDER = "labels"
ROUND_RECORD = "round.json"
START_RECORD = "start.json"  # the monitor's scores of the U-Net the stage starts from
ROUNDS_TABLE = "rounds.csv"
ROUNDS_FIGURE = "rounds.png"
SHEET = "sheet.png"
SHEET_IMAGES = 6
MONITOR_METRICS = ("mae", "max_fbeta", "iou", "accuracy")


def round_dir(stage_dir: Path, index: int) -> Path:
    return Path(stage_dir) / f"round-{index}"


def unlabeled_images(cfg: Config) -> ImageFolder | None:
    """The photographs to learn from (``selftrain.max_images`` of them, a seeded draw), checked
    disjoint from every set the run is scored on; None when they are a registered dataset that is
    not on this machine (one line says so, and the run goes on without self-training)."""
    options = cfg.selftrain
    try:
        images = resolve_images(options.images, options.split)
    except DatasetMissing as missing:
        log.warning("self-train: no unlabeled images (%s); going on without self-training", missing)
        return None
    if options.max_images is not None and options.max_images < len(images):
        order = torch.randperm(len(images), generator=seeded_rng(cfg.seed_of("selftrain"), Stream.SELFTRAIN_IMAGES))
        chosen = sorted(images.stems[i] for i in order[: options.max_images].tolist())
        images = ImageFolder(images.images_dir, tuple(chosen), images.name)
    refuse_overlap(images, cfg)
    return images


def refuse_overlap(images: ImageFolder, cfg: Config) -> None:
    """One line naming the file when an unlabeled image is also one the run is scored on (same
    content): self-training never sees a test image, nor one of the monitoring set."""
    scored: list[tuple[str, str | None]] = [(name, cfg.eval.split) for name in dataset_names(cfg.eval.dataset)]
    if cfg.selftrain.monitor:
        scored.append((cfg.selftrain.monitor, None))
    held: dict[str, Path] = {}
    for name, split in scored:
        try:
            dataset = resolve(name, split)
        except DatasetMissing:
            continue  # not on this machine: the run scores on a stand-in, which no photograph can be
        held.update({sha256_file(dataset.image_path(stem)): dataset.image_path(stem) for stem in dataset.stems})
    for stem in images.stems:
        path = images.image_path(stem)
        if (twin := held.get(sha256_file(path))) is not None:
            raise UserError(f"{path}: the same image as {twin}, which the run is scored on; self-training never "
                            f"sees a test image: remove it from {images.images_dir} or choose other images")


def run_self_train(cfg: Config, run_dir: Path, device: str | torch.device, force: bool = False) -> dict[str, Any]:
    """Stage 6 into ``run_dir/selftrain``: ``selftrain.rounds`` rounds from the U-Net stage's model (none
    when ``rounds`` is 0 or there are no unlabeled images)."""
    run_dir = Path(run_dir)
    device = distributed.resolve_device(device)
    distributed.init(device)
    cfg = distributed.settle_precision(cfg, device)
    options = cfg.selftrain
    images = unlabeled_images(cfg) if options.rounds > 0 else None
    start = run_dir / "unet" / MODEL_FILE
    inputs: dict[str, Path] = {}
    if images is not None:
        if not start.is_file():
            raise UserError(f"self-train: {start} not found; run `saliency train-unet --run {run_dir}` first")
        inputs = {"model": start, "images": images.images_dir}
        if options.synthetic > 0:
            from saliency.synthesis.shards import SHARDS_DIR

            inputs["pairs"] = run_dir / "synth" / SHARDS_DIR
    # What makes the pseudo-labels and the training: this section, the inference and refinement
    # settings, the U-Net's loss temperature and weight averaging (and, as inputs, the U-Net it starts
    # from and the images' content).
    predict = {key: value for key, value in dataclasses.asdict(cfg.predict).items() if key != "refine"}
    section = {"selftrain": dataclasses.asdict(options), "predict": predict,  # selftrain.refine, not eval's
               "unet": {"temperature": cfg.unet.temperature, "ema": cfg.unet.ema}}
    # No setting is reusable across: even another monitor set changes what the rounds' records hold.
    stage = Stage(run_dir, "selftrain", config=section, seed=cfg.seed_of("selftrain"), inputs=inputs,
                  precision=cfg.run.precision)
    body = functools.partial(_self_train, cfg=cfg, run_dir=run_dir, device=device, images=images)
    return run_stage(stage, body, force=force, every_rank=True)


def _self_train(stage: Stage, cfg: Config, run_dir: Path, device: torch.device,
                images: ImageFolder | None) -> dict[str, Any]:
    options = cfg.selftrain
    if images is None:  # an empty table of rounds: the stage's verified output, so a rerun skips it
        if distributed.is_writer():
            _write_table(stage.dir, [])
        return {"rounds": 0}
    start = run_dir / "unet" / MODEL_FILE
    _, extras = load_unet(start)
    size = options.resolution or int(extras.get("resolution", SHORTER_SIDE))
    # The teacher of each round predicts at the size it was trained at (the U-Net's, then the rounds'):
    # what a model has not learned to see, it labels badly.
    inference = Inference(SHORTER_SIDE, cfg.predict.activation, cfg.predict.offset, cfg.predict.flip, cfg.run.precision)
    refinement = Refinement.of_config(dataclasses.replace(cfg.predict, refine=options.refine))
    rules = PseudoRules.of_config(options)
    monitor = functools.partial(_monitor, cfg=cfg, device=device) if options.monitor else None
    records: list[dict[str, Any]] = []
    if monitor is not None and distributed.is_writer():
        records.append(_start_record(stage.dir, start, monitor))
    current = start
    for index in range(1, options.rounds + 1):
        folder = round_dir(stage.dir, index)
        if not (folder / ROUND_RECORD).is_file():
            _run_round(cfg, stage, index, current, images, inference, refinement, rules, device, size, monitor)
        record = read_json_file(folder / ROUND_RECORD, "round record", "rerun with --force")
        if distributed.is_writer():
            (folder / CHECKPOINT).unlink(missing_ok=True)  # the round is done: its weights are saved
        records.append(record)
        log.info("self-train: round %d kept %d of %d images (mean confidence %.3f)%s", index, record["kept"],
                 record["images"], record["mean_confidence"], _monitor_text(record.get("monitor")))
        current = folder / MODEL_FILE
    if distributed.is_writer():
        atomic_write_bytes(stage.dir / MODEL_FILE, current.read_bytes())
        _write_table(stage.dir, records)
        _write_figure(stage.dir, records)
    distributed.barrier()
    last = records[-1]
    metrics: dict[str, Any] = {"rounds": options.rounds, "images": len(images), "kept": last["kept"],
                               "mean_confidence": last["mean_confidence"]}
    for key, value in (last.get("monitor") or {}).items():
        metrics[f"monitor_{key}"] = value
    return metrics


def _run_round(cfg: Config, stage: Stage, index: int, current: Path, images: ImageFolder, inference: Inference,
               refinement: Refinement, rules: PseudoRules, device: torch.device, size: int,
               monitor: Any) -> None:
    """One round: pseudo-labels by the model at ``current`` (each rank labels its share), then
    training on the kept ones from those weights; the writer saves the weights, sheet and record."""
    options = cfg.selftrain
    folder = round_dir(stage.dir, index)
    labels = folder / LABELS_FOLDER
    labels.mkdir(parents=True, exist_ok=True)
    previous = round_dir(stage.dir, index - 1) / LABELS_FOLDER if index > 1 else None
    model, extras = load_unet(current, device)
    inference = inference.replace(shorter_side=int(extras.get("resolution", SHORTER_SIDE)))
    mine = images.stems[distributed.rank():: distributed.world_size()]
    for stem in progress(mine, desc=f"self-train round {index}: pseudo-labels", unit="img", leave=False):
        if (labels / f"{stem}.json").is_file():
            continue
        label = pseudo_label(model, images.image(stem), device, inference, refinement, rules)
        agreement = _agreement(label, previous / f"{stem}.png") if previous is not None else None
        atomic_write_bytes(labels / f"{stem}.png", encode_png(label.label))
        atomic_write_json(labels / f"{stem}.json", {"kept": label.kept, "reason": label.reason, "area": label.area,
                                                    "confidence": label.confidence, "stability": label.stability,
                                                    "border": label.border, "agreement": agreement})
    distributed.barrier()
    stats = {stem: read_json_file(labels / f"{stem}.json", "pseudo-label record", "rerun with --force")
             for stem in images.stems}
    kept = [stem for stem in images.stems if stats[stem]["kept"]]
    if not kept:
        raise UserError(f"self-train: round {index} kept none of {len(images)} pseudo-masks (see {labels}); relax "
                        f"selftrain.min_area/max_area/min_stability/max_border")
    pseudo = PseudoPairs(images, labels, kept, size)
    pairs = mixed_with_synthetic(pseudo, stage.run_dir, options.synthetic, size) if options.synthetic > 0 else pseudo
    spec = UnetSpec.of_checkpoint(extras)
    model.train()
    seed = derive_seed(cfg.seed_of("selftrain"), Stream.SELFTRAIN_ROUND, index) % 2**31
    settings = UnetSettings(options.steps, options.batch_size, options.lr, 1.0, max(1, options.steps), cfg.unet.temperature,
                            seed, cfg.unet.checkpoint_every, max(1, options.steps), 0, cfg.run.precision,
                            options.augment, cfg.unet.ema, cfg.unet.channels_last, cfg.run.compile, resolution=size,
                            stage="self-train")
    history, _ = train_unet(model, pairs, settings, device, folder / CHECKPOINT, {**stage.resume_key(), "round": index})
    if distributed.is_writer():
        save_unet(model, folder / MODEL_FILE, spec, {**extras, "resolution": size, "step": len(history.rows),
                                                     "activation": cfg.predict.activation,
                                                     "offset": cfg.predict.offset, "flip": cfg.predict.flip})
        history.write_csv(folder / "losses.csv")
        atomic_write_bytes(folder / SHEET, _sheet(images, stats, current, device, inference, refinement, rules))
        confidences = [stats[stem]["confidence"] for stem in kept]
        agreements = [stats[stem]["agreement"] for stem in images.stems if stats[stem]["agreement"] is not None]
        record = {"round": index, "images": len(images), "kept": len(kept),
                  "dropped": dict(Counter(stats[s]["reason"].split(" ")[0] for s in images.stems if not stats[s]["kept"])),
                  "mean_confidence": float(np.mean(confidences)),
                  "agreement": float(np.mean(agreements)) if agreements else None,
                  "steps": len(history.rows), "final_loss": history.running("loss"),
                  "monitor": monitor(folder / MODEL_FILE) if monitor is not None else None}
        atomic_write_json(folder / ROUND_RECORD, record)
    distributed.barrier()


def _agreement(label: PseudoLabel, previous: Path) -> float | None:
    """IoU of this round's object pixels with the previous round's pseudo-mask of the same image."""
    if not previous.is_file():
        return None
    before = decode_labels(previous.read_bytes(), "a pseudo-label")
    return mask_iou(label.label == 1, before == 1)


def _monitor(checkpoint: Path, cfg: Config, device: torch.device) -> dict[str, float]:
    """The monitoring dataset's scores of a U-Net file, predicted as evaluation predicts (raw maps)."""
    dataset = resolve(str(cfg.selftrain.monitor), None)
    source = CheckpointSource(checkpoint, device, activation=cfg.predict.activation, offset=cfg.predict.offset,
                              flip=cfg.predict.flip, precision=cfg.run.precision)
    summary = evaluate(dataset, source, list(MONITOR_METRICS)).headline.summary
    return {key: float(summary[key]) for key in MONITOR_METRICS}


def _start_record(stage_dir: Path, start: Path, monitor: Any) -> dict[str, Any]:
    """Row 0 of the rounds table: the U-Net the stage starts from, scored once (kept for a resume)."""
    path = Path(stage_dir) / START_RECORD
    if not path.is_file():
        atomic_write_json(path, {"round": 0, "images": None, "kept": None, "dropped": {}, "mean_confidence": None,
                                 "agreement": None, "steps": 0, "final_loss": None, "monitor": monitor(start)})
    return read_json_file(path, "start record", "rerun with --force")


def _monitor_text(scores: dict[str, float] | None) -> str:
    if not scores:
        return ""
    return "; monitor " + ", ".join(f"{key} {value:.4f}" for key, value in scores.items())


def _sheet(images: ImageFolder, stats: dict[str, dict[str, Any]], model_file: Path, device: torch.device,
           inference: Inference, refinement: Refinement, rules: PseudoRules) -> bytes:
    """PNG: a row per image (evenly spaced through the set): photograph | raw map | refined map |
    pseudo-mask (white object, black background, grey ignored; a red frame when dropped)."""
    model, _ = load_unet(model_file, device)
    step = max(1, len(images) // SHEET_IMAGES)
    rows = []
    for stem in images.stems[::step][:SHEET_IMAGES]:
        image = images.image(stem)
        label = pseudo_label(model, image, device, inference, refinement, rules)
        shown = np.where(label.label == IGNORE_LABEL, 128, label.label * 255).astype(np.uint8)
        shown = np.repeat(shown[..., None], 3, axis=2)
        if not stats[stem]["kept"]:
            border = max(2, min(shown.shape[:2]) // 40)
            for edge in (np.s_[:border], np.s_[-border:]):
                shown[edge] = (220, 30, 30)
                shown[:, edge] = (220, 30, 30)
        rows.append([image, (label.raw * 255).round().astype(np.uint8), (label.refined * 255).round().astype(np.uint8),
                     shown])
    return row_figure(rows)


MONITOR_COLUMNS_ORDER = {key: index for index, key in enumerate(MONITOR_METRICS)}


def _monitored(records: list[dict[str, Any]]) -> list[str]:
    """The monitoring metrics the records hold, in the usual order."""
    return sorted({key for record in records for key in (record.get("monitor") or {})},
                  key=lambda key: MONITOR_COLUMNS_ORDER.get(key, len(MONITOR_COLUMNS_ORDER)))


def _write_table(stage_dir: Path, records: list[dict[str, Any]]) -> None:
    """``rounds.csv``: a row per round (images kept, confidence, agreement, monitor scores; row 0 the
    U-Net before, when monitored)."""
    columns = ["round", "images", "kept", "mean_confidence", "agreement", "steps", "final_loss"]
    metrics = _monitored(records)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns + [f"monitor_{key}" for key in metrics] + ["dropped"])
    for record in records:
        writer.writerow([_cell(record.get(column)) for column in columns]
                        + [_cell((record.get("monitor") or {}).get(key)) for key in metrics]
                        + [json.dumps(record.get("dropped") or {}, sort_keys=True)])
    atomic_write_text(Path(stage_dir) / ROUNDS_TABLE, buffer.getvalue())


def _write_figure(stage_dir: Path, records: list[dict[str, Any]]) -> None:
    """``rounds.png``: the table's pseudo-label figures and monitor scores as curves over rounds."""
    metrics = _monitored(records)
    figure = Figure(figsize=(10, 4))
    left, right = figure.subplots(1, 2)
    trained = [record for record in records if record["round"] > 0]
    rounds = [record["round"] for record in trained]
    left.plot(rounds, [record["kept"] / record["images"] for record in trained], marker="o", label="share kept")
    left.plot(rounds, [record["mean_confidence"] for record in trained], marker="o", label="mean confidence")
    agreed = [(record["round"], record["agreement"]) for record in trained if record["agreement"] is not None]
    if agreed:
        left.plot(*zip(*agreed), marker="o", label="agreement with the round before")
    left.set(xlabel="round", title="pseudo-labels", ylim=(0, 1))
    left.legend()
    for key in metrics:
        points = [(record["round"], record["monitor"][key]) for record in records if record.get("monitor")]
        right.plot(*zip(*points), marker="o", label=key)
    right.set(xlabel="round (0 = the U-Net before)", title="monitoring set")
    if metrics:
        right.legend()
    for axis in (left, right):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    with atomic_path(Path(stage_dir) / ROUNDS_FIGURE) as tmp:
        figure.savefig(tmp, format="png", dpi=100)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def read_rounds(stage_dir: Path) -> list[dict[str, str]]:
    """The rows of a stage's ``rounds.csv`` (none when it has not written one)."""
    path = Path(stage_dir) / ROUNDS_TABLE
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
