"""The run report: a fake but complete run folder (real ECSSD stems for the evaluation) and partial,
damaged and hostile ones; the page must be self-contained, show every stage and never crash."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from saliency.classes import ChosenClasses, save_classes
from saliency.datasets import resolve
from saliency.evaluation.stage import write_results
from saliency.metrics import EvaluationResult
from saliency.ranking.artifacts import Choice, save_rank
from saliency.report import build_report
from saliency.report.figures import GAP, THUMBNAIL_HEIGHT, Case, best_and_worst, case_figure
from saliency.report.html import data_uri
from saliency.runs import Stage

STEMS = ("0501", "0502", "0503")
# Per-image MAE of the predictions written below: the mask itself, noise, the inverted mask.
MAES = {"0501": 0.0, "0502": 0.5, "0503": 1.0}
SUMMARY = {"mae": 0.5, "max_fbeta": 0.6172, "mean_fbeta": 0.5, "s_measure": 0.4321, "e_measure": 0.55,
           "iou": 0.3456, "accuracy": 0.5111}
PUBLISHED = ("0.099", "0.782", "0.672", "0.899", "0.797", "0.684", "0.906", "0.803", "0.712", "0.781", "0.807",
             "0.2485", "0.294", "0.752", "0.322", "0.542", "0.391", "0.774", "0.608", "0.498", "0.549")
IMAGE = re.compile(r'<img src="data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)" alt="([^"]*)"')


def write_png(path: Path, size: tuple[int, int] = (48, 32), seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def complete(run_dir: Path, stage: str, metrics: dict, config: dict | None = None) -> None:
    Stage(run_dir, stage, config=config or {}).write_manifest("complete", metrics=metrics, started=1.7e9)


def write_discover(run_dir: Path) -> None:
    folder = run_dir / "discover"
    for index, name in enumerate(("directions_000-015.png", "directions_016-031.png")):
        write_png(folder / "grids" / name, seed=index)
    write_png(folder / "curves.png", seed=3)
    (folder / "losses.csv").write_text("step,loss,accuracy\n1,4.0,0.1\n")
    complete(run_dir, "discover", {"method": "voynov", "directions": 32, "steps": 1500, "rca": 0.6543,
                                   "rca_samples": 1024, "final_loss": 1.5, "seconds": 61.0},
             {"generator": {"name": "toyworld"}, "discover": {"method": "voynov", "deformator": "ortho"}})


def write_rank(run_dir: Path) -> None:
    folder = run_dir / "rank"
    candidates = [{"direction": d, "sign": s, "shift": 6.0, "dvn": 0.9, "passing": 0.9, "background": 0.9,
                   "stillness": 0.9, "agreement": 0.9, "score": score}
                  for d, s, score in ((27, 1, 0.7209), (28, -1, 0.0247), (3, 1, 0.01))]
    content = {"dvn": [0.95] * 32, "dvn_mean": 0.9536, "dvn_top50": 0.9537, "candidates": candidates,
               "settings": {"masks": {"magnitudes": [6.0, 12.0, 26.0]}}}
    save_rank(folder / "rank.json", content, Choice(direction=27, sign=1, shift=6.0, vector=torch.ones(32) / 32 ** 0.5))
    write_png(folder / "dvn.png", seed=4)
    write_png(folder / "candidates" / "direction027_plus.png", seed=5)
    write_png(folder / "candidates" / "direction028_minus.png", seed=6)
    complete(run_dir, "rank", {"dvn_mean": 0.9536, "direction": 27, "seconds": 52.4})


def write_later_stages(run_dir: Path) -> None:
    """Classes (given, so no chart), synthetic data, U-Net, no self-training."""
    save_classes(run_dir / "classes" / "classes.json",
                 ChosenClasses(dataset="ecssd", select="all", ids=[0, 1], names=["disk", "square"]))
    complete(run_dir, "classes", {"chosen": 2, "seconds": 0.1})
    edges = [round(i / 20, 4) for i in range(21)]
    (run_dir / "synth").mkdir(parents=True)
    (run_dir / "synth" / "stats.json").write_text(json.dumps({
        "pairs": 4000, "drawn": 4033, "acceptance_rate": 0.9918, "resolution": 64, "area_range": [0.05, 0.5],
        "area_histogram": {"edges": edges, "drawn": [33, 4000] + [0] * 18, "accepted": [0, 4000] + [0] * 18}}))
    write_png(run_dir / "synth" / "sheet.png", seed=7)
    complete(run_dir, "synth", {"pairs": 4000, "acceptance_rate": 0.9918, "seconds": 5.6, "seconds_to_first_pair": 1.5})
    write_png(run_dir / "unet" / "curves.png", seed=8)
    complete(run_dir, "unet", {"steps": 1200, "final_loss": 0.0567, "sample_mae": 0.1789, "seconds": 300.0},
             {"unet": {"encoder": "resnet18", "source": "shards"}})
    complete(run_dir, "selftrain", {"rounds": 0, "seconds": 0.0}, {"selftrain": {"rounds": 0}})


def write_eval(run_dir: Path) -> None:
    """Predictions of three real ECSSD test images with known per-image MAE."""
    folder = run_dir / "eval"
    dataset = resolve("ecssd", "test")
    predictions = {"0501": dataset.mask("0501"), "0503": ~dataset.mask("0503")}
    mask = dataset.mask("0502")
    predictions["0502"] = np.random.default_rng(0).integers(0, 2, mask.shape).astype(bool)
    (folder / "predictions").mkdir(parents=True)
    for stem, prediction in predictions.items():
        Image.fromarray(prediction.astype(np.uint8) * 255).save(folder / "predictions" / f"{stem}.png")
    per_image = [{"image": stem, "mae": MAES[stem], "iou": 1 - MAES[stem]} for stem in STEMS]
    write_results(EvaluationResult(SUMMARY, per_image), folder / "metrics.json",
                  {"dataset": "ecssd", "split": "test", "images": 3, "source": "checkpoint unet/model.pt"})
    complete(run_dir, "eval", {**SUMMARY, "seconds": 12.0})


def write_config(run_dir: Path, name: str = "toy-run") -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({
        "run": {"name": name, "device": "cpu", "seed": 0}, "generator": {"name": "toyworld"},
        "eval": {"dataset": "ecssd", "split": "test"}}))


@pytest.fixture
def full_run(tmp_path: Path, data_root: Path) -> Path:
    run_dir = tmp_path / "run"
    write_config(run_dir)
    write_discover(run_dir)
    write_rank(run_dir)
    write_later_stages(run_dir)
    write_eval(run_dir)
    return run_dir


def embedded(page: str) -> dict[str, Image.Image]:
    """The page's pictures by their alt text."""
    return {alt: Image.open(io.BytesIO(base64.b64decode(data))) for _, data, alt in IMAGE.findall(page)}


