"""The synthetic dataset on disk: shards of image/mask PNGs, written and read only here.

Layout under ``synth/``::

    shards/NNNNN/images/IIIIIII.png   8-bit RGB image at the generator's resolution
    shards/NNNNN/masks/IIIIIII.png    8-bit mask, 0 = background, 255 = object
    shards/NNNNN/shard.json           the shard's draws: count, area histogram, per-pair records
    samples.jsonl                     one record per pair (stem, shard, draw, seed, class, area)
    stats.json                        acceptance rate and area histograms over all shards
    sheet.png                         the first pairs, images above their masks

A shard is built in a hidden temporary folder and renamed into place when its last file is
written, so a shard folder under its final name is complete, and a killed run loses only the
shard it was writing. Shard k holds the accepted pairs of :func:`~saliency.synthesis.online.shard_draws`
for k, so it has the same bytes whichever process writes it, and when.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from saliency.images import encode_png, read_image, read_mask, tile, uint8_to_signed, write_grid
from saliency.runs import atomic_write_json, atomic_write_text, read_json_file
from saliency.synthesis.online import PairSampler, shard_counts, shard_draws

log = logging.getLogger("saliency")

SHARDS_DIR = "shards"
SHARD_FILE = "shard.json"
SAMPLES_FILE = "samples.jsonl"
STATS_FILE = "stats.json"
SHEET_FILE = "sheet.png"
AREA_BINS = 20  # histogram bins of width 0.05 over [0, 1]
SHEET_PAIRS = 16
_SHARD_NAME = re.compile(r"^\d{5}$")


def shard_name(shard: int) -> str:
    return f"{shard:05d}"


def sample_stem(shard: int, position: int, shard_size: int) -> str:
    """Stems number the pairs of the whole dataset: shard k holds ``k·shard_size`` onwards."""
    return f"{shard * shard_size + position:07d}"


def area_bin(area: float) -> int:
    return min(int(area * AREA_BINS), AREA_BINS - 1)


def is_complete(folder: Path, count: int) -> bool:
    """A shard folder under its final name that holds ``count`` pairs (a shorter last shard of a
    smaller ``n`` is redone)."""
    meta = folder / SHARD_FILE
    return meta.is_file() and json.loads(meta.read_text())["accepted"] == count


def write_shard(sampler: PairSampler, root: Path, shard: int, count: int, shard_size: int,
                progress: Any = None) -> Path:
    """Shard ``shard`` with ``count`` accepted pairs under ``root``, replacing what was there;
    ``progress`` (a :func:`saliency.progress.progress` bar) counts the pairs."""
    final = Path(root) / shard_name(shard)
    tmp = final.with_name(f".{final.name}.tmp")
    for stale in (tmp, final):
        shutil.rmtree(stale, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    (tmp / "masks").mkdir()
    records: list[dict[str, Any]] = []
    histogram, drawn = [0] * AREA_BINS, 0
    for draw in shard_draws(sampler, shard):
        drawn += 1
        histogram[area_bin(draw.area)] += 1
        if not draw.kept:
            continue
        stem = sample_stem(shard, len(records), shard_size)
        (tmp / "images" / f"{stem}.png").write_bytes(encode_png(draw.image.numpy()))
        (tmp / "masks" / f"{stem}.png").write_bytes(encode_png(draw.mask.numpy().astype(np.uint8) * 255))
        records.append({"stem": stem, "shard": shard, "draw": draw.index, "seed": sampler.seed,
                        "class": draw.label, "area": draw.area})
        if progress is not None:
            progress.update(1)
        if len(records) == count:
            break
    meta = {"shard": shard, "drawn": drawn, "accepted": count, "area_histogram": histogram, "samples": records}
    (tmp / SHARD_FILE).write_text(json.dumps(meta) + "\n")
    os.rename(tmp, final)
    return final


def my_shards(n: int, shard_size: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """The shards process ``rank`` of ``world_size`` writes: k with k mod world_size == rank."""
    return list(range(len(shard_counts(n, shard_size))))[rank::world_size]


def write_shards(sampler: PairSampler, root: Path, n: int, shard_size: int, rank: int = 0,
                 world_size: int = 1, progress: Any = None) -> None:
    """This process's shards of an ``n``-pair dataset (all of them when alone); complete ones are kept."""
    counts = shard_counts(n, shard_size)
    for shard in my_shards(n, shard_size, rank, world_size):
        folder = Path(root) / shard_name(shard)
        if is_complete(folder, counts[shard]):
            log.debug("synth: rank %d found shard %d complete", rank, shard)
            if progress is not None:
                progress.update(counts[shard])
        else:
            write_shard(sampler, root, shard, counts[shard], shard_size, progress)
            log.debug("synth: rank %d wrote shard %d", rank, shard)


