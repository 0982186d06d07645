"""Shared fixtures: the real ECSSD test split, tiny synthetic datasets, and the CLI run in-process."""

from __future__ import annotations

import os
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_ECSSD = REPO.parent / "shared" / "data" / "ecssd"
SHARED_UNLABELED = REPO.parent / "shared" / "data" / "ecssd-unlabeled"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist each worker gets its share of the cores (torch would take them all in every
    worker, and two torch processes on the same cores slow each other about tenfold); subprocesses
    the tests start (torchrun, `saliency run`) inherit the share through OMP_NUM_THREADS."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers is None:
        return
    import torch

    threads = max(1, (os.cpu_count() or 1) // int(workers))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


@pytest.hookimpl(trylast=True)  # after ``-m``/``-k`` deselection: the shares are cut from the final list
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist, start the long acceptance runs (``slow``) first, balanced over the workers.

    ``--dist worksteal`` hands each worker a contiguous share of the collection (the first worker
    ``n // k`` tests, and so on) and lets an idle worker steal from the end of a busy one's queue,
    never the test running nor the next. So each share opens with its part of the slow tests, and
    ends with fast tests for the others to steal. A module holding slow tests stays whole in one
    share (its tests may share a fixture); modules go largest first, by the minutes their
    ``slow(minutes=...)`` markers state, to the share with the fewest minutes so far. Only the order
    changes; the set of tests and each test's outcome do not. It runs last: run before the
    deselection of ``-m 'not quickstart'``, every share after the first began one test early, and
    the second share's first slow run became the first share's last (one worker idle for 2.9 minutes).
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers < 2:
        return
    by_module: dict[str, list[pytest.Item]] = {}
    for item in items:
        by_module.setdefault(item.nodeid.split("::")[0], []).append(item)
    minutes = {module: sum(float(marker.kwargs.get("minutes", 1.0)) for item in group
                           for marker in item.iter_markers("slow")) for module, group in by_module.items()}
    shares: list[list[pytest.Item]] = [[] for _ in range(workers)]
    loads = [0.0] * workers
    for module in sorted((m for m in by_module if minutes[m] > 0), key=lambda m: -minutes[m]):
        least = loads.index(min(loads))
        group = by_module[module]
        shares[least] += sorted(group, key=lambda item: item.get_closest_marker("slow") is None)  # slow first
        loads[least] += minutes[module]
    fast = [item for module, group in by_module.items() if minutes[module] == 0 for item in group]
    sizes, remaining = [], len(items)
    for index in range(workers):  # the scheduler's own split: what is left, shared among the workers left
        sizes.append(remaining // (workers - index))
        remaining -= sizes[-1]
    ordered = []
    for share, size in zip(shares, sizes):
        take = max(0, size - len(share))
        ordered += share + fast[:take]
        fast = fast[take:]
    items[:] = ordered + fast


def missing_shared_data(what: str) -> None:
    """A test that needs data the clone does not carry: skipped with the reason on a developer's
    machine, an error under CI (CI=true), where a skip would let the suite pass without testing."""
    message = f"{what} not found: run `saliency data ecssd --from DIR`, or keep ../shared beside the clone"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        raise RuntimeError(message)
    pytest.skip(message)


def linked_or_shared(name: str, shared: Path, what: str) -> Path:
    """The copy the project links (data/NAME), else the one in ../shared; missing: skip or fail."""
    for candidate in (REPO / "data" / name, shared):
        if (candidate / "images").is_dir():
            return candidate
    missing_shared_data(f"{what} (data/{name} or ../shared/data/{name})")


@pytest.fixture(scope="session")
def ecssd_root() -> Path:
    """ECSSD with its masks."""
    return linked_or_shared("ecssd", SHARED_ECSSD, "ECSSD")


@pytest.fixture(scope="session")
def unlabeled_root() -> Path:
    """ECSSD's unlabeled train images (0201-0500, no masks)."""
    return linked_or_shared("ecssd-unlabeled", SHARED_UNLABELED, "ECSSD's unlabeled images")


@pytest.fixture
def no_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bare clone's situation: an empty data root and no network for datasets."""
    root = tmp_path / "empty-data"
    root.mkdir()
    monkeypatch.setenv("SALIENCY_DATA", str(root))
    monkeypatch.setenv("SALIENCY_OFFLINE", "1")
    return root


@pytest.fixture
def data_root(tmp_path: Path, ecssd_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private data root with ECSSD linked in, so tests never touch the checkout's data/."""
    root = tmp_path / "data"
    root.mkdir()
    os.symlink(ecssd_root.resolve(), root / "ecssd")
    monkeypatch.setenv("SALIENCY_DATA", str(root))
    return root


def write_pair(root: Path, stem: str, mask: np.ndarray, image_suffix: str = ".jpg",
               mask_folder: str = "masks") -> None:
    """One image (random colours) and its 0/255 mask."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / mask_folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(stem.encode()))  # the same pixels in every process
    image = rng.integers(0, 255, (*mask.shape, 3), dtype=np.uint8)
    Image.fromarray(image).save(root / "images" / f"{stem}{image_suffix}")
    Image.fromarray((mask > 0).astype(np.uint8) * 255).save(root / mask_folder / f"{stem}.png")


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """Three pairs of different sizes with square objects."""
    root = tmp_path / "tiny"
    for i, (h, w) in enumerate([(20, 30), (32, 32), (24, 16)]):
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4: h // 2 + 2, w // 4: w // 2 + 2] = 1
        write_pair(root, f"{i:04d}", mask)
    return root


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch):
    """Run ``saliency ARGS`` through the real entry point (exit codes included) in-process."""
    from saliency.cli import main

    def invoke(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["saliency", *map(str, args)])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


def write_tiny_unet(path: Path, **extras: object) -> Path:
    """A tiny random classic U-Net checkpoint (width 4) whose maps are neither flat nor all one
    side of 0.5: batch norm's statistics come from a few random batches (fresh statistics give a
    map that is the same everywhere), and, unless ``extras`` set one, the offset puts half of a
    random image's pixels in the mask. ``extras`` are recorded as a trained U-Net's settings."""
    import torch

    from saliency.segmentation.model import UnetSpec, build_unet, save_unet
    from saliency.segmentation.predict import foreground_probability

    spec = UnetSpec("classic", width=4)
    torch.manual_seed(0)
    model = build_unet(spec).train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(2, 3, 64, 64) * 2 - 1)
        logits = model.eval()(torch.rand(1, 3, 64, 64) * 2 - 1)
    if "offset" not in extras:
        probability = foreground_probability(logits, str(extras.get("activation", "sigmoid-logit")))
        extras["offset"] = -float(torch.logit(probability.median()))
    return save_unet(model, Path(path), spec, {"resolution": 64, **extras})

