"""Nothing stale: after a change of a stage's seed or of anything it reads, every stage of the run
holds what a fresh run with the new settings holds, byte for byte, through `saliency run` as a user
meets it. A stage folder made from other settings is never resumed from (its training checkpoint
included) and leaves no output behind that the new settings do not make."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from saliency.runs import MANIFEST
from tests.test_soak import LONG_STAGES, _command, ecssd_slice, stage_artifacts

# Every seeded stage's own seed changes, so every stage also reads changed inputs (classes, which has
# neither seed nor inputs with `select: all`, stays complete); refinement is dropped, so eval must
# not keep the refined maps of the first run.
FIRST = {"predict__refine": "bilateral-solver"}
CHANGED = {"discover__seed": 7, "rank__seed": 3, "synth__seed": 3, "unet__seed": 3, "selftrain__seed": 3,
           "predict__refine": "none"}


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow(minutes=1.2)
def test_a_changed_seed_or_input_gives_every_stage_the_artifacts_of_a_fresh_run(ecssd_root: Path,
                                                                                   tmp_path: Path) -> None:
    dataset = ecssd_slice(ecssd_root, tmp_path / "ecssd-24")
    changed, fresh = tmp_path / "changed", tmp_path / "fresh"
    _run(_command(changed, dataset, "eval", **FIRST))
    assert (changed / "eval" / "refined").is_dir()
    # As a kill -9 during training leaves it: a training checkpoint, and a manifest still running.
    unet_manifest = changed / "unet" / MANIFEST
    unet_manifest.write_text(unet_manifest.read_text().replace('"status": "complete"', '"status": "running"'))
    assert (changed / "unet" / "checkpoints" / "last.pt").is_file()

    rerun = _run(_command(changed, dataset, "eval", **CHANGED))
    _run(_command(fresh, dataset, "eval", **CHANGED))

    for stage in LONG_STAGES:
        assert stage_artifacts(changed, stage) == stage_artifacts(fresh, stage), stage
        assert json.loads((changed / stage / MANIFEST).read_text())["status"] == "complete"
    assert not (changed / "eval" / "refined").exists()
    assert "resumed from" not in rerun.stderr
    assert "was made from another config, seed or inputs; starting over" in rerun.stderr
    assert not any(p.name.endswith(".replaced") for p in changed.iterdir())
