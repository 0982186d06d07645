"""Acceptance on toyworld (default size: 32-dim, 64 px): discovery finds the background-whiteness direction.

The quickstart's settings (docs/method.md §1): K = d = 32, ``ortho``, lenet reconstructor, batch 32, Adam
lr 1e-3. The full check (``slow``) compares each method's RCA after RCA_STEPS with that of fixed
random directions trained as long, and its best |cos| after DIRECTION_STEPS; the fast one checks
the first 400 steps of voynov's run, which the full check resumes (a resumed run is the
uninterrupted one, bit for bit).

Budgets, from run seeds 0 and 1 (best |cos| / RCA; fixed random directions reach RCA 0.289 and
0.143 at 750 steps):

    steps   voynov                         lu
    750     0.957 / 0.518, 0.928 / 0.468   0.970 / 0.531, 0.988 / 0.555
    1000    0.988 / 0.520, 0.980 / 0.602   0.986 / 0.644, 0.993 / 0.628
    1500    0.994 / 0.686, 0.986 / 0.638   0.994 / 0.792, 0.995 / 0.713

RCA is checked at 750 steps for both. voynov's |cos| at 750 clears the bar of 0.9 by only 0.028
for seed 1, so it is checked at 1000, where both seeds clear it by 0.08 (lu's clear it by 0.07
at 750; lu costs half as much again per step).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from saliency import generators
from saliency.config import load_config
from saliency.discovery.artifacts import load_directions
from saliency.discovery.train import run_discover

RCA_STEPS = 750
DIRECTION_STEPS = {"voynov": 1000, "lu": 750}
RCA_MARGIN = 0.1  # trained directions must beat fixed random ones by this much


def _discover(run_dir: Path, method: str, steps: int) -> tuple[dict, float]:
    """Run the stage on the default toyworld; its metrics and the best |cos| with background whiteness."""
    config = load_config(None, {"generator.name": "toyworld", "discover.method": method,
                                "discover.init": "identity", "discover.reconstructor": "lenet", "discover.lr": 1e-3,
                                "discover.steps": steps,
                                "discover.batch_size": 32, "discover.checkpoint_every": 500,
                                "discover.rca_samples": 1024})
    started = time.perf_counter()
    metrics = run_discover(config, run_dir, "cpu")
    toy = generators.load("toyworld")
    found = load_directions(run_dir / "discover" / "directions.pt", dim_z=toy.dim_z, generator="toyworld")
    truth = toy.factor_directions[:, toy.factor_names.index("bg_white")]
    best = (found.directions.T @ truth).abs().max().item()
    print(f"\n{method}: {steps} steps in {time.perf_counter() - started:.0f} s, best |cos| {best:.3f}, "
          f"RCA {metrics['rca']}")
    return metrics, best


@pytest.fixture(scope="module")
def voynov_start(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """voynov's first 400 steps: the fast test measures them, the full check resumes from them."""
    folder = tmp_path_factory.mktemp("voynov")
    _discover(folder, "voynov", 400)
    return folder


def test_voynov_turns_a_direction_toward_background_whiteness(tmp_path: Path, voynov_start: Path) -> None:
    """400 steps (about 30 s) from the identity start: the best column moves up from 0.574 (the
    coordinate axes). Over seeds 0-4 it reached 0.809, 0.850, 0.664, 0.743 and 0.656 (a seed's
    trajectory, like another machine's float kernels, changes how fast), so the bar is the slowest
    seed's gain, 0.08, less a margin of 0.03."""
    _, start = _discover(tmp_path / "axes", "coordinate", steps=0)
    metrics, after = _discover(voynov_start, "voynov", steps=400)  # complete: read back
    assert after >= start + 0.05
    assert metrics["rca"] > 2 / 32, "well above chance (1/K) already"


@pytest.fixture(scope="module")
def random_rca(tmp_path_factory: pytest.TempPathFactory) -> float:
    """RCA of fixed random orthonormal directions after RCA_STEPS, the reconstructor trained the same way."""
    metrics, _ = _discover(tmp_path_factory.mktemp("random"), "random", RCA_STEPS)
    return metrics["rca"]


@pytest.mark.slow(minutes=3)
@pytest.mark.parametrize("method", ["voynov", "lu"])
def test_discovery_finds_background_whiteness(tmp_path: Path, method: str, random_rca: float,
                                              voynov_start: Path) -> None:
    run_dir = tmp_path / "run"
    if method == "voynov":
        shutil.copytree(voynov_start, run_dir)  # resumed from its 400th step
    metrics, best = _discover(run_dir, method, RCA_STEPS)
    assert metrics["rca"] >= random_rca + RCA_MARGIN
    if DIRECTION_STEPS[method] > RCA_STEPS:
        _, best = _discover(run_dir, method, DIRECTION_STEPS[method])
    assert best >= 0.9
