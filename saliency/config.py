"""One typed config for a whole run: a YAML file with one section per stage.

Defaults are the paper's settings, and the authors' released code where the paper is silent
(``docs/method.md`` gives the source of each). Every value is validated on load: an unknown key, a
wrong type or an out-of-range value raises :class:`UserError` naming the key and what is allowed.
Command-line options and ``--set section.key=value`` overrides go through the same validation.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from saliency.errors import UserError
from saliency.seeding import SEEDED_STAGES, stage_seed


def _opt(default: Any, *, min: float | None = None, max: float | None = None, pattern: str | None = None,
         help: str = "") -> Any:
    """A config field with a default, an allowed range (or a string's pattern) and a one-line meaning."""
    factory = {"default_factory": lambda: list(default)} if isinstance(default, list) else {"default": default}
    return field(metadata={"min": min, "max": max, "pattern": pattern, "help": help}, **factory)


SEED_HELP = "null = derived from run.seed (its own for each stage); a number fixes this stage's draws"


@dataclass
class RunConfig:
    name: str = _opt("run", pattern=r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]*",
                     help="run folder name under runs/ (letters, digits, _ . + -; no path)")
    device: Literal["cpu", "cuda", "auto"] = _opt("cpu", help="where to compute")
    precision: Literal["fp32", "bf16", "auto"] = _opt(
        "fp32", help="fp32 (paper, authors' code), bf16 autocast in every stage, or auto: bf16 where the device "
                     "computes it fast (Ampere+ GPUs, CPUs with AVX-512 BF16 or AMX), else fp32; manifests record "
                     "the one used (see docs/method.md)")
    seed: int = _opt(0, min=0, help="the run's seed: each stage's seed (discover.seed, rank.seed, synth.seed, "
                                    "unet.seed) is derived from it unless that stage sets its own")
    compile: Literal["inductor", "aot_eager"] | None = _opt(
        None, help="torch.compile backend for the generator's forward in discovery and the U-Net in training: "
                   "inductor (speed, on GPUs; the first steps wait for the compiler), aot_eager (traces without "
                   "generating code: a quick check), null = off")


@dataclass
class GeneratorConfig:
    name: str = _opt("biggan-128", help="registered generator name")
    weights: str | None = _opt(None, help="path to weights, 'random', or null for the published ones")
    truncation: float | None = _opt(None, min=0.0, max=2.0, help="truncation of z; null = plain N(0, I)")
    options: dict[str, Any] = field(default_factory=dict, metadata={"help": "builder options (e.g. toyworld dim_z)"})


@dataclass
class DiscoverConfig:
    method: Literal["voynov", "lu", "optimize", "sefa", "ganspace", "random", "coordinate", "import"] = _opt(
        "voynov", help="voynov / lu: K directions and a reconstructor; optimize: a background direction learned "
                       "directly (docs/method.md §1b); the rest closed-form")
    deformator: Literal["ortho", "unit-norm", "linear", "fc"] = _opt("ortho")
    init: Literal["random", "identity"] = _opt("random", help="deformator start: random (authors' code: ortho "
                                               "L ~ N(0, 1)) or identity (the first K coordinate axes)")
    reconstructor: Literal["resnet18", "lenet"] = _opt("resnet18")
    directions: int | None = _opt(None, min=1, help="K; null = the latent dimension (paper), or 4 restarts for "
                                                    "method optimize")
    steps: int = _opt(100_000, min=0)
    batch_size: int = _opt(32, min=1)
    lr: float = _opt(1e-4, min=0.0)
    shift_scale: float = _opt(6.0, min=0.0, help="epsilon ~ U[-scale, scale]")
    min_shift: float = _opt(0.5, min=0.0, help="|epsilon| pushed to at least this")
    shift_weight: float | None = _opt(None, min=0.0, help="lambda of the shift loss; null = the method's paper value "
                                                          "(voynov 0.25, lu 0.5)")
    centroid_weight: float = _opt(0.25, min=0.0, help="gamma of Lu et al.'s centroid loss")
    classes: list[int] | None = _opt(None, help="classes to condition on; null = uniform over all "
                                                "(authors' code for BigGAN: [239])")
    checkpoint_every: int = _opt(1000, min=1)
    import_path: str | None = _opt(None, help="deformator file for method 'import'")
    optimize_steps: int = _opt(200, min=0, help="method optimize: its own step count (hundreds, not 1e5)")
    optimize_lr: float = _opt(0.05, min=0.0, help="method optimize: Adam's learning rate on the direction")
    optimize_surround: float = _opt(0.8, min=0.0, max=1.4, help="method optimize: pixels farther than this from the "
                                    "centre (in half-widths) count as background, those nearer than a quarter of it "
                                    "as object (whitening them costs)")
    optimize_weight: float = _opt(2.0, min=0.0, help="method optimize: weight of the penalty on pixels that "
                                  "change without turning white")
    rca_samples: int = _opt(1024, min=1, help="fresh pairs on which the final RCA is measured")
    ganspace_samples: int = _opt(2048, min=2, help="samples of the PCA of method 'ganspace'")
    seed: int | None = _opt(None, min=0, help=SEED_HELP)


