"""Run folders: one folder per run, one subfolder per stage, each with a ``manifest.json``.

Every stage goes through :func:`run_stage`, which decides to skip (complete, same config, same
inputs, every output verified), resume (the stage's own checkpoints are left in place) or redo
(``force``), records status, times, versions, metrics and the SHA-256 of every output in the
manifest, and logs to ``STAGE/log.txt``. All files are written atomically (temporary file in the
same folder, then ``os.replace``), so a killed process leaves either the old file or the new one,
never half of one; the temporary files such a kill leaves are removed when the stage next starts.

``--force`` never loses a result: the complete stage is moved aside and deleted only when the new
one completes; if the new one fails, for any reason, the old one is put back. One process at a
time works in a run folder (an advisory lock, released by the kernel when its holder dies).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import platform
import secrets
import shutil
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from saliency.errors import UserError

if TYPE_CHECKING:
    import torch

log = logging.getLogger("saliency")

MANIFEST = "manifest.json"
LOG = "log.txt"
LOCK = ".lock"
ASIDE_SUFFIX = ".replaced"  # a complete stage under --force, kept until its replacement completes
# Manifest key -> the distribution whose version it records (this package is published as gan-saliency:
# "saliency" on PyPI is another project).
_VERSIONED_PACKAGES = {"saliency": "gan-saliency", **{name: name for name in (
    "torch", "torchvision", "segmentation-models-pytorch", "numpy", "opencv-python-headless")}}


def _fresh_temporary(path: Path) -> Path:
    """A new empty file beside ``path``, created with mode 0666 so the process umask applies to it as to
    any file the user makes (mkstemp's 0600 would hide shared results; reading the umask would
    mean changing it)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _fresh_temporary(path)
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
    """SHA-256 of a file, or of a folder's contents (every file's relative name and SHA-256).

    Contents, not names and sizes: a prediction rewritten at the same size must re-run what
    depends on it. Hashing runs at several hundred MB/s, small against any stage.
    """
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for name, file_hash in sorted(folder_hashes(path).items()):
            digest.update(f"{name}\t{file_hash}\n".encode())
        return "dir:" + digest.hexdigest()
    return "missing"


def folder_hashes(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """``{relative posix name: SHA-256}`` of every file under ``folder`` except the top-level
    names in ``skip`` and temporary files of an interrupted atomic write."""
    folder = Path(folder)
    hashes = {}
    for item in sorted(folder.rglob("*")):
        name = item.relative_to(folder).as_posix()
        if item.is_file() and name not in skip and not _is_temporary(item):
            hashes[name] = sha256_file(item)
    return hashes


def _is_temporary(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".tmp")


def remove_temporary_files(folder: Path) -> int:
    """Delete what a kill between an atomic write and its rename left in ``folder``."""
    removed = 0
    for item in Path(folder).rglob("*"):
        if item.is_file() and _is_temporary(item):
            item.unlink(missing_ok=True)
            removed += 1
    return removed


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for key, distribution in _VERSIONED_PACKAGES.items():
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[key] = metadata.version(distribution)
    return versions


def read_manifest(stage_dir: Path) -> dict[str, Any] | None:
    """The stage's manifest, or ``None`` when there is none or it is not a manifest (then the stage
    counts as not complete and is redone or resumed, which is always safe)."""
    path = Path(stage_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return manifest if isinstance(manifest, dict) else None


def read_json_file(path: Path, what: str, remedy: str) -> dict[str, Any]:
    """A JSON object a stage wrote; missing, unreadable or not an object is a UserError that names
    ``path`` and ends with ``remedy``. Each artifact's owner wraps it (``ranking.artifacts.read_rank``...)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found; {remedy}")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not a {what} ({error}); {remedy}") from None
    if not isinstance(record, dict):
        raise UserError(f"{path}: not a {what} (not a JSON object); {remedy}")
    return record


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``RUN/.lock`` while a stage works in the run folder; a second process gets one line
    naming the holder. Re-entrant within one process (``saliency run`` holds it across stages).
    The kernel drops the lock when its holder dies, so a killed run never blocks the next one."""
    run_dir = Path(run_dir)
    key = str(run_dir.resolve())
    if key in _HELD_LOCKS:  # this process holds it already (a stage inside `saliency run`)
        yield
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"run folder {run_dir} is a file; choose another --run or move the file")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(run_dir / LOCK, "a+")
    except OSError as error:
        raise UserError(f"cannot write in run folder {run_dir} ({error.strerror}); "
                        "choose a writable --run folder") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UserError(f"run folder {run_dir} is in use by {holder}; wait for it to finish "
                        "or use another --run folder") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()} on {platform.node()}\n")
    handle.flush()
    _HELD_LOCKS.add(key)
    try:
        yield
    finally:
        _HELD_LOCKS.discard(key)
        handle.close()  # closing releases the lock; the file stays (removing it would race a waiter)


_HELD_LOCKS: set[str] = set()


