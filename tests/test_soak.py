"""kill -9 soak: every long stage, killed at two seeded random points and resumed, ends with the
same artifacts, byte for byte, as a run that was never interrupted."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from saliency.runs import LOCK, LOG, MANIFEST, sha256_file

REPO = Path(__file__).resolve().parents[1]
LONG_STAGES = ("discover", "rank", "synth", "unet", "selftrain", "eval")
KILLS_PER_STAGE = 2
# The quickstart's stages on a small toyworld (discovery by the paper's method, the one with two learners),
# with checkpoints often enough for kills to land between them, and each stage long enough (synth: about a
# second) that the manifest poll's 0.05 s and the machine's jitter cannot let a resumed attempt finish before
# its kill; self-training on 12 real photographs, two rounds, a quarter of each batch synthetic.
SETTINGS = {"generator.name": "toyworld", "generator.options": json.dumps({"dim_z": 16, "resolution": 32}),
            "discover.method": "voynov", "discover.init": "identity", "discover.reconstructor": "lenet",
            "discover.lr": 0.001, "discover.steps": 60, "discover.checkpoint_every": 10, "discover.rca_samples": 64,
            "rank.dvn_samples": 64, "rank.dvn_steps": 20, "synth.n": 384, "synth.shard_size": 32,
            "unet.source": "shards", "unet.steps": 24, "unet.batch_size": 8, "unet.checkpoint_every": 4,
            "unet.eval_images": 0, "eval.split": "all",
            "selftrain.rounds": 2, "selftrain.steps": 12, "selftrain.batch_size": 8, "selftrain.synthetic": 0.25,
            "selftrain.min_stability": 0, "selftrain.min_area": 0, "selftrain.max_area": 1}
NOT_ARTIFACTS = {MANIFEST, LOG}  # times and log lines differ between any two runs
TEXT_SUFFIXES = (".json", ".jsonl", ".csv", ".yaml", ".txt")


def _command(run_dir: Path, dataset: Path, until: str, **changes: object) -> list[str]:
    """`saliency run` of the small quickstart into ``run_dir`` up to ``until``, with ``changes``
    ("section.key" written section__key) to its settings."""
    settings = {**SETTINGS, "eval.dataset": str(dataset), "selftrain.images": str(dataset.parent / "photos"),
                "selftrain.monitor": str(dataset), **{k.replace("__", "."): v for k, v in changes.items()}}
    return [sys.executable, "-m", "saliency", "run", str(REPO / "pipelines" / "quickstart.yaml"), "--run", str(run_dir),
            "--until", until, *[f"--set={key}={value}" for key, value in settings.items()]]


def ecssd_slice(ecssd_root: Path, dataset: Path, n: int = 24, photos: int = 12) -> Path:
    """The first ``n`` real ECSSD pairs as a folder dataset (eval's images in these small runs), and
    the next ``photos`` images, without masks, in ``photos/`` beside it (self-training's)."""
    for source, folder in (("images", "images"), ("ground_truth_mask", "masks")):
        (dataset / folder).mkdir(parents=True)
        for path in sorted((ecssd_root / source).iterdir())[:n]:
            shutil.copy(path, dataset / folder / path.name)
    (dataset.parent / "photos").mkdir()
    for path in sorted((ecssd_root / "images").iterdir())[n: n + photos]:
        shutil.copy(path, dataset.parent / "photos" / path.name)
    return dataset


def stage_artifacts(run_dir: Path, stage: str) -> dict[str, object]:
    """Every result file of ``stage``: its SHA-256, with the run folder's own path masked in text
    files (eval records which model.pt it scored); a training checkpoint's loaded contents (after a
    resume torch.save may lay out the same tensors in another order inside its zip)."""
    found: dict[str, object] = {}
    for path in sorted((run_dir / stage).rglob("*")):
        if path.is_file() and path.name not in NOT_ARTIFACTS:
            name = path.relative_to(run_dir / stage).as_posix()
            if name.startswith("checkpoints/"):
                found[name] = _contents(path)
            elif path.suffix in TEXT_SUFFIXES:
                found[name] = hashlib.sha256(path.read_text().replace(str(run_dir), "RUN").encode()).hexdigest()
            else:
                found[name] = sha256_file(path)
    return found


def _contents(path: Path) -> object:
    """A checkpoint as nested plain values, tensors as (dtype, shape, bytes), comparable with ==."""
    def plain(value: object) -> object:
        if isinstance(value, torch.Tensor):
            return str(value.dtype), tuple(value.shape), value.contiguous().numpy().tobytes()
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        return value

    return plain(torch.load(path, map_location="cpu", weights_only=True))


def _stage_seconds(run_dir: Path, stage: str) -> float:
    return float(json.loads((run_dir / stage / MANIFEST).read_text())["metrics"]["seconds"])


def _kill_during(command: list[str], stage_dir: Path, delay: float, env: dict[str, str]) -> None:
    """Start ``command``; once ``stage_dir`` is running, wait ``delay`` seconds and kill -9."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while process.poll() is None and time.time() < deadline:
        manifest = stage_dir / MANIFEST
        if manifest.is_file() and '"status": "running"' in manifest.read_text():
            break
        time.sleep(0.05)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.mark.slow(minutes=2.4)
def test_kill_9_at_random_points_then_resume_gives_the_same_artifacts(ecssd_root: Path, tmp_path: Path) -> None:
    dataset = ecssd_slice(ecssd_root, tmp_path / "ecssd-24")  # eval's images: a slice of the real data
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "reference"
    done = subprocess.run(_command(reference, dataset, "eval"), env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    rng = random.Random(0)
    for index, stage in enumerate(LONG_STAGES):
        run_dir = tmp_path / f"killed-{stage}"
        run_dir.mkdir()
        for earlier in LONG_STAGES[:index] + (("classes",) if stage in ("synth", "unet", "selftrain", "eval") else ()):
            shutil.copytree(reference / earlier, run_dir / earlier)  # complete: skipped, not redone
        seconds = _stage_seconds(reference, stage)
        # Points of the stage's timeline; each attempt resumes where the last was killed. In its first
        # half: the reference may have run beside the other test worker's heaviest test, and an attempt
        # alone runs up to twice as fast (a kill at 0.71 of the reference's 4.2 s once found discover done).
        points = sorted(rng.uniform(0.05, 0.45) * seconds for _ in range(KILLS_PER_STAGE))
        kills = [round(b - a, 2) for a, b in zip([0.0, *points], points)]
        for delay in kills:
            _kill_during(_command(run_dir, dataset, stage), run_dir / stage, delay, env)
            status = json.loads((run_dir / stage / MANIFEST).read_text())["status"]
            assert status == "running", f"{stage}: a kill {delay} s into an attempt found it {status} ({seconds} s in all)"
        resumed = subprocess.run(_command(run_dir, dataset, stage), env=env, capture_output=True, text=True, timeout=900)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert stage_artifacts(run_dir, stage) == stage_artifacts(reference, stage), f"{stage}: killed at {kills} s"
        assert not list((run_dir / stage).rglob("*.tmp")) and (run_dir / LOCK).is_file()
