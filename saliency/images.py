"""Every picture the package reads or writes goes through here: decoding image and mask files,
encoding PNG and JPEG, resizing, and the conversions between generator tensors in [-1, 1] and
8-bit pixels.

One library, OpenCV: albumentations, the inference resize and the mask rules' connected components
already use it, so a second decoder could only disagree with it. Arrays are RGB (OpenCV's BGR never
leaves this module), ``(H, W, 3)`` or ``(H, W)``, and shapes are numpy's ``(height, width)``; the
conversions keep the caller's tensor layout. Files decode to what PIL gave before the switch: no
EXIF rotation, alpha dropped, palettes expanded, colour made grey with PIL's integer luma, 16-bit
colour cut to its high byte, and a file cut short refused.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from saliency.errors import UserError
from saliency.runs import atomic_write_bytes

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
PNG_COMPRESSION = 6  # zlib's default level: the file sizes (and cost) PIL's PNGs had
_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.int32): 65535.0,
          np.dtype(np.float32): 1.0, np.dtype(np.float64): 1.0}  # full intensity of a grey sample
_JPEG_START, _JPEG_SCAN, _JPEG_END = b"\xff\xd8", b"\xff\xda", b"\xff\xd9"


# Conversions -------------------------------------------------------------------------------------

def signed_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Floats in [-1, 1] (a generator's range) to uint8, rounded to nearest (0 becomes 128), layout kept."""
    return images.float().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


def uint8_to_signed(images: torch.Tensor) -> torch.Tensor:
    """uint8 to float32 in [-1, 1], layout kept: 0 is -1, 255 is 1 (and 128 is 1/255: no code is 0)."""
    return images.float().div(127.5).sub(1.0)


def unit_to_uint8(values: torch.Tensor) -> torch.Tensor:
    """Floats in [0, 1] (a saliency map, a figure) to uint8, rounded to nearest, layout kept."""
    return values.float().mul(255).round().clamp(0, 255).to(torch.uint8)


# Decoding ----------------------------------------------------------------------------------------

def read_image(path: Path) -> np.ndarray:
    """RGB ``uint8`` array ``(H, W, 3)``."""
    return decode_image(_read(path), str(path))


def read_gray(path: Path) -> np.ndarray:
    """Single-channel ``float32`` array ``(H, W)`` in [0, 1] (a mask or a prediction): 8-bit images
    divided by 255, 16-bit ones by 65535, float ones as they are (outside [0, 1]: refused)."""
    return decode_gray(_read(path), str(path))


def read_mask(path: Path) -> np.ndarray:
    """Boolean ground-truth mask: intensity above half of the range is foreground (docs/method.md §6)."""
    return read_gray(path) > 0.5


def decode_image(data: bytes, origin: str) -> np.ndarray:
    """The RGB ``uint8`` array ``(H, W, 3)`` of an encoded image; ``origin`` names it in errors."""
    return _rgb8(_decode(data, origin), origin)


def decode_gray(data: bytes, origin: str) -> np.ndarray:
    """The single-channel ``float32`` array in [0, 1] of an encoded image (see :func:`read_gray`)."""
    pixels = _decode(data, origin)
    if pixels.ndim == 3:  # colour: grey the way PIL's convert("L") made it
        return _luma(_rgb8(pixels, origin)).astype(np.float32) / 255.0
    if pixels.dtype not in _SCALE:
        raise UserError(f"{origin}: cannot decode image ({pixels.dtype} samples); save 8- or 16-bit PNGs")
    values = pixels.astype(np.float32) / _SCALE[pixels.dtype]
    if pixels.dtype != np.uint8 and (not np.isfinite(values).all() or values.min() < 0 or values.max() > 1):
        kind = "float" if pixels.dtype.kind == "f" else "integer"
        raise UserError(f"{origin}: {kind} pixel values outside the range of a saliency map (scaled: min "
                        f"{values.min():.4g}, max {values.max():.4g}); save 8- or 16-bit PNGs, or float TIFFs in [0, 1]")
    return values


def decode_labels(data: bytes, origin: str) -> np.ndarray:
    """The ``uint8`` samples of a single-channel 8-bit PNG as stored, unscaled: class labels (0, 1, and
    the ignore label of self-training's pseudo-masks), not intensities."""
    pixels = _decode(data, origin)
    if pixels.ndim != 2 or pixels.dtype != np.uint8:
        raise UserError(f"{origin}: not a single-channel 8-bit label image; rerun the stage with --force")
    return pixels


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except OSError as error:
        raise UserError(f"{path}: cannot decode image ({error}); replace or remove the file") from None


def _decode(data: bytes, origin: str) -> np.ndarray:
    """The stored samples, unchanged: no EXIF rotation (PIL applied none), alpha and 16 bits kept."""
    # A JPEG cut short has no end marker after its last scan. OpenCV 4.9 decodes it anyway and greys
    # the rest (PIL raised; 4.14 refuses it too), so it is refused here whatever the version.
    cut_jpeg = data.startswith(_JPEG_START) and data.rfind(_JPEG_END) < data.rfind(_JPEG_SCAN)
    pixels = None
    if data and not cut_jpeg:
        with contextlib.suppress(cv2.error):
            pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise UserError(f"{origin}: cannot decode image (not a complete JPEG, PNG or TIFF file); "
                        f"replace or remove the file")
    return pixels