@dataclass
class RankConfig:
    real: str = _opt("ecssd", help="dataset name or folder of real images; 'generated' = generator samples")
    shift: float = _opt(6.0, min=0.0, help="DVN shift length")
    dvn_samples: int = _opt(3200, min=2)
    dvn_steps: int = _opt(100, min=1)
    dvn_batch_size: int = _opt(32, min=1)
    dvn_lr: float = _opt(1e-3, min=0.0)
    top: int | None = _opt(None, min=1, help="directions (best by DVN) checked for the background-removal "
                                                "effect; null = every direction")
    mask_samples: int = _opt(256, min=1)
    direction: int | None = _opt(None, min=0, help="override of the choice: a discovered direction's index (the "
                                 "one place a direction is given; synthesis uses rank's choice)")
    sign: int | None = _opt(None, min=-1, max=1, help="override of the choice: +1 or -1")
    seed: int | None = _opt(None, min=0, help=SEED_HELP)
    dvn_resolution: int = _opt(32, min=32, help="DVN classifier input size (LeNet's 32 px)")
    dvn_chunk: int = _opt(32, min=1, help="directions whose DVN classifiers train together (memory)")
    mask_shifts: list[float] = _opt([6.0, 12.0, 26.0], help="shift magnitudes tried per candidate, in units of the "
                                    "direction's stored length (masks by the synth section's rule)")
    magnitude: float | None = _opt(None, min=0.0, help="the shift magnitude the choice is made at and synthesis "
                                   "uses (the authors' 26 for BigGAN); null = the best of mask_shifts")
    batch_size: int = _opt(64, min=1, help="generator batch")


@dataclass
class ClassesConfig:
    dataset: str = _opt("ecssd")
    split: str = _opt("train")
    classifier: Literal["resnet18"] = _opt("resnet18")
    classifier_weights: str | None = _opt(None, help="state dict file; null = the published weights; 'random' = "
                                                     "seeded random weights (smoke runs)")
    fraction: float = _opt(0.25, min=0.0, max=1.0)
    select: Literal["auto", "all"] | list[int] = _opt("auto", help="'auto' = classifier counts, 'all', or a list")
    batch_size: int = _opt(32, min=1, help="images per classifier batch")


@dataclass
class SynthConfig:
    n: int = _opt(10_000, min=1, help="accepted pairs to write")
    threshold: float = _opt(0.95, min=0.0, max=1.0, help="θ of the intensity and diff rules")
    min_area: float | None = _opt(0.05, min=0.0, max=1.0, help="null = no lower bound (BigBiGAN code)")
    max_area: float = _opt(0.5, min=0.0, max=1.0)
    mask_mode: Literal["intensity", "diff", "lighting", "mean_thr"] = _opt(
        "intensity", help="intensity (paper), diff (authors' code), lighting / mean_thr (BigBiGAN follow-up)")
    components: bool = _opt(False, help="keep the connected components larger than 0.2 x the largest (BigBiGAN code)")
    histogram: bool = _opt(False, help="keep samples whose shifted image's histogram has >= 2 maxima (BigBiGAN code)")
    batch_size: int = _opt(32, min=1)
    shard_size: int = _opt(1000, min=1)
    seed: int | None = _opt(None, min=0, help=SEED_HELP)
    area_bounds: Literal["inclusive", "strict"] = _opt("inclusive", help="area in [min, max] (paper) or strictly between (code)")


