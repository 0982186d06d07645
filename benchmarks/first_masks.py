"""Time to the first masks: from the start of a run to its first accepted synthetic pair.

    python benchmarks/first_masks.py [--config pipelines/quickstart.yaml] [--methods voynov optimize]
                                     [--threads N]

For each discovery method, runs the config's stages up to synthesis (``saliency run --until synth``)
in a fresh run folder and prints each leg (discover, rank, classes, synthesis up to its first pair;
``saliency.report.time_to_first_masks``) and the wall time of the whole call, which adds the
loading of each stage's generator and the report. ``voynov`` runs with the settings the quickstart
used before it moved to ``optimize`` (2500 steps from the identity start, a LeNet reconstructor,
lr 1e-3).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from saliency.config import load_config
from saliency.pipeline import run_pipeline, select_stages
from saliency.report import time_to_first_masks

QUICKSTART = Path(__file__).resolve().parents[1] / "pipelines" / "quickstart.yaml"
# The paper's route at the quickstart's toy-world calibration (pipelines/quickstart.yaml before issue 27).
METHOD_SETTINGS = {"voynov": {"discover.deformator": "ortho", "discover.init": "identity",
                              "discover.reconstructor": "lenet", "discover.lr": 0.001, "discover.steps": 2500,
                              "discover.checkpoint_every": 250, "discover.rca_samples": 1024}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=QUICKSTART)
    parser.add_argument("--methods", nargs="+", default=["voynov", "optimize"])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{args.config}, {torch.get_num_threads()} threads")
    print(f"{'method':<10} {'discover':>9} {'rank':>7} {'classes':>8} {'1st pair':>9} {'first masks':>12} {'wall':>7}")
    for method in args.methods:
        config = load_config(args.config, {"discover.method": method, **METHOD_SETTINGS.get(method, {})})
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            metrics = run_pipeline(config, Path(folder) / "run", select_stages(last="synth"))
            wall = time.perf_counter() - started
        legs = [metrics[stage]["seconds"] for stage in ("discover", "rank", "classes")]
        first = metrics["synth"]["seconds_to_first_pair"]
        print(f"{method:<10} {legs[0]:>8.1f}s {legs[1]:>6.1f}s {legs[2]:>7.1f}s {first:>8.1f}s "
              f"{time_to_first_masks(metrics):>11.1f}s {wall:>6.1f}s", flush=True)


if __name__ == "__main__":
    main()
