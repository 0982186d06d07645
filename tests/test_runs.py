"""Run folders: atomic writes, manifests, skip / force / resume decisions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from saliency.errors import UserError
from saliency.runs import (
    Stage,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    fingerprint,
    read_manifest,
    run_stage,
)


def test_atomic_write_keeps_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_complete_stage_is_skipped_until_config_or_input_changes(tmp_path: Path) -> None:
    source = tmp_path / "input.txt"
    source.write_text("a")
    calls = []

    def body(stage: Stage) -> dict:
        calls.append(1)
        (stage.dir / "out.txt").write_text("done")
        return {"score": 0.5}

    def make(config: dict) -> Stage:
        return Stage(tmp_path / "run", "demo", config=config, seed=1, inputs={"source": source})

    assert run_stage(make({"k": 1}), body)["score"] == 0.5
    manifest = read_manifest(tmp_path / "run" / "demo")
    assert manifest["status"] == "complete" and manifest["seed"] == 1
    assert manifest["inputs"]["source"] == fingerprint(source) and "torch" in manifest["versions"]
    assert (tmp_path / "run" / "demo" / "log.txt").read_text().count("demo: complete in") == 1
    run_stage(make({"k": 1}), body)
    assert len(calls) == 1  # skipped
    run_stage(make({"k": 2}), body)
    assert len(calls) == 2  # config changed
    source.write_text("bb")
    run_stage(make({"k": 2}), body)
    assert len(calls) == 3  # input changed
    run_stage(make({"k": 2}), body, force=True)
    assert len(calls) == 4


def test_failure_keeps_partial_work_for_resume(tmp_path: Path) -> None:
    stage = Stage(tmp_path / "run", "demo", config={})

    def crash(stage: Stage) -> dict:
        (stage.dir / "checkpoint.pt").write_text("step 5")
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        run_stage(stage, crash)
    assert read_manifest(stage.dir)["status"] == "failed"
    seen = []
    run_stage(stage, lambda s: seen.append((s.dir / "checkpoint.pt").read_text()) or {})
    assert seen == ["step 5"] and read_manifest(stage.dir)["status"] == "complete"


def test_bad_input_leaves_nothing(tmp_path: Path) -> None:
    stage = Stage(tmp_path / "run", "demo", config={})

    def reject(stage: Stage) -> dict:
        raise UserError("bad file")

    with pytest.raises(UserError):
        run_stage(stage, reject)
    assert not (tmp_path / "run").exists()


def test_atomic_writes_follow_the_umask_without_changing_it(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        written = atomic_write_text(tmp_path / "result.txt", "shared")
        assert os.umask(0o027) == 0o027  # nothing changed the process's umask
    finally:
        os.umask(previous)
    assert written.read_text() == "shared" and written.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["result.txt"]  # no temporary file left


def test_the_manifest_records_this_package_under_its_distribution_name() -> None:
    """The distribution is gan-saliency ("saliency" on PyPI is another project); the manifest keeps the key."""
    import saliency
    from saliency.runs import package_versions

    assert package_versions()["saliency"] == saliency.__version__
