"""BigGAN-deep (128/256/512 px) as published by pytorch-pretrained-biggan.

Our implementation of that package's architecture, loading its checkpoints as they are
(``pytorch_model.bin`` with ``config.json`` beside it). The condition vector is [z, class
embedding] (256 values); it feeds the first linear layer and the gain and offset of every batch
norm. Batch norms use no batch statistics: the checkpoint stores 51 sets of standing statistics,
one per truncation value 0, 0.02, …, 1, and the generator's :attr:`BigGANDeep.truncation` picks
them. Sample z with the same truncation (``sample_z(n, seed, truncation=g.truncation)``).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from saliency.downloads import load_checkpoint, load_state_dict_checked
from saliency.errors import UserError
from saliency.generators import register
from saliency.generators.base import Generator
from saliency.generators.layers import StoredUVSpectralNorm, self_attention
from saliency.generators.weights import PUBLISHED_WEIGHTS, imagenet_class_names, resolve_weights

Layer = tuple[bool, int, int]  # (upsample, in channels, out channels) in multiples of channel_width


def _stages(widths: list[int]) -> tuple[Layer, ...]:
    """Two blocks per resolution step: one keeping the width, then one upsampling to the next."""
    return tuple(layer for a, b in itertools.pairwise(widths) for layer in ((False, a, a), (True, a, b)))


@dataclass(frozen=True)
class DeepConfig:
    """The fields of pytorch-pretrained-biggan's ``config.json``."""

    output_dim: int
    layers: tuple[Layer, ...]
    z_dim: int = 128
    class_embed_dim: int = 128
    channel_width: int = 128
    num_classes: int = 1000
    attention_layer_position: int = 8
    eps: float = 1e-4
    n_stats: int = 51

    @classmethod
    def from_json(cls, path: Path) -> DeepConfig:
        try:
            fields = json.loads(path.read_text())
            fields["layers"] = tuple(tuple(layer) for layer in fields["layers"])
            return cls(**fields)
        except (ValueError, KeyError, TypeError) as err:
            raise UserError(f"{path} is not a BigGAN-deep config.json ({err}); use the published file") from err


CONFIGS: dict[str, DeepConfig] = {
    "biggan-deep-128": DeepConfig(128, _stages([16, 16, 8, 4, 2, 1])),
    "biggan-deep-256": DeepConfig(256, _stages([16, 16, 8, 8, 4, 2, 1])),
    "biggan-deep-512": DeepConfig(512, _stages([16, 16, 8, 8, 4, 2, 1, 1])),
}


