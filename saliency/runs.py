"""Run folders: one folder per run, one subfolder per stage, each with a ``manifest.json``.

Every stage goes through :func:`run_stage`, which decides to skip (complete, same config, same
inputs), resume (the stage's own checkpoints are left in place) or redo (``force``), records
status, times, versions and metrics in the manifest, and logs to ``STAGE/log.txt``. All files
are written atomically (temporary file in the same folder, then ``os.replace``), so a killed
process leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

from saliency.errors import UserError

log = logging.getLogger("saliency")

MANIFEST = "manifest.json"
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_VERSIONED_PACKAGES = ("saliency", "torch", "torchvision", "segmentation-models-pytorch", "numpy", "opencv-python-headless")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared like any file
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_torch_save(obj: Any, path: Path) -> Path:
    """``torch.save`` through a temporary file (checkpoints must never be half-written)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_torch_file(path: Path, what: str, remedy: str) -> Any:
    """``torch.load`` with ``weights_only=True`` (tensors and plain containers, never code).

    A damaged or foreign file can fail anywhere in unpickling; whatever the error, the user gets one
    line naming the file, what it should have been, and ``remedy``.
    """
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the user's to replace
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        raise UserError(f"{path} is not a readable {what} ({type(error).__name__}: {reason}); {remedy}") from None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(path: Path) -> str:
    """SHA-256 of a file, or of a folder's listing (relative names and sizes).

    Folders are datasets or shard trees: hashing every byte of them on each run would cost more
    than the check is worth, and a changed file almost always changes its size or name.
    """
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{item.relative_to(path).as_posix()}\t{item.stat().st_size}\n".encode())
        return "dir:" + digest.hexdigest()
    return "missing"


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def read_manifest(stage_dir: Path) -> dict[str, Any] | None:
    path = Path(stage_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


@dataclass
class Stage:
    """One stage of one run: its folder, config section, seed, precision and the inputs it reads."""

    run_dir: Path
    name: str
    config: dict[str, Any]
    seed: int | None = None
    inputs: dict[str, Path] = field(default_factory=dict)
    precision: str = "fp32"  # run.precision: recorded in the manifest, part of what "the same run" means

    @property
    def dir(self) -> Path:
        return Path(self.run_dir) / self.name

    def input_hashes(self) -> dict[str, str]:
        return {key: fingerprint(path) for key, path in sorted(self.inputs.items())}

    def completed_metrics(self) -> dict[str, Any] | None:
        """The recorded metrics when this stage already completed with the same config and inputs."""
        manifest = read_manifest(self.dir)
        if manifest is None or manifest.get("status") != "complete":
            return None
        same_config = _canonical(manifest.get("config")) == _canonical(self.config)
        same_inputs = manifest.get("inputs") == self.input_hashes()
        same_precision = manifest.get("precision", "fp32") == self.precision
        same = same_config and same_inputs and same_precision and manifest.get("seed") == self.seed
        return manifest.get("metrics", {}) if same else None

    def write_manifest(self, status: str, metrics: dict[str, Any] | None = None, error: str | None = None,
                       started: float | None = None) -> None:
        previous = read_manifest(self.dir) or {}
        manifest = {
            "stage": self.name,
            "status": status,
            "config": self.config,
            "seed": self.seed,
            "precision": self.precision,
            "inputs": self.input_hashes(),
            "versions": package_versions(),
            "metrics": metrics or {},
            "started": _iso(started) if started else previous.get("started"),
            "ended": _iso(time.time()) if status != "running" else None,
        }
        if error:
            manifest["error"] = error
        atomic_write_json(self.dir / MANIFEST, manifest)


def run_stage(stage: Stage, body: Callable[[Stage], dict[str, Any]], force: bool = False,
              is_writer: bool = True) -> dict[str, Any]:
    """Run ``body(stage)`` inside the stage's bookkeeping and return its metrics.

    Skips a complete stage with the same config and inputs. ``force`` clears the stage folder first;
    otherwise an interrupted stage's files stay, so ``body`` can resume from its checkpoints.
    Only the writer process (rank 0 under torchrun) touches the manifest.
    """
    if not force and (metrics := stage.completed_metrics()) is not None:
        log.info("%s: complete with the same config and inputs, skipped (use --force to redo)", stage.name)
        return metrics
    if force and is_writer and stage.dir.exists():
        shutil.rmtree(stage.dir)
    fresh, run_fresh = not stage.dir.exists(), not Path(stage.run_dir).exists()
    stage.dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    try:
        with stage_log(stage.dir / "log.txt") if is_writer else contextlib.nullcontext():
            if is_writer:
                stage.write_manifest("running", started=started)
            log.info("%s: started in %s", stage.name, stage.dir)
            metrics = dict(body(stage))
            metrics.setdefault("seconds", round(time.time() - started, 3))
            if is_writer:
                stage.write_manifest("complete", metrics=metrics)
            log.info("%s: complete in %.1f s", stage.name, metrics["seconds"])
    except BaseException as error:
        if is_writer and fresh and isinstance(error, UserError):
            # Bad input found before any result existed: leave no half-made stage behind.
            shutil.rmtree(stage.dir, ignore_errors=True)
            if run_fresh:
                shutil.rmtree(stage.run_dir, ignore_errors=True)
        elif is_writer:
            stage.write_manifest("failed", error=f"{type(error).__name__}: {error}")
        raise
    return metrics


@contextlib.contextmanager
def stage_log(path: Path) -> Iterator[None]:
    """Copy the package's log records into ``path`` while the stage runs."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    previous_level = log.level
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()
        log.setLevel(previous_level)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(timestamp))
