"""Inference as the paper does it: shorter side to the training resolution (128 for the paper's
BigGAN), predict, foreground probability, resize back to the image's size."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from saliency.datasets import PairFolder
from saliency.datasets.io import list_images, read_image
from saliency.errors import UserError
from saliency.evaluation.sources import PredictionSource
from saliency.runs import atomic_write_bytes
from saliency.segmentation.model import SIZE_MULTIPLE, load_unet

log = logging.getLogger("saliency")
SHORTER_SIDE = 128


def to_input(image: np.ndarray, shorter_side: int = SHORTER_SIDE) -> torch.Tensor:
    """RGB uint8 ``(H, W, 3)`` to ``(1, 3, h, w)`` in [-1, 1] with ``min(h, w) == shorter_side``."""
    height, width = image.shape[:2]
    scale = shorter_side / min(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return torch.from_numpy(resized).permute(2, 0, 1).float().div(127.5).sub(1).unsqueeze(0)


@torch.no_grad()
def predict_image(model: nn.Module, image: np.ndarray, device: str | torch.device = "cpu",
                  shorter_side: int = SHORTER_SIDE) -> np.ndarray:
    """Foreground probability ``(H, W)`` in [0, 1] at the image's own size."""
    batch = to_input(image, shorter_side).to(device)
    height, width = batch.shape[-2:]
    pad_h, pad_w = (-height) % SIZE_MULTIPLE, (-width) % SIZE_MULTIPLE
    batch = F.pad(batch, (0, pad_w, 0, pad_h), mode="reflect" if min(height, width) > max(pad_h, pad_w) else "replicate")
    probability = model(batch).float().softmax(dim=1)[0, 1, :height, :width].cpu().numpy()
    return cv2.resize(probability, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)


def to_png(probability: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", np.clip(np.round(probability * 255), 0, 255).astype(np.uint8))
    assert ok, "PNG encoding failed"
    return encoded.tobytes()


def predict_folder(checkpoint: Path, images: Path, out: Path, device: str | torch.device = "cpu") -> int:
    """An 8-bit PNG per image of ``images`` into ``out`` (existing predictions are kept: resumable)."""
    if not Path(images).is_dir():
        raise UserError(f"image folder {images} not found")
    files = list_images(images)
    if not files:
        raise UserError(f"image folder {images} holds no .jpg or .png images")
    model, extras = load_unet(checkpoint, device)
    shorter_side = int(extras.get("resolution", SHORTER_SIDE))
    written = 0
    for stem, path in tqdm(sorted(files.items()), desc="predicting", unit="img"):
        target = Path(out) / f"{stem}.png"
        if target.exists():
            continue
        atomic_write_bytes(target, to_png(predict_image(model, read_image(path), device, shorter_side)))
        written += 1
    return written


class CheckpointSource(PredictionSource):
    """Predictions of a trained U-Net, optionally saved as PNGs (the 8-bit maps that are scored)."""

    def __init__(self, checkpoint: Path, device: str | torch.device = "cpu", save_to: Path | None = None):
        self.checkpoint = Path(checkpoint)
        self.device = device
        self.save_to = save_to
        self.name = f"checkpoint:{self.checkpoint}"
        self._model: nn.Module | None = None
        self._shorter_side = SHORTER_SIDE

    def check(self, dataset: PairFolder) -> None:
        self._model, extras = load_unet(self.checkpoint, self.device)
        self._shorter_side = int(extras.get("resolution", SHORTER_SIDE))

    def predict(self, dataset: PairFolder, stem: str, shape: tuple[int, int]) -> np.ndarray:
        assert self._model is not None, "check() loads the model first"
        png = to_png(predict_image(self._model, dataset.image(stem), self.device, self._shorter_side))
        if self.save_to is not None:
            atomic_write_bytes(Path(self.save_to) / f"{stem}.png", png)
        # Score exactly the 8-bit map a user gets from `saliency predict`.
        prediction = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
        if prediction.shape != shape:
            raise UserError(f"image {stem} and its mask differ in size ({prediction.shape} vs {shape}); fix the dataset")
        return prediction
