"""Published files (weights, datasets, the classifier): the cache, checked downloads, checkpoint loading.

Every stage that needs a file somebody published goes through here: :func:`ensure_published` checks
a cached copy (size and SHA-256, or the prefix the publisher documents) or downloads it with a
progress bar into a temporary folder inside the cache folder, checks it, and moves it into place
with ``os.replace``, so the cache never holds a partial or corrupt file; ``SALIENCY_OFFLINE=1``
skips downloads. Files published inside a tar archive are extracted here. Every failure is a
:class:`~saliency.errors.UserError` whose one line names the file and where to put it. Checkpoints
are read with ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import torch
from torch import nn

from saliency.errors import UserError
from saliency.progress import progress
from saliency.runs import load_torch_file, sha256_file

log = logging.getLogger("saliency")

_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,64})\.")  # torchvision's convention (torch.hub.HASH_REGEX)
CACHE_ENV = "SALIENCY_CACHE"
OFFLINE_ENV = "SALIENCY_OFFLINE"
DEFAULT_CACHE = "~/.cache/saliency"
DOWNLOAD_TIMEOUT_S = 10.0  # per connection attempt and per read: an offline machine fails fast
_CHUNK = 1 << 20
_NETWORK_ERRORS = (OSError, urllib.error.URLError, http.client.HTTPException)


@dataclass(frozen=True)
class WeightFile:
    """One published file. ``size`` (bytes) and ``sha256`` describe the file as stored in the
    cache and are checked when known; ``sha256`` may be a prefix when that is all the publisher
    gives (torchvision names its files ``NAME-<first 8 hex digits of the SHA-256>.pth``). Only
    checksums the publisher documents are set here, never ones computed from a copy of unknown
    origin; a file without one is used with a warning that says so. ``in_tar``: ``url`` is a
    tar archive holding a member of this file ``name`` (in any folder)."""

    name: str
    url: str
    size: int | None = None
    sha256: str | None = None
    in_tar: bool = False

    @classmethod
    def from_hashed_url(cls, name: str, url: str) -> "WeightFile":
        """A file whose URL carries its SHA-256 prefix the torchvision way (``resnet18-f37072fd.pth``)."""
        match = _HASH_IN_NAME.search(PurePosixPath(url).name)
        return cls(name, url, sha256=match.group(1) if match else None)


class _CorruptDownload(Exception):
    """The download arrived but is not the published file (size, checksum, archive content)."""


def cache_dir() -> Path:
    """Root of the weights cache: ``$SALIENCY_CACHE`` or ``~/.cache/saliency``."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def ensure_published(what: str, file: WeightFile, target: Path, remedy: str) -> None:
    """``target`` holds the published ``file``: a cached copy is checked before it is used (a cache
    can be edited or truncated after its download was verified), a missing one is downloaded."""
    if not target.is_file():
        fetch_or_explain(what, file, target, remedy=remedy)
        return
    try:
        _verify(target, file, f"at {target}")
    except _CorruptDownload as err:
        raise UserError(f"{what}: the cached {err}; delete it to download it again, or {remedy}") from None


def fetch_or_explain(what: str, file: WeightFile, target: Path, remedy: str) -> None:
    """Download ``file`` to ``target`` (skipped when ``SALIENCY_OFFLINE`` is set); any failure becomes
    a one-line UserError about ``what`` that ends with ``remedy`` (what to put where)."""
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        raise UserError(f"{what} not found and downloads are off ({OFFLINE_ENV} is set): {remedy}")
    try:
        download(file, target)
    except _CorruptDownload as err:
        raise UserError(f"{what}: {err}; nothing was saved: {remedy}") from err
    except _NETWORK_ERRORS as err:
        raise UserError(f"{what} not found and download of {file.url} failed "
                        f"(no network? {_one_line(err)}): {remedy}") from err


def download(file: WeightFile, target: Path) -> None:
    """Fetch ``file`` into ``target`` atomically: nothing appears at ``target`` unless it is complete
    and matches the known size and checksum."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        fetched = Path(tmp) / "fetched"
        with open(fetched, "wb") as out:
            _stream(file.url, out, None if file.in_tar else file.size, desc=file.name)
        payload = _extract_member(fetched, file, Path(tmp) / file.name) if file.in_tar else fetched
        _verify(payload, file, f"from {file.url}")
        os.replace(payload, target)


def _stream(url: str, out: BinaryIO, size: int | None, desc: str) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "saliency"})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
        total = size or int(response.headers.get("Content-Length") or 0) or None
        with progress(total=total, unit="B", unit_scale=True, desc=desc) as bar:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))


def _extract_member(archive: Path, file: WeightFile, dest: Path) -> Path:
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and PurePosixPath(m.name).name == file.name]
            if len(members) != 1:
                raise _CorruptDownload(f"{file.url} holds {len(members)} files named {file.name}, expected 1")
            source = tar.extractfile(members[0])
            if source is None:
                raise _CorruptDownload(f"{file.url}: {file.name} in the archive has no content")
            with source, open(dest, "wb") as out:
                shutil.copyfileobj(source, out, _CHUNK)
    except tarfile.TarError as err:
        raise _CorruptDownload(f"{file.url} is not a tar archive ({_one_line(err)})") from err
    return dest


def _verify(path: Path, file: WeightFile, origin: str) -> None:
    """Size and SHA-256 (or its published prefix) of ``path`` against ``file``; ``origin`` says
    where the bytes came from, for the message."""
    size = path.stat().st_size
    if file.size is not None and size != file.size:
        raise _CorruptDownload(f"{file.name} {origin} has {size} bytes, expected {file.size}")
    if file.sha256 is not None:
        digest = sha256_file(path)
        if not digest.startswith(file.sha256.lower()):
            raise _CorruptDownload(f"{file.name} {origin} has SHA-256 {digest}, expected {file.sha256}")
    elif file.size is None:
        log.warning("%s: its publisher gives no checksum, so it is used unverified (only its format is checked "
                    "when it loads)", file.name)


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def load_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A state dict of tensors from ``path`` (``weights_only``: a checkpoint never runs code)."""
    state = load_torch_file(path, "PyTorch checkpoint", "replace it with the published file")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} holds no state dict of tensors; pass a generator checkpoint")
    return state


def load_state_dict_checked(model: nn.Module, state_dict: dict[str, torch.Tensor], source: Path, what: str) -> None:
    """Load ``state_dict`` strictly; a missing or unexpected key or a wrong shape is a UserError
    naming the key, since it means ``source`` is not a ``what`` checkpoint."""
    expected = model.state_dict()
    problems = (
        [f"missing key {k!r}" for k in expected if k not in state_dict]
        + [f"unexpected key {k!r}" for k in state_dict if k not in expected]
        + [f"{k!r} has shape {tuple(state_dict[k].shape)}, expected {tuple(t.shape)}"
           for k, t in expected.items() if k in state_dict and state_dict[k].shape != t.shape]
    )
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise UserError(f"{source} is not a {what} checkpoint: {problems[0]}{more}")
    model.load_state_dict(state_dict, strict=True)
