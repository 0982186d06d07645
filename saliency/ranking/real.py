"""The real images DVN pseudo-labels: a dataset, a plain image folder, or fresh generator samples.

``rank.real`` is a registered dataset name (its images, all splits present), a folder (its
``images/`` subfolder when it has one, else its own image files; no masks needed), or
``generated`` for a generator that has no real data (toyworld): unshifted samples G(z).
A pool smaller than the number asked for is sampled with replacement and random square crops
(side 60–100 % of the shorter side), so repeats differ; a large enough pool gives distinct images,
centre-cropped. Images come back as 8-bit ``(N, 3, R, R)`` at the DVN resolution.
"""

from __future__ import annotations

from pathlib import Path

import torch

from saliency.datasets import registered, resolve
from saliency.datasets.io import list_images
from saliency.errors import UserError
from saliency.generators.base import Generator
from saliency.images import IMAGE_SUFFIXES, read_image, resize, uint8_to_signed
from saliency.ranking.dvn import dvn_pixels

GENERATED = "generated"
MIN_CROP = 0.6


def real_folder(real: str) -> Path | None:
    """The folder the real images of ``real`` are read from (None for ``generated``)."""
    if real == GENERATED:
        return None
    if real in registered():
        return resolve(real).images_dir
    folder = Path(real)
    if not folder.is_dir():
        raise UserError(f"rank.real = {real!r}: neither a registered dataset ({', '.join(registered())}), "
                        f"'{GENERATED}', nor an existing folder of images")
    return folder / "images" if (folder / "images").is_dir() else folder


def image_paths(real: str) -> list[Path]:
    """The image files of a dataset name or folder; an error naming it when there are none."""
    folder = real_folder(real)
    paths = list(list_images(folder).values()) if folder is not None else []
    if not paths:
        raise UserError(f"rank.real: {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                        f"give a folder of real images, or --real {GENERATED} for generator samples")
    return paths


def check_real(real: str) -> None:
    """Fail early (before any work or file) when ``real`` names no usable images."""
    if real != GENERATED:
        image_paths(real)


def real_images(real: str, n: int, resolution: int, rng: torch.Generator, generator: Generator,
                truncation: float | None = None, batch_size: int = 64) -> torch.Tensor:
    """``n`` real images ``(n, 3, R, R)`` uint8 for DVN, drawn with ``rng``."""
    if real == GENERATED:
        return generated_images(generator, n, resolution, rng, truncation, batch_size)
    return folder_images(image_paths(real), n, resolution, rng)


@torch.no_grad()
def generated_images(generator: Generator, n: int, resolution: int, rng: torch.Generator,
                     truncation: float | None = None, batch_size: int = 64) -> torch.Tensor:
    """Fresh unshifted samples G(z, c): the stand-in for real images of a generator with no data."""
    z, classes = generator.sample_z(n, rng, truncation), generator.sample_classes(n, rng)
    return torch.cat([dvn_pixels(generator(z[i:i + batch_size], classes[i:i + batch_size]), resolution).cpu()
                      for i in range(0, n, batch_size)])


def folder_images(paths: list[Path], n: int, resolution: int, rng: torch.Generator) -> torch.Tensor:
    """``n`` square crops of the images at ``paths``, resized to ``resolution``."""
    if len(paths) >= n:
        picks = torch.randperm(len(paths), generator=rng)[:n].tolist()
        crops = [(picks[i], 1.0, 0.5, 0.5) for i in range(n)]
    else:
        picks = torch.randint(len(paths), (n,), generator=rng).tolist()
        sizes = torch.empty(n).uniform_(MIN_CROP, 1.0, generator=rng).tolist()
        places = torch.rand(n, 2, generator=rng).tolist()
        crops = [(picks[i], sizes[i], *places[i]) for i in range(n)]
    # Each file is decoded once and shrunk to twice the target size before the crops are cut.
    cache = {index: _shrunk(paths[index], 2 * resolution) for index in sorted(set(picks))}
    return torch.stack([_crop(cache[index], size, x, y, resolution) for index, size, x, y in crops])


def _shrunk(path: Path, short_side: int) -> torch.Tensor:
    """The image as uint8 ``(3, H, W)`` with its shorter side at most ``short_side``."""
    image = read_image(path)
    height, width = image.shape[:2]
    scale = short_side / min(height, width)
    if scale < 1:
        image = resize(image, (max(1, round(height * scale)), max(1, round(width * scale))), "area")
    return torch.from_numpy(image).permute(2, 0, 1)


def _crop(image: torch.Tensor, size: float, x: float, y: float, resolution: int) -> torch.Tensor:
    """A square of side ``size`` × the shorter side, at relative place (x, y), resized to ``resolution``."""
    height, width = image.shape[1:]
    side = max(1, round(size * min(height, width)))
    top, left = round(y * (height - side)), round(x * (width - side))
    return dvn_pixels(uint8_to_signed(image[None, :, top:top + side, left:left + side]), resolution)[0]