@dataclass
class UnetConfig:
    source: Literal["shards", "online"] = _opt("online", help="online: pairs made on the fly, never stored (the "
                                               "authors' code); shards: the synth stage's pairs on disk")
    arch: Literal["classic", "smp"] = _opt("classic", help="classic: the authors' U-Net (milesial layout); smp: a "
                                           "segmentation-models-pytorch U-Net on unet.encoder")
    width: int = _opt(64, min=1, help="classic U-Net's first width (authors: 64; then x2, x4, x8, x8)")
    encoder: str = _opt("resnet34", help="smp encoder (arch smp only)")
    encoder_weights: str | None = _opt(None, help="smp encoder weights; null = from scratch (arch smp only)")
    steps: int = _opt(15_000, min=0)
    batch_size: int = _opt(128, min=1)
    lr: float = _opt(0.005, min=0.0)
    lr_decay: float = _opt(0.2, min=0.0, max=1.0)
    lr_step: int = _opt(4000, min=1)
    temperature: float = _opt(10.0, min=1e-6, help="logits are divided by it in the loss (paper: 10)")
    ema: float | None = _opt(None, min=0.0, max=1.0, help="decay of an exponential moving average of the "
                             "weights, which is what is saved and predicts; null = off (the papers)")
    augment: Literal["none", "photo"] = _opt("none", help="augmentation recipe of the training pairs: none "
                                             "(paper) or photo (framing, colour, blur, noise, JPEG)")
    eval_every: int = _opt(1000, min=1, help="steps between MAE checks on the eval dataset")
    eval_images: int = _opt(100, min=0, help="images of the eval split used by those checks; 0 = none")
    checkpoint_every: int = _opt(1000, min=1)
    workers: int | None = _opt(None, min=0, help="data-loading processes; null = auto (8 at most for shards on "
                               "a GPU, else 0: an online generator on the GPU must stay in the main process)")
    channels_last: bool | None = _opt(None, help="train in the NHWC memory layout; null = on a GPU only (CPU: "
                                      "faster for small U-Nets, slower for the paper's; benchmarks/unet_speed.py)")
    seed: int | None = _opt(None, min=0, help=SEED_HELP)


@dataclass
class SelftrainConfig:
    rounds: int = _opt(0, min=0, help="rounds of learning from unlabeled photographs after train-unet; 0 = off "
                                      "(the papers)")
    images: str = _opt("duts-tr", help="unlabeled photographs: a registered dataset's images (duts-tr, "
                                       "ecssd-unlabeled, ecssd with split train; masks never read) or a folder")
    split: str = _opt("train", help="split of a registered dataset")
    max_images: int | None = _opt(None, min=1, help="use at most this many (a seeded draw); null = all")
    steps: int = _opt(300, min=0, help="U-Net steps per round, from the previous round's weights")
    batch_size: int = _opt(32, min=1)
    lr: float = _opt(1e-3, min=0.0, help="Adam's learning rate in each round (constant)")
    resolution: int | None = _opt(None, min=16, help="training and inference size (shorter side) from the first "
                                  "round on; null = the U-Net's own")
    augment: Literal["none", "photo", "real"] = _opt("real", help="augmentation of the pseudo-labelled pairs: real = "
                                                     "random resized crops, flips, colour jitter, blur")
    refine: Literal["none", "bilateral-solver"] = _opt(
        "bilateral-solver", help="each map refined with its image's edges before it becomes a pseudo-mask "
                                 "(predict.refine_* parameters)")
    ignore_below: float = _opt(0.5, min=0.0, max=1.0, help="pixels whose refined confidence |2p - 1| is below "
                               "this are left out of the loss")
    min_area: float = _opt(0.02, min=0.0, max=1.0, help="pseudo-masks smaller than this fraction of the image "
                           "are dropped")
    max_area: float = _opt(0.8, min=0.0, max=1.0, help="pseudo-masks larger than this fraction are dropped")
    min_stability: float = _opt(0.0, min=0.0, max=1.0, help="drop an image whose masks at two scales "
                                "(shorter side x1 and x stability_scale, each flip-averaged) agree less (IoU); "
                                "0 = off")
    stability_scale: float = _opt(1.5, min=0.25, max=4.0, help="the second scale of the stability check")
    max_border: float = _opt(1.0, min=0.0, max=1.0, help="drop a pseudo-mask covering more than this fraction "
                             "of the image's frame (objects rarely touch it); 1 = off")
    synthetic: float = _opt(0.0, min=0.0, max=1.0, help="share of each batch drawn from the synth stage's "
                            "pairs, so the generator's signal is not forgotten; 0 = none")
    monitor: str | None = _opt(None, help="dataset (with masks) scored after each round for the rounds table, "
                               "e.g. a validation folder; null = none. Never trained on")
    seed: int | None = _opt(None, min=0, help=SEED_HELP)


