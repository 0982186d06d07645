"""Predictions of a trained U-Net as an evaluation source (``saliency eval --checkpoint``, the pipeline's
eval stage). Evaluation imports segmentation, never the reverse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from saliency.datasets import PairFolder
from saliency.errors import UserError
from saliency.evaluation.sources import PredictionSource
from saliency.runs import atomic_write_bytes
from saliency.segmentation.predict import Detector


class CheckpointSource(PredictionSource):
    """Predictions of a trained U-Net, optionally saved as PNGs (the 8-bit maps that are scored)."""

    def __init__(self, checkpoint: Path, device: str | torch.device = "cpu", save_to: Path | None = None,
                 **overrides: Any):
        self.checkpoint = Path(checkpoint)
        self.device, self.overrides = device, overrides
        self.save_to = save_to
        self.name = f"checkpoint:{self.checkpoint}"
        self._detector: Detector | None = None

    def identity(self) -> str:
        return "checkpoint"

    def check(self, dataset: PairFolder) -> None:
        self._detector = Detector.load(self.checkpoint, self.device, **self.overrides)

    def save_into(self, folder: Path) -> None:
        self.save_to = Path(folder)

    def predict(self, dataset: PairFolder, stem: str, shape: tuple[int, int]) -> np.ndarray:
        if self._detector is None:
            raise RuntimeError("CheckpointSource.check() loads the model; call it before predict()")
        png, prediction = self._detector.saliency(dataset.image(stem))
        if self.save_to is not None:
            atomic_write_bytes(Path(self.save_to) / f"{stem}.png", png)
        if prediction.shape != shape:
            raise UserError(f"image {stem} and its mask differ in size ({prediction.shape} vs {shape}); fix the dataset")
        return prediction
