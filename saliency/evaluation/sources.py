"""Where predictions come from: a folder of PNGs or a trivial baseline here; a U-Net checkpoint in
:mod:`.checkpoint`.

Each source yields, for an image of the dataset, a float saliency map in [0, 1] at the ground
truth's size. Sources are registered by kind, so ``saliency eval`` needs no if-chain per kind.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Callable

import numpy as np

from saliency.datasets import PairFolder
from saliency.datasets.io import list_images
from saliency.errors import UserError
from saliency.images import read_gray, resize

ASPECT_TOLERANCE = 0.03


class PredictionSource(abc.ABC):
    """Saliency maps for the images of a dataset."""

    name: str

    def identity(self) -> str:
        """What makes its maps, without machine paths (a checkpoint's or a folder's content is among
        the eval stage's inputs): part of the key that lets a resumed stage reuse a dataset's scores."""
        return self.name

    def check(self, dataset: PairFolder) -> None:  # noqa: B027 - optional hook, most sources need no check
        """Fail before any work when the source cannot cover ``dataset``."""

    def save_into(self, folder: Path) -> None:  # noqa: B027 - optional hook: only sources that make maps keep them
        """Keep the maps this source makes in ``folder`` (a source that reads saved maps has none to keep)."""

    @abc.abstractmethod
    def predict(self, dataset: PairFolder, stem: str, shape: tuple[int, int]) -> np.ndarray:
        """Float map ``shape`` in [0, 1] for image ``stem``."""


def fit_to_shape(prediction: np.ndarray, shape: tuple[int, int], origin: str) -> np.ndarray:
    """Resize a prediction to the mask's size; a different aspect ratio means a different image."""
    if prediction.shape == shape:
        return prediction
    height, width = prediction.shape
    if abs((height / width) / (shape[0] / shape[1]) - 1) > ASPECT_TOLERANCE:
        raise UserError(f"{origin}: prediction is {width}x{height} but the mask is {shape[1]}x{shape[0]} "
                        f"(another aspect ratio, so not this image); regenerate it")
    return resize(prediction, shape, "linear")


class FolderSource(PredictionSource):
    """PNGs named by image stem (8- or 16-bit, or float TIFFs in [0, 1]), any size (resized to the mask's size)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.name = f"folder:{self.folder}"
        self._files: dict[str, Path] = {}

    def identity(self) -> str:
        return "folder"

    def check(self, dataset: PairFolder) -> None:
        if not self.folder.is_dir():
            raise UserError(f"prediction folder {self.folder} not found; pass --predictions DIR with one PNG per image")
        self._files = list_images(self.folder)
        missing = [stem for stem in dataset.stems if stem not in self._files]
        if missing:
            raise UserError(f"prediction folder {self.folder} misses {len(missing)} of {len(dataset)} images "
                            f"(first: {missing[0]}.png); predict every image of {dataset.name}")

    def predict(self, dataset: PairFolder, stem: str, shape: tuple[int, int]) -> np.ndarray:
        path = self._files[stem]
        prediction = read_gray(path)
        return fit_to_shape(prediction, shape, str(path))


class ZerosBaseline(PredictionSource):
    """Everything is background: the floor any method must beat by far (ECSSD test MAE 0.2485)."""

    name = "baseline:zeros"

    def predict(self, dataset: PairFolder, stem: str, shape: tuple[int, int]) -> np.ndarray:
        return np.zeros(shape, np.float32)


class CenterBaseline(PredictionSource):
    """A centred Gaussian prior (sigma a quarter of each side): photographers centre their subject."""

    name = "baseline:center"

    def predict(self, dataset: PairFolder, stem: str, shape: tuple[int, int]) -> np.ndarray:
        ys = (np.arange(shape[0], dtype=np.float32) + 0.5) / shape[0] - 0.5
        xs = (np.arange(shape[1], dtype=np.float32) + 0.5) / shape[1] - 0.5
        return np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * 0.25 ** 2))


BASELINES: dict[str, Callable[[], PredictionSource]] = {"zeros": ZerosBaseline, "center": CenterBaseline}
