"""Stage 4 on the toy world, whose true masks are known: the masks match them, the area filter is
exact, and the dataset on disk is the same bytes after a kill and resume, with a flipped
direction and sign, and when two torchrun processes write it."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from saliency import generators
from saliency.classes import ChosenClasses, save_classes
from saliency.config import load_config
from saliency.discovery.artifacts import Directions, save_directions
from saliency.errors import UserError
from saliency.masks import MaskRule
from saliency.ranking.artifacts import Choice, save_rank
from saliency.synthesis import shards
from saliency.synthesis.online import PairSampler, shard_draws, shard_rng
from saliency.synthesis.shards import ShardDataset
from saliency.synthesis.stage import online_pairs, run_synth

N, SHARD_SIZE, BATCH = 60, 20, 16
SETTINGS = {"generator.name": "toyworld", "synth.n": N, "synth.shard_size": SHARD_SIZE, "synth.batch_size": BATCH}


@pytest.fixture(scope="module")
def toyworld() -> generators.Generator:
    return generators.load("toyworld")


def background(generator: generators.Generator) -> torch.Tensor:
    return generator.factor_directions[:, generator.factor_names.index("bg_white")].clone()


def make_run(run_dir: Path, column: torch.Tensor, sign: int = 1) -> Path:
    """A run folder as `classes` (all toy shapes, for ecssd), `discover` (one direction) and `rank`
    (that direction, ``sign``, shift 6) leave it."""
    save_classes(run_dir / "classes" / "classes.json",
                 ChosenClasses(dataset="ecssd", select="all", ids=list(range(8)), names=[str(i) for i in range(8)]))
    save_directions(run_dir / "discover" / "directions.pt",
                    Directions(directions=column[:, None], method="true", deformator="fixed", generator="toyworld"))
    save_rank(run_dir / "rank" / "rank.json", {}, Choice(direction=0, sign=sign, shift=6.0, vector=column))
    return run_dir


@pytest.fixture
def toy_run(tmp_path: Path, toyworld) -> Path:
    return make_run(tmp_path / "run", background(toyworld))


def synth_hashes(run_dir: Path) -> dict[str, str]:
    """SHA-256 of every file the dataset consists of (not the manifest and log, which hold times)."""
    folder = run_dir / "synth"
    return {path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file() and path.name not in ("manifest.json", "log.txt")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, toyworld) -> dict[str, str]:
    """The hashes of one uninterrupted single-process run."""
    run_dir = make_run(tmp_path_factory.mktemp("reference") / "run", background(toyworld))
    run_synth(load_config(None, SETTINGS), run_dir, "cpu")
    return synth_hashes(run_dir)


def replayed_latents(generator, sampler: PairSampler, shard: int, draws: int) -> tuple[torch.Tensor, torch.Tensor]:
    """z and classes of a shard's first ``draws`` samples, drawn again from (seed, shard) alone."""
    rng = shard_rng(sampler.seed, shard)
    zs, labels = [], []
    for _ in range(0, draws, sampler.batch_size):
        zs.append(generator.sample_z(sampler.batch_size, rng))
        labels.append(generator.sample_classes(sampler.batch_size, rng))
    return torch.cat(zs)[:draws], torch.cat(labels)[:draws]


@pytest.mark.parametrize("mode, threshold", [("intensity", 0.95), ("diff", 0.5)])
def test_masks_match_the_true_object_masks(toyworld, mode: str, threshold: float) -> None:
    sampler = PairSampler(toyworld, background(toyworld), shift=6.0, batch_size=64, seed=3,
                          rule=MaskRule(mode, threshold))
    draws = [draw for _, draw in zip(range(256), shard_draws(sampler, shard=2))]
    z, labels = replayed_latents(toyworld, sampler, 2, 256)
    assert [d.label for d in draws] == labels.tolist()  # (seed, shard, draw) identifies a sample
    truth = toyworld.object_mask(z, labels)[:, 0] > 0.5
    masks = torch.stack([d.mask for d in draws])
    kept = torch.tensor([d.kept for d in draws])
    iou = (masks & truth).flatten(1).sum(1) / (masks | truth).flatten(1).sum(1).clamp_min(1)
    assert kept.sum() > 200 and iou[kept].mean() >= 0.95


