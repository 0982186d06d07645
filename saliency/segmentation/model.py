"""The U-Net (segmentation-models-pytorch) and its checkpoint format, written and read only here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import torch
from torch import nn

from saliency.errors import UserError
from saliency.runs import atomic_torch_save, load_torch_file

FORMAT = "saliency-unet-v1"
# The U-Net halves the resolution five times: inputs are padded to a multiple of this.
SIZE_MULTIPLE = 32


def build_unet(encoder: str = "resnet34", encoder_weights: str | None = None) -> nn.Module:
    """Two-class U-Net (background, foreground) on RGB images in [-1, 1], as the paper trains it."""
    try:
        return smp.Unet(encoder_name=encoder, encoder_weights=encoder_weights, in_channels=3, classes=2)
    except (KeyError, ValueError) as error:
        raise UserError(f"unet.encoder {encoder!r} / encoder_weights {encoder_weights!r}: {error}") from None
    except (OSError, RuntimeError) as error:
        raise UserError(f"encoder weights {encoder_weights!r} for {encoder!r} could not be loaded ({error}); "
                        f"use unet.encoder_weights: null to train from scratch") from None


def save_unet(model: nn.Module, path: Path, encoder: str, extra: dict[str, Any] | None = None) -> Path:
    """Plain tensors and strings only, so the file loads with ``weights_only=True``."""
    state = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
    return atomic_torch_save({"format": FORMAT, "encoder": encoder, "state_dict": state, **(extra or {})}, path)


def load_unet(path: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The U-Net of a checkpoint written by :func:`save_unet`, in eval mode, and the checkpoint's extras."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found; train one with `saliency train-unet` or give its path")
    checkpoint = load_torch_file(path, "U-Net checkpoint", "give a model.pt written by `saliency train-unet`")
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise UserError(f"checkpoint {path} is not a saliency U-Net ({FORMAT}); use unet/model.pt of a run")
    model = build_unet(checkpoint["encoder"])
    model.load_state_dict(checkpoint["state_dict"])
    extras = {k: v for k, v in checkpoint.items() if k != "state_dict"}
    return model.to(device).eval(), extras


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model