def _rgb8(pixels: np.ndarray, origin: str) -> np.ndarray:
    """RGB uint8 of decoded samples: grey repeated, alpha dropped, 16 bits to their high byte."""
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        raise UserError(f"{origin}: cannot decode image ({pixels.dtype} samples); save 8- or 16-bit images")
    if pixels.ndim == 2:
        return np.repeat(pixels[..., None], 3, axis=2)
    return np.ascontiguousarray(pixels[..., 2::-1])


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of RGB uint8 in PIL's fixed point (OpenCV's own rounds some values the other way)."""
    wide = rgb.astype(np.uint32)
    return ((wide[..., 0] * 19595 + wide[..., 1] * 38470 + wide[..., 2] * 7471 + 0x8000) >> 16).astype(np.uint8)


# Encoding ----------------------------------------------------------------------------------------

def encode_png(image: np.ndarray, compression: int = PNG_COMPRESSION) -> bytes:
    """A PNG of an RGB ``(H, W, 3)``, RGBA ``(H, W, 4)`` or grey ``(H, W)`` uint8 array; no metadata, so equal arrays
    give equal bytes."""
    return _encode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, compression])


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """A JPEG of an RGB ``(H, W, 3)`` or grey ``(H, W)`` uint8 array (4:2:0, as PIL wrote them)."""
    return _encode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])


def write_png(path: Path, image: np.ndarray) -> Path:
    """:func:`encode_png` to ``path``, atomically (a killed process leaves the old file or the new one)."""
    return atomic_write_bytes(Path(path), encode_png(image))


def tile(images: torch.Tensor, columns: int, padding: int = 2, pad_value: float = 0.0) -> torch.Tensor:
    """Images ``(N, C, H, W)`` as one ``(C, H', W')`` picture, ``columns`` to a row, ``padding``
    pixels of ``pad_value`` around each: the layout of ``torchvision.utils.make_grid``, kept here
    so that the stages which draw pictures need not import torchvision (3 s)."""
    count, channels, height, width = images.shape
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    step_y, step_x = height + padding, width + padding
    grid = images.new_full((channels, rows * step_y + padding, columns * step_x + padding), pad_value)
    for index, image in enumerate(images):
        top, left = index // columns * step_y + padding, index % columns * step_x + padding
        grid[:, top:top + height, left:left + width] = image
    return grid


def write_grid(path: Path, grid: torch.Tensor) -> Path:
    """A ``(3, H, W)`` picture in [0, 1] (as :func:`tile` makes) as a PNG, atomically."""
    return write_png(path, unit_to_uint8(grid.detach().cpu()).permute(1, 2, 0).numpy())


def _encode(suffix: str, image: np.ndarray, params: list[int]) -> bytes:
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise ValueError(f"expected an (H, W, 3), (H, W, 4) or (H, W) uint8 array, got {image.dtype} {image.shape}")
    if image.ndim == 3:  # RGB(A) to OpenCV's BGR(A)
        image = image[..., [2, 1, 0, 3][: image.shape[2]]]
    ok, encoded = cv2.imencode(suffix, np.ascontiguousarray(image), params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {image.shape} image as {suffix}")
    return encoded.tobytes()


ROW_HEIGHT = 160  # pixels of a tile in a row of pictures (row_figure)
ROW_GAP = 4
ROW_BACKGROUND = (255, 255, 255)


def row_figure(rows: list[list[np.ndarray]], height: int = ROW_HEIGHT) -> bytes:
    """PNG bytes: the tiles (RGB or grey uint8) in rows, each ``height`` pixels high; columns are as
    wide as their widest tile."""
    rows = [[_thumbnail(tile, height) for tile in row] for row in rows]
    widths = [max(row[column].shape[1] for row in rows) for column in range(len(rows[0]))]
    canvas = np.full((len(rows) * height + ROW_GAP * (len(rows) - 1), sum(widths) + ROW_GAP * (len(widths) - 1), 3),
                     ROW_BACKGROUND, np.uint8)
    for index, row in enumerate(rows):
        left, top = 0, index * (height + ROW_GAP)
        for tile, width in zip(row, widths):
            start = left + (width - tile.shape[1]) // 2
            canvas[top:top + height, start:start + tile.shape[1]] = tile
            left += width + ROW_GAP
    return encode_png(canvas, compression=9)


def _thumbnail(array: np.ndarray, height: int) -> np.ndarray:
    """An RGB tile ``height`` pixels high (a grey one repeated in R, G and B)."""
    rgb = np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array
    return resize(rgb, (height, max(1, round(rgb.shape[1] * height / rgb.shape[0]))))


# Resizing ----------------------------------------------------------------------------------------

def resize(image: np.ndarray, shape: tuple[int, int], interpolation: str = "auto") -> np.ndarray:
    """``image`` (uint8 or float32, grey or RGB) at ``shape`` ``(height, width)``. ``area`` averages
    the pixels each output pixel covers, ``linear`` is bilinear, ``nearest`` copies the nearest pixel
    (labels); ``auto`` takes area when no side grows and one shrinks, else bilinear (docs/method.md §5)."""
    height, width = image.shape[:2]
    if interpolation == "auto":
        shrinks = shape[0] <= height and shape[1] <= width and tuple(shape) != (height, width)
        interpolation = "area" if shrinks else "linear"
    flags = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}
    return cv2.resize(image, (shape[1], shape[0]), interpolation=flags[interpolation])


def resize_batch(images: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A batch ``(N, C, H, W)`` at ``shape`` in float32 on its own device: bilinear, antialiased when
    shrinking (a generator's output for DVN's 32 px, without a trip to the CPU)."""
    images = images.float()
    if tuple(images.shape[-2:]) == tuple(shape):
        return images
    return F.interpolate(images, size=tuple(shape), mode="bilinear", antialias=True, align_corners=False)