def columns(figure: Image.Image, count: int = 3) -> list[np.ndarray]:
    """The equal-width columns of a case figure (every tile of a row has the image's size)."""
    pixels = np.asarray(figure.convert("RGB")).astype(int)
    width = (figure.width - GAP * (count - 1)) // count
    return [pixels[:, k * (width + GAP): k * (width + GAP) + width] for k in range(count)]


def test_full_run_report_is_self_contained_and_shows_every_stage(full_run: Path) -> None:
    path = build_report(full_run)
    assert path == full_run / "report.html"
    page = path.read_text(encoding="utf-8")
    assert 'src="http' not in page and 'src="/' not in page and "<script" not in page and "<link" not in page
    pictures = embedded(page)
    # 2 grids, curves, DVN chart, 2 candidate sheets, synth sheet, U-Net curves, best and worst cases
    assert len(pictures) == 10 and page.count("data:image/png;base64,") == 10
    for heading in ("Overview", "1. Discover directions", "2. Rank directions", "3. Classes", "4. Synthetic data",
                    "5. U-Net", "6. Self-training on unlabeled photographs", "7. Evaluation"):
        assert heading in page
    assert "No self-training: selftrain.rounds is 0" in page
    assert page.count("complete, ") == 7 and "not run yet" not in page and "failed:" not in page
    assert all(number in page for number in PUBLISHED)
    assert all(f"{value:.4g}" in page for value in SUMMARY.values())
    assert "↓\u00a0lower" in page and "↑\u00a0higher" in page
    assert "direction 27, sign +1, shift 6 (automatic choice)" in page
    assert "0.9918" in page and "0.6543" in page and "0.1789" in page and "disk (0), square (1)" in page
    assert "1 min 01 s" in page and "5 min 00 s" in page
    # discover 61.0 + rank 52.4 + classes 0.1 + synthesis to its first pair 1.5 = 115 s
    assert "<td>time to the first masks</td><td></td><td>1 min 55 s</td>" in page
    assert "MAE 0.5 is not below the all-zero floor 0.2485" in page
    # SUMMARY beats the zeros baseline on max-Fβ, IoU and loses on MAE and accuracy (0.5111 < 0.752).
    assert "Against baseline zeros: loses on MAE, accuracy." in page
    assert "Against baseline center: loses on MAE, IoU, accuracy." in page


