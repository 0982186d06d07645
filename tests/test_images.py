"""saliency.images against known answers: the [-1, 1] <-> uint8 codes, exact PNG round trips, RGB
order checked with an independent library (PIL), masks as one channel, files decoded as PIL did."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from saliency.errors import UserError
from saliency.images import (
    _luma,
    decode_image,
    encode_jpeg,
    encode_png,
    read_gray,
    read_image,
    read_mask,
    resize,
    resize_batch,
    signed_to_uint8,
    tile,
    uint8_to_signed,
    unit_to_uint8,
    write_grid,
    write_png,
)

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def pil_bytes(array: np.ndarray, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=format, **options)
    return buffer.getvalue()


def colour_blocks(size: int = 32) -> np.ndarray:
    """Left half red, top right green, bottom right blue: flat blocks JPEG keeps nearly exact."""
    image = np.zeros((size, size, 3), np.uint8)
    image[:, : size // 2] = RED
    image[: size // 2, size // 2:] = GREEN
    image[size // 2:, size // 2:] = BLUE
    return image


def test_signed_round_trip_at_minus_one_zero_and_one() -> None:
    codes = signed_to_uint8(torch.tensor([-1.0, 0.0, 1.0]))
    assert codes.dtype == torch.uint8 and codes.tolist() == [0, 128, 255]  # 127.5 rounds to even: 128
    back = uint8_to_signed(codes)
    assert back.dtype == torch.float32 and back[0].item() == -1.0 and back[2].item() == 1.0
    assert back[1].item() == pytest.approx(1 / 255, abs=1e-7)  # no code is 0 exactly: 128 is 1/255


def test_every_code_survives_the_round_trip_and_outside_values_clamp() -> None:
    codes = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(signed_to_uint8(uint8_to_signed(codes)), codes)
    assert signed_to_uint8(torch.tensor([-3.0, 1.5, -1 + 0.4 / 127.5, -1 + 0.6 / 127.5])).tolist() == [0, 255, 0, 1]


def test_conversions_keep_the_layout() -> None:
    images = torch.rand(2, 3, 4, 5) * 2 - 1
    assert signed_to_uint8(images).shape == (2, 3, 4, 5) and uint8_to_signed(signed_to_uint8(images)).shape == (2, 3, 4, 5)
    assert torch.equal(signed_to_uint8(images.permute(0, 2, 3, 1)), signed_to_uint8(images).permute(0, 2, 3, 1))


def test_unit_to_uint8_rounds_to_nearest() -> None:
    assert unit_to_uint8(torch.tensor([0.0, 0.5, 1.0, 1 / 255, 0.4 / 255, -0.1, 1.2])).tolist() == [0, 128, 255, 1, 0, 0, 255]


def test_png_round_trip_is_exact_and_deterministic(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb, grey = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8), rng.integers(0, 256, (7, 9), dtype=np.uint8)
    assert encode_png(rgb) == encode_png(rgb.copy())
    np.testing.assert_array_equal(decode_image(encode_png(rgb), "rgb"), rgb)
    np.testing.assert_array_equal(read_gray(write_png(tmp_path / "grey.png", grey)) * 255, grey)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "grey.png")), grey)  # another decoder agrees
    assert [p.name for p in tmp_path.iterdir()] == ["grey.png"]  # atomic: no temporary file left


@pytest.mark.parametrize("format", ["PNG", "JPEG"])
def test_decoded_pixels_are_in_rgb_order(tmp_path: Path, format: str) -> None:
    path = tmp_path / f"blocks.{format.lower()}"
    path.write_bytes(pil_bytes(colour_blocks(), format, **({"quality": 95} if format == "JPEG" else {})))
    image = read_image(path)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    for (row, column), colour in (((20, 4), RED), ((4, 28), GREEN), ((28, 28), BLUE)):
        assert np.abs(image[row, column].astype(int) - colour).max() <= 3, (format, colour, image[row, column])


@pytest.mark.parametrize("encode", [encode_png, lambda image: encode_jpeg(image, 95)])
def test_encoded_pixels_are_in_rgb_order(encode) -> None:
    decoded = np.asarray(Image.open(io.BytesIO(encode(colour_blocks()))).convert("RGB")).astype(int)
    for (row, column), colour in (((20, 4), RED), ((4, 28), GREEN), ((28, 28), BLUE)):
        assert np.abs(decoded[row, column] - colour).max() <= 3


def test_grid_in_unit_range_is_saved_as_rgb(tmp_path: Path) -> None:
    grid = torch.zeros(3, 2, 2)
    grid[0, 0, 0] = 1.0  # top-left red
    grid[:, 1, 1] = 0.5
    saved = read_image(write_grid(tmp_path / "grid.png", grid))
    assert saved[0, 0].tolist() == list(RED) and saved[1, 1].tolist() == [128, 128, 128]


def test_masks_decode_to_one_channel(tmp_path: Path) -> None:
    mask = np.zeros((6, 8), np.uint8)
    mask[2:4, 3:6] = 255
    (tmp_path / "grey.png").write_bytes(pil_bytes(mask, "PNG"))
    (tmp_path / "rgb.png").write_bytes(pil_bytes(np.repeat(mask[..., None], 3, axis=2), "PNG"))
    Image.fromarray(mask).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(mask > 0).save(tmp_path / "bits.png")  # 1-bit
    for name in ("grey.png", "rgb.png", "palette.png", "bits.png"):
        decoded = read_mask(tmp_path / name)
        assert decoded.shape == (6, 8) and decoded.dtype == bool, name
        np.testing.assert_array_equal(decoded, mask > 0)


def test_colour_to_grey_is_pils_luma(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    colour = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    (tmp_path / "colour.png").write_bytes(pil_bytes(colour, "PNG"))
    np.testing.assert_array_equal(read_gray(tmp_path / "colour.png") * 255, np.asarray(Image.fromarray(colour).convert("L")))
    every_red_green = np.stack(np.meshgrid(np.arange(256), np.arange(256), indexing="ij"), axis=-1)
    for blue in (0, 1, 128, 255):
        rgb = np.concatenate([every_red_green, np.full((256, 256, 1), blue)], axis=-1).astype(np.uint8)
        np.testing.assert_array_equal(_luma(rgb), np.asarray(Image.fromarray(rgb).convert("L")))


def test_sixteen_bit_and_float_maps_keep_their_range(tmp_path: Path) -> None:
    wide = np.array([[0, 32768, 65535]], np.uint16)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    np.testing.assert_allclose(read_gray(tmp_path / "wide.png"), [[0, 32768 / 65535, 1]], rtol=1e-6)
    Image.fromarray(np.array([[0.0, 0.25, 1.0]], np.float32)).save(tmp_path / "map.tiff")
    np.testing.assert_array_equal(read_gray(tmp_path / "map.tiff"), [[0.0, 0.25, 1.0]])


def test_exif_rotation_is_not_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90°": PIL never applied it, so the pixels stay as stored
    Image.fromarray(colour_blocks()[:, :24]).save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    assert read_image(tmp_path / "rotated.jpg").shape == (32, 24, 3)


@pytest.mark.parametrize("cut", [0.5, 0.99])
@pytest.mark.parametrize("format", ["JPEG", "PNG"])
def test_a_file_cut_short_is_refused(tmp_path: Path, format: str, cut: float) -> None:
    data = pil_bytes(np.random.default_rng(2).integers(0, 256, (40, 30, 3), dtype=np.uint8), format)
    path = tmp_path / f"cut.{format.lower()}"
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(UserError, match=f"{path.name}: cannot decode image"):
        read_image(path)


def test_a_missing_file_is_named() -> None:
    with pytest.raises(UserError, match="absent.png: file not found"):
        read_image(Path("absent.png"))


def test_decoding_matches_pil_on_ecssd(ecssd_root: Path) -> None:
    for stem in ("0501", "0777", "1000"):
        image, mask = ecssd_root / "images" / f"{stem}.jpg", ecssd_root / "ground_truth_mask" / f"{stem}.png"
        np.testing.assert_array_equal(read_image(image), np.asarray(Image.open(image).convert("RGB")))
        np.testing.assert_array_equal(read_gray(mask) * 255, np.asarray(Image.open(mask).convert("L")))


def test_resize_takes_height_then_width_and_averages_when_shrinking() -> None:
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    assert resize(np.zeros((10, 20, 3), np.uint8), (5, 8)).shape == (5, 8, 3)
    np.testing.assert_array_equal(resize(image, (2, 2)), [[2.5, 4.5], [10.5, 12.5]])  # 2 × 2 block means
    np.testing.assert_array_equal(resize(image, (4, 4)), image)
    assert resize(image, (8, 8), "linear").shape == (8, 8)


def test_resize_batch_keeps_a_batch_of_the_right_size() -> None:
    images = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    assert torch.equal(resize_batch(images, (8, 8)), images.float())
    small = resize_batch(torch.ones(2, 3, 64, 48), (32, 32))
    assert small.shape == (2, 3, 32, 32) and torch.allclose(small, torch.ones(()))


def test_tile_places_each_image_in_its_cell() -> None:
    """Three 1×2 images, two to a row, one pixel of padding: a 5×7 picture with the third image
    alone on the second row and the pad value everywhere else."""
    images = torch.arange(1, 7, dtype=torch.float32).view(3, 1, 1, 2)
    expected = torch.full((1, 5, 7), -1.0)
    expected[0, 1, 1:3], expected[0, 1, 4:6], expected[0, 3, 1:3] = images[0, 0, 0], images[1, 0, 0], images[2, 0, 0]
    assert torch.equal(tile(images, 2, padding=1, pad_value=-1.0), expected)


@pytest.mark.parametrize("count, columns", [(7, 7), (5, 3), (12, 8), (3, 8)])
def test_tile_lays_out_as_torchvision_make_grid(count: int, columns: int) -> None:
    from torchvision.utils import make_grid

    images = torch.rand(count, 3, 9, 11, generator=torch.Generator().manual_seed(count))
    assert torch.equal(tile(images, columns, pad_value=0.5), make_grid(images, nrow=columns, padding=2, pad_value=0.5))