@dataclass
class Stage:
    """One stage of one run: its folder, config section, seed, precision and the inputs it reads."""

    run_dir: Path
    name: str
    config: dict[str, Any]
    seed: int | None = None
    inputs: dict[str, Path] = field(default_factory=dict)
    precision: str = "fp32"  # run.precision: recorded in the manifest, part of what "the same run" means
    # Config entries ("section.key") an interrupted or complete attempt may differ in and still have
    # its files reused: the stage's body checks itself what it keeps (synth keeps full shards when
    # only synth.n grows). Every other difference starts the stage over.
    reusable_across: tuple[str, ...] = ()
    _input_hashes: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def dir(self) -> Path:
        return Path(self.run_dir) / self.name

    def input_hashes(self) -> dict[str, str]:
        """Content hashes of the inputs, computed once per Stage: the skip check and every manifest
        write of one run compare and record the same inputs (folders are hashed in full)."""
        if self._input_hashes is None:
            self._input_hashes = {key: fingerprint(path) for key, path in sorted(self.inputs.items())}
        return self._input_hashes

    @property
    def aside_dir(self) -> Path:
        return Path(self.run_dir) / f".{self.name}{ASIDE_SUFFIX}"

    def output_hashes(self) -> dict[str, str]:
        return folder_hashes(self.dir, skip=(MANIFEST, LOG))

    def resume_key(self) -> dict[str, Any]:
        """What files must have been made from to be reused: the config (less ``reusable_across``),
        seed, precision and the inputs' content. Training checkpoints carry it too."""
        return {"config": _without(self.config, self.reusable_across), "seed": self.seed,
                "precision": self.precision, "inputs": self.input_hashes()}

    def same_work(self, manifest: dict[str, Any] | None) -> bool:
        """``manifest`` (complete or not) records work with this :meth:`resume_key`: what an
        interrupted attempt left may be resumed only then."""
        if manifest is None:
            return False
        recorded = {"config": _without(manifest.get("config"), self.reusable_across), "seed": manifest.get("seed"),
                    "precision": manifest.get("precision", "fp32"), "inputs": manifest.get("inputs")}
        return _canonical(recorded) == _canonical(self.resume_key())

    def matches(self, manifest: dict[str, Any] | None) -> bool:
        """``manifest`` records a complete stage with this config (all of it), seed, precision and inputs."""
        return (manifest is not None and manifest.get("status") == "complete" and self.same_work(manifest)
                and _canonical(manifest.get("config")) == _canonical(self.config))

    def completed_metrics(self) -> dict[str, Any] | None:
        """The recorded metrics when this stage already completed with the same config and inputs
        and every output it recorded is still there, byte for byte."""
        manifest = read_manifest(self.dir)
        if manifest is None or not self.matches(manifest):
            return None
        outputs = manifest.get("outputs")
        if not isinstance(outputs, dict) or not outputs:
            log.info("%s: its manifest lists no verified outputs; redoing it", self.name)
            return None
        current = self.output_hashes()
        changed = sorted(name for name, digest in outputs.items() if current.get(name) != digest)
        if changed:
            log.info("%s: %d output(s) missing or changed since it completed (%s); redoing it",
                     self.name, len(changed), ", ".join(changed[:3]))
            return None
        metrics = manifest.get("metrics", {})
        return metrics if isinstance(metrics, dict) else None

    def write_manifest(self, status: str, metrics: dict[str, Any] | None = None, error: str | None = None,
                       started: float | None = None, seconds_before: float | None = None) -> None:
        """``started`` (with ``seconds_before``, the earlier attempts' time) begins a new attempt."""
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
            "attempt_started": started if started else previous.get("attempt_started"),
            "seconds_before": previous.get("seconds_before", 0.0) if seconds_before is None else seconds_before,
            "attempts": previous.get("attempts", 0) + (1 if started else 0),
        }
        if status == "complete":
            manifest["outputs"] = self.output_hashes()
        if error:
            manifest["error"] = error
        atomic_write_json(self.dir / MANIFEST, manifest)


def _seconds_spent(stage_dir: Path, previous: dict[str, Any]) -> float:
    """Working seconds of the earlier attempts of an unfinished stage: each attempt ran from its
    start to its end or, when it was killed, to the last file it wrote."""
    if previous.get("status") not in ("running", "failed") or not isinstance(previous.get("attempt_started"), (int, float)):
        return 0.0
    files = [p for p in Path(stage_dir).rglob("*") if p.is_file() and p.name not in (MANIFEST, LOG)]
    last = max((p.stat().st_mtime for p in files), default=previous["attempt_started"])
    return round(float(previous.get("seconds_before", 0.0)) + max(0.0, last - previous["attempt_started"]), 3)


