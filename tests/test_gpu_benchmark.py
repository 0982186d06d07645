"""The GPU benchmark (benchmarks/gpu.py): its projection arithmetic by hand, and the script run
end to end at --tiny sizes on a CPU, so that it cannot rot between the rare runs on a GPU."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from saliency.config import load_config

REPO = Path(__file__).resolve().parents[1]
FIGURES = {"generator_fp32_images_per_s", "generator_bf16_images_per_s", "discover_steps_per_s",
           "dvn_seconds_per_direction", "effect_check_seconds_per_direction", "synth_pairs_per_s",
           "unet_steps_per_s", "predict_images_per_s"}


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """benchmarks/gpu.py as a module: it imports its sibling benchmarks by name, as a script run from
    benchmarks/ does."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    return importlib.import_module("gpu")


def test_projection_adds_each_stage_at_its_rate(gpu: ModuleType) -> None:
    work = gpu.Workload(discover_steps=1000, directions=10, candidates=4, synth_pairs=500, unet_steps=200,
                        online_pairs=6400, predictions=300)
    rates = {"discover_steps_per_s": 10.0, "dvn_seconds_per_direction": 2.0, "effect_check_seconds_per_direction": 0.5,
             "synth_pairs_per_s": 100.0, "unet_steps_per_s": 4.0, "predict_images_per_s": 30.0}
    projection = gpu.project(work, rates)
    assert projection == pytest.approx({"discover": 100.0, "rank: DVN": 20.0, "rank: effect check": 2.0, "synth": 5.0,
                                        "unet: training": 50.0, "unet: online pairs": 64.0, "predictions": 10.0,
                                        "total": 251.0})
    assert gpu.amounts(work).keys() == projection.keys() - {"total"}


def test_workload_of_the_biggan_pipeline(gpu: ModuleType) -> None:
    config = load_config(REPO / "pipelines" / "biggan-ecssd.yaml")
    assert gpu.eval_images(config) == 500  # ECSSD's test split: 0501-1000
    # K = dim_z = 120, all through the effect check (rank.top null); online U-Net: 15000 × 128 pairs;
    # predictions: 15 MAE checks of 100 images while training, then the 500 of the eval split
    assert gpu.workload(config, dim_z=120, eval_images=500) == gpu.Workload(
        discover_steps=100_000, directions=120, candidates=120, synth_pairs=1000, unet_steps=15_000,
        online_pairs=1_920_000, predictions=2000)


def test_goals_are_met_at_their_bounds(gpu: ModuleType) -> None:
    goals = gpu.check_goals({"discover_steps_per_s": 20.0, "dvn_seconds_per_direction": 6.0,
                             "synth_pairs_per_s": 2000.0, "unet_steps_per_s": 10.0})
    assert [(value, met) for value, _, met in goals.values()] == [
        (pytest.approx(5000 / 3600), True), (12.0, False), (2000.0, True), (25.0, False)]


def test_tiny_run_on_cpu_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--device", "cpu", "--tiny",
                           "--json", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["figures"]) == FIGURES
    assert all(figure["value"] > 0 and figure["peak_gib"] is None for figure in report["figures"].values())
    stages = {stage: seconds for stage, seconds in report["projection"].items() if stage != "total"}
    assert all(seconds > 0 for seconds in stages.values())
    assert report["projection"]["total"] == pytest.approx(sum(stages.values()))
    assert len(report["goals"]) == 4 and "projected wall time" in done.stdout
