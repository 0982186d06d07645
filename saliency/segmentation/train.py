"""Stage 5, ``saliency train-unet``: a two-class U-Net on synthetic image/mask pairs.

Paper settings (docs/method.md §5): Adam at 0.005, x0.2 every 4000 steps, 15000 steps, batch 128,
per-pixel cross-entropy on logits / 10, the authors' classic U-Net. Batches are drawn by step (indices from the step's own
random stream), so a run resumed from its checkpoint sees exactly the batches the uninterrupted
run would have seen. Every ``eval_every`` steps the MAE on a few real test images is logged, the
honest signal of whether synthetic training transfers.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sized, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from saliency import distributed
from saliency.classes import CLASSES_FILE
from saliency.config import Config
from saliency.datasets import PairFolder, resolve
from saliency.datasets.heldout import evaluation_target
from saliency.errors import UserError
from saliency.runs import Stage, load_torch_file, read_manifest, run_stage
from saliency.seeding import Stream, derive_seed
from saliency.segmentation.augment import Augmenter
from saliency.segmentation.model import MODEL_FILE, UnetSpec, build_unet, save_unet
from saliency.segmentation.predict import Inference, predict_image
from saliency.training import CHECKPOINT, History, ProgressLog, load_checkpoint, save_checkpoint, save_curves, step_rng

log = logging.getLogger("saliency")

LOG_EVERY = 10


@dataclass(frozen=True)
class UnetSettings:
    steps: int
    batch_size: int
    lr: float
    lr_decay: float
    lr_step: int
    temperature: float
    seed: int
    checkpoint_every: int
    eval_every: int
    workers: int | None = 0  # None = auto (see loader_workers)
    precision: str = "fp32"
    augment: str = "none"
    ema: float | None = None  # decay of the weights' moving average (None = train and save the last weights)
    channels_last: bool | None = None  # None = on a GPU only
    compile: str | None = None  # torch.compile backend (run.compile)
    resolution: int | None = None  # the size augmentation crops to; None = the pairs' own
    stage: str = "train-unet"  # the name progress lines and errors carry


class StepBatches(Sampler[list[int]]):
    """Index batches for steps ``start..steps-1``, each drawn from its step's own random stream."""

    def __init__(self, size: int, batch_size: int, seed: int, start: int, steps: int):
        self.size, self.batch_size, self.seed, self.start, self.steps = size, batch_size, seed, start, steps

    def __len__(self) -> int:
        return self.steps - self.start

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.steps):
            rng = step_rng(self.seed, Stream.UNET_BATCH, distributed.rank(), step)
            yield torch.randint(self.size, (self.batch_size,), generator=rng).tolist()


def uses_channels_last(requested: bool | None, device: torch.device) -> bool:
    """``unet.channels_last``: as given, or (None) on a GPU only, where NHWC is the layout fast
    convolution kernels want; on CPU it pays for small U-Nets only (benchmarks/unet_speed.py)."""
    return device.type == "cuda" if requested is None else requested


AUTO_WORKERS = 8  # shard-decoding processes feeding one GPU (PNG decoding of 128 px pairs)


def loader_workers(requested: int | None, online: bool, device: torch.device) -> int:
    """Data-loading processes: ``requested``, or (None) enough to keep a GPU fed from shards; an
    online stream draws from the generator, which on a GPU must stay in the main process."""
    if requested is not None:
        return requested
    if online or device.type != "cuda":
        return 0
    return min(AUTO_WORKERS, max(1, (os.cpu_count() or 1) - 1))


@runtime_checkable
class ResumableStream(Protocol):
    """An online stream of pairs (``OnlinePairs``) that resumes where a DataLoader left it."""

    def skipping(self, batches: int, batch_size: int) -> IterableDataset:
        """The same stream without the first ``batches`` batches of ``batch_size``."""


