"""``saliency data NAME``: verify a local copy (or download the official archives) and link it.

Verification decodes every file, checks that pairs are complete, compares the number of pairs with
the release's (another count is a warning: a partial or re-issued copy), and compares SHA-256 sums
with the copy's own ``SHA256SUMS`` (a mismatch is an error: the copy is damaged) and with the list
the package ships where one exists (made from a public mirror: a mismatch is a warning naming the
files). No publisher of these benchmarks gives checksums of its archives (docs/datasets.md).
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from saliency.datasets.registry import Archive, DatasetSpec, data_root, get_spec, held_splits
from saliency.downloads import WeightFile, fetch_or_explain
from saliency.errors import UserError
from saliency.images import read_gray, read_image
from saliency.progress import progress
from saliency.runs import sha256_file

log = logging.getLogger("saliency")


@dataclass
class Verification:
    root: Path
    pairs: int
    splits: list[str]
    checked_sums: int
    mismatched_reference: list[str]


def read_sums(path: Path) -> dict[str, str]:
    """``sha256sum`` output as ``{relative path: digest}``."""
    sums = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            digest, _, name = line.strip().partition("  ")
            sums[name.lstrip("*")] = digest
    return sums


def reference_sums(spec: DatasetSpec) -> dict[str, str]:
    if spec.checksums is None:
        return {}
    return read_sums(Path(str(resources.files("saliency.datasets") / spec.checksums)))


def verify(spec: DatasetSpec, root: Path) -> Verification:
    """Check a copy of ``spec`` in ``root``; raise :class:`UserError` on damage, warn on reference mismatches."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"dataset folder {root} not found; give the folder the {spec.name} release unpacks to")
    files = _decoded_files(spec, root)
    count = len(files) if spec.images_only else len(files) // 2
    if spec.pairs is not None and count != spec.pairs:
        log.warning("%s: %s holds %d %s, the release has %d (a partial or re-issued copy; its scores are not "
                    "comparable with published ones)", spec.name, root, count,
                    "images" if spec.images_only else "image/mask pairs", spec.pairs)
    digests = {name: sha256_file(path) for name, path in files.items()}
    own_sums = root / "SHA256SUMS"
    checked = 0
    if own_sums.is_file():
        for name, digest in read_sums(own_sums).items():
            if name not in digests:
                raise UserError(f"{root / name}: listed in {own_sums} but missing; restore it from the original copy")
            if digests[name] != digest:
                raise UserError(f"{root / name}: SHA-256 differs from {own_sums}; the copy is damaged, restore the file")
            checked += 1
    reference = reference_sums(spec)
    mismatched = sorted(name for name, digest in digests.items() if name in reference and reference[name] != digest)
    if mismatched:
        log.warning("%s: %d files differ from the reference list %s (made from a public mirror): %s",
                    spec.name, len(mismatched), spec.checksums, ", ".join(mismatched[:10]))
    stems = {Path(name).stem for name in files}
    return Verification(root, count, held_splits(spec, stems), checked, mismatched)


def _decoded_files(spec: DatasetSpec, root: Path) -> dict[str, Path]:
    """Every file of the copy (images, and masks unless the set is images-only) by its path in
    ``root``, each decoded once: a file that does not decode is an error naming it."""
    if spec.images_only:
        from saliency.datasets.folder import open_image_folder

        images = open_image_folder(spec.image_folder(root), name=spec.name)
        paths = [images.image_path(stem) for stem in images.stems]
        for path in progress(paths, desc=f"decoding {spec.name}", unit="image", leave=False):
            read_image(path)
        return {path.relative_to(root).as_posix(): path for path in paths}
    folder = spec.open(root)
    for stem in progress(folder.stems, desc=f"decoding {spec.name}", unit="pair", leave=False):
        read_image(folder.image_path(stem))
        read_gray(folder.mask_path(stem))
    return {p.relative_to(root).as_posix(): p for stem in folder.stems
            for p in (folder.image_path(stem), folder.mask_path(stem))}


def link(spec: DatasetSpec, source: Path) -> Path:
    """Point ``data/NAME`` at ``source`` (a symlink, replaced atomically; a real folder is left alone)."""
    target = data_root() / spec.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not target.is_symlink():
        if target.resolve() == Path(source).resolve():
            return target
        raise UserError(f"{target} is a real folder, not a link; move it away to link {source} there")
    tmp = target.parent / f".{spec.name}.link.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(Path(source).resolve(), tmp, target_is_directory=True)
    os.replace(tmp, target)
    return target


def download(spec: DatasetSpec) -> Path:
    """Fetch and unpack the official archives into ``data/NAME.download`` and return that folder."""
    if not spec.archives:
        how = spec.manual_download or "it has no download link"
        raise UserError(f"dataset {spec.name!r} cannot be downloaded here ({how}; {spec.homepage}): "
                        f"run `saliency data {spec.name} --from DIR` with the unpacked folder")
    dest = data_root() / f"{spec.name}.download"
    dest.mkdir(parents=True, exist_ok=True)
    for archive in spec.archives:
        if all((dest / folder).is_dir() for folder in archive.folders):
            continue
        _fetch_archive(spec, archive, dest)
    return dest


def _fetch_archive(spec: DatasetSpec, archive: Archive, dest: Path) -> None:
    """Download one archive and move the folders it holds to their release paths under ``dest``."""
    remedy = (f"get the archives from {spec.homepage}, unpack them into one folder and run "
              f"`saliency data {spec.name} --from DIR`")
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        zipped = Path(tmp) / "archive.zip"
        fetch_or_explain(f"dataset {spec.name} ({archive.url.rsplit('/', 1)[-1]})",
                         WeightFile(zipped.name, archive.url), zipped, remedy=remedy)
        unpacked = Path(tmp) / "unpacked"
        _unzip(zipped, unpacked)
        for folder in archive.folders:
            found = _find_folder(unpacked, folder)
            if found is None:
                raise UserError(f"{archive.url}: the archive holds no {folder}/ folder; unpack it by hand and "
                                f"use `saliency data {spec.name} --from DIR`")
            (dest / folder).parent.mkdir(parents=True, exist_ok=True)
            os.replace(found, dest / folder)


def _unzip(archive: Path, into: Path) -> None:
    """Unpack a zip, and the zips inside it (DUT-OMRON's ground truth is a zip in a zip)."""
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(into)
    for inner in sorted(into.rglob("*.zip")):
        _unzip(inner, inner.with_suffix(""))
        inner.unlink()


def _find_folder(root: Path, relative: str) -> Path | None:
    """The folder whose path ends with ``relative`` (a release may add a top folder), outside __MACOSX."""
    parts = tuple(Path(relative).parts)
    for path in sorted(root.rglob(parts[-1])):
        if path.is_dir() and path.parts[-len(parts):] == parts and "__MACOSX" not in path.parts:
            return path
    return None


def prepare(name: str, source: Path | None = None) -> Verification:
    """Verify ``source`` (or download) and link it as ``data/NAME``."""
    spec = get_spec(name)
    root = Path(source) if source is not None else download(spec)
    result = verify(spec, root)
    link(spec, root)
    return result


