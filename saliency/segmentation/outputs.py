"""What a saliency map becomes for a person: the map itself, a mask, a cut-out or an overlay.

Every format starts from the 8-bit map that ``saliency predict`` saves and ``eval`` scores, so a
mask here is exactly the binarised map eval's IoU and accuracy count (docs/usage.md).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from saliency.errors import UserError
from saliency.images import unit_to_uint8

MASK_THRESHOLD = 128  # of the 8-bit map: probability ≥ 0.5 (rounded), as eval binarises
OVERLAY_COLOUR = np.array([255, 32, 32], np.float32)  # the map's tint over the image
OVERLAY_STRENGTH = 0.6  # the tint's opacity where the probability is 1


def to_uint8(probability: np.ndarray) -> np.ndarray:
    """The 8-bit map of a map in [0, 1], rounded to nearest (what is saved and scored)."""
    return unit_to_uint8(torch.from_numpy(np.ascontiguousarray(probability, dtype=np.float32))).numpy()


def _probability(image: np.ndarray, probability: np.ndarray) -> np.ndarray:
    return to_uint8(probability)


def _mask(image: np.ndarray, probability: np.ndarray) -> np.ndarray:
    return np.where(to_uint8(probability) >= MASK_THRESHOLD, 255, 0).astype(np.uint8)


def _cutout(image: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """RGBA: the image where the mask holds the object, transparent elsewhere."""
    return np.dstack([image, _mask(image, probability)])


def _overlay(image: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """The image tinted by the map: red where the object is likely, untouched where it is not."""
    weight = OVERLAY_STRENGTH * (to_uint8(probability).astype(np.float32) / 255)[:, :, None]
    return np.rint(image * (1 - weight) + OVERLAY_COLOUR * weight).astype(np.uint8)


# Format name -> (RGB uint8 image, map in [0, 1]) -> uint8 array: grey, grey 0/255, RGBA or RGB.
FORMATS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "probability": _probability,
    "mask": _mask,
    "cutout": _cutout,
    "overlay": _overlay,
}


def check_format(format: str) -> None:
    if format not in FORMATS:
        raise UserError(f"output format {format!r} is not known; choose one of {', '.join(FORMATS)}")


def render(format: str, image: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """``image``'s output in ``format`` from its map ``probability`` (same height and width)."""
    check_format(format)
    return FORMATS[format](image, probability)
