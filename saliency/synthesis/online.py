"""Image/mask pairs synthesized on the fly, the way the authors' code feeds its U-Net.

This is the one sampling path of the project: :func:`shard_draws` turns (seed, shard) into a
stream of generator samples with their masks (the rule of :mod:`saliency.masks`) and
the area filter's verdict; :mod:`saliency.synthesis.shards` writes the accepted ones to disk and
:class:`OnlinePairs` hands them straight to a ``DataLoader``. Randomness is per shard (a
``torch.Generator`` seeded from (seed, shard)), so shard k is the same wherever and whenever it is
drawn: on any rank, after a resume, online or on disk. Images are quantised to 8 bits in both
modes, so an online pair equals the pair a :class:`~saliency.synthesis.shards.ShardDataset` reads
back from the PNGs of the same seed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterator

import torch
from torch.utils.data import IterableDataset, get_worker_info

from saliency import distributed
from saliency.errors import UserError
from saliency.generators.base import Generator
from saliency.images import signed_to_uint8, uint8_to_signed
from saliency.masks import MaskRule, area_fraction, synthesize_batch
from saliency.seeding import Stream, seeded_rng

# A shard that keeps under 1 % of its first 1024 draws would take forever: the direction, sign or
# shift is wrong (or the filter's range), so it stops with an error instead of looping.
GIVE_UP_DRAWS, MIN_ACCEPTANCE = 1024, 0.01


@dataclass(frozen=True)
class PairSampler:
    """Everything that decides which pairs come out: the generator, the (signed) shift along the
    background direction, the classes, the mask rule with its filters, batching, seed and precision."""

    generator: Generator
    direction: torch.Tensor  # (dim_z,), used as given: unit, or a published direction at its stored length
    shift: float  # signed: negative moves against the direction
    classes: list[int] | None = None  # None = all of the generator's classes
    rule: MaskRule = MaskRule()
    truncation: float | None = None
    batch_size: int = 32
    seed: int = 0
    precision: str = "fp32"  # run.precision (see distributed.autocast)


@dataclass(frozen=True)
class Draw:
    """One generator sample: 8-bit image ``(R, R, 3)``, mask ``(R, R)`` bool, and the filter's verdict."""

    index: int  # position in its shard's stream of draws
    image: torch.Tensor
    mask: torch.Tensor
    label: int
    area: float
    kept: bool


def shard_rng(seed: int, shard: int) -> torch.Generator:
    """The random generator of one shard: independent of every other (seed, shard)."""
    return seeded_rng(seed, Stream.SYNTH_SHARD, shard)


def shard_draws(sampler: PairSampler, shard: int) -> Iterator[Draw]:
    """Every sample of shard ``shard``, in order, endlessly; the caller takes the kept ones it needs."""
    generator = sampler.generator
    rng = shard_rng(sampler.seed, shard)
    index = kept_total = 0
    area_total = 0.0
    while True:
        z = generator.sample_z(sampler.batch_size, rng, sampler.truncation)
        labels = generator.sample_classes(sampler.batch_size, rng, choices=sampler.classes)
        with distributed.autocast(generator.device, sampler.precision):
            batch = synthesize_batch(generator, z, labels, sampler.direction, sampler.shift, sampler.rule)
        kept, areas = batch.keep.tolist(), area_fraction(batch.masks).tolist()
        # (N, R, R, 3) uint8 on the CPU: what a PNG holds
        images = signed_to_uint8(batch.images).permute(0, 2, 3, 1).cpu()
        masks, label_ids = batch.masks.cpu(), labels.tolist()
        for i in range(sampler.batch_size):
            yield Draw(index, images[i], masks[i], label_ids[i], areas[i], kept[i])
            index += 1
        kept_total, area_total = kept_total + sum(kept), area_total + sum(areas)
        if index >= GIVE_UP_DRAWS and kept_total < MIN_ACCEPTANCE * index:
            rule = sampler.rule
            raise UserError(f"synth: only {kept_total} of {index} samples pass the {rule.mode} rule's filters (area "
                            f"within [{rule.min_area or 0}, {rule.max_area}], mean area {area_total / index:.2f}): the "
                            f"direction, sign or shift does not separate object and background; check `saliency "
                            f"rank`'s choice (rank.direction/sign/magnitude override it) or synth.threshold")


def shard_counts(n: int, shard_size: int) -> list[int]:
    """Accepted pairs per shard for ``n`` pairs: full shards, then the remainder."""
    return [min(shard_size, n - start) for start in range(0, n, shard_size)]


def as_pair(draw: Draw) -> tuple[torch.Tensor, torch.Tensor]:
    """The training pair of a draw: image ``(3, R, R)`` float in [-1, 1], mask ``(R, R)`` int64 in {0, 1}."""
    return uint8_to_signed(draw.image.permute(2, 0, 1)), draw.mask.long()


class OnlinePairs(IterableDataset):
    """Filtered pairs synthesized on the fly, as ``(image, mask)`` like a ``ShardDataset`` item.

    The stream is cut into shards of ``shard_size`` accepted pairs, shard k drawn by
    :func:`shard_draws`. With ``n`` the stream ends after ``n`` pairs (the same shards ``synth-dataset``
    writes); without it, it never ends. Shards are dealt round-robin to every (rank, DataLoader
    worker), so no two of them produce the same pairs. A generator on the GPU needs ``num_workers=0``.
    """

    def __init__(self, sampler: PairSampler, shard_size: int = 1000, n: int | None = None,
                 skip_batches: int = 0, batch_size: int = 1) -> None:
        super().__init__()
        self.sampler = sampler
        self.shard_size = shard_size
        self.n = n
        self.skip_batches = skip_batches
        self.batch_size = batch_size

    def skipping(self, batches: int, batch_size: int) -> "OnlinePairs":
        """The same stream without the first ``batches`` batches a DataLoader already took from it
        (a resumed training run), skipping whole shards without drawing them."""
        return OnlinePairs(self.sampler, self.shard_size, self.n, batches, batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        worker = get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker is not None else (1, 0)
        slots, slot = distributed.world_size() * workers, distributed.rank() * workers + worker_id
        counts = None if self.n is None else shard_counts(self.n, self.shard_size)
        # A DataLoader takes batch k from worker k % workers: this worker already gave its share.
        skip = (self.skip_batches - worker_id + workers - 1) // workers * self.batch_size
        shard = slot
        while counts is None or shard < len(counts):
            count = self.shard_size if counts is None else counts[shard]
            if skip >= count:
                skip -= count
            else:
                kept = (draw for draw in shard_draws(self.sampler, shard) if draw.kept)
                for draw in itertools.islice(kept, skip, count):
                    yield as_pair(draw)
                skip = 0
            shard += slots
