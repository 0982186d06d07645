"""Published figures to print beside ours (docs/datasets.md): only numbers the papers state, on the
same test sets, with the field's metrics (max-Fβ with β² = 0.3, IoU and accuracy at 0.5, MAE)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    method: str
    dataset: str
    metrics: dict[str, float]
    source: str


PUBLISHED: tuple[Published, ...] = (
    Published("Voynov & Babenko 2020, BigGAN", "ecssd", {"mae": 0.099},
              "Unsupervised Discovery of Interpretable Directions in the GAN Latent Space, ICML 2020, §5.1"),
    Published("Voynov et al. 2021, BigBiGAN", "ecssd", {"max_fbeta": 0.782, "iou": 0.672, "accuracy": 0.899},
              "Object Segmentation Without Labels with Large-Scale Generative Models, ICML 2021"),
    Published("Voynov et al. 2021, BigBiGAN", "duts-te", {"max_fbeta": 0.608, "iou": 0.498, "accuracy": 0.878},
              "Object Segmentation Without Labels with Large-Scale Generative Models, ICML 2021"),
    Published("Voynov et al. 2021, BigBiGAN", "dut-omron", {"max_fbeta": 0.549, "iou": 0.453, "accuracy": 0.856},
              "Object Segmentation Without Labels with Large-Scale Generative Models, ICML 2021"),
    Published("TokenCut", "ecssd", {"max_fbeta": 0.803, "iou": 0.712}, "FOUND, CVPR 2023, Table 2"),
    Published("TokenCut + bilateral solver", "ecssd", {"iou": 0.772}, "FOUND, CVPR 2023, Table 2"),
    Published("SelfMask", "ecssd", {"iou": 0.781}, "FOUND, CVPR 2023, Table 2"),
    Published("SelfMask + bilateral solver", "ecssd", {"iou": 0.818}, "FOUND, CVPR 2023, Table 2"),
    Published("FOUND", "ecssd", {"iou": 0.807}, "FOUND, CVPR 2023, Table 2"),
)


def published_for(dataset: str) -> list[Published]:
    """The published rows of ``dataset`` (a registered name; ``ecssd/test`` counts as ``ecssd``)."""
    name = dataset.split("/")[0]
    return [row for row in PUBLISHED if row.dataset == name]
