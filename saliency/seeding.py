"""Independent random streams from one seed: the same key always gives the same stream.

Every stage derives its randomness from (seed, key...) — e.g. (seed, stream, rank, step) for a
training step, (seed, stream, shard) for a synthesis shard — so interrupted work that restarts
draws exactly what an uninterrupted run would have drawn. Two things keep keys apart:

- :class:`Stream` is the one table of stream ids: no two uses of randomness share an id;
- :func:`stage_seed` gives each stage its own seed from ``run.seed`` (unless the stage's config
  names one), so stages differ even where their key layouts coincide, and one number reseeds a run.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import numpy as np

from saliency.stages import REGISTRY

if TYPE_CHECKING:
    import torch


@enum.unique
class Stream(enum.IntEnum):
    """Every random stream of the package: the first element of a :func:`seeded_rng` key."""

    DISCOVER_BATCH = 0  # latents, classes and shifts of a discovery step
    DISCOVER_RCA = 1  # the batches of the final reconstructor-accuracy measurement
    DVN_LATENT = 2  # generated images DVN classifies
    DVN_INIT_GENERATED = 3  # a direction's first classifier's initial weights
    DVN_INIT_REAL = 4  # its second classifier's
    DVN_BATCH_GENERATED = 5  # the first classifier's batches
    DVN_BATCH_REAL = 6  # the second classifier's
    SYNTH_SHARD = 7  # one synthesis shard's latents, classes and shifts
    RANK_REAL = 8  # the real (or stand-in) images rank draws
    RANK_MASK = 9  # the latents of rank's effect check
    UNET_BATCH = 10  # which pairs make a U-Net step's batch
    UNET_AUGMENT = 11  # that batch's augmentation
    UNET_INIT = 12  # the U-Net's initial weights
    DISCOVER_INIT = 13  # the deformator's start, or a closed-form method's random draws
    DISCOVER_RECONSTRUCTOR = 14  # the reconstructor's initial weights
    DISCOVER_GRIDS = 15  # the latents of the direction grids
    HELDOUT = 16  # held-out generator samples a run is scored on when its dataset is missing
    SELFTRAIN_IMAGES = 17  # which unlabeled images self-training uses (selftrain.max_images)
    SELFTRAIN_ROUND = 18  # a self-training round's own seed (its batches and augmentation)


# The stages that draw random numbers, each with the fixed key its seed is derived from run.seed by
# (stages.REGISTRY). A key is a stage's for good: a new stage takes the next unused number (never a
# position in a list, which would reseed every stage after the one inserted), and a removed stage's
# key is not reused. Keys from 1000 up: apart from every Stream id.
STAGE_SEED_KEYS: dict[str, int] = {entry.name: entry.seed_key for entry in REGISTRY if entry.seed_key is not None}
SEEDED_STAGES = tuple(STAGE_SEED_KEYS)


def seeded_rng(seed: int, *key: int) -> torch.Generator:
    """A CPU ``torch.Generator`` for ``(seed, *key)``, independent of every other key."""
    import torch  # here: loading a config (and `saliency --help`) reads this module, and needs no torch

    rng = torch.Generator()
    rng.manual_seed(derive_seed(seed, *key))
    return rng


def stage_seed(run_seed: int, stage: str) -> int:
    """The seed of ``stage`` in a run seeded ``run_seed``: independent of every other stage's."""
    if stage not in STAGE_SEED_KEYS:
        raise ValueError(f"no seed for stage {stage!r}; seeded stages: {', '.join(STAGE_SEED_KEYS)}")
    # Below 2**31: every seed API takes it.
    return derive_seed(run_seed, STAGE_SEED_KEYS[stage]) % 2**31


def derive_seed(seed: int, *key: int) -> int:
    """The integer seed of ``(seed, *key)``, for APIs that take a seed rather than a generator."""
    return int(np.random.SeedSequence(seed, spawn_key=key).generate_state(1, dtype=np.uint64)[0])
