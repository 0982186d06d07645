"""The paper pipelines and their smoke versions: a smoke pipeline keeps every setting of its full
pipeline but the budgets, and runs end to end on random weights on CPU (docs/method.md §1-§7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from saliency.config import load_config
from saliency.pipeline import STAGES, run_pipeline, select_stages
from saliency.runs import read_manifest

REPO = Path(__file__).resolve().parents[1]
PIPELINES = REPO / "pipelines"

# What a smoke pipeline may change: how much work is done, where, and with which (random) weights.
BUDGETS = {
    "run": {"name", "device"},
    "generator": {"weights"},
    "discover": {"directions", "steps", "batch_size", "checkpoint_every", "rca_samples"},
    "rank": {"dvn_samples", "dvn_steps", "dvn_batch_size", "mask_samples", "batch_size"},
    "classes": {"classifier_weights"},
    "synth": {"n", "batch_size", "shard_size"},
    "unet": {"steps", "batch_size", "eval_every", "eval_images", "checkpoint_every"},
}
# Beyond the budgets, and why (the smoke YAMLs say so too): a random-weight generator whitens or
# lights nothing, so its masks cover (nearly) the whole image (measured: area 1.0 for every BigGAN
# sample, 0.91-1.0 for BigBiGAN's lighting rule), and the papers' upper area bound would reject
# (nearly) every sample.
EXTRA = {"biggan-ecssd": {"synth": {"max_area"}}, "bigbigan-ecssd": {"synth": {"max_area"}}}


def differences(full: dict, smoke: dict) -> dict[str, set[str]]:
    return {section: {key for key in full[section] if full[section][key] != smoke[section][key]}
            for section in full if full[section] != smoke[section]}


@pytest.mark.parametrize("name", ["biggan-ecssd", "bigbigan-ecssd"])
def test_smoke_pipeline_keeps_every_setting_but_the_budgets(name: str) -> None:
    full = load_config(PIPELINES / f"{name}.yaml").to_dict()
    smoke = load_config(PIPELINES / f"{name}-smoke.yaml").to_dict()
    allowed = {section: BUDGETS.get(section, set()) | EXTRA[name].get(section, set()) for section in full}
    changed = differences(full, smoke)
    assert all(keys <= allowed[section] for section, keys in changed.items()), changed
    assert smoke["run"]["precision"] == "fp32" and smoke["unet"]["arch"] == "classic"


def test_pipelines_follow_the_sources() -> None:
    """The settings docs/method.md gives for each paper pipeline, as the YAML resolves them."""
    paper = load_config(PIPELINES / "biggan-ecssd.yaml")
    assert (paper.discover.init, paper.discover.classes, paper.discover.directions) == ("random", [239], 120)
    assert (paper.rank.top, paper.synth.mask_mode, paper.rank.magnitude) == (None, "intensity", 26.0)
    assert (paper.unet.arch, paper.unet.source, paper.unet.temperature) == ("classic", "online", 10.0)
    assert (paper.predict.activation, paper.run.precision) == ("sigmoid-logit", "fp32")
    follow_up = load_config(PIPELINES / "bigbigan-ecssd.yaml")
    assert (follow_up.generator.name, follow_up.discover.method, follow_up.rank.magnitude) == ("bigbigan-128", "import", 5.0)
    rule = follow_up.synth
    assert (rule.mask_mode, rule.min_area, rule.max_area, rule.area_bounds, rule.components, rule.histogram) == (
        "lighting", None, 0.5, "strict", True, True)
    unet = follow_up.unet
    assert (unet.lr, unet.lr_step, unet.lr_decay, unet.steps, unet.batch_size, unet.temperature) == (
        0.001, 8000, 0.2, 12000, 95, 1.0)
    assert follow_up.predict.activation == "softmax"


@pytest.fixture
def ecssd_sample(ecssd_root: Path, tmp_path: Path) -> Path:
    """20 pairs of the ECSSD test split: evaluating all 500 with the classic U-Net on CPU takes
    minutes and shows nothing more about the pipeline."""
    root = tmp_path / "ecssd-sample"
    for stem in [f"{i:04d}" for i in range(501, 1001, 25)]:
        for sub, source, suffix in (("images", "images", ".jpg"), ("masks", "ground_truth_mask", ".png")):
            (root / sub).mkdir(parents=True, exist_ok=True)
            (root / sub / f"{stem}{suffix}").symlink_to(ecssd_root.resolve() / source / f"{stem}{suffix}")
    return root


def run_smoke(name: str, run_dir: Path, evaluation: Path) -> dict:
    # Data, not settings: only ECSSD's test split is linked here (the full pipelines read the train
    # split); 20 of its pairs choose the classes and are scored.
    config = load_config(PIPELINES / f"{name}-smoke.yaml", {"classes.dataset": str(evaluation), "classes.split": "all",
                                                           "eval.dataset": str(evaluation)})
    results = run_pipeline(config, run_dir, select_stages())
    assert list(results) == list(STAGES)
    for stage in STAGES:
        manifest = read_manifest(run_dir / stage)
        assert manifest["status"] == "complete" and manifest["precision"] == "fp32", stage
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert metrics["images"] == 20
    assert len(list((run_dir / "eval" / "predictions").glob("*.png"))) == 20
    assert (run_dir / "report.html").is_file()
    model = torch.load(run_dir / "unet" / "model.pt", weights_only=True)
    assert (model["arch"], model["activation"]) == ("classic", config.predict.activation)
    return results


@pytest.mark.slow(minutes=2.7)
def test_biggan_smoke_pipeline(data_root: Path, ecssd_sample: Path, tmp_path: Path) -> None:
    results = run_smoke("biggan-ecssd", tmp_path / "smoke", ecssd_sample)
    assert results["rank"]["directions"] == 4 and results["discover"]["steps"] == 2


@pytest.mark.slow(minutes=1.6)
def test_bigbigan_smoke_pipeline(data_root: Path, ecssd_sample: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The published direction is looked up in the cache: a random stand-in of length 3 is put there."""
    vector = torch.randn(120, generator=torch.Generator().manual_seed(0))
    (tmp_path / "cache" / "bigbigan-128").mkdir(parents=True)
    torch.save(3.0 * vector / vector.norm(), tmp_path / "cache" / "bigbigan-128" / "bg_direction.pth")
    monkeypatch.setenv("SALIENCY_CACHE", str(tmp_path / "cache"))
    run_dir = tmp_path / "smoke"
    results = run_smoke("bigbigan-ecssd", run_dir, ecssd_sample)
    ranking = json.loads((run_dir / "rank" / "rank.json").read_text())
    choice = ranking["choice"]
    assert (choice["direction"], choice["sign"], choice["shift"]) == (0, 1, 5.0)
    assert torch.tensor(choice["vector"]).norm().item() == pytest.approx(3.0, rel=1e-5), "kept at its stored length"
    stats = json.loads((run_dir / "synth" / "stats.json").read_text())
    assert (stats["mask_mode"], stats["components"], stats["histogram"]) == ("lighting", True, True)
    assert results["classes"]["chosen"] == 0  # unconditional: no class to choose