def run_stage(stage: Stage, body: Callable[[Stage], dict[str, Any]], force: bool = False,
              every_rank: bool = False, device: torch.device | None = None) -> dict[str, Any]:
    """Run ``body(stage)`` inside the stage's bookkeeping and return its metrics.

    Skips a complete stage with the same config and inputs and verified outputs. ``force``, or a
    stage folder made from another config, seed or inputs, moves a complete stage aside (deleted
    only once the new one completes) or deletes an unfinished one; an interrupted attempt at the
    same work stays, so ``body`` can resume from its checkpoints.

    Under torchrun, an ``every_rank`` stage runs ``body`` in every process (it splits its work by
    rank) and only rank 0 touches the bookkeeping and holds the run lock; any other stage runs on
    rank 0 alone while the other ranks wait for its metrics (``device``: where the process group
    talks, as :func:`saliency.distributed.on_writer`).
    """
    from saliency import distributed  # here: reading run folders (the report, --help) needs no torch

    if every_rank:
        metrics = _run_held(stage, body, force, distributed.is_writer())
        distributed.barrier()  # rank 0 has recorded the stage complete before any rank reads it as an input
        return metrics
    return distributed.on_writer(lambda: _run_held(stage, body, force, True), device)


def _run_held(stage: Stage, body: Callable[[Stage], dict[str, Any]], force: bool, is_writer: bool) -> dict[str, Any]:
    with run_lock(stage.run_dir) if is_writer else contextlib.nullcontext():
        return _run_locked(stage, body, force, is_writer)


def _run_locked(stage: Stage, body: Callable[[Stage], dict[str, Any]], force: bool, is_writer: bool) -> dict[str, Any]:
    aside = stage.aside_dir if is_writer and stage.aside_dir.exists() else None
    if aside is not None and _is_complete(stage.dir):
        shutil.rmtree(aside)  # a forced redo completed, then was killed before it removed the old stage
        aside = None
    if aside is not None and not force and stage.matches(read_manifest(aside)):
        # A forced redo was killed and the old result is what is asked for now: put it back.
        shutil.rmtree(stage.dir, ignore_errors=True)
        os.replace(aside, stage.dir)
        aside = None
    if not force and (metrics := stage.completed_metrics()) is not None:
        log.info("%s: complete with the same config and inputs, skipped (use --force to redo)", stage.name)
        return metrics
    # What is there is redone from scratch when forced, or when it was made from another config, seed
    # or inputs: neither its checkpoints nor its outputs may leak into the new result. Only an
    # interrupted attempt at this very work (or a complete one whose outputs were damaged) resumes.
    stale = force or not stage.same_work(read_manifest(stage.dir))
    if stale and is_writer and stage.dir.exists():
        if not force:
            log.info("%s: %s was made from another config, seed or inputs; starting over", stage.name, stage.dir)
        if aside is None and _is_complete(stage.dir):
            os.replace(stage.dir, stage.aside_dir)  # kept until the new stage completes
            aside = stage.aside_dir
        else:
            shutil.rmtree(stage.dir)  # an unfinished stage: nothing there is worth keeping
    run_dir = Path(stage.run_dir)
    fresh = not stage.dir.exists()
    run_fresh = not run_dir.is_dir() or all(p.name == LOCK for p in run_dir.iterdir())
    stage.dir.mkdir(parents=True, exist_ok=True)
    if is_writer and (removed := remove_temporary_files(stage.dir)):
        log.info("%s: removed %d temporary file(s) of an interrupted write", stage.name, removed)
    started = time.time()
    try:
        with stage_log(stage.dir / LOG) if is_writer else contextlib.nullcontext():
            seconds_before = _seconds_spent(stage.dir, read_manifest(stage.dir) or {}) if is_writer else 0.0
            if is_writer:
                stage.write_manifest("running", started=started, seconds_before=seconds_before)
            log.info("%s: started in %s", stage.name, stage.dir)
            metrics = dict(body(stage))
            metrics.setdefault("seconds", round(seconds_before + time.time() - started, 3))
            if is_writer:
                stage.write_manifest("complete", metrics=metrics)
            log.info("%s: complete in %.1f s", stage.name, metrics["seconds"])
    except BaseException as error:
        if is_writer and aside is not None:
            # The redo failed: the complete stage it was replacing comes back untouched.
            shutil.rmtree(stage.dir, ignore_errors=True)
            os.replace(aside, stage.dir)
            log.info("%s: the redo failed; the earlier complete stage is kept", stage.name)
        elif is_writer and fresh and isinstance(error, UserError):
            # Bad input found before any result existed: leave no half-made stage behind.
            shutil.rmtree(stage.dir, ignore_errors=True)
            if run_fresh:
                shutil.rmtree(stage.run_dir, ignore_errors=True)
        elif is_writer:
            stage.write_manifest("failed", error=f"{type(error).__name__}: {error}")
        raise
    if is_writer and aside is not None:
        shutil.rmtree(aside)
    return metrics


def _is_complete(stage_dir: Path) -> bool:
    return (read_manifest(stage_dir) or {}).get("status") == "complete"


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


def _without(config: Any, dotted: tuple[str, ...]) -> Any:
    """``config`` with the ``section.key`` entries in ``dotted`` left out."""
    if not dotted or not isinstance(config, dict):
        return config
    trimmed = {name: dict(value) if isinstance(value, dict) else value for name, value in config.items()}
    for entry in dotted:
        section, _, key = entry.partition(".")
        if isinstance(trimmed.get(section), dict):
            trimmed[section].pop(key, None)
    return trimmed


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(timestamp))
