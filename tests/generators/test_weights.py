"""Weight resolution: user path, cache, download (file:// and a local HTTP server), failures."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from saliency.downloads import WeightFile, load_checkpoint
from saliency.errors import UserError
from saliency.generators.weights import (
    PUBLISHED_DIRECTIONS,
    PUBLISHED_WEIGHTS,
    WeightsSpec,
    imagenet_class_names,
    resolve_weights,
)

FORMATS_README = Path(__file__).resolve().parents[1] / "fixtures" / "formats" / "README.md"
PAYLOAD = b"not really weights, but bytes with a known checksum" * 1000
UNREACHABLE = "http://127.0.0.1:9/weights.pth"  # the discard port: connection refused at once


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("SALIENCY_CACHE", str(root))
    monkeypatch.delenv("SALIENCY_OFFLINE", raising=False)
    return root


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1, and its base URL."""
    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


def spec_for(*files: WeightFile) -> WeightsSpec:
    return WeightsSpec("toy-gan", files)


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_user_path_wins_over_cache(tmp_path: Path, cache: Path) -> None:
    (cache / "toy-gan").mkdir(parents=True)
    (cache / "toy-gan" / "w.pth").write_bytes(b"cached")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "w.pth").write_bytes(b"mine")
    (mine / "renamed.pth").write_bytes(b"mine")
    spec = spec_for(WeightFile("w.pth", UNREACHABLE))
    assert resolve_weights(spec, str(mine)) == mine / "w.pth"
    assert resolve_weights(spec, mine / "renamed.pth") == mine / "renamed.pth"
    with pytest.raises(UserError, match=f"toy-gan weights: {tmp_path / 'absent.pth'} not found"):
        resolve_weights(spec, str(tmp_path / "absent.pth"))


def test_cache_lookup_under_saliency_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALIENCY_OFFLINE", "1")  # found without any network attempt
    (cache / "toy-gan").mkdir(parents=True)
    for name in ("w.pth", "config.json"):
        (cache / "toy-gan" / name).write_bytes(b"x")
    spec = spec_for(WeightFile("w.pth", UNREACHABLE), WeightFile("config.json", UNREACHABLE))
    assert resolve_weights(spec, None) == cache / "toy-gan" / "w.pth"


def test_download_from_file_url_checks_size_and_checksum(tmp_path: Path, cache: Path) -> None:
    source = tmp_path / "published.bin"
    source.write_bytes(PAYLOAD)
    file = WeightFile("w.pth", source.as_uri(), size=len(PAYLOAD), sha256=hashlib.sha256(PAYLOAD).hexdigest())
    path = resolve_weights(spec_for(file), None)
    assert path == cache / "toy-gan" / "w.pth" and path.read_bytes() == PAYLOAD
    assert files_under(cache / "toy-gan") == ["w.pth"]  # no temporary files left behind


