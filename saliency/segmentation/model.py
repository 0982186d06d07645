"""The U-Nets and their checkpoint format, written and read only here.

Two architectures, chosen by ``unet.arch`` (docs/method.md §5):

- ``classic`` (default): the "simple U-net" of the paper as the authors' code builds it (their
  ``segmentation/unet_model.py``, after milesial/Pytorch-UNet): double 3×3 convolutions with batch
  norm, widths 64 → 128 → 256 → 512 → 512, max-pool down, bilinear up (align_corners) with the skip
  concatenated, a 1×1 output convolution to 2 channels; 13,395,394 parameters. It takes any input
  size: each up step pads its map to the skip's size. ``unet.width`` scales it (a CPU budget).
- ``smp``: a segmentation-models-pytorch U-Net on ``unet.encoder`` (inputs padded to a multiple of 32).

Both output ``(N, 2, H, W)`` logits (background, foreground) for RGB images in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from saliency.config import UnetConfig
from saliency.errors import UserError
from saliency.runs import atomic_torch_save, load_torch_file

MODEL_FILE = "model.pt"  # the trained U-Net in its stage folder (save_unet / load_unet)
FORMAT = "saliency-unet-v2"
LEGACY_FORMAT = "saliency-unet-v1"  # smp only, before unet.arch existed
CLASSIC_WIDTHS = (64, 128, 256, 512, 512)


@dataclass(frozen=True)
class UnetSpec:
    """What rebuilds a U-Net: its architecture and, for ``smp``, the encoder."""

    arch: str = "classic"
    encoder: str = "resnet34"
    encoder_weights: str | None = None
    width: int = CLASSIC_WIDTHS[0]

    @classmethod
    def from_config(cls, options: UnetConfig) -> "UnetSpec":
        return cls(options.arch, options.encoder, options.encoder_weights, options.width)

    @classmethod
    def of_checkpoint(cls, checkpoint: dict[str, Any]) -> "UnetSpec":
        """The spec a file of :func:`save_unet` records (its extras, as :func:`load_unet` returns them)."""
        return cls(checkpoint.get("arch", "smp"), checkpoint["encoder"], None,
                   int(checkpoint.get("width", CLASSIC_WIDTHS[0])))

    def describe(self) -> str:
        return f"classic U-Net (width {self.width})" if self.arch == "classic" else f"smp U-Net ({self.encoder})"


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """(3×3 convolution, batch norm, ReLU) twice."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class ClassicUNet(nn.Module):
    """The authors' U-Net layout (see the module docstring); ``size_multiple`` 1: any input size."""

    size_multiple = 1

    def __init__(self, in_channels: int = 3, classes: int = 2, widths: tuple[int, ...] = CLASSIC_WIDTHS) -> None:
        super().__init__()
        self.stem = _double_conv(in_channels, widths[0])
        self.down = nn.ModuleList(_double_conv(a, b) for a, b in zip(widths[:-1], widths[1:]))
        # Up step i joins the map from below (width of the level below, halved widths after the
        # first) with the skip of level i; the output width is the next level's skip width.
        skips = widths[:-1][::-1]                      # 512, 256, 128, 64
        outs = (*skips[1:], widths[0])                 # 256, 128, 64, 64
        ins = (widths[-1], *outs[:-1])                 # 512, 256, 128, 64
        self.up = nn.ModuleList(_double_conv(a + s, o) for a, s, o in zip(ins, skips, outs))
        self.head = nn.Conv2d(widths[0], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(F.max_pool2d(skips[-1], 2)))
        x = skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
            dy, dx = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
            x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
            x = block(torch.cat([skip, x], dim=1))
        return self.head(x)


def _classic(spec: UnetSpec) -> nn.Module:
    """The authors' layout; ``width`` scales every level (64 = theirs)."""
    return ClassicUNet(widths=tuple(spec.width * m for m in (1, 2, 4, 8, 8)))


def _smp(spec: UnetSpec) -> nn.Module:
    # Imported here: segmentation-models-pytorch pulls in timm and torchvision (5 s), which the
    # classic U-Net does not need.
    import segmentation_models_pytorch as smp

    try:
        model = smp.Unet(encoder_name=spec.encoder, encoder_weights=spec.encoder_weights, in_channels=3, classes=2)
    except (KeyError, ValueError) as error:
        raise UserError(f"unet.encoder {spec.encoder!r} / encoder_weights {spec.encoder_weights!r}: {error}") from None
    except (OSError, RuntimeError) as error:
        raise UserError(f"encoder weights {spec.encoder_weights!r} for {spec.encoder!r} could not be loaded ({error}); "
                        f"use unet.encoder_weights: null to train from scratch") from None
    model.size_multiple = 32  # five halvings: inputs are padded to a multiple of 32
    return model


ARCHITECTURES: dict[str, Callable[[UnetSpec], nn.Module]] = {"classic": _classic, "smp": _smp}


def build_unet(spec: UnetSpec = UnetSpec()) -> nn.Module:
    """A fresh two-class U-Net (background, foreground) with a ``size_multiple`` attribute."""
    if spec.arch not in ARCHITECTURES:
        raise UserError(f"unet.arch {spec.arch!r} is not known; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[spec.arch](spec)


def save_unet(model: nn.Module, path: Path, spec: UnetSpec, extra: dict[str, Any] | None = None) -> Path:
    """Plain tensors and strings only, so the file loads with ``weights_only=True``."""
    state = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
    return atomic_torch_save({"format": FORMAT, "arch": spec.arch, "encoder": spec.encoder, "width": spec.width,
                              "state_dict": state, **(extra or {})}, path)


def load_unet(path: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The U-Net of a checkpoint written by :func:`save_unet`, in eval mode, and the checkpoint's extras."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found; train one with `saliency train-unet` or give its path")
    checkpoint = load_torch_file(path, "U-Net checkpoint", f"give a {MODEL_FILE} written by `saliency train-unet`")
    if not isinstance(checkpoint, dict) or checkpoint.get("format") not in (FORMAT, LEGACY_FORMAT):
        raise UserError(f"checkpoint {path} is not a saliency U-Net ({FORMAT}); use unet/{MODEL_FILE} of a run")
    remedy = f"it was damaged or edited; use unet/{MODEL_FILE} of a run or retrain with `saliency train-unet --force`"
    try:
        spec = UnetSpec.of_checkpoint(checkpoint)
        model = build_unet(spec)
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise UserError(f"checkpoint {path} has the U-Net format tag but not its contents ({reason}); {remedy}") from None
    extras = {k: v for k, v in checkpoint.items() if k != "state_dict"}
    extras.setdefault("arch", spec.arch)
    return model.to(device).eval(), extras


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside a wrapper with a ``module`` (DDP, AveragedModel), or the model itself."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model
