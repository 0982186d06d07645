"""A detector people can take elsewhere: the checkpoint's :class:`SaliencyNet` (U-Net and inference
settings, flip included) as one ONNX or TorchScript file that maps an RGB image tensor
``(N, 3, H, W)`` float32 in [0, 1], any height and width, to the probability ``(N, 1, H, W)``
(docs/usage.md). The bilateral-solver refinement is not in the file: it is NumPy code beside the model.

Each export is checked before it is kept: the file, run by its own runtime (onnxruntime when it is
installed, ``torch.jit.load``), must give the PyTorch prediction within :data:`TOLERANCE` on an
image of awkward size; the file is written atomically and never replaces an existing one unless asked.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from saliency.errors import UserError
from saliency.segmentation.predict import Detector, SaliencyNet

log = logging.getLogger("saliency")
TOLERANCE = 1e-4  # the largest difference from the PyTorch prediction an export may have
CHECK_SHAPE = (2, 3, 97, 131)  # odd sizes, landscape, a batch of two: what the check runs
OPSET = 18  # ONNX opset: Resize with antialias and the dynamo exporter's default
METADATA_KEY = "saliency"  # ONNX metadata_props / TorchScript extra file: the checkpoint hash and settings


def _check_input() -> torch.Tensor:
    return torch.rand(CHECK_SHAPE, generator=torch.Generator().manual_seed(0))


def _onnx(net: SaliencyNet, path: Path, metadata: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """ONNX by torch's dynamo exporter (batch, height and width dynamic); the run function is
    onnxruntime's when it is installed."""
    try:
        import onnx
        import onnxscript  # noqa: F401  (the exporter's dependency, named in the error below)
    except ImportError:
        raise UserError("export --format onnx needs the onnx and onnxscript packages; "
                        "pip install 'gan-saliency[export]'") from None
    dims = {0: torch.export.Dim("batch", min=1, max=1024), 2: torch.export.Dim("height", min=8, max=16384),
            3: torch.export.Dim("width", min=8, max=16384)}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        exported = torch.export.export(net, (_check_input(),), dynamic_shapes={"images": dims})
        program = torch.onnx.export(exported, dynamo=True, opset_version=OPSET, input_names=["image"],
                                    output_names=["probability"], verbose=False)
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    model = program.model_proto
    model.metadata_props.add(key=METADATA_KEY, value=metadata)
    onnx.save(model, str(path))
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda images: session.run(None, {"image": images})[0]


def _torchscript(net: SaliencyNet, path: Path, metadata: str) -> Callable[[np.ndarray], np.ndarray]:
    """TorchScript: the U-Net traced (it has no shape-dependent Python), the inference around it
    scripted (its sizes depend on the input's). torch marks torch.jit deprecated (its warnings are
    silenced here); TorchScript is still what libtorch in C++ and older runtimes load (docs/usage.md)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net.model, net.prepare(_check_input()))
        scripted = torch.jit.script(SaliencyNet(traced, net.inference(), net.multiple))
        torch.jit.save(scripted, str(path), _extra_files={METADATA_KEY: metadata})
        loaded = torch.jit.load(str(path))
    return lambda images: loaded(torch.from_numpy(images)).numpy()


# Format name -> (net, path, metadata) -> the run function of the written file (None: no runtime to check with).
EXPORTERS: dict[str, Callable[[SaliencyNet, Path, str], Callable[[np.ndarray], np.ndarray] | None]] = {
    "onnx": _onnx,
    "torchscript": _torchscript,
}
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}


def default_path(checkpoint: Path, format: str) -> Path:
    """The checkpoint's name with the format's suffix, beside it."""
    return Path(checkpoint).with_suffix(SUFFIXES[format])


@torch.no_grad()
def export_detector(detector: Detector, format: str, out: Path, overwrite: bool = False) -> float:
    """Write ``detector``'s net as ``format`` to ``out`` and return the largest difference between
    the file's prediction and PyTorch's on the check input (``nan`` when no runtime is installed to
    check with). A difference above :data:`TOLERANCE` keeps nothing and is an error."""
    if format not in EXPORTERS:
        raise UserError(f"--format {format!r} is not known; choose one of {', '.join(EXPORTERS)}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"{out} exists; give another --out or --force to replace it")
    if not out.parent.is_dir():
        raise UserError(f"folder {out.parent} not found; create it or give another --out")
    net = detector.net.to("cpu").float().eval().requires_grad_(False)  # a loaded file's outputs need no grad
    metadata = json.dumps(detector.record(format), sort_keys=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(descriptor)
    try:
        run = EXPORTERS[format](net, Path(temporary), metadata)
        images = _check_input()
        difference = float("nan")
        if run is not None:
            difference = float(np.abs(run(images.numpy()) - net(images).numpy()).max())
            if not difference <= TOLERANCE:
                raise UserError(f"the {format} export differs from the PyTorch prediction by {difference:.2g} "
                                f"(more than {TOLERANCE:g}); nothing was written")
        os.replace(temporary, out)
        return difference
    finally:
        Path(temporary).unlink(missing_ok=True)
