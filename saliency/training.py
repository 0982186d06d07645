"""What every training stage shares: per-step random streams, loss history, checkpoints, curves.

A resumed run must draw exactly what the uninterrupted run would have drawn, so randomness of
step s on rank r comes from its own seed (seed, stream, r, s), and a checkpoint holds the models,
the optimizers, the step and the whole per-step history. A checkpoint carries a fingerprint of the
settings that shape training; one with another fingerprint is not resumed from.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from saliency import distributed
from saliency.progress import progress
from saliency.runs import atomic_path, atomic_torch_save, atomic_write_text, load_torch_file
from saliency.seeding import seeded_rng

log = logging.getLogger("saliency")

RUNNING_WINDOW = 100  # steps in running means (progress bars, curves)
CHECKPOINT = Path("checkpoints") / "last.pt"  # in a training stage's folder: where an interrupted run resumes


def step_rng(seed: int, stream: int, rank: int, step: int) -> torch.Generator:
    """The random generator of one step of one rank (see :mod:`saliency.seeding`)."""
    return seeded_rng(seed, stream, rank, step)


@dataclass
class History:
    """One row per step (loss terms, accuracies...), averaged over ranks."""

    columns: tuple[str, ...]
    rows: list[list[float]]

    def running(self, name: str, window: int = RUNNING_WINDOW) -> float:
        """Mean of column ``name`` over the last ``window`` rows (nan when empty)."""
        tail = [row[self.columns.index(name)] for row in self.rows[-window:] if not math.isnan(row[self.columns.index(name)])]
        return sum(tail) / len(tail) if tail else math.nan

    def as_tensor(self) -> torch.Tensor:
        return torch.tensor(self.rows, dtype=torch.float32).reshape(len(self.rows), len(self.columns))

    def write_csv(self, path: Path) -> Path:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["step", *self.columns])
        for step, row in enumerate(self.rows, start=1):
            writer.writerow([step, *(f"{value:.6g}" for value in row)])
        return atomic_write_text(path, buffer.getvalue())


class ProgressLog:
    """Per-step values, averaged over ranks every ``every`` steps into the history and onto a
    progress bar (rank 0's) that shows the running means of the ``shown`` columns."""

    def __init__(self, history: History, total: int, desc: str, every: int, shown: dict[str, str]):
        self.history, self.every, self.shown = history, every, shown
        self.pending: list[torch.Tensor] = []
        self.bar = progress(total=total, initial=len(history.rows), desc=desc, disable=not distributed.is_writer())

    def record(self, done: int, values: list[torch.Tensor], flush: bool = False) -> None:
        """The values of step ``done`` (1-based), one per history column; ``flush`` forces the update."""
        self.pending.append(torch.stack([torch.as_tensor(v, device=values[0].device) for v in values])
                            .detach().float())
        if flush or done % self.every == 0:
            self.history.rows.extend(distributed.mean_across_ranks(torch.stack(self.pending)).cpu().tolist())
            self.pending.clear()
            self.bar.update(done - self.bar.n)
            self.bar.set_postfix({label: f"{self.history.running(column):.4f}" for label, column in self.shown.items()})

    def close(self) -> None:
        self.bar.close()


def save_checkpoint(path: Path, fingerprint: dict[str, Any] | None, history: History, **state: Any) -> Path:
    """Models, optimizers (state dicts in ``state``), the step and the history, atomically."""
    return atomic_torch_save({"step": len(history.rows), "fingerprint": fingerprint,
                              "columns": list(history.columns), "history": history.as_tensor(), **state}, path)


def load_checkpoint(path: Path, fingerprint: dict[str, Any] | None, steps: int, stage: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` when it belongs to this run (same fingerprint, not past ``steps``)."""
    if not path.is_file():
        return None
    state = load_torch_file(path, "checkpoint", "rerun with --force to start over")
    if state.get("fingerprint") != fingerprint:
        log.info("%s: %s is from different settings; starting over", stage, path)
        return None
    if state["step"] > steps:
        log.info("%s: %s is at step %d, past the %d asked for; starting over", stage, path, state["step"], steps)
        return None
    return state


def save_curves(history: History, path: Path, panels: dict[str, tuple[str, ...]],
                extra: dict[str, tuple[list[int], list[float]]] | None = None) -> Path:
    """One subplot per panel (title -> columns), each column a running mean over the last steps;
    ``extra`` adds sparse series (label -> (steps, values)) to the last panel (e.g. periodic MAE)."""
    values = history.as_tensor().double()
    window = max(1, min(RUNNING_WINDOW, len(values)))
    sums = torch.cat([torch.zeros(1, len(history.columns), dtype=values.dtype), values.nan_to_num().cumsum(0)])
    smooth = (sums[window:] - sums[:-window]) / window
    steps = torch.arange(window, len(values) + 1)
    figure = Figure(figsize=(5 * len(panels), 4))
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axis, (title, columns) in zip(axes, panels.items()):
        for name in columns:
            axis.plot(steps, smooth[:, history.columns.index(name)], label=name)
        axis.set(xlabel="step", title=title)
    for label, (xs, ys) in (extra or {}).items():
        axes[-1].plot(xs, ys, marker="o", label=label)
    for axis in axes:
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return Path(path)