class _TruncationBatchNorm(nn.Module):
    """Batch norm with standing statistics for ``n_stats`` truncation values evenly spaced on [0, 1]."""

    running_means: torch.Tensor  # buffer
    running_vars: torch.Tensor  # buffer

    def __init__(self, num_features: int, n_stats: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("running_means", torch.zeros(n_stats, num_features))
        self.register_buffer("running_vars", torch.ones(n_stats, num_features))

    def statistics(self, truncation: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance for ``truncation``, computed exactly as pytorch-pretrained-biggan does
        so that outputs match it: t / step split into integer part i and fraction f, then
        f·stats[i] + (1 − f)·stats[i + 1] — note the weights are the reverse of a linear
        interpolation (and a grid value like 0.4 lands on stats[i + 1] through rounding)."""
        step = 1.0 / (self.running_means.shape[0] - 1)
        frac, index = math.modf(truncation / step)
        start = int(index)
        if frac == 0.0:
            return self.running_means[start], self.running_vars[start]
        mean = self.running_means[start] * frac + self.running_means[start + 1] * (1 - frac)
        var = self.running_vars[start] * frac + self.running_vars[start + 1] * (1 - frac)
        return mean, var


class ConditionalBatchNorm(_TruncationBatchNorm):
    """x normalised, times 1 + scale(c), plus offset(c), for condition vectors c."""

    def __init__(self, num_features: int, cond_dim: int, n_stats: int, eps: float) -> None:
        super().__init__(num_features, n_stats, eps)
        self.scale = StoredUVSpectralNorm.linear(cond_dim, num_features, bias=False)
        self.offset = StoredUVSpectralNorm.linear(cond_dim, num_features, bias=False)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        mean, var = self.statistics(truncation)
        gain = 1 + self.scale(cond)[:, :, None, None]
        bias = self.offset(cond)[:, :, None, None]
        return (x - mean[:, None, None]) / torch.sqrt(var[:, None, None] + self.eps) * gain + bias


class OutputBatchNorm(_TruncationBatchNorm):
    """The unconditional batch norm before the RGB convolution (learned weight and bias)."""

    def __init__(self, num_features: int, n_stats: int, eps: float) -> None:
        super().__init__(num_features, n_stats, eps)
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor, truncation: float) -> torch.Tensor:
        mean, var = self.statistics(truncation)
        return F.batch_norm(x, mean, var, self.weight, self.bias, training=False, eps=self.eps)


class DeepBlock(nn.Module):
    """Bottleneck residual block: 4 × (conditional BN, ReLU, conv) with 1×1 / 3×3 / 3×3 / 1×1
    kernels at a quarter of the input width, nearest upsampling before the first 3×3 conv; the
    skip path keeps the first ``out`` channels and is upsampled alike."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, upsample: bool, n_stats: int,
                 eps: float) -> None:
        super().__init__()
        mid = in_channels // 4
        self.upsample = upsample
        self.out_channels = out_channels
        widths = [(in_channels, mid, 1), (mid, mid, 3), (mid, mid, 3), (mid, out_channels, 1)]
        for i, (c_in, c_out, kernel) in enumerate(widths):
            self.add_module(f"bn_{i}", ConditionalBatchNorm(c_in, cond_dim, n_stats, eps))
            self.add_module(f"conv_{i}", StoredUVSpectralNorm.conv(c_in, c_out, kernel))

    def forward(self, x: torch.Tensor, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        h = x
        for i in range(4):
            h = F.relu(getattr(self, f"bn_{i}")(h, cond, truncation))
            if i == 1 and self.upsample:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = getattr(self, f"conv_{i}")(h)
        skip = x[:, : self.out_channels]
        if self.upsample:
            skip = F.interpolate(skip, scale_factor=2, mode="nearest")
        return h + skip


class DeepSelfAttention(nn.Module):
    """Self-attention with pytorch-pretrained-biggan's parameter names."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.snconv1x1_theta = StoredUVSpectralNorm.conv(channels, channels // 8, 1, bias=False)
        self.snconv1x1_phi = StoredUVSpectralNorm.conv(channels, channels // 8, 1, bias=False)
        self.snconv1x1_g = StoredUVSpectralNorm.conv(channels, channels // 2, 1, bias=False)
        self.snconv1x1_o_conv = StoredUVSpectralNorm.conv(channels // 2, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        return self_attention(x, self.snconv1x1_theta, self.snconv1x1_phi, self.snconv1x1_g,
                              self.snconv1x1_o_conv, self.gamma)


class DeepTrunk(nn.Module):
    """Everything after the class embedding: condition vector → image (the checkpoint's ``generator.*``)."""

    def __init__(self, config: DeepConfig) -> None:
        super().__init__()
        ch = config.channel_width
        cond_dim = config.z_dim + config.class_embed_dim
        self.bottom_channels = 16 * ch
        self.gen_z = StoredUVSpectralNorm.linear(cond_dim, 4 * 4 * self.bottom_channels)
        layers: list[nn.Module] = []
        for i, (upsample, c_in, c_out) in enumerate(config.layers):
            if i == config.attention_layer_position:
                layers.append(DeepSelfAttention(ch * c_in))
            layers.append(DeepBlock(ch * c_in, ch * c_out, cond_dim, upsample, config.n_stats, config.eps))
        self.layers = nn.ModuleList(layers)
        self.bn = OutputBatchNorm(ch, config.n_stats, config.eps)
        self.conv_to_rgb = StoredUVSpectralNorm.conv(ch, ch, 3)

    def forward(self, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        # gen_z's output is stored as a 4×4 map in height, width, channel order (TF's)
        h = self.gen_z(cond).view(-1, 4, 4, self.bottom_channels).permute(0, 3, 1, 2)
        for layer in self.layers:
            h = layer(h, cond, truncation)
        h = F.relu(self.bn(h, truncation))
        # The published RGB conv has `channel_width` outputs of which only the first 3 are used:
        # compute just those (σ still comes from the whole weight).
        rgb = self.conv_to_rgb
        if rgb.bias is None:
            raise ValueError("conv_to_rgb has no bias; DeepTrunk builds it with one")
        h = F.conv2d(h, rgb.normalized_weight()[:3], rgb.bias[:3], padding=1)
        return torch.tanh(h)


class BigGANDeep(Generator):
    """Class-conditional BigGAN-deep; ``forward(z, classes)`` with int class ids, images in [-1, 1]."""

    def __init__(self, config: DeepConfig, truncation: float = 1.0) -> None:
        super().__init__()
        self.config = config
        self.dim_z = config.z_dim
        self.n_classes = config.num_classes
        self.resolution = config.output_dim
        self.class_names = imagenet_class_names()
        self.truncation = truncation
        self.embeddings = nn.Linear(config.num_classes, config.class_embed_dim, bias=False)
        self.generator = DeepTrunk(config)

    @property
    def truncation(self) -> float:
        """Truncation whose standing batch-norm statistics are used, in (0, 1]."""
        return self._truncation

    @truncation.setter
    def truncation(self, value: float) -> None:
        if not 0 < value <= 1:
            raise UserError(f"BigGAN-deep truncation must be in (0, 1], got {value}")
        self._truncation = float(value)

    def condition(self, z: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
        """[z, embedding of the one-hot class] (an embedding row is the one-hot product, exactly)."""
        if classes is None:
            raise ValueError("BigGAN-deep is class-conditional: pass classes")
        embed = F.embedding(classes, self.embeddings.weight.t())
        return torch.cat([z, embed.to(z.dtype)], dim=1)

    def forward(self, z: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(self.condition(z, classes), self.truncation)

    def first_layer_weight(self) -> torch.Tensor:
        """The z columns of the (normalised) ``gen_z`` weight, (16·ch·4·4, dim_z)."""
        return self.generator.gen_z.normalized_weight()[:, : self.dim_z].detach()

    def early_features(self, z: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        """Output of ``gen_z``, the first linear layer (GANSpace's layer for BigGAN)."""
        return self.generator.gen_z(self.condition(z, classes))


def _check_config(path: Path, name: str) -> None:
    """A config.json beside the checkpoint must describe the architecture registered as ``name``."""
    if not path.is_file():
        return
    found, expected = DeepConfig.from_json(path), CONFIGS[name]
    diffs = [f.name for f in dataclasses.fields(DeepConfig) if getattr(found, f.name) != getattr(expected, f.name)]
    if diffs:
        raise UserError(f"{path} describes another model than {name} (differs in {', '.join(diffs)}); "
                        f"pass the {name} weights or choose the generator they belong to")


def build_biggan_deep(name: str, weights: str | None = None, truncation: float = 1.0) -> BigGANDeep:
    """``weights``: None (published, cached or downloaded), ``"random"``, or a file/folder path."""
    path = None if weights == "random" else resolve_weights(PUBLISHED_WEIGHTS[name], weights)
    if path is not None:
        _check_config(path.parent / "config.json", name)
    model = BigGANDeep(CONFIGS[name], truncation=truncation)  # built after the checks: errors come at once
    if path is not None:
        load_state_dict_checked(model, load_checkpoint(path), path, name)
    return model


for _name in CONFIGS:
    register(_name)(functools.partial(build_biggan_deep, _name))