def step_batches(pairs: Dataset, settings: UnetSettings, start: int, device: torch.device) -> Iterable[Any]:
    """Batches for steps ``start..steps-1``: drawn by step from a dataset of pairs, or taken in order
    from an online stream (which skips what earlier steps consumed). On a GPU batches come in pinned
    memory, and with workers each prefetches 4 batches, so copies overlap compute."""
    online = isinstance(pairs, IterableDataset)
    workers = loader_workers(settings.workers, online, device)
    loading: dict[str, Any] = {"num_workers": workers, "pin_memory": device.type == "cuda",
                               **({"prefetch_factor": 4} if workers else {})}
    if online:
        if not isinstance(pairs, ResumableStream):
            raise TypeError(f"an online dataset must resume by skipping(batches, batch_size); {type(pairs).__name__} "
                            f"has no skipping()")
        stream = pairs.skipping(start, settings.batch_size)
        loader = DataLoader(stream, batch_size=settings.batch_size, **loading)
        return itertools.islice(loader, settings.steps - start)
    if not isinstance(pairs, Sized):
        raise TypeError(f"a dataset of pairs needs a length (__len__); {type(pairs).__name__} has none")
    sampler = StepBatches(len(pairs), settings.batch_size, settings.seed, start, settings.steps)
    return DataLoader(pairs, batch_sampler=sampler, **loading)


IGNORE_LABEL = 255  # a mask pixel left out of the loss (self-training's uncertain pseudo-labels)


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-pixel cross-entropy on logits / temperature (the authors' temperature 10), averaged over
    the pixels not marked :data:`IGNORE_LABEL` (0 for a batch with none: no NaN)."""
    labelled = (masks != IGNORE_LABEL).sum().clamp(min=1)
    return F.cross_entropy(logits.float() / temperature, masks.long(), ignore_index=IGNORE_LABEL,
                           reduction="sum") / labelled


def pixel_accuracy(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The share of labelled pixels (not :data:`IGNORE_LABEL`) whose class the logits get right."""
    labelled = masks != IGNORE_LABEL
    return ((logits.argmax(dim=1) == masks) & labelled).sum() / labelled.sum().clamp(min=1)


@torch.no_grad()
def sample_mae(model: nn.Module, dataset: PairFolder, stems: list[str], device: torch.device,
               inference: Inference) -> float:
    """MAE of the current model on ``stems`` (the run's inference, at the masks' size)."""
    was_training = model.training
    model.eval()
    errors = [float(np.abs(predict_image(model, dataset.image(s), device, inference) - dataset.mask(s)).mean())
              for s in stems]
    model.train(was_training)
    return float(np.mean(errors))


def train_unet(model: nn.Module, pairs: Dataset, settings: UnetSettings, device: torch.device,
               checkpoint: Path | None = None, fingerprint: dict[str, Any] | None = None,
               monitor: Callable[[nn.Module], float] | None = None) -> tuple[History, list[tuple[int, float]]]:
    """Train ``model`` on ``pairs`` (image in [-1, 1] 3xHxW, mask HxW); returns the per-step history
    and the ``(step, monitor(model))`` checks. Resumes from ``checkpoint`` when it matches."""
    memory_format = torch.channels_last if uses_channels_last(settings.channels_last, device) else torch.contiguous_format
    model.to(device).to(memory_format=memory_format).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=settings.lr_step, gamma=settings.lr_decay)
    # The moving average (weights and BatchNorm statistics) smooths the last steps' noise; it is
    # what the monitor sees and what the stage saves.
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(settings.ema), use_buffers=True) \
        if settings.ema is not None else None
    history = History(("loss", "pixel_accuracy", "lr"), [])
    checks: list[tuple[int, float]] = []
    resumed = load_checkpoint(checkpoint, fingerprint, settings.steps, settings.stage) if checkpoint else None
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        if averaged is not None:
            averaged.load_state_dict(resumed["averaged"])
        history.rows = resumed["history"].tolist()
        checks = [tuple(row) for row in resumed["checks"].tolist()]
        log.info("%s: resumed from %s at step %d", settings.stage, checkpoint, len(history.rows))
    start = len(history.rows)
    parallel = distributed.data_parallel(model, device)
    forward = torch.compile(parallel, backend=settings.compile) if settings.compile else parallel
    batches = step_batches(pairs, settings, start, device)
    progress = ProgressLog(history, settings.steps, settings.stage, LOG_EVERY,
                           {"loss": "loss", "acc": "pixel_accuracy"})
    augmenter: Augmenter | None = None
    for step, (images, masks) in enumerate(batches, start=start):
        augmenter = augmenter or Augmenter(settings.augment, settings.resolution or images.shape[-1])
        images, masks = augmenter(images, masks, step_rng(settings.seed, Stream.UNET_AUGMENT, distributed.rank(), step))
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        masks = masks.to(device, non_blocking=True)
        with distributed.autocast(device, settings.precision):
            logits = forward(images)
        loss = segmentation_loss(logits, masks, settings.temperature)
        if not torch.isfinite(distributed.mean_across_ranks(loss.detach())):
            kept = f"the last good checkpoint ({checkpoint}, step {_checkpoint_step(checkpoint)}) is kept" \
                if checkpoint is not None and checkpoint.is_file() else "no checkpoint was written yet"
            raise UserError(f"{settings.stage}: the loss became {loss.item()} at step {step + 1}; {kept}; "
                            f"lower the learning rate or check the training pairs")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if averaged is not None:
            averaged.update_parameters(model)
        accuracy = pixel_accuracy(logits, masks)
        done = step + 1
        at_checkpoint = done % settings.checkpoint_every == 0 or done == settings.steps
        progress.record(done, [loss, accuracy, torch.tensor(optimizer.param_groups[0]["lr"])], flush=at_checkpoint)
        if monitor is not None and distributed.is_writer() and (done % settings.eval_every == 0 or done == settings.steps):
            checks.append((done, monitor(averaged.module if averaged is not None else distributed.unwrap(parallel))))
            log.info("%s: step %d, loss %.4f, MAE %.4f", settings.stage, done, history.running("loss"), checks[-1][1])
        if at_checkpoint and checkpoint is not None and distributed.is_writer():
            save_checkpoint(checkpoint, fingerprint, history, model=distributed.unwrap(parallel).state_dict(),
                            optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                            checks=torch.tensor(checks, dtype=torch.float64).reshape(len(checks), 2),
                            **({"averaged": averaged.state_dict()} if averaged is not None else {}))
    progress.close()
    if averaged is not None:
        model.load_state_dict(averaged.module.state_dict())
    return history, checks


