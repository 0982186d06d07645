"""U-Net checkpoints and inference: format, sizes, the predict and eval --checkpoint commands."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from saliency.errors import UserError
from saliency.segmentation.model import ClassicUNet, UnetSpec, build_unet, load_unet, save_unet
from saliency.segmentation.predict import Inference, SaliencyNet, foreground_probability, predict_image

SMP = UnetSpec("smp", "resnet18")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("unet") / "model.pt"
    save_unet(build_unet(SMP), path, SMP, {"step": 3, "activation": "softmax"})
    return path


def test_classic_unet_is_the_authors_layout() -> None:
    """milesial's U-Net as the authors use it: 13,395,394 parameters for 3 -> 2 channels, widths
    64-128-256-512-512, any input size (odd sizes included) mapped to logits of the same size."""
    model = build_unet(UnetSpec("classic"))
    assert isinstance(model, ClassicUNet) and sum(p.numel() for p in model.parameters()) == 13_395_394
    assert [block[0].out_channels for block in model.down] == [128, 256, 512, 512]
    assert [block[0].out_channels for block in model.up] == [256, 128, 64, 64]
    assert model.eval()(torch.zeros(1, 3, 37, 50)).shape == (1, 2, 37, 50)


@pytest.mark.parametrize("spec", [UnetSpec("classic"), SMP], ids=["classic", "smp"])
def test_checkpoint_round_trip(spec: UnetSpec, tmp_path: Path) -> None:
    torch.manual_seed(0)
    save_unet(build_unet(spec), tmp_path / "model.pt", spec, {"step": 3})
    model, extras = load_unet(tmp_path / "model.pt")
    assert extras["step"] == 3 and (extras["arch"], extras["encoder"]) == (spec.arch, spec.encoder)
    again = build_unet(spec)
    again.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"])
    x = torch.zeros(1, 3, 64, 64)
    assert torch.equal(model(x), again.eval()(x))


def test_activations_are_the_two_published_inferences() -> None:
    logits = torch.tensor([[[[2.0]], [[-1.0]]], [[[0.0]], [[3.0]]]])  # (2, 2, 1, 1): (background, foreground)
    assert torch.allclose(foreground_probability(logits, "sigmoid-logit").flatten(), torch.sigmoid(torch.tensor([-1.0, 3.0])))
    assert torch.allclose(foreground_probability(logits, "softmax").flatten(),
                          torch.tensor([1 / (1 + math.exp(3.0)), 1 / (1 + math.exp(-3.0))]))
    with pytest.raises(UserError, match="predict.activation 'relu'"):
        foreground_probability(logits, "relu")


def test_foreign_or_damaged_checkpoint_is_a_user_error(tmp_path: Path) -> None:
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    for name, message in (("other.pt", "is not a saliency U-Net"), ("broken.pt", "is not a readable U-Net checkpoint"),
                          ("absent.pt", "not found")):
        with pytest.raises(UserError, match=message):
            load_unet(tmp_path / name)


def test_inference_resizes_shorter_side_to_128_and_back(checkpoint: Path) -> None:
    """The shorter side goes to 128 by OpenCV's area resampling (the longer side rounded down, as the
    authors do), the input is padded to the U-Net's multiple, and the map comes back bilinearly."""
    image = np.random.default_rng(0).integers(0, 255, (300, 451, 3), dtype=np.uint8)
    model, _ = load_unet(checkpoint)
    net = SaliencyNet(model, Inference())
    for width, expected_width in ((451, 192), (449, 191)):  # 128 · 451 // 300 = 192, 128 · 449 // 300 = 191
        batch = net.prepare(torch.from_numpy(image[:, :width]).permute(2, 0, 1)[None].float() / 255)
        assert batch.shape == (1, 3, 128, 192)  # 191 padded to the smp U-Net's multiple of 32
        area = cv2.resize(image[:, :width].astype(np.float32), (expected_width, 128), interpolation=cv2.INTER_AREA)
        np.testing.assert_allclose(batch[0, :, :, :expected_width].permute(1, 2, 0).numpy(), area / 127.5 - 1, atol=1e-4)
    small = np.random.default_rng(1).integers(0, 255, (20, 30, 3), dtype=np.uint8)  # a small image grows bilinearly
    batch = net.prepare(torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255)
    grown = cv2.resize(small.astype(np.float32), (192, 128), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(batch[0].permute(1, 2, 0).numpy(), grown / 127.5 - 1, atol=1e-4)
    with torch.no_grad():
        logits = model(net.prepare(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255))
    for activation in ("softmax", "sigmoid-logit"):
        probability = predict_image(model, image, inference=Inference(activation=activation))
        assert probability.shape == (300, 451) and probability.dtype == np.float32
        # the model's map at 128 × 192, resized back to the photo's own size
        small_map = foreground_probability(logits, activation)[0].numpy()
        expected = cv2.resize(small_map, (451, 300), interpolation=cv2.INTER_LINEAR)
        assert np.abs(probability - expected).max() < 1e-5


def test_flip_averages_with_the_mirrored_prediction(checkpoint: Path) -> None:
    """``predict.flip``: the mean of the image's prediction and its mirror's, mirrored back, so the
    result is the same for an image and its mirror (up to mirroring) and differs from no flip."""
    image = np.random.default_rng(1).integers(0, 255, (130, 170, 3), dtype=np.uint8)
    model, _ = load_unet(checkpoint)
    plain, mirrored = predict_image(model, image), predict_image(model, image[:, ::-1].copy())
    flipped = predict_image(model, image, inference=Inference(flip=True))
    assert np.abs(plain - mirrored[:, ::-1]).max() > 1e-3  # the random U-Net is not symmetric
    np.testing.assert_allclose(flipped, (plain + mirrored[:, ::-1]) / 2, atol=1e-5)
    np.testing.assert_allclose(predict_image(model, image[:, ::-1].copy(), inference=Inference(flip=True)),
                               flipped[:, ::-1], atol=1e-5)


def test_predict_and_eval_checkpoint_commands(run_cli, checkpoint: Path, ecssd_root: Path, tmp_path: Path) -> None:
    subset = tmp_path / "subset"
    for sub, suffix in (("images", ".jpg"), ("masks", ".png")):
        (subset / sub).mkdir(parents=True)
        for stem in ("0501", "0502"):
            source = ecssd_root / ("ground_truth_mask" if sub == "masks" else "images") / f"{stem}{suffix}"
            shutil.copy(source, subset / sub / f"{stem}{suffix}")
    out = tmp_path / "pred"
    result = run_cli("predict", "--checkpoint", checkpoint, "--images", subset / "images", "--out", out)
    assert result.code == 0, result.err
    assert sorted(p.name for p in out.iterdir()) == ["0501.png", "0502.png", "predictions.json"]
    result = run_cli("eval", "--checkpoint", checkpoint, "--dataset", subset, "--run", tmp_path / "run")
    assert result.code == 0, result.err
    metrics = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())["metrics"]
    from_folder = run_cli("eval", "--predictions", out, "--dataset", subset, "--output", tmp_path / "f.json")
    assert from_folder.code == 0
    # Scoring a checkpoint is scoring the 8-bit PNGs it writes.
    assert json.loads((tmp_path / "f.json").read_text())["metrics"] == pytest.approx(metrics)
    assert sorted(p.name for p in (tmp_path / "run" / "eval" / "predictions").iterdir()) == ["0501.png", "0502.png"]


