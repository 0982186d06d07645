"""Config: paper defaults, validation messages naming the key, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from saliency.config import dump_config, load_config, parse_set_options
from saliency.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_are_the_papers() -> None:
    config = load_config()
    assert (config.discover.steps, config.discover.batch_size, config.discover.lr) == (100_000, 32, 1e-4)
    assert config.discover.shift_weight is None and config.discover.shift_scale == 6.0  # None: each paper's λ
    assert (config.rank.shift, config.rank.dvn_samples, config.rank.dvn_steps) == (6.0, 3200, 100)
    assert config.classes.fraction == 0.25 and config.synth.threshold == 0.95
    assert (config.synth.min_area, config.synth.max_area) == (0.05, 0.5)
    assert (config.unet.lr, config.unet.steps, config.unet.batch_size, config.unet.lr_step) == (0.005, 15000, 128, 4000)


def test_yaml_round_trip_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("run:\n  name: toy\ngenerator:\n  name: toyworld\n  options: {dim_z: 16}\ndiscover:\n  steps: 10\n")
    config = load_config(path, {"discover.steps": "20", "discover.classes": "[1, 2]", "run.name": "1e3"})
    assert config.discover.steps == 20 and config.discover.classes == [1, 2]
    assert config.generator.options == {"dim_z": 16}
    assert config.run.name == "1e3"  # string settings stay strings
    again = tmp_path / "again.yaml"
    again.write_text(dump_config(config))
    assert load_config(again) == config


@pytest.mark.parametrize("text, message", [
    ("discover:\n  stepz: 3\n", "unknown key discover.stepz; allowed: method"),
    ("discovr:\n  steps: 3\n", "unknown section 'discovr'"),
    ("discover:\n  steps: many\n", "discover.steps = 'many' is not allowed; expected an integer"),
    ("discover:\n  steps: -5\n", "discover.steps = -5 is out of range; allowed: >= 0"),
    ("discover:\n  method: magic\n", "expected one of 'voynov', 'lu'"),
    ("classes:\n  fraction: 1.5\n", "classes.fraction = 1.5 is out of range; allowed: between 0.0 and 1.0"),
    ("discover: [1, 2\n", "not valid YAML"),
])
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=None) as error:
        load_config(path)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_set_options_parse() -> None:
    assert parse_set_options(("discover.steps=5", "run.name=a=b")) == {"discover.steps": "5", "run.name": "a=b"}
    with pytest.raises(UserError, match="SECTION.KEY=VALUE"):
        parse_set_options(("steps",))


def test_the_unet_trains_on_pairs_made_on_the_fly_by_default_as_in_the_authors_code() -> None:
    """docs/method.md §4 and §9: the authors' code makes the pairs inside U-Net training and never
    stores them; that is the default, and the synth stage's shards are the switch."""
    assert load_config().unet.source == "online"
    method = (REPO / "docs" / "method.md").read_text()
    assert "on the fly (`unet.source: online`, the default) | `unet.source: shards` |" in method
