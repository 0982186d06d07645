"""U-Net training: it learns a plain task, resumes without a seam, stops cleanly on a NaN loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from saliency.errors import UserError
from saliency.segmentation.augment import Augmenter
from saliency.segmentation.model import UnetSpec, build_unet
from saliency.segmentation.train import UnetSettings, loader_workers, train_unet


class Squares(Dataset):
    """A bright square on a dark noisy background; the mask is the square. ``fail_at`` raises."""

    def __init__(self, size: int = 64, n: int = 64, poison: float | None = None):
        self.size, self.n, self.poison = size, n, poison

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = torch.Generator().manual_seed(index)
        image = torch.rand(3, self.size, self.size, generator=rng) * 0.4 - 1
        mask = torch.zeros(self.size, self.size, dtype=torch.long)
        top, left = torch.randint(0, self.size // 2, (2,), generator=rng).tolist()
        mask[top: top + self.size // 3, left: left + self.size // 3] = 1
        image[:, mask.bool()] = 0.8
        if self.poison is not None:
            image[0, 0, 0] = self.poison
        return image, mask


def settings(steps: int, **changes) -> UnetSettings:
    base = dict(steps=steps, batch_size=4, lr=0.005, lr_decay=0.2, lr_step=4000, temperature=10.0, seed=0,
                checkpoint_every=3, eval_every=1000)
    return UnetSettings(**{**base, **changes})


SMP_RESNET18 = UnetSpec("smp", "resnet18")


def fresh_model(spec: UnetSpec = SMP_RESNET18) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_unet(spec)


@pytest.mark.parametrize("spec", [UnetSpec("classic"), UnetSpec("smp", "resnet18")], ids=["classic", "smp"])
def test_learns_squares(spec: UnetSpec) -> None:
    history, _ = train_unet(fresh_model(spec), Squares(size=32), settings(40, checkpoint_every=100), torch.device("cpu"))
    losses = [row[0] for row in history.rows]
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5
    assert history.rows[-1][1] > 0.85  # pixel accuracy


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("ema", [None, 0.5], ids=["last-weights", "ema"])
def test_resume_after_a_kill_matches_an_uninterrupted_run(ema: float | None, tmp_path: Path) -> None:
    device = torch.device("cpu")
    whole = fresh_model()
    uninterrupted, _ = train_unet(whole, Squares(), settings(8, ema=ema), device, tmp_path / "a.pt", {"k": 1})

    class DiesAtStep6(Squares):
        def __getitem__(self, index):
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls > 5 * 4:  # the 6th batch of 4
                raise Interrupt
            return super().__getitem__(index)

    with pytest.raises(Interrupt):
        train_unet(fresh_model(), DiesAtStep6(), settings(8, ema=ema), device, tmp_path / "b.pt", {"k": 1})
    assert torch.load(tmp_path / "b.pt", weights_only=True)["step"] == 3
    again = fresh_model()
    resumed, _ = train_unet(again, Squares(), settings(8, ema=ema), device, tmp_path / "b.pt", {"k": 1})
    assert len(resumed.rows) == 8
    assert resumed.rows == uninterrupted.rows  # bit for bit, as docs/architecture.md promises
    for key, value in whole.state_dict().items():  # the saved weights too (the average's, with ema)
        assert torch.equal(again.state_dict()[key], value), key


def test_ema_keeps_the_moving_average_of_the_weights() -> None:
    """``unet.ema: d``: the model ends as a_1 = w_1, a_t = d·a_(t-1) + (1 − d)·w_t over the weights
    w_t after each step (BatchNorm statistics included), here 0.25·w_1 + 0.25·w_2 + 0.5·w_3 for d = 0.5."""
    device = torch.device("cpu")
    states = []
    for steps in (1, 2, 3):
        model = fresh_model()
        train_unet(model, Squares(), settings(steps), device)
        states.append(model.state_dict())
    averaged = fresh_model()
    train_unet(averaged, Squares(), settings(3, ema=0.5), device)
    for key, value in averaged.state_dict().items():
        if value.is_floating_point():
            expected = 0.25 * states[0][key] + 0.25 * states[1][key] + 0.5 * states[2][key]
            assert torch.allclose(value, expected, rtol=1e-4, atol=1e-5), key
    assert not torch.allclose(averaged.state_dict()["segmentation_head.0.weight"], states[2]["segmentation_head.0.weight"])


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    device = torch.device("cpu")
    train_unet(fresh_model(), Squares(), settings(3), device, tmp_path / "c.pt", {"k": 1})
    good = torch.load(tmp_path / "c.pt", weights_only=True)
    with pytest.raises(UserError, match=r"loss became nan at step 4; the last good checkpoint .* step 3\) is kept"):
        train_unet(fresh_model(), Squares(poison=float("nan")), settings(6), device, tmp_path / "c.pt", {"k": 1})
    kept = torch.load(tmp_path / "c.pt", weights_only=True)
    assert kept["step"] == 3 and all(torch.equal(kept["model"][k], good["model"][k]) for k in good["model"])


def test_photo_augmentation_is_seeded_and_keeps_masks_on_their_objects() -> None:
    """Same step seed, same augmentation; the mask follows the image through flips and crops."""
    masks = torch.zeros(16, 32, 32, dtype=torch.long)
    for i in range(16):
        masks[i, 4 + i // 2: 16 + i, 2 + i: 14 + i] = 1
    images = (masks.float() * 1.6 - 0.8).unsqueeze(1).expand(-1, 3, -1, -1)  # object bright, background dark
    augmenter = Augmenter("photo", 32)
    first = augmenter(images, masks, torch.Generator().manual_seed(5))
    again = augmenter(images, masks, torch.Generator().manual_seed(5))
    other = augmenter(images, masks, torch.Generator().manual_seed(6))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])
    out_images, out_masks = first
    assert out_images.shape == images.shape and out_masks.shape == masks.shape and out_masks.dtype == torch.long
    assert not torch.equal(out_images, images) and out_images.min() >= -1 and out_images.max() <= 1
    brightness = out_images.mean(1)
    for image, mask in zip(brightness, out_masks.bool()):
        assert image[mask].mean() > image[~mask].mean() + 0.5
    unchanged = Augmenter("none", 32)(images, masks, torch.Generator())
    assert unchanged[0] is images and unchanged[1] is masks
    with pytest.raises(UserError, match="unet.augment = 'heavy'"):
        Augmenter("heavy", 32)


def test_channels_last_and_a_compiled_forward_train_as_the_default_does() -> None:
    """The GPU switches, on CPU: NHWC layout and torch.compile (the aot_eager backend traces the
    same graph inductor would compile, without generating code) give the same losses."""
    spec = UnetSpec("classic", width=8)
    plain, _ = train_unet(fresh_model(spec), Squares(32), settings(3, checkpoint_every=100), torch.device("cpu"))
    switched, _ = train_unet(fresh_model(spec), Squares(32),
                             settings(3, checkpoint_every=100, channels_last=True, compile="aot_eager"),
                             torch.device("cpu"))
    assert [row[0] for row in switched.rows] == pytest.approx([row[0] for row in plain.rows], rel=1e-4)


@pytest.mark.parametrize("requested, online, device, expected", [
    (3, False, "cuda", 3), (3, True, "cpu", 3),  # as given
    (None, False, "cpu", 0), (None, True, "cuda", 0),  # CPU training, or a generator on the GPU: main process
])
def test_loader_workers(requested: int | None, online: bool, device: str, expected: int) -> None:
    assert loader_workers(requested, online, torch.device(device)) == expected


def test_auto_workers_feed_a_gpu_from_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert loader_workers(None, False, torch.device("cuda")) == 8
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert loader_workers(None, False, torch.device("cuda")) == 1
