"""Every stage, and `saliency run`, launched as the README says: `torchrun --nproc-per-node 2`
(gloo on CPU, tiny budgets), through the installed command. Each completes with one manifest per
stage; the stages whose work is one process run on rank 0 while rank 1 waits for it, and no rank
is refused the run folder's lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from saliency.runs import MANIFEST
from tests.test_soak import REPO, SETTINGS, ecssd_slice

STAGE_COMMANDS = (("discover", "discover"), ("rank", "rank"), ("classes", "classes"), ("synth-dataset", "synth"),
                  ("train-unet", "unet"), ("self-train", "selftrain"), ("eval", "eval"))


def torchrun(*arguments: object) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc-per-node 2 --no-python -- saliency ARGUMENTS``, one thread a process."""
    bin_dir = Path(sys.executable).parent
    command = [str(bin_dir / "torchrun"), "--standalone", "--nproc-per-node", "2", "--no-python", "--",
               str(bin_dir / "saliency"), *map(str, arguments)]
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=600)
    # A failing rank's own line ("error: ..." or the exception) comes before the launcher's long report.
    causes = [line for line in done.stderr.splitlines() if line.startswith(("error:", "[rank")) and "Error" in line
              or line.startswith("error:")]
    assert done.returncode == 0, f"{arguments[0]}: {causes[:5]} ... {done.stderr[-2000:]}"
    assert "is in use by" not in done.stderr
    return done


def complete_stages(run_dir: Path) -> list[str]:
    return sorted(path.parent.name for path in run_dir.glob(f"*/{MANIFEST}")
                  if json.loads(path.read_text())["status"] == "complete")


@pytest.mark.slow(minutes=2.5)
def test_every_stage_and_run_under_torchrun_with_two_processes(ecssd_root: Path, tmp_path: Path) -> None:
    dataset = ecssd_slice(ecssd_root, tmp_path / "ecssd-24")
    settings = [f"--set={key}={value}" for key, value in
                {**SETTINGS, "eval.dataset": dataset, "selftrain.images": dataset.parent / "photos"}.items()]
    config = REPO / "pipelines" / "quickstart.yaml"
    staged = tmp_path / "staged"
    for command, stage in STAGE_COMMANDS:
        extra = ["--checkpoint", staged / "unet" / "model.pt"] if command == "eval" else []
        done = torchrun(command, "--run", staged, "--config", config, *settings, *extra)
        assert stage in complete_stages(staged), f"{command}: {done.stderr[-2000:]}"
    assert complete_stages(staged) == sorted(stage for _, stage in STAGE_COMMANDS)

    whole = tmp_path / "whole"
    done = torchrun("run", config, "--run", whole, *settings)
    assert complete_stages(whole) == sorted(stage for _, stage in STAGE_COMMANDS)
    assert done.stdout.count("[eval]") == 1 and (whole / "report.html").is_file()  # rank 0 alone reports
