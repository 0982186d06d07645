"""The training loop and the stage: outputs, skip, resume after a kill, closed-form runs, the CLI."""

from __future__ import annotations

import csv
import functools
import json
from pathlib import Path

import pytest
import torch
import yaml

from saliency import generators
from saliency.discovery import train as train_module
from saliency.discovery.artifacts import load_directions
from saliency.discovery.deformators import build_deformator
from saliency.discovery.objectives import OptimizeObjective, ShiftSampler, build_objective
from saliency.discovery.reconstructors import build_reconstructor
from saliency.discovery.train import TrainSettings, measure_rca, run_discover, train
from saliency.errors import UserError
from saliency.generators.base import Generator
from saliency.training import step_rng


class Killed(Exception):
    """Stands in for SIGKILL: the run stops after a step, with whatever it had saved."""


def _kill_at(stop: int):
    def hook(step: int) -> None:
        if step == stop:
            raise Killed(f"killed after step {step}")
    return hook


def _small_setup(method: str = "voynov"):
    generator = generators.load("toyworld", weights="random", dim_z=16, resolution=16)
    if method == "optimize":  # four restarts, no reconstructor
        return (generator, build_deformator("unit-norm", 16, 4, seed=0), None,
                OptimizeObjective(ShiftSampler(), surround=0.8, weight=2.0))
    deformator = build_deformator("ortho", 16, 16, seed=0)
    reconstructor = build_reconstructor("lenet", 16, 16, seed=0)
    return generator, deformator, reconstructor, build_objective(method, ShiftSampler(), 0.25, 0.25)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_step_randomness_depends_on_seed_rank_and_step_only() -> None:
    draw = lambda *key: torch.rand(4, generator=step_rng(*key))  # noqa: E731
    assert torch.equal(draw(0, 0, 0, 5), draw(0, 0, 0, 5))
    assert len({tuple(draw(*key).tolist()) for key in [(0, 0, 0, 5), (0, 0, 1, 5), (0, 0, 0, 6), (1, 0, 0, 5),
                                                         (0, 1, 0, 5)]}) == 5


@pytest.mark.parametrize("method", ["voynov", "lu", "optimize"])
def test_resumed_training_equals_uninterrupted_training(tmp_path: Path, method: str) -> None:
    settings = TrainSettings(steps=10, batch_size=6, lr=1e-3, seed=3, checkpoint_every=4)
    generator, deformator, reconstructor, objective = _small_setup(method)
    straight = train(generator, deformator, reconstructor, objective, settings, torch.device("cpu"))

    checkpoint = tmp_path / "last.pt"
    generator, killed_a, killed_r, objective = _small_setup(method)
    with pytest.raises(Killed):
        train(generator, killed_a, killed_r, objective, settings, torch.device("cpu"), checkpoint=checkpoint,
              fingerprint={"run": 1}, on_step=_kill_at(6))
    assert torch.load(checkpoint, weights_only=True)["step"] == 4  # the work after the last checkpoint is redone
    generator, resumed_a, resumed_r, objective = _small_setup(method)
    resumed = train(generator, resumed_a, resumed_r, objective, settings, torch.device("cpu"), checkpoint=checkpoint,
                    fingerprint={"run": 1})

    assert len(resumed.rows) == 10
    assert resumed.rows == straight.rows
    for mine, theirs in ((resumed_a, deformator), (resumed_r, reconstructor)):
        for (name, a), (_, b) in zip(mine.state_dict().items() if mine else (),
                                     theirs.state_dict().items() if theirs else ()):
            assert torch.equal(a, b), name
    if method != "optimize":
        columns = resumed_a.directions().double()
        assert torch.allclose(columns.T @ columns, torch.eye(16, dtype=torch.float64), atol=1e-5)


def test_a_compiled_generator_trains_as_the_plain_one() -> None:
    """``run.compile`` in discovery, on CPU: the aot_eager backend traces what inductor would compile."""
    settings = TrainSettings(steps=3, batch_size=6, lr=1e-3, seed=3)
    plain = train(*_small_setup(), settings, torch.device("cpu"))
    compiled = train(*_small_setup(), settings, torch.device("cpu"), compile="aot_eager")
    assert torch.tensor(compiled.rows) == pytest.approx(torch.tensor(plain.rows), rel=1e-4)