@dataclass
class PredictConfig:
    activation: Literal["sigmoid-logit", "softmax"] = _opt(
        "sigmoid-logit", help="foreground probability: sigmoid of the raw foreground logit (GanLatentDiscovery) "
                              "or softmax channel 1 (BigGANsAreWatching)")
    offset: float = _opt(0.0, min=-10.0, max=10.0,
                         help="added to the foreground logit before the activation: calibrates what 0.5 means on "
                              "photographs for a U-Net trained on synthetic pairs (0 in the papers)")
    flip: bool = _opt(False, help="average each prediction with that of the mirrored image "
                                  "(test-time augmentation; off in the papers)")
    refine: Literal["none", "bilateral-solver"] = _opt(
        "none", help="post-process each map with its image as guide: bilateral-solver = Barron & Poole's fast "
                     "bilateral solver (TokenCut, SelfMask, FOUND); none = the papers' raw map")
    # The solver's defaults: TokenCut's, with certainty confidence, chosen on ecssd-val (docs/method.md §5).
    refine_sigma_spatial: float = _opt(16.0, min=1.0, max=256.0, help="bilateral solver: grid cell size in pixels")
    refine_sigma_luma: float = _opt(16.0, min=1.0, max=256.0, help="bilateral solver: grid cell size in luma (0-255)")
    refine_sigma_chroma: float = _opt(8.0, min=1.0, max=256.0,
                                      help="bilateral solver: grid cell size in chroma (0-255)")
    refine_smoothness: float = _opt(128.0, min=0.0, max=1e6, help="bilateral solver: lambda, the weight of "
                                                                   "smoothness against fidelity to the map")
    refine_iterations: int = _opt(25, min=1, max=1000, help="bilateral solver: conjugate-gradient iterations")
    refine_confidence: Literal["uniform", "certainty"] = _opt(
        "certainty", help="bilateral solver: how much each pixel's value is trusted: uniform (TokenCut) or "
                        "certainty = |2p - 1| (uncertain pixels follow their region)")


METRIC_NAMES = ("mae", "max_fbeta", "mean_fbeta", "s_measure", "e_measure", "iou", "accuracy")


def dataset_names(datasets: str | list[str]) -> list[str]:
    """``"ecssd,duts-te"`` (or a list) as names, in order, without repeats."""
    names = datasets.split(",") if isinstance(datasets, str) else datasets
    cleaned = list(dict.fromkeys(name.strip() for name in names if name.strip()))
    if not cleaned:
        raise UserError("eval.dataset is empty; name a registered dataset (ecssd, duts-te...) or a folder")
    return cleaned


