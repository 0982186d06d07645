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


_BIGBIGAN = "Voynov et al. 2021, Object Segmentation Without Labels with Large-Scale Generative Models, ICML 2021"
_FOUND = "FOUND, Siméoni et al., CVPR 2023, Table 2"

# The one table of published figures: eval's table.md and the run report both quote it.
PUBLISHED: tuple[Published, ...] = (
    Published("Voynov & Babenko 2020, BigGAN", "ecssd", {"mae": 0.099},
              "Unsupervised Discovery of Interpretable Directions in the GAN Latent Space, ICML 2020, §5.1"),
    Published("Voynov et al. 2021, BigBiGAN", "ecssd", {"max_fbeta": 0.782, "iou": 0.672, "accuracy": 0.899}, _BIGBIGAN),
    Published("Voynov et al. 2021, BigBiGAN, encoder latents", "ecssd",
              {"max_fbeta": 0.797, "iou": 0.684, "accuracy": 0.906}, _BIGBIGAN + ", with encoder-embedded latents"),
    Published("Voynov et al. 2021, BigBiGAN", "duts-te", {"max_fbeta": 0.608, "iou": 0.498, "accuracy": 0.878}, _BIGBIGAN),
    Published("Voynov et al. 2021, BigBiGAN", "dut-omron", {"max_fbeta": 0.549, "iou": 0.453, "accuracy": 0.856},
              _BIGBIGAN),
    Published("TokenCut", "ecssd", {"max_fbeta": 0.803, "iou": 0.712}, _FOUND),
    Published("TokenCut + bilateral solver", "ecssd", {"iou": 0.772}, _FOUND),
    Published("SelfMask", "ecssd", {"iou": 0.781}, _FOUND),
    Published("SelfMask + bilateral solver", "ecssd", {"iou": 0.818}, _FOUND),
    Published("FOUND", "ecssd", {"iou": 0.807}, _FOUND),
)

FLOOR_MAE = 0.2485  # docs/method.md §6: an all-zero prediction on the ECSSD test split

# Not published: the trivial baselines as measured here on the ECSSD test split, the floor any
# detector must clear (the report sets a run's figures against them).
MEASURED_BASELINES: tuple[Published, ...] = (
    Published("baseline zeros", "ecssd", {"mae": FLOOR_MAE, "max_fbeta": 0.294, "iou": 0.0, "accuracy": 0.752},
              "measured: `saliency eval --baseline zeros` on the ECSSD test split"),
    Published("baseline center", "ecssd", {"mae": 0.322, "max_fbeta": 0.542, "iou": 0.391, "accuracy": 0.774},
              "measured: `saliency eval --baseline center` (a centred Gaussian) on the ECSSD test split"),
)


def published_for(dataset: str) -> list[Published]:
    """The published rows of ``dataset`` (a registered name; ``ecssd/test`` counts as ``ecssd``)."""
    name = dataset.split("/")[0]
    return [row for row in PUBLISHED if row.dataset == name]
