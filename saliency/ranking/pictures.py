"""Pictures of a ranking, so a person can check the automatic choice by eye (as the paper chose).

``dvn.png``: DVN of every direction, best first, the chosen one marked. ``candidates/*.png``: for
one direction and sign, a row of samples G(z), then for each magnitude a row of shifted samples and
a row of their masks by the run's mask rule (white = object, grey = a sample the filters reject).
"""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure

from saliency.generators.base import Generator
from saliency.images import tile, write_grid
from saliency.masks import MaskRule, synthesize_batch
from saliency.runs import atomic_path

SHEET_SAMPLES = 8


def save_dvn_chart(dvn: torch.Tensor, chosen: int, path: Path) -> Path:
    """Bar chart of DVN per direction, sorted, with the mean and DVN 0.5 (no effect) marked."""
    order = torch.argsort(dvn, descending=True, stable=True)
    values = dvn[order]
    figure = Figure(figsize=(max(6.0, 0.12 * len(dvn) + 2), 4))
    axis = figure.subplots()
    colours = ["tab:red" if int(k) == chosen else "tab:blue" for k in order]
    axis.bar(range(len(values)), values.tolist(), color=colours, width=0.85)
    axis.axhline(float(dvn.mean()), color="black", linewidth=1, label=f"mean {float(dvn.mean()):.3f}")
    axis.axhline(0.5, color="grey", linewidth=1, linestyle="--", label="0.5 = no visible effect")
    if len(order) <= 40:
        axis.set_xticks(range(len(order)), [str(int(k)) for k in order], fontsize=7)
    axis.set(xlabel="direction (sorted by DVN; red = chosen)", ylabel="DVN", ylim=(0.4, 1.0), title="DVN per direction")
    axis.legend(loc="lower left")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return Path(path)


@torch.no_grad()
def save_candidate_sheet(generator: Generator, direction: torch.Tensor, sign: int, magnitudes: list[float],
                         z: torch.Tensor, classes: torch.Tensor, rule: MaskRule, path: Path) -> Path:
    """Samples, then shifted samples and masks for each magnitude, as rows of one PNG."""
    device = generator.device
    z, classes = z[:SHEET_SAMPLES].to(device), classes[:SHEET_SAMPLES].to(device)
    images = generator(z, classes).float()
    rows = [images]
    for magnitude in magnitudes:
        batch = synthesize_batch(generator, z, classes, direction, sign * magnitude, rule, images)
        # Rejected samples' masks are drawn at half strength: what the filters would drop.
        shown = batch.masks.float() * torch.where(batch.keep, 1.0, 0.5).view(-1, 1, 1)
        rows += [batch.shifted, shown.unsqueeze(1).expand(-1, 3, -1, -1) * 2 - 1]
    return write_grid(path, tile(torch.cat(rows).cpu().add(1).div(2).clamp(0, 1), len(z), pad_value=0.5))
