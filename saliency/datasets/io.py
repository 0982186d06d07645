"""The image files of a folder by stem (decoding is :mod:`saliency.images`'s)."""

from __future__ import annotations

from pathlib import Path

from saliency.errors import UserError
from saliency.images import IMAGE_SUFFIXES


def list_images(folder: Path) -> dict[str, Path]:
    """Image files of a folder by file stem; two files with one stem are an error."""
    found: dict[str, Path] = {}
    for path in sorted(Path(folder).iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
            continue
        if path.stem in found:
            raise UserError(f"{folder}: two files for {path.stem!r} ({found[path.stem].name}, {path.name}); keep one")
        found[path.stem] = path
    return found