def test_checkpoint_of_other_settings_is_not_resumed(tmp_path: Path) -> None:
    settings = TrainSettings(steps=4, batch_size=4, lr=1e-3, seed=0, checkpoint_every=2)
    generator, deformator, reconstructor, objective = _small_setup()
    train(generator, deformator, reconstructor, objective, settings, torch.device("cpu"),
          checkpoint=tmp_path / "last.pt", fingerprint={"lr": 1e-3})
    generator, deformator, reconstructor, objective = _small_setup()
    fresh = train(generator, deformator, reconstructor, objective, settings, torch.device("cpu"),
                  checkpoint=tmp_path / "last.pt", fingerprint={"lr": 1e-2})
    generator, deformator, reconstructor, objective = _small_setup()
    straight = train(generator, deformator, reconstructor, objective, settings, torch.device("cpu"))
    assert fresh.rows == straight.rows


class _LatentAsImage(Generator):
    """Draws z itself as a 1×16 image, so the image difference of a pair is the latent shift."""

    dim_z, n_classes, resolution, class_names = 16, 0, 1, []

    def forward(self, z: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        return z.view(len(z), 1, 1, -1)


def test_rca_of_a_perfect_reconstructor_is_one() -> None:
    deformator = build_deformator("ortho", 16, 16, seed=0, init="identity")  # the coordinate axes

    class Oracle(torch.nn.Module):
        """Reads k off the latent difference, a multiple of e_k."""

        def forward(self, first, second):
            return (second - first).flatten(1).abs(), torch.zeros(len(first))

    rca = measure_rca(_LatentAsImage(), deformator, Oracle(), ShiftSampler(), samples=50, batch_size=16, seed=0,
                      device=torch.device("cpu"))
    assert rca == 1.0


def test_stage_writes_its_outputs_and_skips_when_complete(run_dir: Path, toy_config) -> None:
    metrics = run_discover(toy_config(rca_samples=64), run_dir, "cpu")
    stage = run_dir / "discover"
    assert metrics["steps"] == 12 and metrics["directions"] == 16 and 0.0 <= metrics["rca"] <= 1.0
    found = load_directions(stage / "directions.pt", dim_z=16, generator="toyworld")
    assert (found.method, found.deformator, found.count) == ("voynov", "ortho", 16)
    assert torch.allclose(found.directions.T @ found.directions, torch.eye(16), atol=1e-5)
    saved_r = torch.load(stage / "reconstructor.pt", weights_only=True)
    assert (saved_r["reconstructor"], saved_r["num_directions"]) == ("lenet", 16)
    assert [int(row["step"]) for row in _rows(stage / "losses.csv")] == list(range(1, 13))
    assert (stage / "curves.png").stat().st_size > 0
    assert [p.name for p in (stage / "grids").iterdir()] == ["directions_000-015.png"]
    assert json.loads((stage / "manifest.json").read_text())["status"] == "complete"

    before = {p: p.stat().st_mtime_ns for p in stage.rglob("*") if p.is_file()}
    assert run_discover(toy_config(rca_samples=64), run_dir, "cpu") == metrics
    assert {p: p.stat().st_mtime_ns for p in stage.rglob("*") if p.is_file()} == before


def test_stage_killed_midway_resumes_without_a_gap(run_dir: Path, tmp_path: Path, toy_config,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    reference = run_discover(toy_config(rca_samples=64), tmp_path / "reference", "cpu")
    with monkeypatch.context() as patch:
        patch.setattr(train_module, "train", functools.partial(train, on_step=_kill_at(8)))
        with pytest.raises(Killed):
            run_discover(toy_config(rca_samples=64), run_dir, "cpu")
    stage = run_dir / "discover"
    assert json.loads((stage / "manifest.json").read_text())["status"] == "failed"
    assert torch.load(stage / "checkpoints" / "last.pt", weights_only=True)["step"] == 5
    metrics = run_discover(toy_config(rca_samples=64), run_dir, "cpu")
    assert metrics["steps"] == 12 and metrics["rca"] == reference["rca"]
    assert _rows(stage / "losses.csv") == _rows(tmp_path / "reference" / "discover" / "losses.csv")
    log = (stage / "log.txt").read_text()
    assert "resumed from" in log and "at step 5" in log


def test_longer_run_continues_from_a_complete_shorter_one(run_dir: Path, toy_config) -> None:
    run_discover(toy_config(steps=6, rca_samples=32), run_dir, "cpu")
    metrics = run_discover(toy_config(steps=9, rca_samples=32), run_dir, "cpu")
    assert metrics["steps"] == 9
    assert "resumed from" in (run_dir / "discover" / "log.txt").read_text()


@pytest.mark.parametrize(("method", "deformator", "state_keys"), [
    ("voynov", "unit-norm", None),
    ("voynov", "linear", {"linear.weight", "linear.bias"}),
    ("lu", "fc", {"fc1.weight", "bn3.running_mean", "fc4.bias"}),
])
def test_every_deformator_trains_in_the_stage(run_dir: Path, toy_config, method: str, deformator: str,
                                              state_keys: set[str] | None) -> None:
    metrics = run_discover(toy_config(method=method, deformator=deformator, steps=3, rca_samples=16), run_dir, "cpu")
    found = load_directions(run_dir / "discover" / "directions.pt")
    assert found.deformator == deformator and found.count == 16 and metrics["steps"] == 3
    if state_keys is None:
        assert found.deformator_state is None, "unit columns reproduce the shifts: no state needed"
    else:
        assert state_keys <= set(found.deformator_state)


@pytest.mark.parametrize("method", ["sefa", "ganspace", "random", "coordinate"])
def test_closed_form_methods_write_the_same_artifact(run_dir: Path, toy_config, method: str) -> None:
    metrics = run_discover(toy_config(method=method, steps=0, directions=4), run_dir, "cpu")
    found = load_directions(run_dir / "discover" / "directions.pt", dim_z=16, generator="toyworld")
    assert found.method == method and found.count == 4 and metrics["rca"] is None
    assert not (run_dir / "discover" / "reconstructor.pt").exists()


def test_import_stage_reads_the_file_and_reruns_when_it_changes(run_dir: Path, tmp_path: Path, toy_config) -> None:
    path = tmp_path / "deformator_0.pt"
    torch.save({"log_mat_half": torch.zeros(16, 16)}, path)
    config = toy_config(method="import", import_path=str(path), steps=0)
    run_discover(config, run_dir, "cpu")
    assert torch.equal(load_directions(run_dir / "discover" / "directions.pt").directions, torch.eye(16))
    torch.save({"log_mat_half": torch.randn(16, 16, generator=torch.Generator().manual_seed(0))}, path)
    run_discover(config, run_dir, "cpu")
    assert not torch.equal(load_directions(run_dir / "discover" / "directions.pt").directions, torch.eye(16))


def test_sefa_on_toyworld_ranks_background_whiteness_first(run_dir: Path, toy_config) -> None:
    """toyworld's first layer scales its factors by decreasing strengths, background whiteness first."""
    run_discover(toy_config(method="sefa", steps=0, directions=3), run_dir, "cpu")
    found = load_directions(run_dir / "discover" / "directions.pt")
    toy = generators.load("toyworld", weights="random", dim_z=16, resolution=16)
    truth = toy.factor_directions[:, :3]
    assert torch.allclose((found.directions * truth).sum(0).abs(), torch.ones(3), atol=1e-5)


def test_closed_form_with_steps_trains_only_the_reconstructor(run_dir: Path, toy_config) -> None:
    metrics = run_discover(toy_config(method="random", steps=4, rca_samples=32), run_dir, "cpu")
    checkpoint = torch.load(run_dir / "discover" / "checkpoints" / "last.pt", weights_only=True)
    assert set(checkpoint["optimizers"]) == {"reconstructor"}
    assert metrics["rca"] is not None and (run_dir / "discover" / "reconstructor.pt").is_file()


def test_bad_settings_are_user_errors(run_dir: Path, toy_config) -> None:
    with pytest.raises(UserError, match="discover.classes"):
        run_discover(toy_config(classes=[99]), run_dir / "a", "cpu")
    with pytest.raises(UserError, match="exceeds the latent dimension"):
        run_discover(toy_config(directions=17), run_dir / "b", "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine with a GPU can run on cuda")
def test_cuda_without_a_gpu_is_a_user_error(run_dir: Path, toy_config) -> None:
    with pytest.raises(UserError, match="no CUDA GPU"):
        run_discover(toy_config(), run_dir / "c", "cuda")


def test_cli_discover(run_cli, tmp_path: Path) -> None:
    config = tmp_path / "toy.yaml"
    config.write_text(yaml.safe_dump({"generator": {"options": {"dim_z": 16, "resolution": 16}},
                                      "discover": {"reconstructor": "lenet", "checkpoint_every": 100}}))
    result = run_cli("discover", "--run", tmp_path / "run", "--config", config, "--generator", "toyworld",
                     "--method", "voynov", "--directions", "5", "--steps", "3", "--batch-size", "4",
                     "--lr", "0.001", "--classes", "0,2", "--seed", "1")
    assert result.code == 0, result.err
    assert "rca" in result.out
    manifest = json.loads((tmp_path / "run" / "discover" / "manifest.json").read_text())
    assert manifest["config"]["discover"]["classes"] == [0, 2] and manifest["seed"] == 1
    assert load_directions(tmp_path / "run" / "discover" / "directions.pt").count == 5
    bad = run_cli("discover", "--run", tmp_path / "bad", "--generator", "toyworld", "--method", "magic")
    assert bad.code == 2 and "discover.method" in bad.err
