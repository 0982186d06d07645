"""`saliency run`: a reduced quickstart on the fast toyworld whose rank stage must find the
background direction from discover's output, and resume after a kill (the full quickstart's scores:
test_quickstart.py; the paper pipelines: test_pipelines.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from saliency import generators
from saliency.config import load_config
from saliency.pipeline import run_pipeline, select_stages
from saliency.ranking.artifacts import load_choice
from saliency.runs import read_manifest

REPO = Path(__file__).resolve().parents[1]
# The quickstart's stages and settings on toyworld (32 factors in 32 dims, found in 1500 steps).
REDUCED_QUICKSTART = {"generator.name": "toyworld", "generator.options": {"dim_z": 32, "resolution": 64},
                      "discover.steps": 1500, "discover.rca_samples": 256, "rank.dvn_samples": 1600,
                      "synth.n": 256, "synth.shard_size": 128, "unet.steps": 6, "unet.batch_size": 8, "unet.eval_every": 3,
                      "unet.eval_images": 4, "unet.checkpoint_every": 2}


@pytest.mark.slow
def test_reduced_quickstart_finds_the_background_direction(data_root: Path, tmp_path: Path) -> None:
    config = load_config(REPO / "pipelines" / "quickstart.yaml", REDUCED_QUICKSTART)
    run_dir = tmp_path / "quick"
    results = run_pipeline(config, run_dir, select_stages())
    toy = generators.load(config.generator.name, **config.generator.options)
    truth = toy.factor_directions[:, toy.factor_names.index("bg_white")]
    choice = load_choice(run_dir / "rank" / "rank.json", toy.dim_z)
    # Discovery learned the direction, rank found it among the 32 with the sign that whitens.
    assert float(choice.vector @ truth) * choice.sign >= 0.9
    assert results["synth"]["acceptance_rate"] > 0.9
    assert 0 < results["synth"]["seconds_to_first_pair"] <= results["synth"]["seconds"]
    assert 0 < results["eval"]["mae"] < 1
    again = run_pipeline(config, run_dir, select_stages())
    assert again == results  # every stage skipped: same metrics, recorded times included


def test_stage_selection() -> None:
    assert select_stages("synth") == ["synth", "unet", "eval"]
    assert select_stages(None, "rank") == ["discover", "rank"]
    from saliency.errors import UserError

    with pytest.raises(UserError, match="unknown stage 'unet2'"):
        select_stages("unet2")
    with pytest.raises(UserError, match="comes after"):
        select_stages("eval", "discover")


@pytest.mark.slow
def test_killed_during_unet_training_resumes(data_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "killed"
    command = [sys.executable, "-m", "saliency", "run", str(REPO / "pipelines" / "quickstart.yaml"),
               "--run", str(run_dir),
               *[f"--set={key}={value}" for key, value in {**REDUCED_QUICKSTART, "discover.steps": 50,
                                                              "rank.dvn_samples": 64, "rank.dvn_steps": 5,
                                                              "unet.steps": 40, "unet.eval_images": 0}.items()]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = run_dir / "unet" / "checkpoints" / "last.pt"
    deadline = time.time() + 400
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.5)
    assert checkpoint.exists(), "U-Net training never wrote a checkpoint"
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = torch.load(checkpoint, weights_only=True)["step"]
    assert 0 < killed_at < 40 and read_manifest(run_dir / "unet")["status"] == "running"
    earlier = {stage: read_manifest(run_dir / stage)["ended"] for stage in ("discover", "rank", "classes", "synth")}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resumed from {checkpoint} at step {killed_at}" in done.stderr
    for stage, ended in earlier.items():  # skipped, not redone
        assert read_manifest(run_dir / stage)["ended"] == ended
        assert f"{stage}: complete with the same config and inputs, skipped" in done.stderr
    assert read_manifest(run_dir / "unet")["metrics"]["steps"] == 40
    assert read_manifest(run_dir / "eval")["status"] == "complete"
