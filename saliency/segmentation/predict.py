"""Inference as the paper does it: shorter side to the training resolution (128 for the paper's
BigGAN), predict, foreground probability, resize back to the image's size (docs/method.md §5).

The foreground probability is ``predict.activation``: ``sigmoid-logit`` (GanLatentDiscovery's
inference: sigmoid of the raw foreground logit) or ``softmax`` (BigGANsAreWatching's: softmax
channel 1). ``predict.offset`` is added to the foreground logit first: a calibration of what 0.5
means on photographs, for a U-Net trained on synthetic pairs (0 in the papers). ``predict.flip``
averages the probability with that of the mirrored image (test-time augmentation; off in the
papers). All of them travel together as one :class:`Inference`; a checkpoint records those of the
run that trained it, and an explicit choice wins.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from saliency.datasets.io import list_images
from saliency.distributed import autocast
from saliency.errors import UserError
from saliency.images import decode_gray, encode_png, read_image, resize, uint8_to_signed, unit_to_uint8
from saliency.runs import atomic_write_bytes, atomic_write_json, read_json_file, sha256_file
from saliency.segmentation.model import load_unet
from saliency.segmentation.refine import Refinement

log = logging.getLogger("saliency")
SHORTER_SIDE = 128
DEFAULT_ACTIVATION = "sigmoid-logit"

# Foreground probability (N, H, W) from two-channel logits (N, 2, H, W).
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid-logit": lambda logits: logits[:, 1].sigmoid(),
    "softmax": lambda logits: logits.softmax(dim=1)[:, 1],
}


def foreground_probability(logits: torch.Tensor, activation: str = DEFAULT_ACTIVATION,
                           offset: float = 0.0) -> torch.Tensor:
    """``(N, H, W)`` in [0, 1] by the named activation, the foreground logit raised by ``offset``
    first (see the module docstring)."""
    if activation not in ACTIVATIONS:
        raise UserError(f"predict.activation {activation!r} is not known; choose one of {', '.join(ACTIVATIONS)}")
    logits = logits.float()
    if offset:
        logits = torch.cat([logits[:, :1], logits[:, 1:2] + offset, logits[:, 2:]], dim=1)
    return ACTIVATIONS[activation](logits)


@dataclasses.dataclass(frozen=True)
class Inference:
    """How a U-Net's output becomes a saliency map: the scale it sees (``shorter_side``, its
    training resolution), ``activation``, ``offset``, mirror averaging (``flip``) and ``precision``."""

    shorter_side: int = SHORTER_SIDE
    activation: str = DEFAULT_ACTIVATION
    offset: float = 0.0
    flip: bool = False
    precision: str = "fp32"

    @classmethod
    def of_checkpoint(cls, extras: dict[str, Any]) -> "Inference":
        """The settings a saved U-Net recorded (older checkpoints: the papers' defaults)."""
        return cls(shorter_side=int(extras.get("resolution", SHORTER_SIDE)),
                   activation=str(extras.get("activation", DEFAULT_ACTIVATION)),
                   offset=float(extras.get("offset", 0.0)), flip=bool(extras.get("flip", False)))

    def replace(self, **changes: Any) -> "Inference":
        """A copy with ``changes``; a change of ``None`` keeps the current value (an option not given)."""
        return dataclasses.replace(self, **{key: value for key, value in changes.items() if value is not None})


def to_input(image: np.ndarray, shorter_side: int = SHORTER_SIDE) -> torch.Tensor:
    """RGB uint8 ``(H, W, 3)`` to ``(1, 3, h, w)`` in [-1, 1] with ``min(h, w) == shorter_side`` and
    the longer side ``shorter_side · long // short`` (the authors' rounding down)."""
    height, width = image.shape[:2]
    short = min(height, width)
    resized = resize(image, (max(1, shorter_side * height // short), max(1, shorter_side * width // short)))
    return uint8_to_signed(torch.from_numpy(resized).permute(2, 0, 1)).unsqueeze(0)


@torch.no_grad()
def predict_image(model: nn.Module, image: np.ndarray, device: str | torch.device = "cpu",
                  inference: Inference = Inference()) -> np.ndarray:
    """Foreground probability ``(H, W)`` in [0, 1] at the image's own size; with ``inference.flip``,
    the mean of the image's and its mirror image's (mirrored back)."""
    batch = to_input(image, inference.shorter_side).to(device)
    if inference.flip:
        batch = torch.cat([batch, batch.flip(-1)])
    height, width = batch.shape[-2:]
    multiple = getattr(model, "size_multiple", 1)
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        mode = "reflect" if min(height, width) > max(pad_h, pad_w) else "replicate"
        batch = F.pad(batch, (0, pad_w, 0, pad_h), mode=mode)
    with autocast(batch.device, inference.precision):
        logits = model(batch)
    probabilities = foreground_probability(logits, inference.activation, inference.offset)[:, :height, :width]
    if inference.flip:
        probabilities = (probabilities[:1] + probabilities[1:].flip(-1)) / 2
    probability = probabilities[0].cpu().numpy()
    return resize(probability, image.shape[:2], "linear")


def to_png(probability: np.ndarray) -> bytes:
    """The 8-bit PNG of a saliency map in [0, 1] (what is saved and scored)."""
    return encode_png(unit_to_uint8(torch.from_numpy(probability)).numpy())


def saved_map(probability: np.ndarray) -> tuple[bytes, np.ndarray]:
    """The 8-bit PNG of a map and the map it decodes to: what is scored (and refined) is exactly
    what ``saliency predict`` saves."""
    png = to_png(probability)
    return png, decode_gray(png, "a saliency map")


class Predictor:
    """A loaded checkpoint with its :class:`Inference`: the checkpoint's own settings, with
    ``overrides`` (``activation=``, ``offset=``, ``flip=``, ``precision=``; ``None`` keeps) on top."""

    def __init__(self, checkpoint: Path, device: str | torch.device = "cpu", **overrides: Any) -> None:
        self.model, extras = load_unet(checkpoint, device)
        self.device = device
        self.inference = Inference.of_checkpoint(extras).replace(**overrides)
        foreground_probability(torch.zeros(1, 2, 1, 1), self.inference.activation)  # an unknown name fails here, once

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return predict_image(self.model, image, self.device, self.inference)


PREDICTIONS_RECORD = "predictions.json"  # in a predict --out folder: what made its maps


def predictions_record(checkpoint: Path, inference: Inference, refinement: Refinement | None) -> dict[str, Any]:
    """What makes a folder's maps: the checkpoint's content and every inference and refinement setting."""
    return {"checkpoint_sha256": sha256_file(checkpoint), "inference": dataclasses.asdict(inference),
            "refine": refinement.settings() if refinement is not None else {"name": "none"}}


def claim_folder(out: Path, record: dict[str, Any]) -> None:
    """Make ``out`` the folder of maps made as ``record`` says: a new or empty folder is recorded; one
    whose maps were made so already is resumed (its maps kept); maps made otherwise, or by an unknown
    hand, are never mixed with new ones (one line, and nothing written)."""
    out = Path(out)
    path = out / PREDICTIONS_RECORD
    maps = list(out.glob("*.png")) if out.is_dir() else []
    if path.is_file():
        recorded = read_json_file(path, "record of predictions", f"remove {path} and the maps beside it")
        if recorded != record:
            changed = sorted(key for key in record if recorded.get(key) != record[key])
            raise UserError(f"{out} holds maps made with another {' and '.join(changed)}; give another --out "
                            f"folder (or empty this one) rather than mix them")
    elif maps:
        raise UserError(f"{out} holds {len(maps)} PNG maps that saliency predict did not record making; give "
                        f"another --out folder (or empty this one) rather than mix them")
    atomic_write_json(path, record)


def predict_folder(checkpoint: Path, images: Path, out: Path, device: str | torch.device = "cpu",
                   refinement: Refinement | None = None, **overrides: Any) -> int:
    """An 8-bit PNG per image of ``images`` into ``out``; ``overrides`` change the checkpoint's
    inference settings (see :class:`Predictor`); an active ``refinement`` refines each saved map with
    its image (:mod:`.refine`). ``out`` records what made its maps (``predictions.json``): an
    interrupted call with the same checkpoint and settings resumes, any other is refused."""
    if not Path(images).is_dir():
        raise UserError(f"image folder {images} not found")
    files = list_images(images)
    if not files:
        raise UserError(f"image folder {images} holds no .jpg or .png images")
    if refinement is not None:
        refinement.check()
    predictor = Predictor(checkpoint, device, **overrides)
    claim_folder(Path(out), predictions_record(Path(checkpoint), predictor.inference, refinement))
    written = 0
    for stem, path in tqdm(sorted(files.items()), desc="predicting", unit="img"):
        target = Path(out) / f"{stem}.png"
        if target.exists():
            continue
        image = read_image(path)
        png, probability = saved_map(predictor(image))
        if refinement is not None and refinement.active:
            png = to_png(refinement(probability, image))
        atomic_write_bytes(target, png)
        written += 1
    return written
