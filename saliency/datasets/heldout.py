"""What a run is scored on when its evaluation dataset is not on this machine.

:func:`evaluation_target` is the one place every stage asks (the U-Net's monitor, the eval stage):

1. the dataset itself when it is linked (``saliency data NAME --from DIR``);
2. a registered dataset that is missing is fetched from its official archives and verified against
   its checksums, when the network allows (``SALIENCY_OFFLINE=1`` skips the attempt);
3. otherwise, with ``eval.fallback: generated``, held-out samples of the run's generator with its
   true object masks (toy worlds know them), written once under ``RUN/heldout/`` — so a bare clone
   still completes the whole method, and says how to score on real photographs.

Without the fallback a missing dataset is an error naming ``saliency data NAME --from DIR``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from saliency import generators
from saliency.config import Config
from saliency.datasets.folder import open_pair_folder
from saliency.datasets.prepare import prepare
from saliency.datasets.registry import DatasetMissing, resolve
from saliency.errors import UserError
from saliency.generators.base import KnowsObjects
from saliency.generators.toyworld import MASK_THRESHOLD
from saliency.images import encode_png, signed_to_uint8
from saliency.seeding import Stream, derive_seed

log = logging.getLogger("saliency")

HELDOUT_SAMPLES = 500  # as many as the ECSSD test split
HELDOUT_FOLDER = "heldout"
GENERATION_BATCH = 50


@dataclass(frozen=True)
class EvaluationTarget:
    """``resolve(dataset, split)`` is what to score on; ``stands_in_for`` names the dataset it replaces."""

    dataset: str
    split: str | None
    stands_in_for: str | None = None

    def advice(self) -> str | None:
        """The one line that says how to score on the real dataset (None when scoring on it)."""
        if self.stands_in_for is None:
            return None
        name = self.stands_in_for.split("/")[0]
        return (f"scored on {HELDOUT_SAMPLES} held-out generator samples, not on {self.stands_in_for} (not on this "
                f"machine, no network): to score on real photographs run `saliency data {name} --from DIR`, "
                f"then this command again")


def evaluation_target(cfg: Config, run_dir: Path) -> EvaluationTarget:
    """The dataset ``cfg.eval`` names, fetched when missing; else the generator's held-out samples when
    ``eval.fallback`` is ``generated``; else the missing dataset's one-line error."""
    name = cfg.eval.primary
    try:
        resolve(name, cfg.eval.split)
        return EvaluationTarget(name, cfg.eval.split)
    except DatasetMissing as missing:
        fetched = _fetch(name)
        if fetched is None:
            return EvaluationTarget(name, cfg.eval.split)
        if cfg.eval.fallback != "generated":
            raise UserError(f"{missing} ({fetched})") from None
        log.warning("eval: %s; %s", missing, fetched)
        folder = write_heldout(cfg, Path(run_dir) / HELDOUT_FOLDER)
        return EvaluationTarget(str(folder), None, stands_in_for=f"{name}/{cfg.eval.split}")


@functools.cache
def _fetch(name: str) -> str | None:
    """Download, verify and link the registered dataset ``name``; None when done, else why not (asked
    once per process: an offline machine waits for the timeout only once)."""
    try:
        prepare(name)
    except UserError as error:
        return f"fetching it failed: {error}"
    return None


def write_heldout(cfg: Config, root: Path) -> Path:
    """``HELDOUT_SAMPLES`` images of the run's generator with their true masks, in ``root/KEY/images``
    and ``masks`` (KEY: generator, its options and run.seed); written once, atomically, then reused."""
    seed = derive_seed(cfg.run.seed, Stream.HELDOUT)
    recipe = {"generator": cfg.generator.name, "weights": cfg.generator.weights, "options": cfg.generator.options,
              "truncation": cfg.generator.truncation, "samples": HELDOUT_SAMPLES, "seed": seed}
    folder = root / hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    if (folder / "recipe.json").is_file():
        return folder
    generator = generators.load(cfg.generator.name, weights=cfg.generator.weights, **cfg.generator.options)
    if not isinstance(generator, KnowsObjects):
        raise UserError(f"eval.fallback: generated needs a generator that knows its object masks (toyscene, "
                        f"toyworld); {cfg.generator.name} does not: link {cfg.eval.primary} with "
                        f"`saliency data {cfg.eval.primary} --from DIR`")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".heldout-", dir=root))
    try:
        rng = torch.Generator().manual_seed(seed)
        for part in ("images", "masks"):
            (staging / part).mkdir()
        for start in range(0, HELDOUT_SAMPLES, GENERATION_BATCH):
            count = min(GENERATION_BATCH, HELDOUT_SAMPLES - start)
            z = generator.sample_z(count, rng, cfg.generator.truncation)
            classes = generator.sample_classes(count, rng)
            with torch.no_grad():
                images = signed_to_uint8(generator(z, classes)).permute(0, 2, 3, 1)
                masks = (generator.object_mask(z, classes)[:, 0] > MASK_THRESHOLD).byte().mul(255)
            for offset, (image, mask) in enumerate(zip(images.cpu().numpy(), masks.cpu().numpy())):
                stem = f"{start + offset:04d}"
                (staging / "images" / f"{stem}.png").write_bytes(encode_png(image))
                (staging / "masks" / f"{stem}.png").write_bytes(encode_png(mask))
        (staging / "recipe.json").write_text(json.dumps(recipe, indent=1))
        shutil.rmtree(folder, ignore_errors=True)  # an earlier attempt's leftovers have no recipe.json
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    open_pair_folder(folder)  # the folder is a valid pair folder before anyone relies on it
    return folder
