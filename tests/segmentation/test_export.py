"""``saliency export``: ONNX (run in onnxruntime) and TorchScript (run in torch) files that give the
PyTorch prediction, flip and offset included, on real ECSSD images of any size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from saliency.images import read_image
from saliency.segmentation.predict import Detector
from tests.conftest import write_tiny_unet

STEMS = ("0501", "0502", "0503", "0504")  # landscape, portrait and square photographs


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Recorded with a non-default inference: softmax, an offset and mirror averaging."""
    return write_tiny_unet(tmp_path_factory.mktemp("unet") / "model.pt", activation="softmax", flip=True)


def as_batch(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32) / 255


def load_onnx(path: Path):
    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is the test extra's ONNX runtime")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda batch: session.run(None, {"image": batch})[0], session.get_modelmeta().custom_metadata_map


def load_torchscript(path: Path):
    files = {"saliency": ""}
    module = torch.jit.load(str(path), _extra_files=files)
    return lambda batch: module(torch.from_numpy(batch)).numpy(), files


@pytest.mark.parametrize("export_format, load", [("onnx", load_onnx), ("torchscript", load_torchscript)])
def test_exported_files_give_the_pytorch_prediction(export_format: str, load, run_cli, checkpoint: Path,
                                                    ecssd_root: Path, tmp_path: Path) -> None:
    out = tmp_path / f"detector.{export_format}"
    result = run_cli("export", "--checkpoint", checkpoint, "--format", export_format, "--out", out)
    assert result.code == 0 and f"wrote {out}" in result.out, result.err
    run, metadata = load(out)
    record = json.loads(metadata["saliency"])
    assert record["inference"]["flip"] is True and record["inference"]["activation"] == "softmax"
    detector = Detector.load(checkpoint)
    for stem in STEMS:
        image = read_image(ecssd_root / "images" / f"{stem}.jpg")
        expected = detector.raw(image)
        probability = run(as_batch(image))
        assert probability.shape == (1, 1, *image.shape[:2])
        assert np.abs(probability[0, 0] - expected).max() < 1e-4, stem
    small = read_image(ecssd_root / "images" / "0505.jpg")[::7, ::9]  # smaller than the working scale: it grows
    assert np.abs(run(as_batch(np.ascontiguousarray(small)))[0, 0] - detector.raw(small)).max() < 1e-4


def test_export_refuses_to_replace_a_file_and_names_bad_input(run_cli, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "detector.pt"
    out.write_bytes(b"someone's file")
    result = run_cli("export", "--checkpoint", checkpoint, "--format", "torchscript", "--out", out)
    assert result.code == 2 and "exists" in result.err and len(result.err.strip().splitlines()) == 1
    assert out.read_bytes() == b"someone's file"
    result = run_cli("export", "--checkpoint", tmp_path / "absent.pt", "--format", "onnx")
    assert result.code == 2 and "absent.pt" in result.err and len(result.err.strip().splitlines()) == 1
    result = run_cli("export", "--checkpoint", checkpoint, "--format", "torchscript", "--out", tmp_path / "no" / "x.pt")
    assert result.code == 2 and "not found" in result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["detector.pt"]
    default = run_cli("export", "--checkpoint", checkpoint, "--format", "torchscript")
    assert default.code == 0 and checkpoint.with_suffix(".torchscript.pt").is_file(), default.err
