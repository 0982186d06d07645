"""``saliency rank`` end to end on toyworld: the acceptance check (true factor directions among
random ones), overrides, determinism, and bad input through the real CLI (exit code 2, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from saliency.config import load_config
from saliency.generators.toyworld import ToyWorld
from saliency.ranking.artifacts import RANK_FILE, load_choice
from saliency.ranking.stage import run_rank
from tests.ranking.conftest import mixed_directions, write_config, write_directions

TINY = {"dvn_samples": 128, "dvn_steps": 5, "mask_samples": 16, "top": 2, "mask_shifts": "[6, 26]"}


def rank_json(run_dir: Path) -> dict:
    return json.loads((run_dir / "rank" / RANK_FILE).read_text())


def check_background_choice(world: ToyWorld, run_dir: Path, background: int) -> None:
    """The acceptance: every direction checked, the background chosen with |cos| >= 0.9, the whitening sign."""
    ranking = rank_json(run_dir)
    assert {c["direction"] for c in ranking["candidates"]} == set(range(len(ranking["dvn"])))
    choice = load_choice(run_dir / "rank" / RANK_FILE, dim_z=world.dim_z)
    truth = world.factor_directions[:, world.factor_names.index("bg_white")]
    cosine = float(choice.vector @ truth)
    assert abs(cosine) >= 0.9
    assert choice.sign * cosine > 0  # moving by sign·shift along the vector whitens (bg_white grows)
    assert not choice.overridden


def test_every_candidate_scored_pictures_drawn_and_a_complete_stage_skipped(world: ToyWorld, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """What a ranking holds, at small budgets (the choice itself is checked at the paper's settings below)."""
    matrix, background = mixed_directions(world)
    run_dir = tmp_path / "run"
    write_directions(run_dir, matrix)
    cfg = load_config(write_config(tmp_path / "cfg.yaml", **{**TINY, "top": "null"}))
    metrics = run_rank(cfg, run_dir, "cpu")
    assert metrics["directions"] == 32
    ranking = rank_json(run_dir)
    assert len(ranking["dvn"]) == 32
    assert ranking["dvn_mean"] == pytest.approx(sum(ranking["dvn"]) / 32)
    assert ranking["dvn_top50"] == pytest.approx(ranking["dvn_mean"])  # fewer than 50: mean of all
    assert cfg.rank.top is None and len(ranking["candidates"]) == 32 * 2 * 2  # every direction, sign, magnitude
    assert {"passing", "background", "stillness", "agreement", "score"} <= set(ranking["candidates"][0])
    assert (run_dir / "rank" / "dvn.png").stat().st_size > 0
    sheets = sorted(p.name for p in (run_dir / "rank" / "candidates").glob("*.png"))
    chosen = f"direction{metrics['direction']:03d}_{'plus' if metrics['sign'] > 0 else 'minus'}.png"
    assert chosen in sheets and len(sheets) == 5  # the best four (direction, sign) pairs and the choice
    # Complete with the same config and inputs: skipped, same metrics, and the generator (for a
    # published one, perhaps a download) is never loaded.
    def no_generator(*args: object, **kwargs: object) -> None:
        raise AssertionError("a complete rank stage loaded its generator")

    monkeypatch.setattr("saliency.generators.load", no_generator)
    assert run_rank(cfg, run_dir, "cpu") == metrics


@pytest.mark.slow(minutes=3.6)
def test_acceptance_with_the_paper_settings(world: ToyWorld, tmp_path: Path, run_cli) -> None:
    """Among the 15 true factor directions and 17 random ones, the background direction is chosen."""
    matrix, background = mixed_directions(world, seed=11)
    run_dir = tmp_path / "run"
    write_directions(run_dir, matrix)
    result = run_cli("rank", "--run", run_dir, "--config", write_config(tmp_path / "cfg.yaml"))
    assert result.code == 0, result.err
    check_background_choice(world, run_dir, background)
    ranking = rank_json(run_dir)
    assert ranking["choice"]["direction"] == background and ranking["dvn"][background] >= 0.95
    assert len(ranking["candidates"]) == 32 * 2 * 3  # every direction, sign and magnitude


def test_same_seed_same_ranking(world: ToyWorld, tmp_path: Path) -> None:
    matrix = mixed_directions(world)[0][:, :6]
    cfg = load_config(write_config(tmp_path / "cfg.yaml", **TINY))
    results = []
    for name in ("a", "b"):
        write_directions(tmp_path / name, matrix)
        run_rank(cfg, tmp_path / name, "cpu")
        results.append(rank_json(tmp_path / name))
    assert results[0] == results[1]
    other = load_config(write_config(tmp_path / "other.yaml", **TINY, seed=1))
    write_directions(tmp_path / "c", matrix)
    run_rank(other, tmp_path / "c", "cpu")
    assert rank_json(tmp_path / "c")["dvn"] != results[0]["dvn"]


def test_override_is_chosen_and_scores_still_written(world: ToyWorld, tmp_path: Path, run_cli) -> None:
    matrix = mixed_directions(world)[0][:, :5]
    run_dir = tmp_path / "run"
    write_directions(run_dir, matrix)
    config = write_config(tmp_path / "cfg.yaml", **TINY)
    result = run_cli("rank", "--run", run_dir, "--config", config, "--direction", "4", "--sign", "-1",
                     "--magnitude", "9")
    assert result.code == 0, result.err
    ranking = rank_json(run_dir)
    assert {k: ranking["choice"][k] for k in ("direction", "sign", "shift", "overridden")} == {
        "direction": 4, "sign": -1, "shift": 9.0, "overridden": True}
    assert torch.allclose(torch.tensor(ranking["choice"]["vector"]), matrix[:, 4] / matrix[:, 4].norm())
    assert ranking["settings"]["masks"]["magnitudes"] == [6.0, 9.0, 26.0]
    scored = {(c["direction"], c["sign"], c["shift"]) for c in ranking["candidates"]}
    assert (4, -1, 9.0) in scored and len({c["direction"] for c in ranking["candidates"]}) >= 2


@pytest.mark.parametrize("case", ["wrong_size", "empty_real", "direction_out_of_range", "no_directions"])
def test_bad_input_exits_2_and_writes_nothing(world: ToyWorld, tmp_path: Path, run_cli, case: str) -> None:
    run_dir = tmp_path / "run"
    args = ["rank", "--run", run_dir, "--config", write_config(tmp_path / "cfg.yaml", **TINY)]
    expected = {"wrong_size": "16-dimensional", "empty_real": "holds no images",
                "direction_out_of_range": "out of range", "no_directions": "not found"}[case]
    if case != "no_directions":
        write_directions(run_dir, torch.randn(16 if case == "wrong_size" else world.dim_z, 4))
    if case == "empty_real":
        (tmp_path / "empty").mkdir()
        args += ["--real", tmp_path / "empty"]
    if case == "direction_out_of_range":
        args += ["--direction", "4"]
    result = run_cli(*args)
    assert result.code == 2
    assert expected in result.err and len(result.err.strip().splitlines()) == 1
    assert not (run_dir / "rank").exists()
