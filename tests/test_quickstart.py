"""The README's first command, whole: the quickstart's detector, trained on the built-in toyscene
generator with no pixel label, must beat both trivial baselines on the 500 real ECSSD test images
and land near the figures the README publishes (docs/quickstart.md).

About 9 minutes on 2 cores with bf16 (14 in fp32), so it is kept out of a plain `pytest` (marker ``quickstart``); CI runs
it on its own with `pytest -m quickstart`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The README's figures (bf16: run.precision auto on a CPU with AVX-512 BF16). The window is wider
# than the spread of U-Net seeds measured end to end on ecssd-val (0.004 MAE, 0.003 max-Fβ, 0.007
# IoU) and holds the fp32 runs of two machines (0.229 / 0.567 / 0.422 / 0.796 and 0.226 / 0.568 /
# 0.401 / 0.801), which a CPU without bf16 makes: another machine's kernels change a training run
# as a seed does.
PUBLISHED = {"mae": 0.221, "max_fbeta": 0.573, "iou": 0.415, "accuracy": 0.802}
WINDOW = {"mae": 0.02, "max_fbeta": 0.04, "iou": 0.05, "accuracy": 0.02}
# What the quickstart must beat, freshly measured. IoU beats the centred Gaussian's 0.391 by 0.031
# on the machine that measured it, but two draws of the random streams moved it by 0.03, so IoU is
# held to the README's window only; the other margins are 0.020-0.025.
BEATEN = {"zeros": ("mae", "accuracy"), "center": ("max_fbeta", "accuracy")}
LOWER_IS_BETTER = {"mae"}


@pytest.mark.slow
@pytest.mark.quickstart
def test_quickstart_beats_both_baselines_on_ecssd(data_root: Path, tmp_path: Path, run_cli) -> None:
    run_dir = tmp_path / "quickstart"
    done = subprocess.run([sys.executable, "-m", "saliency", "run", str(REPO / "pipelines" / "quickstart.yaml"),
                           "--run", str(run_dir)], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    ours = json.loads((run_dir / "eval" / "metrics.json").read_text())["metrics"]
    for baseline, metrics in BEATEN.items():
        result = run_cli("eval", "--baseline", baseline, "--dataset", "ecssd", "--output", tmp_path / f"{baseline}.json")
        assert result.code == 0, result.err
        floor = json.loads((tmp_path / f"{baseline}.json").read_text())["metrics"]
        for metric in metrics:
            better = ours[metric] < floor[metric] if metric in LOWER_IS_BETTER else ours[metric] > floor[metric]
            assert better, f"{metric} {ours[metric]:.4f} does not beat baseline {baseline} ({floor[metric]:.4f})"
    for metric, value in PUBLISHED.items():
        assert ours[metric] == pytest.approx(value, abs=WINDOW[metric]), metric
    report = (run_dir / "report.html").read_text()
    assert "baseline zeros" in report and "baseline center" in report
