"""run.precision auto: bf16 exactly where the device computes it fast, fp32 elsewhere, and the
precision actually used is what the manifest records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from saliency import distributed
from saliency.discovery.artifacts import load_directions
from saliency.errors import UserError

CPU_PROBES = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")


def claim_cpu_bf16(monkeypatch: pytest.MonkeyPatch, fast: bool) -> None:
    for probe in CPU_PROBES:
        monkeypatch.setattr(torch.cpu, probe, lambda: fast, raising=False)


@pytest.mark.parametrize("fast", [False, True])
def test_capability_check_decides_auto_on_cpu(monkeypatch: pytest.MonkeyPatch, fast: bool) -> None:
    claim_cpu_bf16(monkeypatch, fast)
    cpu = torch.device("cpu")
    assert distributed.bf16_is_fast(cpu) is fast
    assert distributed.resolve_precision("auto", cpu) == ("bf16" if fast else "fp32")
    assert distributed.resolve_precision("fp32", cpu) == "fp32" and distributed.resolve_precision("bf16", cpu) == "bf16"


def test_one_probe_is_enough_and_unknown_precisions_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    claim_cpu_bf16(monkeypatch, False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert distributed.resolve_precision("auto", torch.device("cpu")) == "bf16"
    with pytest.raises(UserError, match="run.precision 'fp16'"):
        distributed.resolve_precision("fp16", torch.device("cpu"))


@pytest.mark.parametrize(("capability", "fast"), [((7, 5), False), ((8, 0), True), ((9, 0), True)])
def test_cuda_bf16_is_fast_from_ampere_on(monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int],
                                          fast: bool) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert distributed.bf16_is_fast(torch.device("cuda", 0)) is fast


def discover(run_cli, run: Path, config: Path, precision: str) -> tuple[str, torch.Tensor]:
    result = run_cli("discover", "--run", run, "--config", config, "--set", f"run.precision={precision}")
    assert result.code == 0, result.err
    manifest = json.loads((run / "discover" / "manifest.json").read_text())
    return manifest["precision"], load_directions(run / "discover" / "directions.pt").directions


@pytest.mark.parametrize("fast", [False, True])
def test_auto_through_the_cli_computes_and_records_what_the_check_decides(
        run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast: bool) -> None:
    """With the capability forced either way, ``auto`` is the same run, bit for bit, as the
    precision it chose, and differs from the other one (so the check decided something)."""
    config = tmp_path / "toy.yaml"
    config.write_text(yaml.safe_dump({
        "generator": {"name": "toyworld", "options": {"dim_z": 16, "resolution": 16}},
        "discover": {"method": "voynov", "reconstructor": "lenet", "directions": 5, "steps": 3, "batch_size": 4,
                     "seed": 1}}))
    claim_cpu_bf16(monkeypatch, fast)
    chosen = "bf16" if fast else "fp32"
    other = "fp32" if fast else "bf16"
    recorded, auto = discover(run_cli, tmp_path / "auto", config, "auto")
    recorded_same, same = discover(run_cli, tmp_path / chosen, config, chosen)
    recorded_other, different = discover(run_cli, tmp_path / other, config, other)
    assert (recorded, recorded_same, recorded_other) == (chosen, chosen, other)
    assert torch.equal(same, auto) and not torch.equal(different, auto)