def test_an_mae_below_the_floor_is_said_so(full_run: Path) -> None:
    path = full_run / "eval" / "metrics.json"
    results = json.loads(path.read_text())
    results["metrics"].update(mae=0.0994, iou=0.7, accuracy=0.9)
    path.write_text(json.dumps(results))
    page = build_report(full_run).read_text(encoding="utf-8")
    assert "MAE 0.0994 is below the all-zero floor 0.2485 (40 % of it)" in page and "not below" not in page
    assert "Against baseline zeros: beats it on every metric." in page
    assert "Against baseline center: beats it on every metric." in page


def test_case_figures_put_predictions_next_to_ground_truth(full_run: Path) -> None:
    pictures = embedded(build_report(full_run).read_text(encoding="utf-8"))
    best = next(image for alt, image in pictures.items() if alt.startswith("2 best images by MAE"))
    worst = next(image for alt, image in pictures.items() if alt.startswith("1 worst images by MAE"))
    assert "0501 (MAE 0), 0502 (MAE 0.5)" in next(alt for alt in pictures if alt.startswith("2 best"))
    assert best.height == 2 * THUMBNAIL_HEIGHT + GAP and worst.height == THUMBNAIL_HEIGHT
    image, truth, prediction = (column[:THUMBNAIL_HEIGHT] for column in columns(best))
    np.testing.assert_array_equal(truth, prediction)  # 0501's prediction is its mask
    assert (truth[..., 0] == truth[..., 2]).all() and (image[..., 0] != image[..., 2]).any()
    _, truth, prediction = columns(worst)  # 0503's prediction is its inverted mask
    assert np.abs(truth + prediction - 255).max() <= 1
    foreground = resolve("ecssd", "test").mask("0503").mean()
    assert truth.mean() == pytest.approx(255 * foreground, abs=2) and abs(foreground - 0.5) > 0.1


def test_case_figure_without_a_dataset_shows_predictions(full_run: Path) -> None:
    figure = Image.open(io.BytesIO(case_figure(["0501", "0503"], full_run / "eval" / "predictions", None)))
    # one column as wide as the wider thumbnail: 0501 is 400 x 299, 0503 is 400 x 267
    assert figure.size == (round(400 * THUMBNAIL_HEIGHT / 267), 2 * THUMBNAIL_HEIGHT + GAP)


