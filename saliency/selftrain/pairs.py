"""Training pairs of self-training: photographs with their kept pseudo-labels, and synthetic pairs
mixed in (``selftrain.synthetic``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from saliency.datasets.folder import ImageFolder
from saliency.errors import UserError
from saliency.images import decode_labels, uint8_to_signed
from saliency.runs import read_manifest
from saliency.selftrain.pseudo import training_pair
from saliency.synthesis.shards import ShardDataset

GOLDEN = 0.6180339887498949  # spreads indices evenly over [0, 1): which source an index draws from
MIXED_LENGTH = 1 << 20  # indices of a mixed set: far more than any step draws, so shares hold


class PseudoPairs(Dataset):
    """``(image in [-1, 1] 3xSxS, label SxS)`` for each kept photograph, loaded once (a few MB)."""

    def __init__(self, images: ImageFolder, labels: Path, stems: list[str], size: int) -> None:
        pairs = [training_pair(images.image(stem), decode_labels(Path(labels, f"{stem}.png").read_bytes(),
                                                               "a pseudo-label"), size) for stem in stems]
        self.images = torch.from_numpy(np.stack([image for image, _ in pairs])).permute(0, 3, 1, 2).contiguous()
        self.labels = torch.from_numpy(np.stack([label for _, label in pairs]))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return uint8_to_signed(self.images[index]), self.labels[index].long()


class MixedPairs(Dataset):
    """Pseudo-labelled pairs with a ``share`` of synthetic ones: index ``i`` draws from the synthetic
    set when ``frac(i * golden ratio) < share``, so uniformly drawn indices mix in that share."""

    def __init__(self, pseudo: PseudoPairs, synthetic: ShardDataset, share: float, size: int) -> None:
        self.pseudo, self.synthetic, self.share, self.size = pseudo, synthetic, share, size

    def __len__(self) -> int:
        return MIXED_LENGTH

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if (index * GOLDEN) % 1.0 >= self.share:
            return self.pseudo[index % len(self.pseudo)]
        image, mask = self.synthetic[index % len(self.synthetic)]
        if image.shape[-1] != self.size:
            image = F.interpolate(image[None].float(), size=(self.size, self.size), mode="bilinear",
                                  antialias=True, align_corners=False)[0]
            mask = F.interpolate(mask[None, None].float(), size=(self.size, self.size), mode="nearest")[0, 0]
        return image, mask.long()


def mixed_with_synthetic(pseudo: PseudoPairs, run_dir: Path, share: float, size: int) -> MixedPairs:
    """``pseudo`` with ``share`` of synthetic pairs from the run's synth stage (its shards)."""
    if (read_manifest(Path(run_dir) / "synth") or {}).get("status") != "complete":
        raise UserError(f"self-train: selftrain.synthetic = {share} mixes in the synth stage's pairs, but "
                        f"{run_dir}/synth is not complete; run `saliency synth-dataset --run {run_dir}` first")
    return MixedPairs(pseudo, ShardDataset(Path(run_dir) / "synth"), share, size)
