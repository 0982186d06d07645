"""Named datasets: where they live, their release's folder layout, their splits, how to fetch them.

``resolve(name_or_path, split)`` is what every ``--dataset`` option goes through: a registered name
(looked up under the data root) or a folder path holding ``images/`` and ``masks/``. The benchmarks
the field reports side by side are registered (docs/datasets.md): ``ecssd``, ``duts-te``,
``dut-omron``, ``hku-is`` and ``pascal-s``, each linked as its release unpacks.

``resolve_images(name_or_path, split)`` gives the images alone, for learning without labels
(``saliency self-train``): a registered dataset's images with its masks never read, the image-only
sets (``duts-tr``, the field's standard unlabeled set; ``ecssd-unlabeled``, any of ECSSD's train
images), or any folder of images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from saliency.datasets.folder import MASK_FOLDER_NAMES, ImageFolder, PairFolder, open_image_folder, open_pair_folder
from saliency.errors import UserError


class DatasetMissing(UserError):
    """A registered dataset that is not linked on this machine (``saliency data NAME`` fetches or links it)."""


@dataclass(frozen=True)
class Archive:
    """One official archive and the folders (paths inside the release) it unpacks to."""

    url: str
    folders: tuple[str, ...]


Split = Callable[[], list[str]] | None  # the stems of a split; None: every pair of the folder


@dataclass(frozen=True)
class DatasetSpec:
    """A published dataset: its folder name under the data root, splits, and the release's layout.

    ``image_folders`` and ``mask_folders`` are paths inside the linked folder, the release's own
    first (``DUTS-TE-Image``), then the plain ``images``/``masks`` of re-packaged copies. ``pairs`` is
    the release's size (a copy with another count is reported); ``checksums`` a SHA-256 list the
    package ships, only where one exists (docs/datasets.md says which)."""

    name: str
    splits: dict[str, Split]
    archives: tuple[Archive, ...] = ()
    image_folders: tuple[str, ...] = ("images",)
    mask_folders: tuple[str, ...] = MASK_FOLDER_NAMES
    pairs: int | None = None
    checksums: str | None = None
    homepage: str = ""
    citation: str = ""
    manual_download: str = ""  # how to get a release that has no plain download link
    images_only: bool = False  # a set of photographs to learn from without labels: its masks are never read

    def image_folder(self, root: Path) -> Path:
        """The folder of this dataset's images in a copy at ``root``."""
        images = next((root / name for name in self.image_folders if (root / name).is_dir()), None)
        if images is None:
            raise UserError(f"dataset folder {root} does not hold {self.name}'s images: expected "
                            f"{' or '.join(f'{i}/' for i in self.image_folders)} in it; give that folder to "
                            f"`saliency data {self.name} --from DIR`")
        return images

    def open(self, root: Path) -> PairFolder:
        """Every pair of a copy of this dataset in ``root``, in its release's layout."""
        if self.images_only:
            raise UserError(f"dataset {self.name!r} is a set of images without masks (for `saliency self-train`); "
                            f"it cannot be scored or rank real images by masks: name a benchmark with masks")
        images = next((root / name for name in self.image_folders if (root / name).is_dir()), None)
        masks = next((root / name for name in self.mask_folders if (root / name).is_dir()), None)
        if images is None or masks is None:
            raise UserError(f"dataset folder {root} does not hold a {self.name} release: expected "
                            f"{' or '.join(f'{i}/' for i in self.image_folders)} and "
                            f"{' or '.join(f'{m}/' for m in self.mask_folders)} in it; give that folder to "
                            f"`saliency data {self.name} --from DIR`")
        return open_pair_folder(root, name=self.name, images_dir=images, masks_dir=masks)


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


def numbered(first: int, last: int, width: int = 4) -> Split:
    return lambda: [f"{i:0{width}d}" for i in range(first, last + 1)]


def resolve(dataset: str, split: str | None = None) -> PairFolder:
    """A registered dataset's split, or a folder path (its ``split`` subfolder when it has one, else all)."""
    if dataset in _REGISTRY:
        spec, root = _linked(dataset, split)
        folder = spec.open(root)
        if split in (None, "all"):
            return folder
        chosen = spec.splits[split]
        if chosen is None:  # the split is the whole dataset
            return PairFolder(folder.images_dir, folder.masks_dir, folder.stems, f"{dataset}/{split}")
        wanted = chosen()
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


def resolve_images(source: str, split: str | None = None) -> ImageFolder:
    """The images (only) of a registered dataset's split, or of a folder (its ``images/`` when it
    has one): photographs to learn from without their labels. A registered dataset that is not
    linked raises :class:`DatasetMissing`."""
    if source not in _REGISTRY:
        return open_image_folder(Path(source))
    spec, root = _linked(source, split)
    folder = open_image_folder(spec.image_folder(root), name=source)
    chosen = spec.splits.get(split or "all")
    if chosen is None:
        return folder
    present = set(folder.stems)
    wanted = tuple(stem for stem in chosen() if stem in present)
    if not wanted:
        raise UserError(f"dataset {source!r} in {root} holds none of the {split} split's images")
    return ImageFolder(folder.images_dir, wanted, f"{source}/{split}")


def _linked(name: str, split: str | None) -> tuple[DatasetSpec, Path]:
    """The registered dataset ``name`` and its folder under the data root, once ``split`` is known to
    be one of its splits; :class:`DatasetMissing` when it is not linked."""
    spec = _REGISTRY[name]
    root = data_root() / spec.name
    if not root.exists():
        download = " (or without --from to download it)" if spec.archives else ""
        raise DatasetMissing(f"dataset {name!r} is not in {root}: run `saliency data {name} --from DIR`{download}")
    if split not in (None, "all") and split not in spec.splits:
        raise UserError(f"dataset {name!r} has no split {split!r}; choose one of {', '.join(spec.splits)}, all")
    return spec, root


