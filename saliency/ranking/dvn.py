"""DVN, direction variation naturalness (docs/method.md §2; paper, supplement 8.2).

For a direction h (scaled to length 6) a LeNet-like classifier learns to tell G(z + h) from
G(z − h); it labels real images; a fresh classifier learns those labels; its accuracy on the
generated pairs is the DVN. A direction whose split of generated images carries over to real
images scores near 1; one with no visible effect scores 0.5.

Speed: the K classifiers are independent and tiny, so the directions of a chunk train together as
one grouped network (grouped convolutions, ``groups`` = directions in the chunk). Adam is
element-wise and the loss is the sum of the per-direction losses, so this is exactly K separate
trainings, done in one pass per step. Each direction's initial weights and batch indices come from
its own seed, so its DVN does not depend on the chunk it landed in (up to float rounding, which the
two trainings can amplify to a percent or so). The latents z are shared by all directions, and the
generated set is made once and used twice (training the first classifier and scoring the second),
as the method defines.

One departure from the paper: the second classifier is trained on class-balanced batches of the
pseudo-labelled real images (see :func:`_batches`), so a direction whose effect is rare among real
images is still judged by whether its split carries over, not by the class prior.

Input resolution: 32 px. It is LeNet's own input size, where the three 5×5 convolutions bring the
map to 1×1 so the last one sees the whole image; the effects DVN is meant to judge (background,
colour, pose, lighting, zoom) survive the downsampling, and 32 px keeps memory for 3200 images of
dozens of directions per chunk small (images are kept as 8-bit, as real images are).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from saliency import distributed
from saliency.generators.base import Generator
from saliency.images import resize_batch, signed_to_uint8, uint8_to_signed
from saliency.progress import progress
from saliency.seeding import Stream, seeded_rng

DVN_RESOLUTION = 32
MIN_RESOLUTION = 32  # three 5×5 convolutions and two 2× poolings need at least 32 px


@dataclass(frozen=True)
class DVNSettings:
    """The paper's DVN settings (docs/method.md §2) plus how the work is cut up."""

    shift: float = 6.0
    samples: int = 3200
    steps: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    resolution: int = DVN_RESOLUTION
    chunk: int = 32
    generator_batch: int = 64
    precision: str = "fp32"  # run.precision of the generator's forwards


