"""U-Net training: it learns a plain task, resumes without a seam, stops cleanly on a NaN loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from saliency.errors import UserError
from saliency.segmentation.model import build_unet
from saliency.segmentation.train import UnetSettings, train_unet


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


def fresh_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_unet("resnet18")


def test_learns_squares() -> None:
    history, _ = train_unet(fresh_model(), Squares(), settings(40, checkpoint_every=100), torch.device("cpu"))
    losses = [row[0] for row in history.rows]
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5
    assert history.rows[-1][1] > 0.85  # pixel accuracy


class Interrupt(Exception):
    pass


def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    device = torch.device("cpu")
    uninterrupted, _ = train_unet(fresh_model(), Squares(), settings(8), device, tmp_path / "a.pt", {"k": 1})

    class DiesAtStep6(Squares):
        def __getitem__(self, index):
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls > 5 * 4:  # the 6th batch of 4
                raise Interrupt
            return super().__getitem__(index)

    with pytest.raises(Interrupt):
        train_unet(fresh_model(), DiesAtStep6(), settings(8), device, tmp_path / "b.pt", {"k": 1})
    assert torch.load(tmp_path / "b.pt", weights_only=True)["step"] == 3
    resumed, _ = train_unet(fresh_model(), Squares(), settings(8), device, tmp_path / "b.pt", {"k": 1})
    assert len(resumed.rows) == 8
    assert torch.allclose(torch.tensor(resumed.rows), torch.tensor(uninterrupted.rows), rtol=1e-4, atol=1e-6)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    device = torch.device("cpu")
    train_unet(fresh_model(), Squares(), settings(3), device, tmp_path / "c.pt", {"k": 1})
    good = torch.load(tmp_path / "c.pt", weights_only=True)
    with pytest.raises(UserError, match=r"loss became nan at step 4; the last good checkpoint .* step 3\) is kept"):
        train_unet(fresh_model(), Squares(poison=float("nan")), settings(6), device, tmp_path / "c.pt", {"k": 1})
    kept = torch.load(tmp_path / "c.pt", weights_only=True)
    assert kept["step"] == 3 and all(torch.equal(kept["model"][k], good["model"][k]) for k in good["model"])
