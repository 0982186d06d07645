"""The stage registry: the one list that the runner, the seed table, the report and evaluation read."""

from __future__ import annotations

from pathlib import Path

from saliency import stages
from saliency.pipeline import STAGES, select_stages
from saliency.report.html import SECTIONS
from saliency.seeding import STAGE_SEED_KEYS
from saliency.segmentation.model import MODEL_FILE


def test_runner_seeds_and_report_follow_the_registry() -> None:
    names = [entry.name for entry in stages.REGISTRY]
    assert list(STAGES) == list(SECTIONS) == select_stages() == names
    assert STAGE_SEED_KEYS == {"discover": 1_000, "rank": 1_001, "synth": 1_002, "unet": 1_003, "selftrain": 1_004}
    keys = [entry.seed_key for entry in stages.REGISTRY if entry.seed_key is not None]
    assert len(set(keys)) == len(keys)
    assert [entry.title for entry in stages.REGISTRY] == [title for title, _ in SECTIONS.values()]


def test_evaluation_scores_the_detector_of_the_last_stage_that_wrote_one(tmp_path: Path) -> None:
    unet = tmp_path / "unet" / MODEL_FILE
    assert stages.handed_on_model(tmp_path) == unet  # none written: the file a user expects, named
    unet.parent.mkdir()
    unet.write_bytes(b"u")
    assert stages.handed_on_model(tmp_path) == unet  # self-training has not written its model
    (tmp_path / "selftrain").mkdir()
    (tmp_path / "selftrain" / MODEL_FILE).write_bytes(b"s")
    assert stages.handed_on_model(tmp_path) == tmp_path / "selftrain" / MODEL_FILE
