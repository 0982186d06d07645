"""``rank/rank.json``: what stage 2 hands to later stages. This module alone writes and reads it.

The file holds the DVN of every direction, DVN mean and DVN_top-50, every candidate's scores and
the choice: direction index, sign, shift magnitude and the direction vector itself at its stored
length (unit for trained directions, a published vector's own length), so a later stage needs no
other file to move along it (the index also points into the discovered directions). A later stage
moves z to ``z + sign · shift · vector``:
``saliency.masks.synthesize_batch(generator, z, c, choice.vector, choice.signed_shift, rule)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from saliency.errors import UserError
from saliency.runs import atomic_write_json, read_json_file

RANK_FILE = "rank.json"
CANDIDATES_DIR = "candidates"
FORMAT_VERSION = 2  # 2: the vector at its stored length (1 held unit vectors, which read the same)


@dataclass(frozen=True)
class Choice:
    """The chosen background-removal move: ``sign · shift`` times ``vector`` (``(d,)``, at its stored length)."""

    direction: int
    sign: int
    shift: float
    vector: torch.Tensor
    overridden: bool = False

    @property
    def signed_shift(self) -> float:
        return self.sign * self.shift


def save_rank(path: Path, content: dict[str, Any], choice: Choice) -> Path:
    """Write ``content`` (DVN, candidates, settings) with ``choice`` and the format version, atomically."""
    record = {"format": FORMAT_VERSION, **content, "choice": {
        "direction": choice.direction, "sign": choice.sign, "shift": choice.shift,
        "overridden": choice.overridden, "vector": [float(v) for v in choice.vector.tolist()]}}
    return atomic_write_json(Path(path), record)


def read_rank(rank_dir: Path) -> dict[str, Any]:
    """Everything a ``rank.json`` records (DVN, candidates, settings, the choice), for the report."""
    return read_json_file(Path(rank_dir) / RANK_FILE, "rank file", "rerun `saliency rank`")


def load_choice(path: Path, dim_z: int | None = None) -> Choice:
    """The choice recorded in a ``rank.json``; with ``dim_z``, checked against the generator."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: not found; run `saliency rank` for this run first")
    try:
        raw = json.loads(path.read_text())
        choice = raw["choice"]
        vector = torch.tensor(choice["vector"], dtype=torch.float32)
        found = Choice(direction=int(choice["direction"]), sign=int(choice["sign"]), shift=float(choice["shift"]),
                       vector=vector, overridden=bool(choice.get("overridden", False)))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise UserError(f"{path}: not a rank file written by `saliency rank` ({error}); rerun it") from None
    if found.sign not in (1, -1) or vector.dim() != 1 or found.shift <= 0 or not float(vector.norm()) > 0:
        raise UserError(f"{path}: the choice is damaged (sign, shift or vector); rerun `saliency rank`")
    if dim_z is not None and len(vector) != dim_z:
        raise UserError(f"{path}: the chosen direction is {len(vector)}-dimensional, the generator's latent space "
                        f"is {dim_z}-dimensional; rerun `saliency rank` for this generator")
    return found


def candidate_sheet_path(rank_dir: Path, direction: int, sign: int) -> Path:
    """Where the sheet of a candidate (direction, sign) is drawn."""
    return Path(rank_dir) / CANDIDATES_DIR / f"direction{direction:03d}_{'plus' if sign > 0 else 'minus'}.png"