def test_offset_raises_the_foreground_logit_before_the_activation() -> None:
    logits = torch.randn(2, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    expected = {"softmax": lambda o: torch.sigmoid(logits[:, 1] - logits[:, 0] + o),
                "sigmoid-logit": lambda o: torch.sigmoid(logits[:, 1] + o)}
    for activation, formula in expected.items():
        for offset in (0.0, 0.75, -1.5):
            torch.testing.assert_close(foreground_probability(logits, activation, offset), formula(offset))


def test_inference_settings_come_from_the_checkpoint_unless_given() -> None:
    recorded = Inference.of_checkpoint({"resolution": 64, "activation": "softmax", "offset": 0.5, "flip": True})
    assert recorded == Inference(shorter_side=64, activation="softmax", offset=0.5, flip=True)
    assert recorded.replace(offset=None, flip=False) == Inference(64, "softmax", 0.5, False)
    assert Inference.of_checkpoint({}) == Inference()  # older checkpoints: the papers' inference


def test_predict_refine_writes_what_eval_scores_refined(run_cli, checkpoint: Path, tiny_dataset: Path,
                                                        tmp_path: Path) -> None:
    """``saliency predict --refine`` and ``eval --checkpoint --refine`` refine the same 8-bit maps:
    their PNGs are byte for byte the same, and differ from the unrefined ones."""
    out = tmp_path / "refined"
    result = run_cli("predict", "--checkpoint", checkpoint, "--images", tiny_dataset / "images", "--out", out,
                     "--refine", "bilateral-solver")
    assert result.code == 0, result.err
    result = run_cli("eval", "--checkpoint", checkpoint, "--dataset", tiny_dataset, "--run", tmp_path / "run",
                     "--refine", "bilateral-solver")
    assert result.code == 0, result.err
    stage = tmp_path / "run" / "eval"
    stems = sorted(p.name for p in out.glob("*.png"))
    assert stems == sorted(p.name for p in (stage / "refined").iterdir()) and len(stems) == 3
    assert all((out / name).read_bytes() == (stage / "refined" / name).read_bytes() for name in stems)
    assert any((out / name).read_bytes() != (stage / "predictions" / name).read_bytes() for name in stems)


def test_predict_with_a_config_writes_what_eval_with_that_config_scores(run_cli, checkpoint: Path, tiny_dataset: Path,
                                                                         tmp_path: Path) -> None:
    """Not only at the default settings: `predict --config` takes the config's refinement parameters
    and inference settings, as `eval --config` does, so the same config gives the same maps."""
    config = tmp_path / "c.yaml"
    config.write_text("predict: {refine: bilateral-solver, refine_sigma_spatial: 6, refine_smoothness: 16, flip: true}\n")
    out = tmp_path / "refined"
    result = run_cli("predict", "--checkpoint", checkpoint, "--images", tiny_dataset / "images", "--out", out,
                     "--config", config)
    assert result.code == 0, result.err
    result = run_cli("eval", "--checkpoint", checkpoint, "--dataset", tiny_dataset, "--run", tmp_path / "run",
                     "--config", config)
    assert result.code == 0, result.err
    refined = tmp_path / "run" / "eval" / "refined"
    stems = sorted(p.name for p in out.glob("*.png"))
    assert len(stems) == 3 and all((out / name).read_bytes() == (refined / name).read_bytes() for name in stems)
    default = tmp_path / "default"
    assert run_cli("predict", "--checkpoint", checkpoint, "--images", tiny_dataset / "images", "--out", default,
                   "--refine", "bilateral-solver").code == 0
    assert any((default / name).read_bytes() != (out / name).read_bytes() for name in stems)


def test_predict_never_mixes_maps_made_otherwise(run_cli, checkpoint: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    """A folder of maps records what made them: the same call resumes, another checkpoint or setting
    is refused with one line, and nothing in the folder changes."""
    out, images = tmp_path / "maps", tiny_dataset / "images"
    assert run_cli("predict", "--checkpoint", checkpoint, "--images", images, "--out", out).code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "0001.png").unlink()  # as an interrupted call leaves it
    again = run_cli("predict", "--checkpoint", checkpoint, "--images", images, "--out", out)
    assert again.code == 0 and "wrote 1 probability PNGs" in again.out
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    for options, named in ((["--refine", "bilateral-solver"], "refine"), (["--flip"], "inference"),
                           (["--offset", "0.5"], "inference")):
        refused = run_cli("predict", "--checkpoint", checkpoint, "--images", images, "--out", out, *options)
        assert refused.code == 2 and f"holds maps made with another {named}" in refused.err.strip(), refused.err
        assert len(refused.err.strip().splitlines()) == 1
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "0001.png").write_bytes(before["0001.png"])
    refused = run_cli("predict", "--checkpoint", checkpoint, "--images", images, "--out", foreign)
    assert refused.code == 2 and "did not record making" in refused.err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in foreign.iterdir()) == ["0001.png"]
