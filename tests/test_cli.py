"""The CLI on real ECSSD: the known baseline answer and every bad input of the foundation issue.

Each bad input must exit with code 2 and one line naming the file or key, print no traceback and
leave nothing in the run folder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import write_pair


def test_zeros_baseline_mae_on_ecssd(run_cli, data_root: Path, tmp_path: Path, caplog) -> None:
    result = run_cli("eval", "--metric", "mae", "--baseline", "zeros", "--dataset", "ecssd", "--split", "test",
                     "--run", tmp_path / "run")
    assert result.code == 0, result.err
    assert "mae: 0.2485" in result.out
    metrics = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert metrics["images"] == 500 and round(metrics["metrics"]["mae"], 4) == 0.2485
    assert (tmp_path / "run" / "eval" / "per_image.csv").read_text().count("\n") == 501
    again = run_cli("eval", "--metric", "mae", "--baseline", "zeros", "--dataset", "ecssd", "--split", "test",
                    "--run", tmp_path / "run")
    assert again.code == 0 and "eval: complete with the same config and inputs, skipped" in caplog.text


def test_ground_truth_predictions_score_perfectly(run_cli, tiny_dataset: Path, tmp_path: Path) -> None:
    predictions = tmp_path / "pred"
    shutil.copytree(tiny_dataset / "masks", predictions)
    out = tmp_path / "m.json"
    result = run_cli("eval", "--dataset", tiny_dataset, "--predictions", predictions, "--output", out)
    assert result.code == 0, result.err
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["mae"] == 0 and metrics["max_fbeta"] == pytest.approx(1) and metrics["iou"] == pytest.approx(1)
    assert (tmp_path / "m.per_image.csv").is_file()


def test_predictions_of_another_scale_are_resized(run_cli, tiny_dataset: Path, tmp_path: Path) -> None:
    predictions = tmp_path / "pred"
    predictions.mkdir()
    for mask in (tiny_dataset / "masks").iterdir():
        image = Image.open(mask)
        image.resize((image.width * 2, image.height * 2), Image.NEAREST).save(predictions / mask.name)
    result = run_cli("eval", "--metric", "mae", "--dataset", tiny_dataset, "--predictions", predictions,
                     "--output", tmp_path / "m.json")
    assert result.code == 0, result.err
    assert json.loads((tmp_path / "m.json").read_text())["metrics"]["mae"] < 0.05


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def bad_cases(tmp: Path, tiny: Path) -> dict[str, tuple[list[str], str]]:
    """Each case: (extra CLI arguments, the text the one-line error must contain)."""
    good_predictions = tmp / "pred"
    shutil.copytree(tiny / "masks", good_predictions)
    return {
        "missing dataset folder": (["--dataset", str(tmp / "nowhere"), "--predictions", str(good_predictions)],
                                   "nowhere"),
        "image without mask": (["--dataset", str(tiny), "--predictions", str(good_predictions)], "image without a mask"),
        "mask without image": (["--dataset", str(tiny), "--predictions", str(good_predictions)], "mask without an image"),
        "unreadable png": (["--dataset", str(tiny), "--predictions", str(good_predictions)], "0002.png: cannot decode"),
        "prediction of a different size": (["--dataset", str(tiny), "--predictions", str(good_predictions)],
                                           "another aspect ratio"),
        "prediction folder missing files": (["--dataset", str(tiny), "--predictions", str(good_predictions)],
                                            "misses 1 of 3 images"),
        "bad yaml": (["--dataset", str(tiny), "--predictions", str(good_predictions), "--config", str(tmp / "c.yaml")],
                     "not valid YAML"),
        "unknown config key": (["--dataset", str(tiny), "--predictions", str(good_predictions),
                                "--config", str(tmp / "c.yaml")], "unknown key eval.metricz"),
    }


SPOIL = {
    "missing dataset folder": lambda tiny, tmp: None,
    "image without mask": lambda tiny, tmp: (tiny / "masks" / "0001.png").unlink(),
    "mask without image": lambda tiny, tmp: (tiny / "images" / "0001.jpg").unlink(),
    "unreadable png": lambda tiny, tmp: (tiny / "masks" / "0002.png").write_bytes(b"\x89PNG not really"),
    "prediction of a different size": lambda tiny, tmp: Image.fromarray(np.zeros((10, 40), np.uint8)).save(
        tmp / "pred" / "0001.png"),
    "prediction folder missing files": lambda tiny, tmp: (tmp / "pred" / "0000.png").unlink(),
    "bad yaml": lambda tiny, tmp: (tmp / "c.yaml").write_text("eval: {metrics: [mae\n"),
    "unknown config key": lambda tiny, tmp: (tmp / "c.yaml").write_text("eval:\n  metricz: [mae]\n"),
}


@pytest.mark.parametrize("case", list(SPOIL))
def test_bad_input_exits_2_with_one_line(case: str, run_cli, tiny_dataset: Path, tmp_path: Path) -> None:
    args, expected = bad_cases(tmp_path, tiny_dataset)[case]
    SPOIL[case](tiny_dataset, tmp_path)
    run_dir = tmp_path / "run"
    result = run_cli("eval", "--run", run_dir, *args)
    assert result.code == 2, (result.out, result.err)
    lines = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and expected in lines[0], result.err
    assert "Traceback" not in result.err
    assert not run_dir.exists()


def test_truncated_jpeg_is_named_by_data_verification(run_cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SALIENCY_DATA", str(tmp_path / "data"))
    copy = tmp_path / "copy"
    rng = np.random.default_rng(0)
    for stem in ("0501", "0502"):
        write_pair(copy, stem, rng.random((64, 48)) > 0.5, mask_folder="ground_truth_mask")
        Image.fromarray(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8)).save(copy / "images" / f"{stem}.jpg")
    truncate(copy / "images" / "0502.jpg")
    result = run_cli("data", "ecssd", "--from", copy)
    assert result.code == 2 and "Traceback" not in result.err
    assert [line for line in result.err.splitlines() if line.startswith("error:")] == [
        line for line in result.err.splitlines() if "0502.jpg: cannot decode image" in line]
    assert not (tmp_path / "data" / "ecssd").exists()


def test_eval_needs_exactly_one_source(run_cli, tiny_dataset: Path) -> None:
    result = run_cli("eval", "--dataset", tiny_dataset)
    assert result.code == 2 and "exactly one of --predictions" in result.err


def test_data_command_links_ecssd(run_cli, ecssd_root: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SALIENCY_DATA", str(tmp_path / "data"))
    result = run_cli("data", "ecssd", "--from", ecssd_root)
    assert result.code == 0, result.err
    assert "500 pairs verified" in result.out and "holds: test" in result.out
    missing = run_cli("data", "ecssd", "--from", tmp_path / "absent")
    assert missing.code == 2 and "absent" in missing.err


def test_eval_scores_several_datasets_into_one_table(run_cli, tiny_dataset: Path, tmp_path: Path) -> None:
    import shutil

    other = tmp_path / "other"
    shutil.copytree(tiny_dataset, other)
    both = f"{tiny_dataset},{other}"
    result = run_cli("eval", "--baseline", "center", "--dataset", both, "--run", tmp_path / "run",
                     "--refine", "bilateral-solver")
    assert result.code == 0, result.err
    assert result.out.count("ours + refinement") == 2 and "table: " in result.out
    assert (tmp_path / "run" / "eval" / "other" / "metrics.json").is_file()
    refused = run_cli("eval", "--baseline", "center", "--dataset", both, "--output", tmp_path / "m.json")
    assert refused.code == 2 and "--output takes one dataset" in refused.err


def test_the_table_puts_published_figures_beside_ours() -> None:
    from saliency.evaluation.stage import format_table

    rows = [{"dataset": "duts-te", "split": "test", "images": 5019, "metrics": {"max_fbeta": 0.5, "iou": 0.4,
                                                                               "accuracy": 0.8, "mae": 0.2}}]
    lines = format_table(rows).splitlines()
    assert lines[0] == "| dataset | images | method | max-Fβ | IoU | accuracy | MAE |"
    assert lines[2] == "| duts-te/test | 5019 | ours | 0.500 | 0.400 | 0.800 | 0.200 |"
    assert lines[3] == "| duts-te | — | Voynov et al. 2021, BigBiGAN (published) | 0.608 | 0.498 | 0.878 | — |"


HELP_OF_EVERY_COMMAND = """\
import json, sys
from saliency.cli import cli, main
codes = {}
for args in [[], *([name] for name in sorted(cli.commands))]:
    sys.argv = ["saliency", *args, "--help"]
    try:
        main()
        codes[" ".join(args)] = 0
    except SystemExit as exit_:
        codes[" ".join(args)] = exit_.code
print(json.dumps({"codes": codes, "torch": "torch" in sys.modules}))
"""


def test_help_of_every_command_imports_no_torch() -> None:
    """`saliency --help` and each command's `--help` answer at once: nothing on the way loads torch."""
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", HELP_OF_EVERY_COMMAND], capture_output=True, text=True, timeout=60,
                          cwd=repo)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert {"", "eval", "train-unet", "run", "predict"} <= set(found["codes"])
    assert all(code == 0 for code in found["codes"].values()), found
    assert found["torch"] is False
    whole = subprocess.run([sys.executable, "-m", "saliency", "--help"], capture_output=True, text=True, timeout=60,
                           cwd=repo)
    assert whole.returncode == 0 and "train-unet" in whole.stdout


def test_the_baseline_names_of_the_cli_are_the_baselines() -> None:
    from saliency.evaluation import BASELINE_NAMES
    from saliency.evaluation.sources import BASELINES

    assert BASELINE_NAMES == tuple(sorted(BASELINES))
