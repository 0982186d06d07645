"""Named datasets: where they live, their splits, how to fetch and verify them.

``resolve(name_or_path, split)`` is what every ``--dataset`` option goes through: a registered name
(looked up under the data root) or a folder path holding ``images/`` and ``masks/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from saliency.datasets.folder import PairFolder, open_pair_folder
from saliency.errors import UserError


class DatasetMissing(UserError):
    """A registered dataset that is not linked on this machine (``saliency data NAME`` fetches or links it)."""


@dataclass(frozen=True)
class DatasetSpec:
    """A published dataset: its folder name under the data root, splits as stem lists, archives."""

    name: str
    splits: dict[str, Callable[[], list[str]]]
    archives: dict[str, str] = field(default_factory=dict)
    checksums: str | None = None
    homepage: str = ""
    citation: str = ""


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    _REGISTRY[spec.name] = spec
    return spec


def registered() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str) -> DatasetSpec:
    if name not in _REGISTRY:
        raise UserError(f"unknown dataset {name!r}; use one of {', '.join(registered())} or a folder path")
    return _REGISTRY[name]


def data_root() -> Path:
    """Where named datasets are linked: ``$SALIENCY_DATA``, else ``./data``."""
    return Path(os.environ.get("SALIENCY_DATA", "data"))


def numbered(first: int, last: int, width: int = 4) -> Callable[[], list[str]]:
    return lambda: [f"{i:0{width}d}" for i in range(first, last + 1)]


def resolve(dataset: str, split: str | None = None) -> PairFolder:
    """A registered dataset's split, or a folder path (its ``split`` subfolder when it has one, else all)."""
    if dataset in _REGISTRY:
        spec = _REGISTRY[dataset]
        root = data_root() / spec.name
        if not root.exists():
            raise DatasetMissing(f"dataset {dataset!r} is not in {root}: run `saliency data {dataset} --from DIR` "
                            f"(or without --from to download it)")
        if split in (None, "all"):
            return open_pair_folder(root, name=dataset)
        if split not in spec.splits:
            raise UserError(f"dataset {dataset!r} has no split {split!r}; choose one of {', '.join(spec.splits)}, all")
        wanted = spec.splits[split]()
        folder = open_pair_folder(root, name=dataset)
        present = set(folder.stems)
        if not present.intersection(wanted):
            raise UserError(f"dataset {dataset!r} in {root} does not hold the {split} split "
                            f"(it holds: {', '.join(held_splits(spec, present)) or 'no known split'})")
        if missing := [s for s in wanted if s not in present]:
            raise UserError(f"dataset {dataset!r} in {root}: the {split} split misses {len(missing)} pairs "
                            f"(first: {missing[0]}); re-link a complete copy with `saliency data {dataset} --from DIR`")
        return PairFolder(folder.images_dir, folder.masks_dir, tuple(wanted), f"{dataset}/{split}")
    path = Path(dataset)
    if not path.is_dir():
        raise UserError(f"dataset {dataset!r}: neither a registered dataset ({', '.join(registered())}) "
                        f"nor an existing folder")
    # A folder may keep its splits as subfolders (DUTS/test/images); otherwise it is one split.
    if split not in (None, "all") and (path / split / "images").is_dir():
        path = path / split
    return open_pair_folder(path, name=str(path))


def held_splits(spec: DatasetSpec, stems: set[str]) -> list[str]:
    """The splits of ``spec`` that ``stems`` holds completely."""
    return [name for name, split in spec.splits.items() if set(split()) <= stems]


ECSSD = register_dataset(DatasetSpec(
    name="ecssd",
    # docs/method.md §6: the paper publishes no split; the project's is by file name.
    splits={"train": numbered(1, 500), "test": numbered(501, 1000)},
    archives={
        "images": "https://www.cse.cuhk.edu.hk/leojia/projects/hsaliency/data/ECSSD/images.zip",
        "ground_truth_mask": "https://www.cse.cuhk.edu.hk/leojia/projects/hsaliency/data/ECSSD/ground_truth_mask.zip",
    },
    checksums="ecssd-all.SHA256SUMS",
    homepage="https://www.cse.cuhk.edu.hk/leojia/projects/hsaliency/dataset.html",
    citation="Q. Yan, L. Xu, J. Shi, J. Jia. Hierarchical Saliency Detection. CVPR 2013.",
))
