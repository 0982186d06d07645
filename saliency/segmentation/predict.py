"""Inference as the paper does it: shorter side to the training resolution (128 for the paper's
BigGAN), predict, foreground probability, resize back to the image's size (docs/method.md §5).

The foreground probability is ``predict.activation``: ``sigmoid-logit`` (GanLatentDiscovery's
inference: sigmoid of the raw foreground logit) or ``softmax`` (BigGANsAreWatching's: softmax
channel 1). ``predict.offset`` is added to the foreground logit first: a calibration of what 0.5
means on photographs, for a U-Net trained on synthetic pairs (0 in the papers). ``predict.flip``
averages the probability with that of the mirrored image (test-time augmentation; off in the
papers). All of them travel together as one :class:`Inference`; a checkpoint records those of the
run that trained it, and an explicit choice wins.

One implementation: :class:`SaliencyNet` is the U-Net with its :class:`Inference` baked in, in
torch operations only, so the same module predicts here (:func:`predict_image`, :class:`Detector`,
``saliency predict``, ``eval --checkpoint``) and is what ``saliency export`` writes as ONNX or
TorchScript (docs/usage.md).
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import logging
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from saliency.datasets.io import list_images
from saliency.distributed import autocast
from saliency.errors import UserError
from saliency.images import IMAGE_SUFFIXES, decode_gray, encode_png, read_image
from saliency.progress import progress
from saliency.runs import atomic_write_bytes, atomic_write_json, read_json_file, sha256_file
from saliency.segmentation.model import load_unet
from saliency.segmentation.outputs import check_format, render, to_uint8
from saliency.segmentation.refine import Refinement

log = logging.getLogger("saliency")
SHORTER_SIDE = 128
DEFAULT_ACTIVATION = "sigmoid-logit"
ACTIVATIONS = ("sigmoid-logit", "softmax")  # softmax over (background, foreground) = sigmoid of their difference


def _probability(logits: torch.Tensor, softmax: bool, offset: float) -> torch.Tensor:
    """``(N, H, W)`` foreground probability of ``(N, 2, H, W)`` logits, the foreground logit raised by
    ``offset`` first; softmax channel 1 of two channels is the sigmoid of the logits' difference."""
    logits = logits.float()
    foreground = logits[:, 1] + offset
    if softmax:
        foreground = foreground - logits[:, 0]
    return foreground.sigmoid()


def check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise UserError(f"predict.activation {activation!r} is not known; choose one of {', '.join(ACTIVATIONS)}")


def foreground_probability(logits: torch.Tensor, activation: str = DEFAULT_ACTIVATION,
                           offset: float = 0.0) -> torch.Tensor:
    """``(N, H, W)`` in [0, 1] by the named activation, the foreground logit raised by ``offset``
    first (see the module docstring)."""
    check_activation(activation)
    return _probability(logits, activation == "softmax", offset)


@dataclasses.dataclass(frozen=True)
class Inference:
    """How a U-Net's output becomes a saliency map: the scale it sees (``shorter_side``, its
    training resolution), ``activation``, ``offset``, mirror averaging (``flip``) and ``precision``."""

    shorter_side: int = SHORTER_SIDE
    activation: str = DEFAULT_ACTIVATION
    offset: float = 0.0
    flip: bool = False
    precision: str = "fp32"

    @classmethod
    def of_checkpoint(cls, extras: dict[str, Any]) -> "Inference":
        """The settings a saved U-Net recorded (older checkpoints: the papers' defaults)."""
        return cls(shorter_side=int(extras.get("resolution", SHORTER_SIDE)),
                   activation=str(extras.get("activation", DEFAULT_ACTIVATION)),
                   offset=float(extras.get("offset", 0.0)), flip=bool(extras.get("flip", False)))

    def replace(self, **changes: Any) -> "Inference":
        """A copy with ``changes``; a change of ``None`` keeps the current value (an option not given)."""
        return dataclasses.replace(self, **{key: value for key, value in changes.items() if value is not None})


