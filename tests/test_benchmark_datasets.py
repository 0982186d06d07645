"""The registered benchmarks (docs/datasets.md): each entry reads a tiny copy in its release's own
layout, downloads and unpacks archives of that layout, and stops offline with a line naming --from."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from saliency.datasets import resolve
from saliency.datasets.prepare import prepare
from saliency.datasets.registry import Archive, get_spec
from saliency.errors import UserError

BENCHMARKS = ("ecssd", "duts-te", "dut-omron", "hku-is", "pascal-s")
IMAGE_SUFFIX = {"hku-is": ".png"}  # HKU-IS ships PNG images; the others JPEG


def write_release(root: Path, name: str, stems: tuple[str, ...] = ("0001", "0002", "0003")) -> Path:
    """A tiny copy of ``name`` in its release's folders: random images, masks with a graded edge
    (127 is background, 128 foreground, as PASCAL-S's non-binary masks are read)."""
    spec = get_spec(name)
    images, masks = root / spec.image_folders[0], root / spec.mask_folders[0]
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for stem in stems:
        pixels = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{stem}{IMAGE_SUFFIX.get(name, '.jpg')}")
        mask = np.zeros((12, 16), np.uint8)
        mask[3:9, 4:12], mask[3:9, 12] = 255, 128
        mask[3:9, 13] = 127
        Image.fromarray(mask).save(masks / f"{stem}.png")
    return root


@pytest.mark.parametrize("name", BENCHMARKS)
def test_each_benchmark_reads_its_release_layout(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("SALIENCY_DATA", str(tmp_path / "data"))
    copy = write_release(tmp_path / "release", name)
    result = prepare(name, copy)
    assert result.pairs == 3 and (tmp_path / "data" / name).resolve() == copy.resolve()
    assert f"holds 3 image/mask pairs, the release has {get_spec(name).pairs}" in caplog.text
    test = resolve(name, "test" if name != "ecssd" else None)
    assert test.stems == ("0001", "0002", "0003")
    mask = test.mask("0002")
    assert mask.sum() == 6 * 9 and mask[3:9, 12].all() and not mask[3:9, 13].any()
    assert test.image("0001").shape == (12, 16, 3)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_each_benchmark_offline_stops_with_one_line_naming_from(name: str, no_data: Path, run_cli) -> None:
    result = run_cli("data", name)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and f"saliency data {name} --from DIR" in lines[0], lines


@pytest.mark.parametrize("name", BENCHMARKS)
def test_a_folder_in_another_layout_is_refused_with_the_expected_folders(name: str, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALIENCY_DATA", str(tmp_path / "data"))
    (tmp_path / "wrong" / "pictures").mkdir(parents=True)
    with pytest.raises(UserError, match=f"does not hold a {name} release: expected {get_spec(name).image_folders[0]}/"):
        prepare(name, tmp_path / "wrong")
    assert not (tmp_path / "data" / name).exists()


def _zip_folder(folder: Path, archive: Path, inside: str = "") -> Path:
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(folder.rglob("*")):
            zipped.write(path, str(Path(inside) / path.relative_to(folder)))
        zipped.writestr("__MACOSX/._junk", b"")  # what a Mac adds; never taken for the release
    return archive


def test_download_unpacks_a_top_folder_and_a_zip_in_a_zip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DUTS-TE.zip holds DUTS-TE/DUTS-TE-Image; DUT-OMRON's masks come as a zip inside a zip."""
    import dataclasses

    from saliency.datasets import registry

    release = write_release(tmp_path / "release", "dut-omron")
    images = _zip_folder(release / "DUT-OMRON-image", tmp_path / "images.zip", "DUT-OMRON-image")
    inner = _zip_folder(release / "pixelwiseGT-new-PNG", tmp_path / "gt.zip", "pixelwiseGT-new-PNG")
    with zipfile.ZipFile(tmp_path / "gt.zip.zip", "w") as outer:
        outer.write(inner, "DUT-OMRON-gt-pixelwise.zip")
    spec = dataclasses.replace(registry.get_spec("dut-omron"), archives=(
        Archive(images.as_uri(), ("DUT-OMRON-image",)), Archive((tmp_path / "gt.zip.zip").as_uri(), ("pixelwiseGT-new-PNG",))))
    monkeypatch.setitem(registry._REGISTRY, "dut-omron", spec)
    monkeypatch.setenv("SALIENCY_DATA", str(tmp_path / "data"))
    assert prepare("dut-omron").pairs == 3
    assert len(resolve("dut-omron", "test")) == 3

    duts = write_release(tmp_path / "duts", "duts-te")
    archive = _zip_folder(duts, tmp_path / "DUTS-TE.zip", "DUTS-TE")
    monkeypatch.setitem(registry._REGISTRY, "duts-te", dataclasses.replace(
        registry.get_spec("duts-te"), archives=(Archive(archive.as_uri(), ("DUTS-TE-Image", "DUTS-TE-Mask")),)))
    assert prepare("duts-te").pairs == 3
    assert sorted(p.name for p in (tmp_path / "data" / "duts-te.download").iterdir()) == ["DUTS-TE-Image", "DUTS-TE-Mask"]


def test_hku_is_has_no_plain_download_and_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALIENCY_DATA", str(tmp_path))
    with pytest.raises(UserError, match="RAR archive.*saliency data hku-is --from DIR"):
        prepare("hku-is")