def test_unreachable_dataset_gives_a_note_and_prediction_only_pictures(full_run: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALIENCY_DATA", str(tmp_path / "nowhere"))
    page = build_report(full_run).read_text(encoding="utf-8")
    assert "the dataset cannot be opened here" in page and "columns: prediction;" in page
    assert len(embedded(page)) == 10


def test_best_and_worst_never_overlap_and_follow_the_metric_direction() -> None:
    rows = [{"image": f"{i:04d}", "mae": str(v), "iou": str(1 - v)} for i, v in enumerate([0.3, 0.1, 0.5, 0.2, 0.4])]
    assert best_and_worst(rows, "mae", 2) == ([Case("0001", 0.1), Case("0003", 0.2)],
                                              [Case("0002", 0.5), Case("0004", 0.4)])
    best, worst = best_and_worst(rows, "iou", 4)
    assert [c.stem for c in best] == ["0001", "0003", "0000"] and [c.stem for c in worst] == ["0002", "0004"]


def test_partial_run_renders_with_notes(tmp_path: Path) -> None:
    run_dir = tmp_path / "partial"
    write_discover(run_dir)  # no config.yaml: stages run one by one
    Stage(run_dir, "rank", config={}).write_manifest("failed", error="RuntimeError: DVN <diverged>", started=1.7e9)
    Stage(run_dir, "classes", config={}).write_manifest("running", started=1.7e9)
    page = build_report(run_dir).read_text(encoding="utf-8")
    assert "saliency run: partial" in page
    assert "failed: RuntimeError: DVN &lt;diverged&gt;" in page and "<diverged>" not in page
    assert "not finished (status running" in page and page.count("not run yet") == 4  # synth, unet, selftrain, eval
    assert "no evaluation yet" in page and all(number in page for number in PUBLISHED)
    assert len(embedded(page)) == 3  # the discover stage is shown in full


def test_damaged_stage_is_a_note_not_a_crash(full_run: Path) -> None:
    (full_run / "rank" / "rank.json").unlink()
    (full_run / "synth" / "sheet.png").unlink()
    page = build_report(full_run).read_text(encoding="utf-8")
    assert "cannot show this section: UserError" in page and "rank file not found; rerun `saliency rank`" in page
    assert "missing picture: synth/sheet.png" in page
    assert "7. Evaluation" in page and "2 best images by MAE" in page


def test_hostile_strings_are_escaped(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    write_config(run_dir, name='<script>alert("x")</script>')
    write_discover(run_dir)
    page = build_report(run_dir).read_text(encoding="utf-8")
    assert "<script" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_large_pictures_are_shrunk_to_the_budget() -> None:
    noise = np.random.default_rng(0).integers(0, 255, (600, 800, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    assert data_uri(buffer.getvalue(), budget=len(buffer.getvalue())).startswith("data:image/png;base64,")
    shrunk = data_uri(buffer.getvalue(), budget=100_000)
    assert shrunk.startswith("data:image/jpeg;base64,")
    assert len(base64.b64decode(shrunk.split(",", 1)[1])) <= 100_000


def test_refined_eval_shows_both_columns_and_the_per_dataset_table(full_run: Path) -> None:
    """An eval stage that refined its maps: the report puts the unrefined and refined figures side by
    side, lists the datasets beside the published figures, and pictures the refined maps."""
    from saliency.evaluation.stage import Scores, table_cells, write_table

    folder = full_run / "eval"
    per_image = [{"image": stem, "mae": MAES[stem], "iou": 1 - MAES[stem]} for stem in STEMS]
    refined = {"mae": SUMMARY["mae"] / 2, "iou": 0.75}
    write_results(Scores(EvaluationResult(SUMMARY, per_image), EvaluationResult(refined, per_image)),
                  folder / "metrics.json", {"dataset": "ecssd", "split": "test", "images": 3, "source": "checkpoint",
                                            "refine": {"name": "bilateral-solver", "sigma_spatial": 16.0}})
    shutil.copytree(folder / "predictions", folder / "refined")
    rows = [{"dataset": "ecssd", "split": "test", "images": 3, "metrics": refined, "unrefined": SUMMARY}]
    write_table(folder, rows)
    complete(full_run, "eval", {**refined, "seconds": 12.0})
    page = build_report(full_run).read_text(encoding="utf-8")
    assert "this run, refined" in page and "bilateral-solver" in page
    assert "Per dataset, beside published figures" in page and "ours + refinement" in page
    assert "Voynov et al. 2021, BigBiGAN (published)" in page
    _, cells = table_cells(rows)
    assert [row[2] for row in cells][:2] == ["ours", "ours + refinement"]
    assert (folder / "per_image.unrefined.csv").is_file()


def test_the_report_and_eval_table_quote_the_same_published_figures(full_run: Path) -> None:
    """One table of published figures: every figure the eval stage's table.md sets beside ours is in
    the report's comparison under the same name, and the report quotes no published figure the table
    lacks (the measured baselines aside, which are not published)."""
    import html

    from saliency.evaluation.published import MEASURED_BASELINES
    from saliency.evaluation.stage import format_table

    table = format_table([{"dataset": name, "split": "test", "images": 3, "metrics": SUMMARY}
                          for name in ("ecssd", "duts-te", "dut-omron")])
    quoted = {(line.split(" | ")[0].strip("| "), line.split(" | ")[2].removesuffix(" (published)"))
              for line in table.splitlines() if "(published)" in line}
    page = html.unescape(build_report(full_run).read_text(encoding="utf-8"))
    start = page.index("Metrics and published numbers")
    comparison = page[start:page.index("<h2", start)]
    headers = set(re.findall(r"<th>([^<]+)</th>", comparison)) - {"metric", "better", "this run", "package versions"}
    assert {method for _, method in quoted} == headers - {baseline.method for baseline in MEASURED_BASELINES}
    assert len(quoted) >= 10 and {"TokenCut + bilateral solver", "Voynov et al. 2021, BigBiGAN, encoder latents"} <= headers
