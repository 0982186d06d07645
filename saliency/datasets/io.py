"""Reading images and masks: one decoder for every stage, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from saliency.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _decode(path: Path, mode: str) -> np.ndarray:
    # PIL raises on a truncated file (OpenCV would fill the rest with grey and go on).
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(image.convert(mode))
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise UserError(f"{path}: cannot decode image ({error}); replace or remove the file") from None


def read_image(path: Path) -> np.ndarray:
    """RGB ``uint8`` array ``(H, W, 3)``."""
    return _decode(Path(path), "RGB")


def read_gray(path: Path) -> np.ndarray:
    """Single-channel ``uint8`` array ``(H, W)`` (a mask or a prediction)."""
    return _decode(Path(path), "L")


def read_mask(path: Path) -> np.ndarray:
    """Boolean ground-truth mask: intensity above half of the range is foreground (docs/method.md §6)."""
    return read_gray(path) > 127


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
