"""The report's own picture: predictions next to ground truth for the best and worst images.

Every other picture of the report is drawn by its stage; this one needs the dataset's images,
which no stage keeps, so the report composes it from the eval stage's per-image scores, the saved predictions
and the dataset. One PNG per group of cases, one row per image: image | ground truth | prediction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from saliency.datasets import PairFolder
from saliency.images import ROW_GAP, ROW_HEIGHT, read_gray, row_figure, unit_to_uint8
from saliency.metrics import HIGHER_IS_BETTER

THUMBNAIL_HEIGHT = ROW_HEIGHT
GAP = ROW_GAP
CASES_PER_GROUP = 4


@dataclass(frozen=True)
class Case:
    """One evaluated image and its score under the metric the cases were ranked by."""

    stem: str
    value: float


def ranking_metric(columns: list[str]) -> str | None:
    """MAE when the table has it (the paper's metric), else its first known metric."""
    known = [name for name in columns if name in HIGHER_IS_BETTER]
    return "mae" if "mae" in known else (known[0] if known else None)


def best_and_worst(rows: list[dict[str, str]], metric: str,
                   count: int = CASES_PER_GROUP) -> tuple[list[Case], list[Case]]:
    """The ``count`` best images (best first) and the ``count`` worst (worst first), never overlapping."""
    cases = sorted((Case(row["image"], float(row[metric])) for row in rows),
                   key=lambda case: case.value, reverse=HIGHER_IS_BETTER[metric])
    best = cases[:min(count, math.ceil(len(cases) / 2))]
    worst = cases[len(best):][::-1][:count]
    return best, worst


def case_figure(stems: list[str], predictions: Path, dataset: PairFolder | None,
                height: int = THUMBNAIL_HEIGHT) -> bytes:
    """PNG bytes: a row per stem, image | ground truth | prediction (the prediction alone without a
    dataset), each tile ``height`` pixels high; columns are as wide as their widest tile."""
    return row_figure([_tiles(stem, predictions, dataset) for stem in stems], height)


def _tiles(stem: str, predictions: Path, dataset: PairFolder | None) -> list[np.ndarray]:
    prediction = unit_to_uint8(torch.from_numpy(read_gray(Path(predictions) / f"{stem}.png"))).numpy()
    if dataset is None:
        return [prediction]
    return [dataset.image(stem), dataset.mask(stem).astype(np.uint8) * 255, prediction]