@dataclass
class EvalConfig:
    dataset: str = _opt("ecssd", help="registered dataset(s) or folder(s); several, comma-separated, are scored "
                                      "into one table (the first is the run's own: the U-Net's monitor, the fallback)")
    split: str = _opt("test")
    metrics: list[Literal[METRIC_NAMES]] = _opt(list(METRIC_NAMES))  # type: ignore[valid-type]
    fallback: Literal["generated"] | None = _opt(
        None, help="when the dataset is missing and cannot be fetched: generated = score on held-out samples of the "
                   "run's generator with its true masks (toy worlds); null = stop with an error")

    @property
    def primary(self) -> str:
        """The run's own dataset: the first of ``dataset``."""
        return dataset_names(self.dataset)[0]


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discover: DiscoverConfig = field(default_factory=DiscoverConfig)
    rank: RankConfig = field(default_factory=RankConfig)
    classes: ClassesConfig = field(default_factory=ClassesConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    unet: UnetConfig = field(default_factory=UnetConfig)
    selftrain: SelftrainConfig = field(default_factory=SelftrainConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def seed_of(self, stage: str) -> int:
        """The seed ``stage`` draws from: its own ``seed`` when set, else the one derived from ``run.seed``."""
        own = getattr(self, stage).seed if stage in SEEDED_STAGES else None
        return stage_seed(self.run.seed, stage) if own is None else own


def load_config(path: Path | str | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """The config from a YAML file (or the defaults), with ``{"section.key": value}`` overrides applied."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(Path(path))
    config = from_dict(raw, source=str(path) if path else "defaults")
    return apply_overrides(config, overrides or {})


# Settings that moved: the old name gets one line saying where it went.
MOVED_KEYS = {"synth.direction": "rank.direction", "synth.sign": "rank.sign", "synth.shift": "rank.magnitude"}


def from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    if not isinstance(raw, dict):
        raise UserError(f"{source}: the top level must be a mapping of sections ({_names(Config)})")
    sections = {}
    for key, value in raw.items():
        if key not in _field_map(Config):
            raise UserError(f"{source}: unknown section {key!r}; allowed: {_names(Config)}")
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise UserError(f"{source}: section {key!r} must be a mapping of settings")
        sections[key] = _build_section(typing.get_type_hints(Config)[key], value, key, source)
    return Config(**sections)


def apply_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """Set ``section.key`` values (parsed as YAML scalars when given as strings from the command line)."""
    data = config.to_dict()
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        if not key or section not in data:
            raise UserError(f"override {dotted!r}: expected SECTION.KEY with SECTION one of {_names(Config)}")
        if isinstance(value, str) and _accepts_yaml_parse(section, key):
            value = yaml.safe_load(value) if value.strip() else value
        data[section][key] = value
    return from_dict(data, source="overrides")


def parse_set_options(items: tuple[str, ...]) -> dict[str, Any]:
    """``("discover.steps=10", ...)`` from ``--set`` to ``{"discover.steps": "10"}``."""
    parsed = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set {item!r}: expected SECTION.KEY=VALUE")
        parsed[key.strip()] = value
    return parsed


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def _accepts_yaml_parse(section: str, key: str) -> bool:
    """String options of string-typed settings stay strings (a run named '1e3' stays a name)."""
    section_cls = typing.get_type_hints(Config).get(section)
    hint = typing.get_type_hints(section_cls).get(key) if section_cls else None
    return hint is not str


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"config file {path} not found: give an existing YAML file (see pipelines/)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"config file {path}{where}: not valid YAML ({getattr(error, 'problem', error)})") from None
    return raw or {}


def _field_map(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _names(cls: type) -> str:
    return ", ".join(_field_map(cls))


def _build_section(cls: type, values: dict[str, Any], section: str, source: str) -> Any:
    fields = _field_map(cls)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if (moved := MOVED_KEYS.get(f"{section}.{key}")) is not None:
            raise UserError(f"{source}: {section}.{key} is now {moved} (rank's choice is the one place the background "
                            f"direction, sign and shift are given); rename it")
        if key not in fields:
            raise UserError(f"{source}: unknown key {section}.{key}; allowed: {_names(cls)}")
        kwargs[key] = _coerce(value, hints[key], f"{section}.{key}", fields[key].metadata, source)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str, meta: typing.Mapping[str, Any], source: str) -> Any:
    try:
        result = _check_type(value, hint)
    except TypeError:
        raise UserError(f"{source}: {key} = {value!r} is not allowed; expected {_describe(hint)}") from None
    pattern = meta.get("pattern")
    if pattern is not None and isinstance(result, str) and not re.fullmatch(pattern, result):
        raise UserError(f"{source}: {key} = {value!r} is not allowed; expected a plain name matching {pattern}")
    low, high = meta.get("min"), meta.get("max")
    if isinstance(result, (int, float)) and not isinstance(result, bool):
        if (low is not None and result < low) or (high is not None and result > high):
            bounds = f"between {low} and {high}" if low is not None and high is not None else (
                f">= {low}" if low is not None else f"<= {high}")
            raise UserError(f"{source}: {key} = {value!r} is out of range; allowed: {bounds}")
    return result


def _check_type(value: Any, hint: Any) -> Any:
    """``value`` converted to ``hint`` where the conversion is lossless, else ``TypeError``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _check_type(value, option)
            except TypeError:
                continue
        raise TypeError
    if hint is type(None):
        if value is None:
            return None
        raise TypeError
    if origin is Literal:
        if value in args:
            return value
        raise TypeError
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise TypeError
        return [_check_type(item, args[0]) for item in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise TypeError  # nan and inf included: no setting means anything with them
    if hint is str:
        if isinstance(value, str):
            return value
        raise TypeError
    raise TypeError


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is list:
        return f"a list of ({_describe(args[0])})"
    if origin is dict:
        return "a mapping"
    if hint is type(None):
        return "null"
    return {int: "an integer", float: "a finite number", str: "a string", bool: "true or false"}.get(hint, str(hint))
