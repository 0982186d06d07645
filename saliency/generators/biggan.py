"""BigGAN 128 px from BigGAN-PyTorch (the paper's generator) and BigBiGAN in the same format.

Our implementation of the BigGAN-PyTorch generator as its 128 px ImageNet release is configured
(G_ch 96, dim_z 120, hierarchical z, shared class embedding of 128, self-attention at 64 px),
loading ``G_ema.pth`` strictly. z is split into 6 chunks of 20: the first goes through the linear
layer to a 4×4 map; chunk k (k ≥ 1), appended to the class embedding, conditions both batch norms
of block k. Each block: conditional BN, ReLU, nearest ×2 upsampling, 3×3 conv, conditional BN,
ReLU, 3×3 conv, plus a 1×1 conv of the upsampled input. Output: BN, ReLU, 3×3 conv to RGB, tanh.

``bigbigan-128``: the BigBiGAN generator published with "Big GANs Are Watching You"
(``BigBiGAN_x1.pth``, converted to this layout), unconditional (always class 0), with batch-norm
and spectral-norm eps 1e-4.

The generator is frozen: batch norms always use the stored statistics and spectral norm never
updates its vectors, whatever the module's train/eval mode.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from saliency.downloads import load_checkpoint, load_state_dict_checked
from saliency.generators import register
from saliency.generators.base import Generator
from saliency.generators.layers import PowerStepSpectralNorm, self_attention
from saliency.generators.weights import PUBLISHED_WEIGHTS, imagenet_class_names, resolve_weights

BOTTOM_WIDTH = 4


@dataclass(frozen=True)
class BigGANConfig:
    """Architecture settings (BigGAN-PyTorch's names where it has them)."""

    ch: int = 96
    dim_z: int = 120
    shared_dim: int = 128
    n_classes: int = 1000
    widths: tuple[int, ...] = (16, 16, 8, 4, 2, 1)  # channel multipliers at 4, 8, …, 128 px
    attention_resolution: int = 64
    bn_eps: float = 1e-5
    sn_eps: float = 1e-6  # the 138k release was trained with --SN_eps 1e-6
    conditional: bool = True


CONFIGS: dict[str, BigGANConfig] = {
    "biggan-128": BigGANConfig(),
    "bigbigan-128": BigGANConfig(bn_eps=1e-4, sn_eps=1e-4, conditional=False),
}


class ClassConditionalBatchNorm(nn.Module):
    """BN with stored statistics, times 1 + gain(y), plus bias(y), for condition vectors y."""

    stored_mean: torch.Tensor  # buffer
    stored_var: torch.Tensor  # buffer

    def __init__(self, num_features: int, cond_dim: int, eps: float, sn_eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.gain = PowerStepSpectralNorm.linear(cond_dim, num_features, bias=False, eps=sn_eps)
        self.bias = PowerStepSpectralNorm.linear(cond_dim, num_features, bias=False, eps=sn_eps)
        self.register_buffer("stored_mean", torch.zeros(num_features))
        self.register_buffer("stored_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        out = F.batch_norm(x, self.stored_mean, self.stored_var, training=False, eps=self.eps)
        return out * (1 + self.gain(cond))[:, :, None, None] + self.bias(cond)[:, :, None, None]


class OutputBatchNorm(nn.Module):
    """BN with stored statistics and learned ``gain`` and ``bias``."""

    stored_mean: torch.Tensor  # buffer
    stored_var: torch.Tensor  # buffer

    def __init__(self, num_features: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.gain = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("stored_mean", torch.zeros(num_features))
        self.register_buffer("stored_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.stored_mean, self.stored_var, self.gain, self.bias, training=False, eps=self.eps)


class GBlock(nn.Module):
    """Upsampling residual block (see the module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, bn_eps: float, sn_eps: float) -> None:
        super().__init__()
        self.conv1 = PowerStepSpectralNorm.conv(in_channels, out_channels, 3, eps=sn_eps)
        self.conv2 = PowerStepSpectralNorm.conv(out_channels, out_channels, 3, eps=sn_eps)
        self.conv_sc = PowerStepSpectralNorm.conv(in_channels, out_channels, 1, eps=sn_eps)
        self.bn1 = ClassConditionalBatchNorm(in_channels, cond_dim, bn_eps, sn_eps)
        self.bn2 = ClassConditionalBatchNorm(out_channels, cond_dim, bn_eps, sn_eps)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, cond)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), cond)))
        return h + self.conv_sc(F.interpolate(x, scale_factor=2, mode="nearest"))


class Attention(nn.Module):
    """Self-attention with BigGAN-PyTorch's parameter names (``gamma`` is a 0-d tensor there)."""

    def __init__(self, channels: int, sn_eps: float) -> None:
        super().__init__()
        self.theta = PowerStepSpectralNorm.conv(channels, channels // 8, 1, bias=False, eps=sn_eps)
        self.phi = PowerStepSpectralNorm.conv(channels, channels // 8, 1, bias=False, eps=sn_eps)
        self.g = PowerStepSpectralNorm.conv(channels, channels // 2, 1, bias=False, eps=sn_eps)
        self.o = PowerStepSpectralNorm.conv(channels // 2, channels, 1, bias=False, eps=sn_eps)
        self.gamma = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self_attention(x, self.theta, self.phi, self.g, self.o, self.gamma)


class BigGAN(Generator):
    """BigGAN-PyTorch generator; ``forward(z, classes)`` with int class ids, images in [-1, 1]."""

    def __init__(self, config: BigGANConfig) -> None:
        super().__init__()
        self.config = config
        n_blocks = len(config.widths) - 1
        self.chunk = config.dim_z // (n_blocks + 1)
        self.dim_z = self.chunk * (n_blocks + 1)
        self.n_classes = config.n_classes if config.conditional else 0
        self.resolution = BOTTOM_WIDTH * 2 ** n_blocks
        self.class_names = imagenet_class_names() if config.conditional else []
        ch, cond_dim = config.ch, config.shared_dim + self.chunk

        self.shared = nn.Embedding(config.n_classes, config.shared_dim)
        self.linear = PowerStepSpectralNorm.linear(self.chunk, config.widths[0] * ch * BOTTOM_WIDTH ** 2,
                                                   eps=config.sn_eps)
        stages = []
        for index, (w_in, w_out) in enumerate(itertools.pairwise(config.widths)):
            stage: list[nn.Module] = [GBlock(w_in * ch, w_out * ch, cond_dim, config.bn_eps, config.sn_eps)]
            if BOTTOM_WIDTH * 2 ** (index + 1) == config.attention_resolution:
                stage.append(Attention(w_out * ch, config.sn_eps))
            stages.append(nn.ModuleList(stage))
        self.blocks = nn.ModuleList(stages)
        self.output_layer = nn.Sequential(
            OutputBatchNorm(config.widths[-1] * ch, config.bn_eps),
            nn.ReLU(),
            PowerStepSpectralNorm.conv(config.widths[-1] * ch, 3, 3, eps=config.sn_eps),
        )

    def _inputs(self, z: torch.Tensor, classes: torch.Tensor | None) -> list[torch.Tensor]:
        """Where z enters: chunk 0 (the linear layer's input), then for each block k the condition
        [class embedding, chunk k] of its batch norms."""
        if not self.config.conditional:
            classes = torch.zeros(z.shape[0], dtype=torch.long, device=z.device)
        elif classes is None:
            raise ValueError("BigGAN is class-conditional: pass classes")
        y = self.shared(classes).to(z.dtype)
        first, *rest = z.split(self.chunk, dim=1)
        return [first] + [torch.cat([y, chunk], dim=1) for chunk in rest]

    def forward(self, z: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        first, *conds = self._inputs(z, classes)
        h = self.linear(first).view(z.shape[0], -1, BOTTOM_WIDTH, BOTTOM_WIDTH)
        for stage, cond in zip(self.blocks, conds, strict=True):
            for layer in cast(nn.ModuleList, stage):  # each stage is a ModuleList (see __init__)
                h = layer(h, cond)
        return torch.tanh(self.output_layer(h))

    def _z_layers(self) -> list[tuple[int, PowerStepSpectralNorm]]:
        """Every layer z feeds directly, with the index of its input in :meth:`_inputs` (= its z
        chunk): the linear layer, then the gains and biases of each block's batch norms."""
        layers = [(0, self.linear)]
        for k, stage in enumerate(self.blocks, start=1):
            block = cast(GBlock, cast(nn.ModuleList, stage)[0])  # a stage: a GBlock, then attention or not
            layers += [(k, layer) for layer in (block.bn1.gain, block.bn1.bias, block.bn2.gain, block.bn2.bias)]
        return layers

    def first_layer_weight(self) -> torch.Tensor:
        """The affine map from z to :meth:`early_features`, (rows, dim_z): each layer's z columns
        placed at its chunk, zeros elsewhere. With hierarchical z the linear layer alone would
        see only a sixth of z."""
        rows = []
        for k, layer in self._z_layers():
            weight = layer.normalized_weight()[:, -self.chunk:]  # the z chunk is the last input
            start = k * self.chunk
            rows.append(F.pad(weight, (start, self.dim_z - start - self.chunk)))
        return torch.cat(rows).detach()

    def early_features(self, z: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        """Outputs of every layer z feeds directly: the linear layer (GANSpace's layer for BigGAN)
        and, since it sees only z's first chunk, the batch-norm gains and biases of every block."""
        inputs = self._inputs(z, classes)
        return torch.cat([layer(inputs[k]) for k, layer in self._z_layers()], dim=1)


def build_biggan(name: str, weights: str | None = None) -> BigGAN:
    """``weights``: None (published, cached or downloaded), ``"random"``, or a file/folder path."""
    path = None if weights == "random" else resolve_weights(PUBLISHED_WEIGHTS[name], weights)
    model = BigGAN(CONFIGS[name])  # built after resolving, so that missing weights fail at once
    if path is not None:
        load_state_dict_checked(model, load_checkpoint(path), path, name)
    return model


for _name in CONFIGS:
    register(_name)(functools.partial(build_biggan, _name))
