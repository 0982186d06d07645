"""Datasets: pairing, splits, verification and linking, on real ECSSD and tiny folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from saliency.datasets import open_pair_folder, resolve
from saliency.datasets.prepare import prepare, verify
from saliency.datasets.registry import ECSSD
from saliency.errors import UserError
from tests.conftest import write_pair


def test_ecssd_test_split(data_root: Path) -> None:
    test = resolve("ecssd", "test")
    assert len(test) == 500 and test.stems[0] == "0501" and test.stems[-1] == "1000"
    image, mask = test.image("0501"), test.mask("0501")
    assert image.dtype == np.uint8 and image.shape[:2] == mask.shape and mask.dtype == bool
    assert 0 < mask.mean() < 1


def test_ecssd_missing_split_says_which_it_holds(data_root: Path) -> None:
    with pytest.raises(UserError, match="does not hold the train split \\(it holds: test\\)"):
        resolve("ecssd", "train")


def test_folder_dataset_pairs_by_stem(tiny_dataset: Path) -> None:
    folder = resolve(str(tiny_dataset))
    assert folder.stems == ("0000", "0001", "0002")
    assert folder.image("0002").shape == (24, 16, 3)


def test_ground_truth_mask_folder_name(tmp_path: Path) -> None:
    write_pair(tmp_path / "d", "a", np.ones((4, 4)), mask_folder="ground_truth_mask", image_suffix=".png")
    assert open_pair_folder(tmp_path / "d").stems == ("a",)


def test_verify_real_copy_and_link(tmp_path: Path, ecssd_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALIENCY_DATA", str(tmp_path / "data"))
    result = prepare("ecssd", ecssd_root)
    assert result.pairs == 500 and result.splits == ["test"]
    assert result.checked_sums == 1000 and result.mismatched_reference == []
    assert (tmp_path / "data" / "ecssd").resolve() == ecssd_root.resolve()


def test_verify_catches_damaged_file(tmp_path: Path, ecssd_root: Path) -> None:
    copy = tmp_path / "ecssd"
    for sub in ("images", "ground_truth_mask"):
        (copy / sub).mkdir(parents=True)
    lines = []
    for stem in ("0501", "0502"):
        for sub, suffix in (("images", ".jpg"), ("ground_truth_mask", ".png")):
            data = (ecssd_root / sub / f"{stem}{suffix}").read_bytes()
            (copy / sub / f"{stem}{suffix}").write_bytes(data)
    sums = {line.split("  ")[1]: line for line in (ecssd_root / "SHA256SUMS").read_text().splitlines()}
    lines = [sums[f"{sub}/{stem}{suffix}"] for stem in ("0501", "0502")
             for sub, suffix in (("images", ".jpg"), ("ground_truth_mask", ".png"))]
    (copy / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    assert verify(ECSSD, copy).checked_sums == 4
    mask = copy / "ground_truth_mask" / "0502.png"
    from PIL import Image
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(mask)
    with pytest.raises(UserError, match="0502.png: SHA-256 differs"):
        verify(ECSSD, copy)


def test_reference_mismatch_is_only_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_pair(tmp_path / "e", "0001", np.ones((6, 6)), mask_folder="ground_truth_mask")
    result = verify(ECSSD, tmp_path / "e")
    assert result.mismatched_reference == ["ground_truth_mask/0001.png", "images/0001.jpg"]
    assert "differ from the reference list" in caplog.text


def test_download_without_network_explains_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from saliency.datasets import prepare as prepare_module
    from saliency.datasets.registry import Archive, DatasetSpec

    monkeypatch.setenv("SALIENCY_DATA", str(tmp_path))
    spec = DatasetSpec("closed", splits={}, archives=(Archive("http://127.0.0.1:9/images.zip", ("images",)),), homepage="H")
    with pytest.raises(UserError, match="no network.*--from DIR"):
        prepare_module.download(spec)


def test_link_refuses_to_replace_a_real_folder(tmp_path: Path, ecssd_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("SALIENCY_DATA", str(tmp_path))
    (tmp_path / "ecssd").mkdir()
    with pytest.raises(UserError, match="is a real folder"):
        prepare("ecssd", ecssd_root)
    assert not os.path.islink(tmp_path / "ecssd")
