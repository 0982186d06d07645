"""Reconstructors: from an image pair (original, shifted), predict which direction moved and by how much.

The pair is concatenated along channels (6 channels) at the generator's resolution and goes
through a backbone; two heads give K direction logits and a scalar shift (paper §3.3).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from saliency.errors import UserError


class Reconstructor(nn.Module):
    """A backbone on the 6-channel pair with a direction head and a shift head."""

    def __init__(self, backbone: nn.Module, features: int, num_directions: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.direction_head = nn.Linear(features, num_directions)
        self.shift_head = nn.Linear(features, 1)

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Direction logits ``(N, K)`` and predicted shifts ``(N,)`` for image batches ``(N, 3, R, R)``."""
        features = self.backbone(torch.cat([first, second], dim=1))
        return self.direction_head(features), self.shift_head(features).squeeze(1)


def _conv_block(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


def lenet_backbone(in_channels: int, stem_stride: int = 1, hidden: int = 84) -> nn.Sequential:
    """LeNet-style features (conv 5×5 ·6, ·16, ·120 with batch norm, then FC ``hidden``), any resolution.

    Convolutions are padded and the last one is averaged over space, so one network takes 32 px
    and 128 px images; ``stem_stride`` subsamples in the first convolution, to keep the cost of
    larger images near that of 32 px ones.
    """
    return nn.Sequential(
        *_conv_block(in_channels, 6, 5, stride=stem_stride), nn.MaxPool2d(2),
        *_conv_block(6, 16, 5), nn.MaxPool2d(2),
        *_conv_block(16, 120, 5), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(120, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
    )


def lenet(num_directions: int, resolution: int) -> Reconstructor:
    """Small reconstructor for small images (paper: MNIST, Anime Faces; here toyworld): the first
    convolution subsamples images above 32 px down to 32 px."""
    return Reconstructor(lenet_backbone(6, stem_stride=max(1, resolution // 32)), 84, num_directions)


def resnet18(num_directions: int, resolution: int) -> Reconstructor:
    """torchvision ResNet-18, no pretrained weights, first convolution taking the 6-channel pair
    (its strides suit any resolution from 32 px up).

    The new first convolution is initialised as the authors' code does it (kaiming normal, fan_out,
    ReLU; docs/method.md §1), like torchvision's own convolutions, not with PyTorch's layer default.
    """
    import torchvision  # here, not at the top: 3 s of imports that the LeNet reconstructor does not need

    backbone = torchvision.models.resnet18(weights=None)
    backbone.conv1 = nn.Conv2d(6, 64, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(backbone.conv1.weight, mode="fan_out", nonlinearity="relu")
    features = backbone.fc.in_features
    backbone.fc = nn.Identity()
    return Reconstructor(backbone, features, num_directions)


RECONSTRUCTORS: dict[str, Callable[[int, int], Reconstructor]] = {"lenet": lenet, "resnet18": resnet18}


def build_reconstructor(name: str, num_directions: int, resolution: int, seed: int) -> Reconstructor:
    """Reconstructor ``name`` with K = ``num_directions`` outputs for ``resolution`` px pairs,
    initialised from ``seed``."""
    if name not in RECONSTRUCTORS:
        raise UserError(f"discover.reconstructor = {name!r} is not known; choose one of {', '.join(RECONSTRUCTORS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return RECONSTRUCTORS[name](num_directions, resolution)
