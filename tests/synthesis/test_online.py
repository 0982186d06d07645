"""Online pairs: the same tensors as the shards written from the same seed, dealt to DataLoader
workers without overlap, and an endless stream that starts like the finite one."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from saliency import generators
from saliency.errors import UserError
from saliency.synthesis.online import OnlinePairs, PairSampler
from saliency.synthesis.shards import ShardDataset, write_shards

N, SHARD_SIZE = 50, 20


@pytest.fixture(scope="module")
def sampler() -> PairSampler:
    generator = generators.load("toyworld", resolution=32)
    direction = generator.factor_directions[:, generator.factor_names.index("bg_white")]
    return PairSampler(generator, direction, shift=6.0, classes=[0, 2, 5], batch_size=16, seed=11)


def key(pair: tuple[torch.Tensor, torch.Tensor]) -> bytes:
    return pair[0].numpy().tobytes() + pair[1].numpy().tobytes()


def test_online_pairs_equal_the_written_shards(sampler: PairSampler, tmp_path: Path) -> None:
    write_shards(sampler, tmp_path / "shards", N, SHARD_SIZE)
    written = ShardDataset(tmp_path)
    online = list(OnlinePairs(sampler, shard_size=SHARD_SIZE, n=N))
    assert len(written) == len(online) == N
    for (image, mask), (disk_image, disk_mask) in zip(online, written):
        assert image.dtype == torch.float32 and image.shape == (3, 32, 32) and -1 <= image.min() < image.max() <= 1
        assert mask.dtype == torch.int64 and mask.shape == (32, 32) and set(mask.unique().tolist()) == {0, 1}
        assert torch.equal(image, disk_image) and torch.equal(mask, disk_mask)
    areas = torch.stack([mask for _, mask in online]).flatten(1).float().mean(1)
    assert bool(((areas >= 0.05) & (areas <= 0.5)).all())


def test_workers_share_the_stream_without_overlap(sampler: PairSampler) -> None:
    alone = [key(pair) for pair in OnlinePairs(sampler, shard_size=SHARD_SIZE, n=N)]
    loader = DataLoader(OnlinePairs(sampler, shard_size=SHARD_SIZE, n=N), batch_size=8, num_workers=2)
    batches = list(loader)
    assert batches[0][0].shape == (8, 3, 32, 32) and batches[0][1].shape == (8, 32, 32)
    together = [key(pair) for images, masks in batches for pair in zip(images, masks)]
    assert len(together) == N and sorted(together) == sorted(alone)


def test_endless_stream_starts_like_the_finite_one(sampler: PairSampler) -> None:
    endless = itertools.islice(OnlinePairs(sampler, shard_size=SHARD_SIZE), N + 15)
    finite = list(OnlinePairs(sampler, shard_size=SHARD_SIZE, n=N))
    keys = [key(pair) for pair in endless]
    assert keys[:N] == [key(pair) for pair in finite] and len(set(keys)) == N + 15


def test_a_shift_that_whitens_nothing_stops_with_a_user_error(sampler: PairSampler) -> None:
    darker = dataclasses.replace(sampler, shift=-6.0)  # the wrong sign: masks cover whole images
    with pytest.raises(UserError, match=r"only 0 of 1024 samples .* mean area 1.00\)"):
        next(iter(OnlinePairs(darker, shard_size=SHARD_SIZE)))


@pytest.mark.parametrize("workers", [0, 2])
def test_skipping_resumes_the_batches_a_loader_would_give(sampler: PairSampler, workers: int) -> None:
    """A resumed training run sees exactly the batches the uninterrupted one would have seen."""
    stream = OnlinePairs(sampler, shard_size=SHARD_SIZE)
    full = list(itertools.islice(DataLoader(stream, batch_size=8, num_workers=workers), 7))
    resumed = list(itertools.islice(DataLoader(stream.skipping(4, 8), batch_size=8, num_workers=workers), 3))
    for (image, mask), (again_image, again_mask) in zip(full[4:], resumed, strict=True):
        assert torch.equal(image, again_image) and torch.equal(mask, again_mask)