def _checkpoint_step(path: Path) -> int:
    return int(load_torch_file(path, "checkpoint", "rerun with --force to start over")["step"])


def run_train_unet(cfg: Config, run_dir: Path, device: str | torch.device, force: bool = False,
                   pairs: Dataset | None = None) -> dict[str, Any]:
    """Stage 5 into ``run_dir/unet``: the trained U-Net, its resume checkpoint, ``losses.csv``, ``curves.png``.

    ``pairs`` defaults to the synthetic pairs of ``run_dir/synth`` (or the online synthesizer)."""
    device = distributed.resolve_device(device)
    distributed.init(device)
    cfg = distributed.settle_precision(cfg, device)
    # The predict section is not part of the stage's identity: inference settings change no weights
    # (the saved U-Net records those of the run that trained it, as defaults for `saliency predict`).
    section = {"unet": dataclasses.asdict(cfg.unet), "eval": {"dataset": cfg.eval.dataset, "split": cfg.eval.split}}
    inputs: dict[str, Path] = {}
    if pairs is None and cfg.unet.source == "shards":
        from saliency.synthesis.shards import SHARDS_DIR

        # The pairs' content (not the synth manifest, whose times differ between equal runs).
        inputs = {"pairs": Path(run_dir) / "synth" / SHARDS_DIR}
    elif pairs is None:  # online: the pairs are made from the generator, the direction and the classes
        from saliency.synthesis.stage import direction_inputs

        section.update(generator=dataclasses.asdict(cfg.generator), synth=dataclasses.asdict(cfg.synth))
        inputs = {"classes": Path(run_dir) / "classes" / CLASSES_FILE, **direction_inputs(Path(run_dir))}
    # A longer training continues a shorter one (and a changed checkpoint spacing or loader count resumes).
    stage = Stage(run_dir, "unet", config=section, seed=cfg.seed_of("unet"), inputs=inputs, precision=cfg.run.precision,
                  reusable_across=("unet.steps", "unet.checkpoint_every", "unet.workers", "unet.channels_last"))
    body = functools.partial(_train_stage, cfg=cfg, run_dir=Path(run_dir), device=device, pairs=pairs)
    return run_stage(stage, body, force=force, every_rank=True)


