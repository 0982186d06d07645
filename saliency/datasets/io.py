"""Reading images and masks: one decoder for every stage, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from saliency.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


# Single-channel modes PIL gives for more than 8 bits per pixel, and the value of full intensity.
_WIDE_GRAY_RANGE = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I": 65535, "F": 1.0}


def _decode(path: Path, mode: str | None) -> np.ndarray:
    """The pixels converted to ``mode``; ``None`` gives a single-channel image in [0, 1] whatever
    its bit depth (8-bit by 255, 16-bit by 65535, float as it is)."""
    # PIL raises on a truncated file (OpenCV would fill the rest with grey and go on).
    try:
        with Image.open(path) as image:
            image.load()
            if mode is not None:
                return np.asarray(image.convert(mode))
            if image.mode not in _WIDE_GRAY_RANGE:
                return np.asarray(image.convert("L"), dtype=np.float32) / 255.0
            values = np.asarray(image, dtype=np.float32) / _WIDE_GRAY_RANGE[image.mode]
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise UserError(f"{path}: cannot decode image ({error}); replace or remove the file") from None
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
        kind = "float" if image.mode == "F" else "integer"
        raise UserError(f"{path}: {kind} pixel values outside the range of a saliency map (scaled: min "
                        f"{values.min():.4g}, max {values.max():.4g}); save 8- or 16-bit PNGs, or float TIFFs in [0, 1]")
    return values


def read_image(path: Path) -> np.ndarray:
    """RGB ``uint8`` array ``(H, W, 3)``."""
    return _decode(Path(path), "RGB")


def read_gray(path: Path) -> np.ndarray:
    """Single-channel ``float32`` array ``(H, W)`` in [0, 1] (a mask or a prediction): 8-bit images
    divided by 255, 16-bit ones by 65535, float ones as they are (outside [0, 1]: refused)."""
    return _decode(Path(path), None)


def read_mask(path: Path) -> np.ndarray:
    """Boolean ground-truth mask: intensity above half of the range is foreground (docs/method.md §6)."""
    return read_gray(path) > 0.5


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
