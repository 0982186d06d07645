"""Independent random streams from one seed: the same key always gives the same stream.

Every stage derives its randomness from (seed, key...) — e.g. (seed, stream, rank, step) for a
training step, (seed, stream, shard) for a synthesis shard — so interrupted work that restarts
draws exactly what an uninterrupted run would have drawn, and no two keys share a stream.
"""

from __future__ import annotations

import numpy as np
import torch


def seeded_rng(seed: int, *key: int) -> torch.Generator:
    """A CPU ``torch.Generator`` for ``(seed, *key)``, independent of every other key."""
    state = np.random.SeedSequence(seed, spawn_key=key).generate_state(1, dtype=np.uint64)[0]
    rng = torch.Generator()
    rng.manual_seed(int(state))
    return rng