def _train_stage(stage: Stage, cfg: Config, run_dir: Path, device: torch.device, pairs: Dataset | None) -> dict[str, Any]:
    options = cfg.unet
    if pairs is None:
        pairs = synthetic_pairs(cfg, run_dir, device)
    # Real images are predicted at the scale the U-Net learned: shorter side = training resolution.
    resolution = int(next(iter(pairs))[0].shape[-1])
    monitor = None
    if options.eval_images > 0:
        target = evaluation_target(cfg, run_dir)
        real = resolve(target.dataset, target.split)
        stems = list(real.stems[:: max(1, len(real) // options.eval_images)][: options.eval_images])
        inference = Inference(resolution, cfg.predict.activation, cfg.predict.offset, cfg.predict.flip,
                              cfg.run.precision)
        monitor = functools.partial(sample_mae, dataset=real, stems=stems, device=device, inference=inference)
    seed = cfg.seed_of("unet")
    torch.manual_seed(derive_seed(seed, Stream.UNET_INIT))  # the U-Net's initial weights
    spec = UnetSpec.from_config(options)
    model = build_unet(spec)
    settings = UnetSettings(options.steps, options.batch_size, options.lr, options.lr_decay, options.lr_step,
                            options.temperature, seed, options.checkpoint_every, options.eval_every,
                            options.workers, cfg.run.precision, options.augment, options.ema,
                            options.channels_last, cfg.run.compile)
    history, checks = train_unet(model, pairs, settings, device, stage.dir / CHECKPOINT, stage.resume_key(),
                                 monitor=monitor)
    if distributed.is_writer():
        save_unet(model, stage.dir / MODEL_FILE, spec, {"step": len(history.rows), "resolution": resolution,
                                                         "activation": cfg.predict.activation,
                                                         "offset": cfg.predict.offset, "flip": cfg.predict.flip})
        history.write_csv(stage.dir / "losses.csv")
        save_curves(history, stage.dir / "curves.png", {"loss": ("loss",), "accuracy and MAE": ("pixel_accuracy",)},
                    extra={f"MAE on {cfg.eval.primary}/{cfg.eval.split}": ([s for s, _ in checks], [m for _, m in checks])}
                    if monitor else None)
    distributed.barrier()
    metrics: dict[str, Any] = {"steps": len(history.rows), "final_loss": history.running("loss")}
    if checks and monitor:
        metrics["sample_mae"] = checks[-1][1]
    return metrics


def synthetic_pairs(cfg: Config, run_dir: Path, device: torch.device) -> Dataset:
    """The pairs of the synth stage (``unet.source: shards``) or the online synthesizer."""
    from saliency.synthesis.shards import ShardDataset
    from saliency.synthesis.stage import online_pairs

    if cfg.unet.source == "online":
        return online_pairs(cfg, run_dir, device)
    manifest = read_manifest(Path(run_dir) / "synth")
    if manifest is None or manifest.get("status") != "complete":
        raise UserError(f"train-unet: {run_dir}/synth is not complete; run `saliency synth-dataset --run {run_dir}` "
                        f"first (or set unet.source: online)")
    return ShardDataset(Path(run_dir) / "synth")