def held_splits(spec: DatasetSpec, stems: set[str]) -> list[str]:
    """The splits of ``spec`` that ``stems`` holds completely."""
    return [name for name, split in spec.splits.items() if split is None or set(split()) <= stems]


ECSSD = register_dataset(DatasetSpec(
    name="ecssd",
    # docs/method.md §6: the paper publishes no split; the project's is by file name.
    splits={"train": numbered(1, 500), "test": numbered(501, 1000)},
    archives=(Archive("https://www.cse.cuhk.edu.hk/leojia/projects/hsaliency/data/ECSSD/images.zip", ("images",)),
              Archive("https://www.cse.cuhk.edu.hk/leojia/projects/hsaliency/data/ECSSD/ground_truth_mask.zip",
                      ("ground_truth_mask",))),
    pairs=1000,
    checksums="ecssd-all.SHA256SUMS",
    homepage="https://www.cse.cuhk.edu.hk/leojia/projects/hsaliency/dataset.html",
    citation="Q. Yan, L. Xu, J. Shi, J. Jia. Hierarchical Saliency Detection. CVPR 2013.",
))

DUTS_TE = register_dataset(DatasetSpec(
    name="duts-te",
    splits={"test": None},  # DUTS-TE is DUTS's test split, whole
    archives=(Archive("http://saliencydetection.net/duts/download/DUTS-TE.zip", ("DUTS-TE-Image", "DUTS-TE-Mask")),),
    image_folders=("DUTS-TE-Image", "images"),
    mask_folders=("DUTS-TE-Mask", *MASK_FOLDER_NAMES),
    pairs=5019,
    homepage="http://saliencydetection.net/duts/",
    citation="L. Wang, H. Lu, Y. Wang, M. Feng, D. Wang, B. Yin, X. Ruan. Learning to Detect Salient Objects "
             "with Image-level Supervision. CVPR 2017.",
))

DUT_OMRON = register_dataset(DatasetSpec(
    name="dut-omron",
    splits={"test": None},  # a test set, whole
    archives=(Archive("http://saliencydetection.net/dut-omron/download/DUT-OMRON-image.zip", ("DUT-OMRON-image",)),
              Archive("http://saliencydetection.net/dut-omron/download/DUT-OMRON-gt-pixelwise.zip.zip",
                      ("pixelwiseGT-new-PNG",))),
    image_folders=("DUT-OMRON-image", "images"),
    mask_folders=("pixelwiseGT-new-PNG", *MASK_FOLDER_NAMES),
    pairs=5168,
    homepage="http://saliencydetection.net/dut-omron/",
    citation="C. Yang, L. Zhang, H. Lu, X. Ruan, M.-H. Yang. Saliency Detection via Graph-Based Manifold "
             "Ranking. CVPR 2013.",
))

HKU_IS = register_dataset(DatasetSpec(
    name="hku-is",
    splits={"test": None},  # all 4447 pairs, as most published result maps (docs/datasets.md)
    image_folders=("imgs", "images"),
    mask_folders=("gt", *MASK_FOLDER_NAMES),
    pairs=4447,
    homepage="https://sites.google.com/site/ligb86/hkuis",
    citation="G. Li, Y. Yu. Visual Saliency Based on Multiscale Deep Features. CVPR 2015.",
    manual_download="the release is one RAR archive (HKU-IS.rar) on Google Drive and Baidu only; download it from "
                    "the homepage and unpack it",
))

PASCAL_S = register_dataset(DatasetSpec(
    name="pascal-s",
    splits={"test": None},
    archives=(Archive("http://cbs.ic.gatech.edu/salobj/download/salObj.zip",
                      ("datasets/imgs/pascal", "datasets/masks/pascal")),),
    image_folders=("datasets/imgs/pascal", "images"),
    mask_folders=("datasets/masks/pascal", *MASK_FOLDER_NAMES),
    pairs=850,
    homepage="http://cbs.ic.gatech.edu/salobj/",
    citation="Y. Li, X. Hou, C. Koch, J. M. Rehg, A. L. Yuille. The Secrets of Salient Object Segmentation. "
             "CVPR 2014.",
))

DUTS_TR = register_dataset(DatasetSpec(
    name="duts-tr",
    splits={"train": None},  # DUTS's training split, whole
    archives=(Archive("http://saliencydetection.net/duts/download/DUTS-TR.zip", ("DUTS-TR-Image",)),),
    image_folders=("DUTS-TR/DUTS-TR-Image", "DUTS-TR-Image", "images"),
    pairs=10553,
    homepage="http://saliencydetection.net/duts/",
    citation=DUTS_TE.citation,
    images_only=True,  # the field's standard set of unlabeled photographs: its masks are never read
))

ECSSD_UNLABELED = register_dataset(DatasetSpec(
    name="ecssd-unlabeled",
    splits={"train": None},  # any of ECSSD's train images (0001-0500), never its test split
    image_folders=("images",),
    checksums=ECSSD.checksums,  # each image is checked against the ECSSD release's own
    homepage=ECSSD.homepage,
    citation=ECSSD.citation,
    manual_download="it is a selection of ECSSD's train images without their masks; link a folder of them "
                    "(images/NNNN.jpg)",
    images_only=True,
))