def test_area_filter_keeps_exactly_the_samples_in_range(toyworld) -> None:
    loose = PairSampler(toyworld, background(toyworld), shift=6.0, batch_size=64,
                        rule=MaskRule(min_area=0.0, max_area=1.0))
    first = next(shard_draws(loose, 0))
    for inclusive, first_kept in ((True, True), (False, False)):
        # The upper bound is the first sample's area: kept with [min, max], dropped with (min, max).
        sampler = PairSampler(toyworld, background(toyworld), shift=6.0, batch_size=64,
                              rule=MaskRule(min_area=0.1, max_area=first.area, inclusive=inclusive))
        draws = [draw for _, draw in zip(range(128), shard_draws(sampler, 0))]
        areas = np.array([d.mask.float().mean().item() for d in draws])
        in_range = (areas >= 0.1) & (areas <= first.area) if inclusive else (areas > 0.1) & (areas < first.area)
        assert [d.kept for d in draws] == in_range.tolist()
        assert draws[0].kept is first_kept and 10 < in_range.sum() < 118
        assert [d.area for d in draws] == pytest.approx(areas.tolist())


def test_stage_writes_the_dataset_and_skips_when_done(run_cli, toy_run: Path, caplog) -> None:
    args = ["synth-dataset", "--run", toy_run, "--dataset", "ecssd", "--generator", "toyworld", "--n", "50",
            "--shard-size", "20"]
    result = run_cli(*args)
    assert result.code == 0, result.err
    synth = toy_run / "synth"
    assert sorted(p.name for p in (synth / "shards").iterdir()) == ["00000", "00001", "00002"]
    records = [json.loads(line) for line in (synth / "samples.jsonl").read_text().splitlines()]
    assert [r["stem"] for r in records] == [f"{i:07d}" for i in range(50)]
    for record in records[::7]:
        folder = synth / "shards" / f"{record['shard']:05d}"
        image = np.asarray(Image.open(folder / "images" / f"{record['stem']}.png"))
        mask = np.asarray(Image.open(folder / "masks" / f"{record['stem']}.png"))
        assert image.shape == (64, 64, 3) and mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 255}
        assert record["area"] == pytest.approx((mask > 0).mean()) and 0.05 <= record["area"] <= 0.5
    stats = json.loads((synth / "stats.json").read_text())
    assert stats["pairs"] == 50 and stats["drawn"] >= 50 and stats["acceptance_rate"] == 50 / stats["drawn"]
    assert sum(stats["area_histogram"]["accepted"]) == 50 and sum(stats["area_histogram"]["drawn"]) == stats["drawn"]
    assert Image.open(synth / "sheet.png").size[0] > 8 * 64
    assert run_cli(*args).code == 0 and "synth: complete with the same config and inputs, skipped" in caplog.text


def test_classes_missing_for_the_dataset_names_the_command(run_cli, toy_run: Path) -> None:
    result = run_cli("synth-dataset", "--run", toy_run, "--dataset", "duts", "--generator", "toyworld")
    assert result.code == 2 and f"saliency classes --run {toy_run} --dataset duts" in result.err
    assert not (toy_run / "synth").exists()


