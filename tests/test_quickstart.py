"""The README's first command, whole: the quickstart's detector, trained on the built-in toyscene
generator with no pixel label, must beat both trivial baselines on the 500 real ECSSD test images
and land near the figures the README publishes (docs/quickstart.md).

About 6 minutes on 2 cores with bf16, so it is kept out of a plain `pytest` (marker ``quickstart``); CI
runs it on its own with `pytest -m quickstart`. It links ECSSD's unlabeled train images too, so the
run self-trains as the README's first command does where they are linked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The README's figures (bf16: run.precision auto on a CPU with AVX-512 BF16; the maps refined by the
# bilateral solver, predict.refine). The window is the one the quickstart has held to since issue 26:
# wider than the spread of U-Net seeds measured end to end on ecssd-val (0.004 MAE, 0.003 max-Fβ,
# 0.007 IoU) and than two machines' fp32 runs of one commit, which differed as seeds do.
PUBLISHED = {"mae": 0.239, "max_fbeta": 0.565, "iou": 0.409, "accuracy": 0.818}
WINDOW = {"mae": 0.02, "max_fbeta": 0.04, "iou": 0.05, "accuracy": 0.02}
# What the quickstart must beat, freshly measured. Its MAE beats the empty mask's 0.2485 by only
# 0.005 and its IoU the centred Gaussian's 0.391 by 0.024 on the machine that measured it, within what
# a seed or another machine's kernels move (run seeds on ecssd-val: 0.013 MAE apart), so those two are
# held to the README's window only; accuracy beats both by 0.04 or more, max-Fβ the Gaussian by 0.025.
BEATEN = {"zeros": ("accuracy",), "center": ("max_fbeta", "accuracy")}
LOWER_IS_BETTER = {"mae"}


@pytest.mark.slow
@pytest.mark.quickstart
def test_quickstart_beats_both_baselines_on_ecssd(data_root: Path, unlabeled_root: Path, tmp_path: Path,
                                                   run_cli) -> None:
    os.symlink(unlabeled_root.resolve(), data_root / "ecssd-unlabeled")  # what self-training learns from
    run_dir = tmp_path / "quickstart"
    done = subprocess.run([sys.executable, "-m", "saliency", "run", str(REPO / "pipelines" / "quickstart.yaml"),
                           "--run", str(run_dir)], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    # Written to a file, as under nohup or CI: plain progress lines, never a tqdm "\r" frame.
    logs = {"stdout": done.stdout, "stderr": done.stderr,
            **{str(path.relative_to(run_dir)): path.read_text() for path in run_dir.glob("*/log.txt")}}
    assert len(logs) > 7 and not [name for name, text in logs.items() if "\r" in text]  # both streams, every stage
    assert re.search(r"\w+: \d+/\d+ it \(\d+%\), ", done.stderr), "no periodic progress line in the output"
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