def _resampling(source: int, target: int) -> torch.Tensor:
    """The ``(target, source)`` matrix that resamples one axis: the mean of the pixels each output
    pixel covers when shrinking (OpenCV's INTER_AREA), bilinear with pixel centres aligned when
    growing (INTER_LINEAR). The sizes enter as tensors (the last index plus one), never as Python
    numbers, so an exported model keeps its height and width dynamic."""
    outputs = torch.arange(target, dtype=torch.float32).unsqueeze(1)
    inputs = torch.arange(source, dtype=torch.float32).unsqueeze(0)
    last_input = inputs[:, -1:]
    scale = (last_input + 1) / (outputs[-1:] + 1)
    covered = (torch.minimum((outputs + 1) * scale, inputs + 1) - torch.maximum(outputs * scale, inputs)).clamp(min=0)
    centre = torch.minimum(((outputs + 0.5) * scale - 0.5).clamp(min=0.0), last_input)
    tent = (1 - (centre - inputs).abs()).clamp(min=0)
    return torch.where(scale > 1, covered / scale, tent)


class SaliencyNet(nn.Module):
    """The U-Net with its :class:`Inference` baked in: RGB images ``(N, 3, H, W)`` float32 in [0, 1]
    to foreground probabilities ``(N, 1, H, W)`` at the same size. The shorter side goes to
    ``shorter_side`` (the longer side rounded down, as the authors do), the U-Net's input is padded to
    its ``size_multiple``, and with ``flip`` the mirrored image's prediction is averaged in."""

    def __init__(self, model: nn.Module, inference: Inference, size_multiple: int | None = None) -> None:
        """``size_multiple``: the U-Net's, when ``model`` does not say (a traced U-Net)."""
        super().__init__()
        check_activation(inference.activation)
        self.model = model
        self.shorter_side = int(inference.shorter_side)
        self.softmax = inference.activation == "softmax"
        self.offset = float(inference.offset)
        self.flip = bool(inference.flip)
        self.multiple = size_multiple if size_multiple is not None else int(getattr(model, "size_multiple", 1))
        # Reflection needs a side longer than the padding; the working scale's shorter side is shorter_side.
        self.pad_mode = "reflect" if self.shorter_side > self.multiple else "replicate"

    @torch.jit.unused
    def inference(self) -> Inference:
        """The settings baked in (precision aside: the caller's)."""
        return Inference(self.shorter_side, "softmax" if self.softmax else DEFAULT_ACTIVATION, self.offset, self.flip)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """The U-Net's input: at the working scale, in [-1, 1], mirrored copies after the originals,
        padded to the U-Net's multiple."""
        height, width = images.shape[-2], images.shape[-1]
        short = min(height, width)
        rows = _resampling(height, self.shorter_side * height // short).to(images.device)
        columns = _resampling(width, self.shorter_side * width // short).to(images.device)
        batch = torch.matmul(torch.matmul(rows, images.float()), columns.t()) * 2 - 1
        if self.flip:
            batch = torch.cat([batch, batch.flip(-1)])
        pad_h, pad_w = (-batch.shape[-2]) % self.multiple, (-batch.shape[-1]) % self.multiple
        if pad_h > 0 or pad_w > 0:
            batch = F.pad(batch, [0, pad_w, 0, pad_h], mode=self.pad_mode)
        return batch

    def finish(self, logits: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Probabilities ``(N, 1, height, width)`` of the U-Net's logits for :meth:`prepare`'s batch."""
        short = min(height, width)
        probability = _probability(logits, self.softmax, self.offset)
        probability = probability[:, : self.shorter_side * height // short, : self.shorter_side * width // short]
        if self.flip:
            count = probability.shape[0] // 2
            probability = (probability[:count] + probability[count:].flip(-1)) / 2
        return F.interpolate(probability.unsqueeze(1), size=[height, width], mode="bilinear", align_corners=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.finish(self.model(self.prepare(images)), images.shape[-2], images.shape[-1])


@torch.no_grad()
def run_net(net: SaliencyNet, image: np.ndarray, device: str | torch.device = "cpu",
            precision: str = "fp32") -> np.ndarray:
    """Foreground probability ``(H, W)`` in [0, 1] of one RGB uint8 image; the U-Net alone runs
    under ``precision`` (resampling and the probability stay in float32)."""
    images = torch.tensor(image).permute(2, 0, 1).unsqueeze(0).to(device).float() / 255  # a copy: arrays may be read-only
    batch = net.prepare(images)
    with autocast(batch.device, precision):
        logits = net.model(batch)
    return net.finish(logits, image.shape[0], image.shape[1])[0, 0].cpu().numpy()


def predict_image(model: nn.Module, image: np.ndarray, device: str | torch.device = "cpu",
                  inference: Inference = Inference()) -> np.ndarray:
    """Foreground probability ``(H, W)`` in [0, 1] at the image's own size; with ``inference.flip``,
    the mean of the image's and its mirror image's (mirrored back)."""
    return run_net(SaliencyNet(model, inference), image, device, inference.precision)


def to_png(probability: np.ndarray) -> bytes:
    """The 8-bit PNG of a saliency map in [0, 1] (what is saved and scored)."""
    return encode_png(to_uint8(probability))


def saved_map(probability: np.ndarray) -> tuple[bytes, np.ndarray]:
    """The 8-bit PNG of a map and the map it decodes to: what is scored (and refined) is exactly
    what ``saliency predict`` saves."""
    png = to_png(probability)
    return png, decode_gray(png, "a saliency map")


ImageLike = Union[np.ndarray, str, Path, Any]  # Any: a PIL image


def as_rgb(image: ImageLike) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` of a path, a PIL image or an array (grey ``(H, W)``, RGB or RGBA)."""
    if isinstance(image, (str, Path)):
        return read_image(Path(image))
    if not isinstance(image, np.ndarray):
        if not hasattr(image, "convert"):
            raise UserError(f"cannot read an image from a {type(image).__name__}; give a path, a PIL image or "
                            f"an RGB uint8 array")
        image = np.asarray(image.convert("RGB"))
    if image.dtype != np.uint8:
        raise UserError(f"image array of {image.dtype}: give RGB uint8 (H, W, 3) values 0-255")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise UserError(f"image array of shape {image.shape}: give RGB uint8 (H, W, 3)")
    return np.ascontiguousarray(image[:, :, :3])


class Detector:
    """A trained U-Net ready to use: ``Detector.load(checkpoint)(image)`` is the saliency map
    ``(H, W)`` float32 in [0, 1] of an image (path, PIL image or RGB uint8 array; a list gives a
    list). ``load`` takes a U-Net checkpoint or a run folder (the detector the run's evaluation
    scores: the self-trained U-Net when there is one). The checkpoint's own inference settings
    apply unless ``load`` overrides them (``activation``, ``offset``, ``flip``, ``precision``;
    ``None`` keeps), and ``refine`` refines each map with its image (:mod:`.refine`).
    ``saliency predict``, ``eval --checkpoint``, ``serve`` and ``export`` all go through this class."""

    def __init__(self, net: SaliencyNet, device: str | torch.device = "cpu", precision: str = "fp32",
                 refinement: Refinement | None = None, checkpoint: Path | None = None) -> None:
        self.net = net.eval()
        self.device, self.precision = device, precision
        self.refinement = refinement if refinement is not None else Refinement.named("none")
        self.refinement.check()
        self.checkpoint = checkpoint  # the file it was loaded from

    @classmethod
    def load(cls, checkpoint: str | Path, device: str | torch.device = "cpu", *, activation: str | None = None,
             offset: float | None = None, flip: bool | None = None, precision: str | None = None,
             refine: str | Refinement | None = None) -> "Detector":
        checkpoint = Path(checkpoint)
        if checkpoint.is_dir():  # a run folder: the detector its evaluation scores
            from saliency.stages import handed_on_model

            checkpoint = handed_on_model(checkpoint)
        model, extras = load_unet(checkpoint, device)
        inference = Inference.of_checkpoint(extras).replace(activation=activation, offset=offset, flip=flip,
                                                            precision=precision)
        refinement = Refinement.named(refine) if isinstance(refine, str) else refine
        return cls(SaliencyNet(model, inference), device, inference.precision, refinement, checkpoint)

    @functools.cached_property
    def checkpoint_sha256(self) -> str | None:
        """The checkpoint's content, hashed when a record first asks (eval hashes it in its manifest already)."""
        return sha256_file(self.checkpoint) if self.checkpoint is not None else None

    @property
    def inference(self) -> Inference:
        return self.net.inference().replace(precision=self.precision)

    def raw(self, image: np.ndarray) -> np.ndarray:
        """The U-Net's map of an RGB uint8 image, unquantized and unrefined."""
        return run_net(self.net, image, self.device, self.precision)

    def saliency(self, image: np.ndarray) -> tuple[bytes, np.ndarray]:
        """The 8-bit PNG of an RGB uint8 image's map and the map it decodes to (refined when asked):
        exactly what ``saliency predict`` saves and ``eval`` scores."""
        png, probability = saved_map(self.raw(image))
        if self.refinement.active:
            png, probability = saved_map(self.refinement(probability, image))
        return png, probability

    def __call__(self, image: ImageLike | Sequence[ImageLike]) -> np.ndarray | list[np.ndarray]:
        if isinstance(image, (list, tuple)):
            return [self.saliency(as_rgb(item))[1] for item in image]
        return self.saliency(as_rgb(image))[1]

    def render(self, image: ImageLike, format: str = "probability") -> np.ndarray:
        """The image's output in ``format`` (:data:`saliency.segmentation.outputs.FORMATS`): the map,
        the mask, the cut-out (RGBA) or the overlay, as a uint8 array."""
        rgb = as_rgb(image)
        return render(format, rgb, self.saliency(rgb)[1])

    def record(self, format: str = "probability") -> dict[str, Any]:
        """What makes a folder of outputs: the checkpoint's content and every setting."""
        return {"checkpoint_sha256": self.checkpoint_sha256, "inference": dataclasses.asdict(self.inference),
                "refine": self.refinement.settings(), "format": format}


PREDICTIONS_RECORD = "predictions.json"  # in a predict --out folder: what made its maps
GLOB_CHARACTERS = "*?["


def gather_images(inputs: Sequence[str | Path]) -> dict[str, Path]:
    """Stem to path of every image the inputs name: image files, folders (their images) and glob
    patterns (``photos/*.jpg``, ``**`` included). Two images with one stem, a pattern that matches no
    image, a missing path or a file that is not an image are one-line errors."""
    if not inputs:
        raise UserError("predict: give images to predict: files, folders or glob patterns")
    found: dict[str, Path] = {}

    def add(stem: str, path: Path) -> None:
        if stem in found and found[stem].resolve() != path.resolve():
            raise UserError(f"{found[stem]} and {path} would both be written as {stem}.png; predict them into "
                            f"separate --out folders")
        found[stem] = path

    for given in map(str, inputs):
        path = Path(given)
        if path.is_dir():
            images = list_images(path)
            if not images:
                raise UserError(f"image folder {path} holds no .jpg or .png images")
            for stem, file in images.items():
                add(stem, file)
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise UserError(f"{path} is not an image ({', '.join(IMAGE_SUFFIXES)}); give image files or folders")
            add(path.stem, path)
        elif any(character in given for character in GLOB_CHARACTERS):
            matches = [Path(match) for match in sorted(glob.glob(given, recursive=True))
                       if Path(match).suffix.lower() in IMAGE_SUFFIXES and Path(match).is_file()]
            if not matches:
                raise UserError(f"pattern {given!r} matches no .jpg or .png image")
            for match in matches:
                add(match.stem, match)
        else:
            raise UserError(f"{path} not found; give image files, folders or glob patterns")
    return found


def claim_folder(out: Path, record: dict[str, Any]) -> None:
    """Make ``out`` the folder of maps made as ``record`` says: a new or empty folder is recorded; one
    whose maps were made so already is resumed (its maps kept); maps made otherwise, or by an unknown
    hand, are never mixed with new ones (one line, and nothing written)."""
    out = Path(out)
    path = out / PREDICTIONS_RECORD
    maps = list(out.glob("*.png")) if out.is_dir() else []
    if path.is_file():
        recorded = read_json_file(path, "record of predictions", f"remove {path} and the maps beside it")
        if recorded != record:
            changed = sorted(key for key in set(record) | set(recorded) if recorded.get(key) != record.get(key))
            raise UserError(f"{out} holds maps made with another {' and '.join(changed)}; give another --out "
                            f"folder (or empty this one) rather than mix them")
    elif maps:
        raise UserError(f"{out} holds {len(maps)} PNG maps that saliency predict did not record making; give "
                        f"another --out folder (or empty this one) rather than mix them")
    atomic_write_json(path, record)


def predict_images(detector: Detector, inputs: Sequence[str | Path], out: Path, format: str = "probability") -> int:
    """A PNG per image the ``inputs`` name (:func:`gather_images`) into ``out`` in ``format``
    (:data:`.outputs.FORMATS`). ``out`` records what made its files (``predictions.json``): an interrupted call
    with the same checkpoint and settings resumes, any other is refused. Returns how many were written."""
    check_format(format)  # before any work
    files = gather_images(inputs)
    claim_folder(Path(out), detector.record(format))
    written = 0
    for stem, path in progress(sorted(files.items()), desc="predicting", unit="img"):
        target = Path(out) / f"{stem}.png"
        if target.exists():
            continue
        image = read_image(path)
        atomic_write_bytes(target, encode_png(render(format, image, detector.saliency(image)[1])))
        written += 1
    return written