def remove_extra_shards(root: Path, n: int, shard_size: int) -> None:
    """Drop shard folders beyond an ``n``-pair dataset (left by a run with a larger ``n``)."""
    if not Path(root).is_dir():
        return
    keep = {shard_name(k) for k in range(len(shard_counts(n, shard_size)))}
    for folder in Path(root).iterdir():
        if folder.name.strip(".").removesuffix(".tmp") not in keep:
            shutil.rmtree(folder)


def collect(root: Path, n: int, shard_size: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-pair records of all shards in order, and totals (drawn, accepted, histograms)."""
    records: list[dict[str, Any]] = []
    drawn, histogram = 0, [0] * AREA_BINS
    for shard, count in enumerate(shard_counts(n, shard_size)):
        folder = Path(root) / shard_name(shard)
        if not is_complete(folder, count):
            raise RuntimeError(f"{folder}: shard missing or incomplete after every rank finished")
        meta = json.loads((folder / SHARD_FILE).read_text())
        records.extend(meta["samples"])
        drawn += meta["drawn"]
        histogram = [a + b for a, b in zip(histogram, meta["area_histogram"])]
    accepted = [0] * AREA_BINS
    for record in records:
        accepted[area_bin(record["area"])] += 1
    totals = {"pairs": len(records), "drawn": drawn, "acceptance_rate": len(records) / drawn,
              "area_histogram": {"edges": [round(i / AREA_BINS, 4) for i in range(AREA_BINS + 1)],
                                 "drawn": histogram, "accepted": accepted}}
    return records, totals


def read_stats(synth_dir: Path) -> dict[str, Any]:
    """The totals of a synthetic dataset (``stats.json``: pairs, drawn, acceptance, area histogram)."""
    return read_json_file(Path(synth_dir) / STATS_FILE, "synthesis statistics file", "rerun `saliency synth-dataset`")


def write_summary(synth_dir: Path, n: int, shard_size: int, details: dict[str, Any]) -> dict[str, Any]:
    """``samples.jsonl``, ``stats.json`` (``details`` plus the totals) and ``sheet.png``; returns the stats."""
    synth_dir = Path(synth_dir)
    records, totals = collect(synth_dir / SHARDS_DIR, n, shard_size)
    atomic_write_text(synth_dir / SAMPLES_FILE, "".join(json.dumps(r) + "\n" for r in records))
    stats = {**details, **totals}
    atomic_write_json(synth_dir / STATS_FILE, stats)
    write_sheet(synth_dir / SHEET_FILE, ShardDataset(synth_dir), SHEET_PAIRS)
    return stats


def write_sheet(path: Path, dataset: ShardDataset, pairs: int, columns: int = 8) -> Path:
    """The first ``pairs`` pairs: rows of images, each above the row of their masks."""
    pairs = min(pairs, len(dataset))
    items = [dataset[i] for i in range(pairs)]
    tiles = []
    for start in range(0, pairs, columns):
        row = items[start:start + columns]
        row += [(torch.zeros_like(items[0][0]) - 1, torch.zeros_like(items[0][1]))] * (columns - len(row))
        tiles += [image.add(1).div(2) for image, _ in row] + [mask.float().expand(3, -1, -1) for _, mask in row]
    return write_grid(path, tile(torch.stack(tiles), columns, pad_value=0.5))


class ShardDataset(Dataset):
    """The pairs of a ``synth/`` folder's complete shards, as ``(image, mask)``: image ``(3, R, R)``
    float in [-1, 1], mask ``(R, R)`` int64 in {0, 1} (the items of :class:`OnlinePairs`)."""

    def __init__(self, synth_dir: Path) -> None:
        root = Path(synth_dir) / SHARDS_DIR
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no shards; run `saliency synth-dataset` first")
        shards = sorted(folder for folder in root.iterdir() if _SHARD_NAME.match(folder.name))
        self.pairs = [(image, folder / "masks" / image.name) for folder in shards
                      for image in sorted((folder / "images").iterdir())]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, mask_path = self.pairs[index]
        image = uint8_to_signed(torch.from_numpy(read_image(image_path)).permute(2, 0, 1))
        mask = torch.tensor(read_mask(mask_path)).long()
        return image, mask
