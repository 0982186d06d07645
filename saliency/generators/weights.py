"""Where generator weights come from, in one place for every generator.

:func:`resolve_weights` looks, in order, at

1. the path the user gave (``--weights``): a checkpoint file, or a folder holding the spec's
   checkpoint file name;
2. the cache, ``$SALIENCY_CACHE/<generator>/`` (default ``~/.cache/saliency``), which must hold
   every file of the spec;
3. the published URL of each missing file, fetched and checked by :mod:`saliency.downloads`
   (``SALIENCY_OFFLINE=1`` skips this step).

biggan-128's ``G_ema.pth`` is published only inside ``pretrained_biggan.tar``; the download
extracts it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from saliency.downloads import WeightFile, cache_dir, ensure_published
from saliency.errors import UserError


@dataclass(frozen=True)
class WeightsSpec:
    """The published files of one generator; the first is the checkpoint, the others (a config)
    lie beside it."""

    generator: str
    files: tuple[WeightFile, ...]

    @property
    def checkpoint(self) -> WeightFile:
        return self.files[0]


_HF_BIGGAN = "https://s3.amazonaws.com/models.huggingface.co/biggan"
# Dropbox serves the file itself only with ?dl=1 (without it, an HTML preview page).
PUBLISHED_WEIGHTS: dict[str, WeightsSpec] = {
    **{
        f"biggan-deep-{size}": WeightsSpec(f"biggan-deep-{size}", (
            WeightFile("pytorch_model.bin", f"{_HF_BIGGAN}/biggan-deep-{size}-pytorch_model.bin"),
            WeightFile("config.json", f"{_HF_BIGGAN}/biggan-deep-{size}-config.json"),
        ))
        for size in (128, 256, 512)
    },
    "biggan-128": WeightsSpec("biggan-128", (
        WeightFile("G_ema.pth", "https://www.dropbox.com/s/zte4oein08ajsij/pretrained_biggan.tar?dl=1", in_tar=True),
    )),
    "bigbigan-128": WeightsSpec("bigbigan-128", (
        WeightFile("BigBiGAN_x1.pth", "https://www.dropbox.com/s/9w2i45h455k3b4p/BigBiGAN_x1.pth?dl=1"),
    )),
}


# Latent directions the authors published for a generator, imported by `discover --method import`
# when no discover.import_path is given (BigGANsAreWatching's download_all.sh).
PUBLISHED_DIRECTIONS: dict[str, WeightFile] = {
    "bigbigan-128": WeightFile("bg_direction.pth", "https://www.dropbox.com/s/np74kmkohkbx76t/bg_direction.pth?dl=1"),
}


def resolve_weights(spec: WeightsSpec, weights: str | os.PathLike[str] | None) -> Path:
    """Path of ``spec``'s checkpoint file: the user's ``weights`` path, else the cache, else a
    fresh download into the cache. Other files of the spec lie beside a cached checkpoint."""
    if weights is not None:
        return _user_checkpoint(spec, Path(weights).expanduser())
    folder = cache_dir() / spec.generator
    for file in spec.files:
        target = folder / file.name
        ensure_published(f"{spec.generator} weights", file, target, f"put {file.name} at {target} or pass --weights PATH")
    return folder / spec.checkpoint.name


def resolve_published_directions(generator: str) -> Path:
    """The authors' published direction file for ``generator``: from the cache
    (``$SALIENCY_CACHE/<generator>/``), else downloaded into it."""
    if generator not in PUBLISHED_DIRECTIONS:
        known = ", ".join(sorted(PUBLISHED_DIRECTIONS))
        raise UserError(f"method import needs discover.import_path: no directions are published for {generator} "
                        f"(published: {known}); give the deformator file (.pt/.pth)")
    file = PUBLISHED_DIRECTIONS[generator]
    target = cache_dir() / generator / file.name
    ensure_published(f"{generator} published directions", file, target,
                     f"put {file.name} at {target} or set discover.import_path")
    return target


def _user_checkpoint(spec: WeightsSpec, path: Path) -> Path:
    checkpoint = path / spec.checkpoint.name if path.is_dir() else path
    if not checkpoint.is_file():
        raise UserError(f"{spec.generator} weights: {checkpoint} not found; pass the checkpoint file "
                        f"or a folder holding {spec.checkpoint.name}")
    return checkpoint


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names in class-id order (from torchvision's metadata, no download)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