def test_download_over_http_extracts_a_tar_member(http_root: tuple[Path, str], cache: Path) -> None:
    root, url = http_root
    with tarfile.open(root / "bundle.tar", "w") as tar:
        for name, data in [("pretrained/deformators/BigGAN/G_ema.pth.txt", b"other"),
                           ("pretrained/generators/BigGAN/G_ema.pth", PAYLOAD)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    file = WeightFile("G_ema.pth", f"{url}/bundle.tar", sha256=hashlib.sha256(PAYLOAD).hexdigest(), in_tar=True)
    path = resolve_weights(spec_for(file), None)
    assert path.read_bytes() == PAYLOAD
    assert files_under(cache / "toy-gan") == ["G_ema.pth"]


@pytest.mark.parametrize("wrong, message", [
    ({"sha256": "0" * 64}, "has SHA-256 .*, expected 0000"),
    ({"size": len(PAYLOAD) + 1}, f"has {len(PAYLOAD)} bytes, expected {len(PAYLOAD) + 1}"),
])
def test_corrupt_download_is_refused_and_nothing_is_cached(http_root: tuple[Path, str], cache: Path,
                                                           wrong: dict, message: str) -> None:
    root, url = http_root
    (root / "w.pth").write_bytes(PAYLOAD)
    with pytest.raises(UserError, match=f"toy-gan weights: w.pth from .* {message}.*nothing was saved"):
        resolve_weights(spec_for(WeightFile("w.pth", f"{url}/w.pth", **wrong)), None)
    assert [p for p in (cache / "toy-gan").rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("members, message", [
    ([("readme.txt", b"x")], "holds 0 files named G_ema.pth"),
    (None, "is not a tar archive"),
])
def test_archive_without_the_member_is_refused(http_root: tuple[Path, str], cache: Path, members, message: str) -> None:
    root, url = http_root
    if members is None:
        (root / "bundle.tar").write_bytes(b"<html>a download page, not the archive</html>")
    else:
        with tarfile.open(root / "bundle.tar", "w") as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    with pytest.raises(UserError, match=message):
        resolve_weights(spec_for(WeightFile("G_ema.pth", f"{url}/bundle.tar", in_tar=True)), None)
    assert [p for p in (cache / "toy-gan").rglob("*") if p.is_file()] == []


def test_unreachable_url_gives_one_line_naming_file_and_place(cache: Path) -> None:
    start = time.monotonic()
    with pytest.raises(UserError) as error:
        resolve_weights(spec_for(WeightFile("w.pth", UNREACHABLE)), None)
    message = str(error.value)
    assert time.monotonic() - start < 10
    assert "\n" not in message
    assert message.startswith(f"toy-gan weights not found and download of {UNREACHABLE} failed (no network?")
    assert message.endswith(f"put w.pth at {cache / 'toy-gan' / 'w.pth'} or pass --weights PATH")


def test_offline_mode_makes_no_download_attempt(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "published.bin"
    source.write_bytes(PAYLOAD)  # reachable: only SALIENCY_OFFLINE stops the download
    monkeypatch.setenv("SALIENCY_OFFLINE", "1")
    with pytest.raises(UserError, match=r"downloads are off \(SALIENCY_OFFLINE is set\): put w\.pth at"):
        resolve_weights(spec_for(WeightFile("w.pth", source.as_uri())), None)
    assert files_under(cache) == []


def test_load_checkpoint_accepts_state_dicts_only(tmp_path: Path) -> None:
    good, not_tensors = tmp_path / "good.pth", tmp_path / "other.pth"
    torch.save({"w": torch.ones(2)}, good)
    torch.save({"step": 3}, not_tensors)
    assert torch.equal(load_checkpoint(good)["w"], torch.ones(2))
    with pytest.raises(UserError, match=f"{not_tensors} holds no state dict of tensors"):
        load_checkpoint(not_tensors)


@pytest.mark.parametrize("content", [b"<html>not a checkpoint</html>", b"hello", b"", PAYLOAD[:100]])
def test_unreadable_checkpoint_is_a_user_error_naming_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "G_ema.pth"
    path.write_bytes(content)
    with pytest.raises(UserError, match=f"{path} is not a readable PyTorch checkpoint"):
        load_checkpoint(path)


def test_published_urls_are_the_documented_ones() -> None:
    readme = FORMATS_README.read_text()
    for name in ("biggan-128", "bigbigan-128"):
        url = PUBLISHED_WEIGHTS[name].checkpoint.url
        assert url.endswith("?dl=1") and url.removesuffix("?dl=1") in readme
    assert PUBLISHED_WEIGHTS["biggan-128"].checkpoint.in_tar
    for size in (128, 256, 512):
        urls = [f.url for f in PUBLISHED_WEIGHTS[f"biggan-deep-{size}"].files]
        base = "https://s3.amazonaws.com/models.huggingface.co/biggan/biggan-deep-"
        assert base in readme
        assert urls == [f"{base}{size}-pytorch_model.bin", f"{base}{size}-config.json"]


def test_a_cached_file_is_verified_before_it_is_used(cache: Path) -> None:
    (cache / "toy-gan").mkdir(parents=True)
    (cache / "toy-gan" / "w.pth").write_bytes(PAYLOAD[:-1])  # truncated after its download was checked
    file = WeightFile("w.pth", UNREACHABLE, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    with pytest.raises(UserError, match="the cached w.pth at .* has SHA-256 .*; delete it to download it again"):
        resolve_weights(spec_for(file), None)
    (cache / "toy-gan" / "w.pth").write_bytes(PAYLOAD)
    assert resolve_weights(spec_for(file), None) == cache / "toy-gan" / "w.pth"


def test_a_file_without_a_published_checksum_is_used_with_a_warning(cache: Path, caplog) -> None:
    (cache / "toy-gan").mkdir(parents=True)
    (cache / "toy-gan" / "w.pth").write_bytes(PAYLOAD)
    resolve_weights(spec_for(WeightFile("w.pth", UNREACHABLE)), None)
    assert "w.pth: its publisher gives no checksum, so it is used unverified" in caplog.text


def test_published_checksums_are_only_the_documented_ones() -> None:
    from torchvision.models import ResNet18_Weights

    from saliency.classes import get_classifier

    url = get_classifier("resnet18").weights_url
    assert url == ResNet18_Weights.IMAGENET1K_V1.url and url.endswith("resnet18-f37072fd.pth")
    assert WeightFile.from_hashed_url("resnet18.pth", url).sha256 == "f37072fd"  # torchvision's name carries it
    # The GAN files' publishers (Dropbox, the old Hugging Face S3 bucket) document no checksum: none is claimed.
    published = [f for spec in PUBLISHED_WEIGHTS.values() for f in spec.files] + list(PUBLISHED_DIRECTIONS.values())
    assert all(f.sha256 is None and f.size is None for f in published)


def test_imagenet_class_names() -> None:
    names = imagenet_class_names()
    assert len(names) == 1000 and len(set(names)) > 990
    assert (names[0], names[207], names[999]) == ("tench", "golden retriever", "toilet tissue")
