"""Nothing lost, nothing stale, nothing trusted blindly: each guarantee as a user meets it.

A CLI call, its exit code and message, and the files it leaves: ``--force`` with a typo keeps
the complete stage byte for byte, a deleted or changed output re-runs the stage, a changed input
re-runs what reads it, a second process on a run folder is refused, 16-bit predictions score as
their 8-bit version, and every bad input of the reliability issue ends in one line and exit 2.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from saliency.config import load_config
from saliency.discovery.train import run_discover
from saliency.errors import UserError
from saliency.runs import Stage, read_manifest, run_stage, sha256_file

REPO = Path(__file__).resolve().parents[1]

TOY_PIPELINE = """\
run: {name: reliability}
generator: {name: toyworld, options: {dim_z: 16, resolution: 16}}
discover: {reconstructor: lenet, steps: 4, batch_size: 8, lr: 0.001, checkpoint_every: 2, rca_samples: 16}
"""


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) by relative name, with its SHA-256."""
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line(err: str) -> str:
    """The one error line (a progress bar's frames may come before it on a terminal's stderr)."""
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "it/s" not in line
             and "img/s" not in line and "?img" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def complete_discovery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder whose discover stage completed (4 toyworld steps), built once per module."""
    root = tmp_path_factory.mktemp("complete")
    (root / "toy.yaml").write_text(TOY_PIPELINE)
    run_discover(load_config(root / "toy.yaml"), root / "run", "cpu")
    return root


@pytest.fixture
def toy_run(complete_discovery: Path, tmp_path: Path) -> tuple[Path, Path]:
    """``(config, run folder)``: a private copy of the complete discovery run."""
    shutil.copytree(complete_discovery, tmp_path / "copy")
    return tmp_path / "copy" / "toy.yaml", tmp_path / "copy" / "run"


@pytest.mark.parametrize("command", [
    ["discover", "--force", "--generator", "toyworId"],
    ["run", "--until", "discover", "--force", "--set", "generator.name=toyworId"],
])
def test_force_with_a_typo_keeps_the_complete_stage_byte_identical(command: list[str], toy_run, run_cli) -> None:
    config, run = toy_run
    before = tree(run / "discover")
    arguments = [*command[:1], str(config), *command[1:]] if command[0] == "run" else [*command, "--config", str(config)]
    result = run_cli(*arguments, "--run", run)
    assert result.code == 2 and "toyworId" in one_line(result.err)
    assert tree(run / "discover") == before
    assert not (run / ".discover.replaced").exists()


def test_force_replaces_the_stage_once_the_new_one_completes(toy_run, run_cli) -> None:
    config, run = toy_run
    result = run_cli("discover", "--config", config, "--run", run, "--force", "--seed", "1")
    assert result.code == 0, result.err
    assert read_manifest(run / "discover")["seed"] == 1 and not (run / ".discover.replaced").exists()


def test_a_deleted_output_makes_the_stage_run_again(toy_run, run_cli, caplog) -> None:
    config, run = toy_run
    directions = run / "discover" / "directions.pt"
    original = sha256_file(directions)
    directions.unlink()
    result = run_cli("discover", "--config", config, "--run", run)
    assert result.code == 0, result.err
    assert "missing or changed since it completed (directions.pt)" in caplog.text
    assert sha256_file(directions) == original  # resumed from its last checkpoint: the same result


def test_a_changed_output_makes_the_stage_run_again(toy_run, run_cli, caplog) -> None:
    config, run = toy_run
    losses = run / "discover" / "losses.csv"
    original = sha256_file(losses)
    losses.write_text(losses.read_text().replace("1", "7"))
    assert run_cli("discover", "--config", config, "--run", run).code == 0
    assert "missing or changed" in caplog.text and sha256_file(losses) == original


def test_a_wrong_shaped_manifest_is_redone_not_trusted(toy_run, run_cli) -> None:
    config, run = toy_run
    (run / "discover" / "manifest.json").write_text("[1, 2, 3]\n")
    assert run_cli("discover", "--config", config, "--run", run).code == 0
    assert read_manifest(run / "discover")["status"] == "complete"


def _uncompressed_predictions(folder: Path, dataset: Path, value: int) -> None:
    """One flat PNG per image, stored uncompressed: its size depends on the image size only."""
    folder.mkdir(exist_ok=True)
    for mask in sorted((dataset / "masks").iterdir()):
        height, width = np.asarray(Image.open(mask)).shape[:2]
        Image.fromarray(np.full((height, width), value, np.uint8)).save(folder / mask.name, compress_level=0)


def test_predictions_rewritten_at_the_same_size_are_scored_again(run_cli, tiny_dataset: Path, tmp_path: Path) -> None:
    predictions, run = tmp_path / "pred", tmp_path / "run"
    _uncompressed_predictions(predictions, tiny_dataset, 0)
    sizes = {p.name: p.stat().st_size for p in predictions.iterdir()}
    first = run_cli("eval", "--metric", "mae", "--dataset", tiny_dataset, "--predictions", predictions, "--run", run)
    _uncompressed_predictions(predictions, tiny_dataset, 255)
    assert {p.name: p.stat().st_size for p in predictions.iterdir()} == sizes
    second = run_cli("eval", "--metric", "mae", "--dataset", tiny_dataset, "--predictions", predictions, "--run", run)
    assert first.code == second.code == 0
    assert first.out != second.out  # not "complete, skipped" with the old MAE


def test_a_second_process_on_a_run_folder_is_refused_until_the_first_dies(run_cli, tiny_dataset: Path,
                                                                         tmp_path: Path) -> None:
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom saliency.runs import run_lock\n"
         "with run_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(120)\n", str(run)],
        stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "locked"
        refused = run_cli("eval", "--baseline", "zeros", "--dataset", tiny_dataset, "--run", run)
        assert refused.code == 2 and f"in use by process {holder.pid}" in one_line(refused.err)
        assert not (run / "eval").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    taken_over = run_cli("eval", "--baseline", "zeros", "--dataset", tiny_dataset, "--run", run)
    assert taken_over.code == 0, taken_over.err


def _graded_maps(dataset: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {mask.name: rng.integers(0, 256, np.asarray(Image.open(mask)).shape[:2]).astype(np.uint8)
            for mask in sorted((dataset / "masks").iterdir())}


def test_16_bit_and_float_predictions_score_as_their_8_bit_version(run_cli, tiny_dataset: Path, tmp_path: Path) -> None:
    maps = _graded_maps(tiny_dataset)
    scores = {}
    for kind in ("8-bit", "16-bit", "float"):
        folder = tmp_path / kind
        folder.mkdir()
        for name, values in maps.items():
            if kind == "8-bit":
                Image.fromarray(values).save(folder / name)
            elif kind == "16-bit":
                Image.fromarray(values.astype(np.uint16) * 257).save(folder / name)  # 255 -> 65535
            else:
                Image.fromarray(values.astype(np.float32) / 255).save((folder / name).with_suffix(".tiff"))
        result = run_cli("eval", "--dataset", tiny_dataset, "--predictions", folder, "--output", tmp_path / f"{kind}.json")
        assert result.code == 0, result.err
        scores[kind] = json.loads((tmp_path / f"{kind}.json").read_text())["metrics"]
    assert scores["16-bit"] == pytest.approx(scores["8-bit"], abs=1e-6)
    assert scores["float"] == pytest.approx(scores["8-bit"], abs=1e-6)
    assert 0.3 < scores["8-bit"]["mae"] < 0.7  # graded maps, not a trivially perfect case


def test_float_predictions_outside_0_1_are_refused(run_cli, tiny_dataset: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pred"
    folder.mkdir()
    for name, values in _graded_maps(tiny_dataset).items():
        Image.fromarray(values.astype(np.float32)).save((folder / name).with_suffix(".tiff"))  # 0..255
    result = run_cli("eval", "--dataset", tiny_dataset, "--predictions", folder, "--output", tmp_path / "m.json")
    assert result.code == 2 and "outside the range of a saliency map" in one_line(result.err)


def _bad_model(path: Path) -> Path:
    torch.save({"format": "saliency-unet-v2", "arch": "classic", "encoder": None, "width": 8,
                "state_dict": {"weight": torch.zeros(3)}}, path)
    return path


BAD_INPUTS = {
    # name: (CLI arguments after the command, text the one line names)
    "run folder is a file": (["eval", "--baseline", "zeros", "--dataset", "{tiny}", "--run", "{file}"], "is a file"),
    "unknown generator option": (["discover", "--config", "{config}", "--run", "{run}", "--force"],
                                 "generator.options.colour"),
    "nan learning rate": (["discover", "--config", "{config}", "--run", "{run}", "--lr", "nan"], "discover.lr"),
    "run name leaving runs/": (["discover", "--config", "{config}", "--generator", "toyworld"], "run.name"),
    "model with the format tag and a wrong state dict": (
        ["eval", "--checkpoint", "{model}", "--dataset", "{tiny}", "--run", "{run}"], "has the U-Net format tag"),
    "output that is a folder": (["eval", "--baseline", "zeros", "--dataset", "{tiny}", "--output", "{folder}"],
                                "is a folder"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_ends_in_one_line_and_changes_nothing(case: str, run_cli, tiny_dataset: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    arguments, expected = BAD_INPUTS[case]
    config = tmp_path / "config.yaml"
    text = TOY_PIPELINE
    if case == "unknown generator option":
        text = text.replace("resolution: 16}", "resolution: 16, colour: red}")
    if case == "run name leaving runs/":
        text = text.replace("name: reliability", "name: ../../escaped")
    config.write_text(text)
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "a-folder").mkdir()
    values = {"tiny": tiny_dataset, "file": tmp_path / "a-file", "config": config, "run": tmp_path / "run",
              "model": _bad_model(tmp_path / "model.pt"), "folder": tmp_path / "a-folder"}
    before = tree(tmp_path)
    result = run_cli(*[argument.format(**values) for argument in arguments])
    assert result.code == 2 and expected in one_line(result.err)
    assert tree(tmp_path) == before and not (tmp_path / "run").exists() and not (tmp_path.parent / "escaped").exists()


def test_temporary_files_of_a_killed_write_are_removed_when_the_stage_starts_again(tmp_path: Path) -> None:
    stage = Stage(tmp_path / "run", "demo", config={})

    def killed(stage: Stage) -> dict:
        (stage.dir / "checkpoints").mkdir()
        (stage.dir / "checkpoints" / ".last.pt.k2j3.tmp").write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stage(stage, killed)
    run_stage(stage, lambda s: {})
    assert not list(stage.dir.rglob("*.tmp"))


def test_a_resumed_stage_reports_the_time_of_all_its_attempts(tmp_path: Path) -> None:
    stage = Stage(tmp_path / "run", "demo", config={})

    def killed_after_working_a_minute(stage: Stage) -> dict:
        started = read_manifest(stage.dir)["attempt_started"]
        checkpoint = stage.dir / "checkpoint.pt"
        checkpoint.write_text("step 50")
        os.utime(checkpoint, (started + 60, started + 60))  # its last write, a minute in
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stage(stage, killed_after_working_a_minute)
    metrics = run_stage(stage, lambda s: {})
    manifest = read_manifest(stage.dir)
    assert 60 <= metrics["seconds"] < 70 and manifest["attempts"] == 2


def test_a_killed_forced_redo_gives_back_the_old_stage_when_it_is_asked_for(tmp_path: Path) -> None:
    def make(config: dict) -> Stage:
        return Stage(tmp_path / "run", "demo", config=config)

    def body(stage: Stage) -> dict:
        (stage.dir / "out.txt").write_text(str(stage.config))
        return {"done": 1}

    run_stage(make({"k": 1}), body)
    before = tree(make({"k": 1}).dir)
    # What a kill -9 during `--force` with {"k": 2} leaves: the old stage aside, a partial new one.
    os.replace(make({"k": 1}).dir, make({"k": 1}).aside_dir)
    make({"k": 2}).dir.mkdir()
    (make({"k": 2}).dir / "partial.txt").write_text("half")
    calls = []
    assert run_stage(make({"k": 1}), lambda s: calls.append(1) or {})["done"] == 1
    assert not calls and tree(make({"k": 1}).dir) == before and not make({"k": 1}).aside_dir.exists()


def test_user_error_in_a_forced_redo_of_an_unfinished_stage_leaves_no_aside(tmp_path: Path) -> None:
    stage = Stage(tmp_path / "run", "demo", config={})
    with pytest.raises(KeyboardInterrupt):
        run_stage(stage, lambda s: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(UserError):
        run_stage(stage, lambda s: (_ for _ in ()).throw(UserError("bad")), force=True)
    assert not stage.aside_dir.exists()


def test_eval_of_a_checkpoint_over_a_bad_image_leaves_no_partial_predictions(run_cli, tiny_dataset: Path,
                                                                             tmp_path: Path) -> None:
    from saliency.segmentation.model import UnetSpec, build_unet, save_unet

    spec = UnetSpec("classic", width=4)
    model = save_unet(build_unet(spec), tmp_path / "model.pt", spec, {"resolution": 16})
    image = sorted((tiny_dataset / "images").iterdir())[1]
    image.write_bytes(image.read_bytes()[:40])  # truncated: the second image cannot be decoded
    result = run_cli("eval", "--checkpoint", model, "--dataset", tiny_dataset, "--output", tmp_path / "out" / "m.json")
    assert result.code == 2 and "cannot decode" in one_line(result.err)
    assert not (tmp_path / "out" / "m").exists() and not (tmp_path / "out" / "m.json").exists()
