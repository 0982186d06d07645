"""Discovery under torch.distributed: two CPU processes (gloo), as torchrun would start them."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import torch

from saliency import distributed
from saliency.config import load_config
from saliency.discovery import train as train_module
from saliency.discovery.train import run_discover
from saliency.generators.toyworld import ToyWorld

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_distributed import fork_ranks, torchrun_environment  # noqa: E402

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _discover_child(rank: int, world_size: int, port: int, out: str) -> None:
    torchrun_environment(rank, world_size, port)
    out_dir, run_dir = Path(out), Path(out) / "run"
    written: list[str] = []

    def audit(event: str, args: tuple) -> None:
        """Record every file this process opens for writing or renames into the run folder."""
        if event == "open" and isinstance(args[0], (str, os.PathLike)) and (args[2] or 0) & _WRITE_FLAGS:
            target = args[0]
        elif event in ("os.rename", "os.replace"):
            target = args[1]
        else:
            return
        if str(run_dir) in os.fsdecode(target):
            written.append(os.path.relpath(os.fsdecode(target), run_dir))

    sys.addaudithook(audit)
    drawn: list[list[float]] = []
    original_sample_z = ToyWorld.sample_z

    def recording_sample_z(self, n, seed=None, truncation=None):
        z = original_sample_z(self, n, seed, truncation)
        drawn.append(z[0].tolist())
        return z

    ToyWorld.sample_z = recording_sample_z
    trained = train_module.train

    def train_and_keep_state(generator, deformator, reconstructor, *args, **kwargs):
        history = trained(generator, deformator, reconstructor, *args, **kwargs)
        torch.save({"deformator": deformator.state_dict(), "reconstructor": reconstructor.state_dict()},
                   out_dir / f"state{rank}.pt")
        return history

    train_module.train = train_and_keep_state
    config = load_config(None, {"generator.name": "toyworld", "generator.options": {"dim_z": 16, "resolution": 16},
                                "discover.reconstructor": "lenet", "discover.steps": 4, "discover.batch_size": 4,
                                "discover.lr": 1e-3, "discover.checkpoint_every": 2, "discover.rca_samples": 16})
    metrics = run_discover(config, run_dir, "cpu")
    distributed.shutdown()
    (out_dir / f"rank{rank}.json").write_text(json.dumps({"written": written, "metrics": metrics,
                                                          "first_z": drawn[0]}))


def test_two_ranks_train_one_model_and_only_rank_0_writes(tmp_path: Path) -> None:
    fork_ranks(_discover_child, 2, str(tmp_path))
    first, second = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    states = [torch.load(tmp_path / f"state{r}.pt", weights_only=True) for r in range(2)]
    for part in ("deformator", "reconstructor"):
        for name, tensor in states[0][part].items():
            assert torch.equal(tensor, states[1][part][name]), f"{part}.{name} differs between ranks"
    assert first["first_z"] != second["first_z"], "each rank draws its own latents"
    for metrics in (first["metrics"], second["metrics"]):
        metrics.pop("seconds")  # each rank times itself
    assert first["metrics"] == second["metrics"], "metrics (RCA, losses) are reduced over ranks"
    assert second["written"] == [], "only rank 0 writes"
    stage = tmp_path / "run" / "discover"
    for name in ("manifest.json", "directions.pt", "reconstructor.pt", "losses.csv", "checkpoints/last.pt"):
        assert f"discover/{name}" in first["written"] and (stage / name).is_file()
    with open(stage / "losses.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 4