def test_kill_and_resume_gives_the_same_bytes(toy_run: Path, reference: dict[str, str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    real_png = shards.encode_png
    calls = {"n": 0}

    def dies_in_shard_2(array: np.ndarray) -> bytes:
        calls["n"] += 1
        if calls["n"] == 2 * 2 * SHARD_SIZE + 7:  # an image and a mask per pair: the 4th pair of shard 2
            raise KeyboardInterrupt
        return real_png(array)

    monkeypatch.setattr(shards, "encode_png", dies_in_shard_2)
    with pytest.raises(KeyboardInterrupt):
        run_synth(load_config(None, SETTINGS), toy_run, "cpu")
    root = toy_run / "synth" / "shards"
    assert sorted(p.name for p in root.iterdir()) == [".00002.tmp", "00000", "00001"]
    before = {p: p.stat().st_mtime_ns for p in root.glob("0000[01]/*/*.png")}
    monkeypatch.setattr(shards, "encode_png", real_png)
    metrics = run_synth(load_config(None, SETTINGS), toy_run, "cpu")
    assert metrics["pairs"] == N and synth_hashes(toy_run) == reference
    assert {p: p.stat().st_mtime_ns for p in before} == before  # the finished shards were not redone
    # The online stream of the run starts with the very pairs on disk.
    online = itertools.islice(online_pairs(load_config(None, SETTINGS), toy_run, torch.device("cpu")), N)
    for (image, mask), (disk_image, disk_mask) in zip(online, ShardDataset(toy_run / "synth"), strict=True):
        assert torch.equal(image, disk_image) and torch.equal(mask, disk_mask)


def test_growing_the_dataset_keeps_full_shards_and_other_settings_start_over(toy_run: Path) -> None:
    run_synth(load_config(None, {**SETTINGS, "synth.n": 30}), toy_run, "cpu")
    root = toy_run / "synth" / "shards"
    first = {p: p.stat().st_mtime_ns for p in (root / "00000").rglob("*.png")}
    run_synth(load_config(None, SETTINGS), toy_run, "cpu")
    assert {p: p.stat().st_mtime_ns for p in first} == first and len(list(root.glob("*/images/*.png"))) == N
    run_synth(load_config(None, {**SETTINGS, "synth.n": 30, "synth.seed": 1}), toy_run, "cpu")
    assert sorted(p.name for p in root.iterdir()) == ["00000", "00001"]
    assert len(list(root.glob("*/images/*.png"))) == 30
    assert all(p.stat().st_mtime_ns != first[p] for p in first)


def test_flipped_direction_with_sign_minus_one_gives_the_same_bytes(tmp_path: Path, toyworld,
                                                                    reference: dict[str, str]) -> None:
    run_dir = make_run(tmp_path / "flipped", -background(toyworld), sign=-1)
    run_synth(load_config(None, SETTINGS), run_dir, "cpu")
    differs = {name for name, digest in synth_hashes(run_dir).items() if reference[name] != digest}
    assert differs == {"plan.json", "stats.json"}  # they record the direction and sign; the pairs are the same


def test_direction_sign_and_shift_come_from_rank_alone(tmp_path: Path, toyworld, run_cli) -> None:
    """Rank's choice is the one place they are decided: without it synthesis names `saliency rank`,
    and the settings that once overrode it in the synth section are refused with their new name."""
    run_dir = make_run(tmp_path / "ranked", background(toyworld))
    (run_dir / "rank" / "rank.json").unlink()
    with pytest.raises(UserError, match=r"run `saliency rank --run .*` \(--direction, --sign and --magnitude"):
        run_synth(load_config(None, SETTINGS), run_dir, "cpu")
    for old, new in (("direction", "rank.direction"), ("sign", "rank.sign"), ("shift", "rank.magnitude")):
        result = run_cli("synth-dataset", "--run", run_dir, "--generator", "toyworld", "--set", f"synth.{old}=1")
        assert result.code == 2 and f"synth.{old} is now {new}" in result.err
    assert not (run_dir / "synth").exists()


def test_two_torchrun_processes_write_disjoint_shards_equal_to_one(toy_run: Path, reference: dict[str, str]) -> None:
    bin_dir = Path(sys.executable).parent
    command = [str(bin_dir / "torchrun"), "--standalone", "--nproc-per-node", "2", "--no-python", "--",
               str(bin_dir / "saliency"), "-v", "synth-dataset", "--run", str(toy_run), "--generator", "toyworld",
               "--n", str(N), "--shard-size", str(SHARD_SIZE), "--batch-size", str(BATCH)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert synth_hashes(toy_run) == reference
    writers = re.findall(r"synth: rank (\d) wrote shard (\d+)", done.stderr)
    assert sorted(writers, key=lambda pair: pair[1]) == [("0", "0"), ("1", "1"), ("0", "2")]
