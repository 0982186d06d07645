"""A pseudo-mask for an unlabeled photograph, and whether to trust it (docs/method.md §5b).

The current U-Net predicts the photograph (mirror-averaged), the bilateral solver refines the map
with the image's own edges (as FOUND and TokenCut refine theirs), and the refined map becomes a
label per pixel: object where it is at least ``threshold``, background below, and *ignored* (left
out of the loss) where its confidence ``|2p - 1|`` is under ``ignore_below``. The image is dropped
when its pseudo-mask is degenerate (area outside the bounds), unstable (the masks predicted at two
scales disagree: UDASOD-UPL keeps the pseudo-labels that are stable), or, optionally, covers much
of the frame (salient objects rarely touch it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from saliency.config import SelftrainConfig
from saliency.images import resize
from saliency.segmentation.predict import Inference, predict_image, saved_map
from saliency.segmentation.refine import Refinement
from saliency.segmentation.train import IGNORE_LABEL

THRESHOLD = 0.5  # a refined probability this high is object: "more likely object than not"


@dataclass(frozen=True)
class PseudoRules:
    """What makes a pseudo-mask (``selftrain.*``; their meaning is in :class:`SelftrainConfig`)."""

    ignore_below: float
    min_area: float
    max_area: float
    min_stability: float
    stability_scale: float
    max_border: float

    @classmethod
    def of_config(cls, options: SelftrainConfig) -> "PseudoRules":
        return cls(options.ignore_below, options.min_area, options.max_area, options.min_stability,
                   options.stability_scale, options.max_border)


@dataclass
class PseudoLabel:
    """One photograph's pseudo-label at its own size and the figures that decided whether it is kept."""

    raw: np.ndarray  # the U-Net's map (8-bit steps, as saved and scored)
    refined: np.ndarray  # the map refined with the image's edges
    label: np.ndarray  # uint8: 0 background, 1 object, IGNORE_LABEL left out of the loss
    area: float  # share of the image labelled object
    confidence: float  # mean |2p - 1| of the refined map
    stability: float  # IoU of the masks predicted at the two scales
    border: float  # share of the frame's pixels labelled object
    reason: str  # "" when kept, else why it was dropped

    @property
    def kept(self) -> bool:
        return not self.reason


def mask_iou(first: np.ndarray, second: np.ndarray) -> float:
    """IoU of two boolean masks (1 when both are empty: they agree)."""
    union = np.logical_or(first, second).sum()
    return float(np.logical_and(first, second).sum() / union) if union else 1.0


def frame_share(mask: np.ndarray) -> float:
    """The share of the outermost ring of pixels that ``mask`` covers."""
    ring = np.concatenate([mask[0], mask[-1], mask[1:-1, 0], mask[1:-1, -1]])
    return float(ring.mean())


@torch.no_grad()
def pseudo_label(model: nn.Module, image: np.ndarray, device: torch.device, inference: Inference,
                 refinement: Refinement, rules: PseudoRules) -> PseudoLabel:
    """The pseudo-label of ``image`` (RGB uint8) from ``model`` under ``inference`` (flip-averaged)."""
    inference = inference.replace(flip=True)
    first = predict_image(model, image, device, inference)
    second = predict_image(model, image, device,
                           inference.replace(shorter_side=max(16, round(inference.shorter_side * rules.stability_scale))))
    stability = mask_iou(first >= THRESHOLD, second >= THRESHOLD)
    _, raw = saved_map(first)
    refined = refinement(raw, image) if refinement.active else raw
    confidence = np.abs(2.0 * refined - 1.0)
    label = (refined >= THRESHOLD).astype(np.uint8)
    area, border = float(label.mean()), frame_share(label.astype(bool))
    label[confidence < rules.ignore_below] = IGNORE_LABEL
    reason = ""
    if not rules.min_area <= area <= rules.max_area:
        reason = f"area {area:.3f} outside [{rules.min_area}, {rules.max_area}]"
    elif stability < rules.min_stability:
        reason = f"stability {stability:.3f} below {rules.min_stability}"
    elif border > rules.max_border:
        reason = f"frame share {border:.3f} above {rules.max_border}"
    return PseudoLabel(raw, refined, label, area, float(confidence.mean()), stability, border, reason)


def training_pair(image: np.ndarray, label: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``image`` and its ``label`` as a ``size`` x ``size`` training pair: the whole photograph
    squeezed to a square (augmentation then crops new framings of it), the label by nearest pixel."""
    return resize(image, (size, size)), resize(label, (size, size), "nearest")
