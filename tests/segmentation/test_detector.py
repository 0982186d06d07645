"""The detector people take away: the Python API and ``saliency predict``'s inputs and formats."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from saliency.segmentation.predict import Detector
from tests.conftest import write_tiny_unet

STEMS = ("0501", "0502", "0503")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_unet(tmp_path_factory.mktemp("unet") / "model.pt", activation="softmax", flip=True)


@pytest.fixture
def photos(ecssd_root: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for stem in STEMS:
        shutil.copy(ecssd_root / "images" / f"{stem}.jpg", folder)
    return folder


def test_the_api_takes_paths_arrays_pil_images_and_batches(checkpoint: Path, photos: Path) -> None:
    """``from saliency import Detector``: a path, an RGB array and a PIL image give one map at the
    image's size, a list gives a list, and the checkpoint's settings hold unless overridden."""
    from saliency import Detector as TopLevel

    assert TopLevel is Detector
    detector = TopLevel.load(checkpoint)
    assert (detector.inference.activation, detector.inference.flip, detector.inference.shorter_side) == ("softmax", True, 64)
    path = photos / "0501.jpg"
    array = np.asarray(Image.open(path).convert("RGB"))
    probability = detector(path)
    assert probability.shape == array.shape[:2] and probability.dtype == np.float32
    assert 0 <= probability.min() < probability.max() <= 1
    np.testing.assert_array_equal(detector(array), probability)
    np.testing.assert_array_equal(detector(Image.open(path)), probability)
    batch = detector([str(path), photos / "0502.jpg"])
    assert isinstance(batch, list) and len(batch) == 2
    np.testing.assert_array_equal(batch[0], probability)
    unflipped = Detector.load(checkpoint, flip=False)(path)
    assert np.abs(unflipped - probability).max() > 1e-3
    refined = Detector.load(checkpoint, refine="bilateral-solver")(path)
    assert refined.shape == probability.shape and np.abs(refined - probability).max() > 1e-3


def test_the_api_names_what_it_cannot_read(checkpoint: Path, tmp_path: Path) -> None:
    from saliency.errors import UserError

    detector = Detector.load(checkpoint)
    for bad, message in ((np.zeros((8, 8, 3), np.float32), "float32"), (np.zeros((8, 8, 2), np.uint8), "shape"),
                         (42, "int"), (tmp_path / "absent.jpg", "absent.jpg")):
        with pytest.raises(UserError, match=message):
            detector(bad)
    with pytest.raises(UserError, match="format 'jpeg' is not known"):
        detector.render(np.zeros((8, 8, 3), np.uint8), "jpeg")


def test_predict_formats_are_the_map_the_mask_the_cutout_and_the_overlay(run_cli, checkpoint: Path, photos: Path,
                                                                        tmp_path: Path) -> None:
    """Every format derives from the 8-bit map eval scores: the mask is map ≥ 128, the cut-out keeps
    the image's pixels with the mask as alpha, the overlay tints the image red as much as the map says."""
    written = {}
    for output_format in ("probability", "mask", "cutout", "overlay"):
        out = tmp_path / output_format
        result = run_cli("predict", "--checkpoint", checkpoint, photos, "--out", out, "--format", output_format)
        assert result.code == 0 and f"wrote 3 {output_format} PNGs" in result.out, result.err
        written[output_format] = {stem: Image.open(out / f"{stem}.png") for stem in STEMS}
    for stem in STEMS:
        image = np.asarray(Image.open(photos / f"{stem}.jpg").convert("RGB"))
        modes = {name: pictures[stem].mode for name, pictures in written.items()}
        assert modes == {"probability": "L", "mask": "L", "cutout": "RGBA", "overlay": "RGB"}
        probability = np.asarray(written["probability"][stem])
        np.testing.assert_array_equal(probability, np.rint(Detector.load(checkpoint)(image) * 255))
        mask = np.asarray(written["mask"][stem])
        np.testing.assert_array_equal(mask, np.where(probability >= 128, 255, 0))
        assert 0 < (mask > 0).mean() < 1
        cutout = np.asarray(written["cutout"][stem])
        np.testing.assert_array_equal(cutout[..., :3], image)
        np.testing.assert_array_equal(cutout[..., 3], mask)
        overlay = np.asarray(written["overlay"][stem]).astype(np.float64)
        tint = 0.6 * probability[..., None] / 255  # red at 60 % where the map is 1, none where it is 0
        expected = image * (1 - tint) + np.array([255, 32, 32]) * tint
        assert np.abs(overlay - expected).max() <= 0.51


def test_predict_takes_files_folders_and_globs(run_cli, checkpoint: Path, photos: Path, tmp_path: Path) -> None:
    other = tmp_path / "more"
    other.mkdir()
    shutil.copy(photos / "0503.jpg", other / "extra.jpg")
    out = tmp_path / "maps"
    result = run_cli("predict", "--checkpoint", checkpoint, photos / "0501.jpg", str(photos / "050[2].jpg"),
                     other, "--out", out)
    assert result.code == 0, result.err
    assert sorted(p.name for p in out.glob("*.png")) == ["0501.png", "0502.png", "extra.png"]
    recursive = run_cli("predict", "--checkpoint", checkpoint, str(tmp_path / "**" / "*.jpg"), "--out", tmp_path / "all")
    assert recursive.code == 0 and "wrote 4 probability PNGs" in recursive.out, recursive.err
    # --images is the same as the arguments (scripts written before the arguments keep working)
    assert run_cli("predict", "--checkpoint", checkpoint, "--images", other, "--out", tmp_path / "old").code == 0


@pytest.mark.parametrize("case", ["missing", "no-match", "not-an-image", "same-stem", "corrupt", "nothing"])
def test_bad_predict_input_exits_2_with_one_line_and_writes_nothing(case: str, run_cli, checkpoint: Path,
                                                                    photos: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    twin = tmp_path / "twin"
    twin.mkdir()
    shutil.copy(photos / "0502.jpg", twin / "0501.jpg")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "0009.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    inputs, named = {"missing": ([tmp_path / "absent"], "absent"), "no-match": ([str(tmp_path / "*.png")], "*.png"),
                     "not-an-image": ([notes], "notes.txt"), "same-stem": ([photos, twin], "0501"),
                     "corrupt": ([corrupt], "0009.jpg"), "nothing": ([], "give images")}[case]
    out = tmp_path / "out"
    result = run_cli("predict", "--checkpoint", checkpoint, *inputs, "--out", out)
    # One line names the problem (a corrupt file is found while predicting: after the progress lines).
    errors = [line for line in result.err.strip().splitlines() if line.startswith("error:")]
    assert result.code == 2 and len(errors) == 1 and named in errors[0], result.err
    assert result.err.strip().splitlines()[-1] == errors[0]
    assert not list(out.glob("*.png")) if out.exists() else True