class GroupedLeNet(nn.Module):
    """``groups`` independent copies of the paper's Table 7 classifier, run as one network.

    Input ``(B, G, 3, R, R)`` in [-1, 1] (sample b of every group), output logits ``(B, G, 2)``.
    Fully connected layers are grouped 1×1 convolutions on the pooled 1×1 map; batch norm over the
    grouped channels is per group, as in separate models. Layers followed by batch norm have no bias
    (batch norm cancels it; under Adam its float-noise gradient would only add noise).
    """

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups
        widths = (3, 6, 16, 120)
        layers: list[nn.Module] = []
        for index, (cin, cout) in enumerate(zip(widths[:-1], widths[1:])):
            layers += [nn.Conv2d(cin * groups, cout * groups, 5, groups=groups, bias=False),
                       nn.BatchNorm2d(cout * groups), nn.ReLU(inplace=True)]
            layers.append(nn.MaxPool2d(2) if index < 2 else nn.AdaptiveAvgPool2d(1))
        layers += [nn.Conv2d(120 * groups, 84 * groups, 1, groups=groups, bias=False), nn.BatchNorm2d(84 * groups),
                   nn.ReLU(inplace=True), nn.Conv2d(84 * groups, 2 * groups, 1, groups=groups)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        x = x.reshape(batch, -1, *x.shape[-2:]).contiguous(memory_format=torch.channels_last)
        return self.layers(x).view(batch, self.groups, 2)

    @torch.no_grad()
    def init_group(self, group: int, rng: torch.Generator) -> None:
        """Draw group ``group``'s weights and biases from ``rng`` as PyTorch's default
        initialisation does (uniform in ±1/sqrt(fan_in)), so each group's start is its own seed's."""
        for module in self.layers:
            if isinstance(module, nn.Conv2d):
                size = module.out_channels // self.groups
                rows = slice(group * size, (group + 1) * size)
                bound = 1.0 / math.sqrt(module.weight[0].numel())
                for tensor in (module.weight, module.bias):
                    if tensor is not None:
                        part = tensor[rows]
                        part.copy_(torch.empty(part.shape).uniform_(-bound, bound, generator=rng))


def fresh_model(seeds: list[torch.Generator], device: torch.device) -> GroupedLeNet:
    """A grouped classifier, group ``i`` initialised from ``seeds[i]``."""
    model = GroupedLeNet(len(seeds))
    for group, rng in enumerate(seeds):
        model.init_group(group, rng)
    # Channels-last halves the time of these grouped convolutions on CPU.
    return model.to(device).to(memory_format=torch.channels_last)


def dvn_pixels(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Images ``(N, 3, H, W)`` in [-1, 1] as DVN keeps them: ``resolution`` px square (antialiased), 8-bit."""
    return signed_to_uint8(resize_batch(images, (resolution, resolution)))


def fit(model: GroupedLeNet, images: torch.Tensor, labels: torch.Tensor, batches: torch.Tensor,
        lr: float) -> GroupedLeNet:
    """Train every group of ``model`` on its own data with Adam, one step per row of ``batches``.

    ``images`` ``(G, N, 3, R, R)`` uint8 (an expanded view when groups share images) and ``labels``
    ``(G, N)`` on the model's device, ``batches`` ``(steps, G, B)`` sample indices per step and group.
    """
    device = images.device
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    groups = torch.arange(images.shape[0], device=device)[:, None]
    model.train()
    for step_indices in batches.to(device):
        x = uint8_to_signed(images[groups, step_indices])                 # (G, B, 3, R, R)
        y = labels[groups, step_indices]                                  # (G, B)
        logits = model(x.transpose(0, 1))                                 # (B, G, 2)
        # Sum over groups of each group's mean loss: every group gets its own model's gradient.
        loss = F.cross_entropy(logits.permute(0, 2, 1), y.T) * model.groups
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model


@torch.no_grad()
def predict(model: GroupedLeNet, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Class ``(G, N)`` each group assigns to its own images ``(G, N, 3, R, R)`` (eval mode)."""
    model.eval()
    outputs = [model(uint8_to_signed(images[:, start:start + batch_size]).transpose(0, 1)).argmax(-1).T
               for start in range(0, images.shape[1], batch_size)]
    return torch.cat(outputs, dim=1)


@torch.no_grad()
def generated_pairs(generator: Generator, units: torch.Tensor, z: torch.Tensor, classes: torch.Tensor,
                    settings: DVNSettings) -> torch.Tensor:
    """D_F of each direction: ``(G, 2·len(z), 3, R, R)`` uint8, first half G(z + s·h) (label 1),
    second half G(z − s·h) (label 0), for unit directions ``units`` ``(d, G)``, on the generator's
    device (a chunk of 32 directions at 32 px is 315 MB).

    The (direction, sign, sample) triples are generated in flat batches of
    ``settings.generator_batch`` images, so memory does not grow with the chunk size.
    """
    device = generator.device
    count, n = units.shape[1], len(z)
    out = torch.empty(count * 2 * n, 3, settings.resolution, settings.resolution, dtype=torch.uint8, device=device)
    moves = settings.shift * units.T.to(device)                          # (G, d)
    z, classes = z.to(device), classes.to(device)
    for start in range(0, len(out), settings.generator_batch):
        flat = torch.arange(start, min(start + settings.generator_batch, len(out)), device=device)
        group, half, sample = flat // (2 * n), flat % (2 * n) // n, flat % n
        shifted = z[sample] + (1 - 2 * half)[:, None].to(z.dtype) * moves[group]
        with distributed.autocast(device, settings.precision):
            images = generator(shifted, classes[sample])
        out[start:start + len(flat)] = dvn_pixels(images, settings.resolution)
    return out.view(count, 2 * n, *out.shape[1:])


def _batches(seed: int, stream: int, indices: list[int], labels: torch.Tensor, settings: DVNSettings) -> torch.Tensor:
    """``(steps, G, B)`` sample indices, each direction's from its own stream, drawn with replacement
    and class-balanced: every sample is weighted by 1 / (size of its class).

    The generated set is balanced already, so there this is plain uniform sampling. Pseudo-labels
    of real images need not be: a direction whose far side is rare among real images (a fully
    white background) labels few of them positive, and 100 plain steps would see a handful of those
    and learn the class prior instead of the split. Balanced batches test whether the split
    carries over, whatever its proportions; a direction that puts every real image in one class
    still scores 0.5.
    """
    draws = settings.steps * settings.batch_size
    per_direction = []
    for row, k in enumerate(indices):
        own = labels[row].cpu()
        weights = 1.0 / torch.bincount(own, minlength=2).clamp_min(1)[own].double()
        picks = torch.multinomial(weights, draws, replacement=True, generator=seeded_rng(seed, stream, k))
        per_direction.append(picks.view(settings.steps, settings.batch_size))
    return torch.stack(per_direction, dim=1)


def dvn_chunk(generator: Generator, directions: torch.Tensor, indices: list[int], real: torch.Tensor,
              z: torch.Tensor, classes: torch.Tensor, settings: DVNSettings, seed: int) -> torch.Tensor:
    """DVN ``(G,)`` of the directions ``directions[:, indices]`` (all trained at once)."""
    device = generator.device
    units = directions[:, indices]
    units = units / units.norm(dim=0, keepdim=True)
    fake = generated_pairs(generator, units, z, classes, settings)
    count, n_fake = fake.shape[:2]
    fake_labels = torch.cat([torch.ones(n_fake // 2), torch.zeros(n_fake // 2)]).long().to(device).expand(count, -1)
    first = fresh_model([seeded_rng(seed, Stream.DVN_INIT_GENERATED, k) for k in indices], device)
    fit(first, fake, fake_labels, _batches(seed, Stream.DVN_BATCH_GENERATED, indices, fake_labels, settings), settings.lr)
    shared_real = real.expand(count, *real.shape)
    pseudo = predict(first, shared_real)
    second = fresh_model([seeded_rng(seed, Stream.DVN_INIT_REAL, k) for k in indices], device)
    fit(second, shared_real, pseudo, _batches(seed, Stream.DVN_BATCH_REAL, indices, pseudo, settings), settings.lr)
    return (predict(second, fake) == fake_labels).float().mean(1).cpu()


def dvn_scores(generator: Generator, directions: torch.Tensor, real: torch.Tensor, settings: DVNSettings,
               seed: int, truncation: float | None = None) -> torch.Tensor:
    """DVN ``(K,)`` of every column of ``directions`` ``(d, K)`` against ``real`` images
    ``(N, 3, R, R)`` uint8 at ``settings.resolution``; the same seed gives the same scores."""
    if settings.resolution < MIN_RESOLUTION:
        raise ValueError(f"DVN resolution must be at least {MIN_RESOLUTION} px")
    rng = seeded_rng(seed, Stream.DVN_LATENT)
    half = settings.samples // 2
    z = generator.sample_z(half, rng, truncation).cpu()
    classes = generator.sample_classes(half, rng).cpu()
    real = real.to(generator.device)
    count = directions.shape[1]
    scores = torch.empty(count)
    chunks = [list(range(start, min(start + settings.chunk, count))) for start in range(0, count, settings.chunk)]
    with progress(total=count, desc="DVN", unit="direction", leave=False) as bar:
        for indices in chunks:
            scores[indices] = dvn_chunk(generator, directions, indices, real, z, classes, settings, seed)
            bar.update(len(indices))
    return scores


def dvn_top(scores: torch.Tensor, top: int = 50) -> float:
    """Mean of the ``top`` highest DVN values (of all when there are fewer): the paper's DVN_top."""
    return float(scores.topk(min(top, len(scores))).values.mean())
