"""Stage 3: the generator classes that fit a dataset (docs/method.md §3).

An off-the-shelf ImageNet classifier looks at every image of the dataset's split; each of its
top-5 classes gets one count; the most frequent classes become C_D, the classes the synthetic
pairs are drawn from. How ``fraction`` becomes a number of classes (the paper only says "the top
25 % most frequent classes"): ``floor(fraction × P + 0.5)`` of them, where P is the number of
classes predicted at least once, so a class never predicted is never chosen and the rule does not
depend on the 1000 - P classes nobody saw. Ties in count go to the lower class id.

For generators whose classes are not ImageNet's (toyworld), ``classes.select`` is ``all`` or an
explicit list of ids, and no classifier runs. ``classes/classes.json`` is written and read only
here (:func:`save_classes`, :func:`load_classes`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from saliency import distributed, generators
from saliency.config import Config
from saliency.datasets import PairFolder, resolve
from saliency.downloads import WeightFile, ensure_published, load_checkpoint, load_state_dict_checked
from saliency.errors import UserError
from saliency.runs import Stage, atomic_path, atomic_write_json, read_json_file, run_stage

log = logging.getLogger("saliency")

TOP_K = 5
CLASSES_FILE = "classes.json"
CHART_FILE = "classes.png"
CHART_BARS = (30, 60)  # at least 30 bars, at most 60: enough to show where the chosen classes end
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ClassifierSpec:
    """An ImageNet classifier: its architecture (random weights), published weights and preprocessing."""

    build: Callable[[], nn.Module]
    weights_url: str
    preprocess: Callable[[], Callable[[torch.Tensor], torch.Tensor]]
    categories: tuple[str, ...]


# Name -> a function making the spec, called on use: torchvision (3 s of imports) is loaded only by
# the runs that classify.
CLASSIFIERS: dict[str, Callable[[], ClassifierSpec]] = {}


def register_classifier(name: str, make_spec: Callable[[], ClassifierSpec]) -> Callable[[], ClassifierSpec]:
    if name in CLASSIFIERS:
        raise ValueError(f"classifier {name!r} registered twice")
    CLASSIFIERS[name] = make_spec
    return make_spec


def _resnet18() -> ClassifierSpec:
    from torchvision.models import ResNet18_Weights, resnet18

    published = ResNet18_Weights.IMAGENET1K_V1
    return ClassifierSpec(build=lambda: resnet18(weights=None), weights_url=published.url,
                          preprocess=published.transforms, categories=tuple(published.meta["categories"]))


register_classifier("resnet18", _resnet18)


def get_classifier(name: str) -> ClassifierSpec:
    if name not in CLASSIFIERS:
        raise UserError(f"unknown classifier {name!r} (classes.classifier); "
                        f"choose one of {', '.join(sorted(CLASSIFIERS))}")
    return CLASSIFIERS[name]()


def cached_weights_path(spec: ClassifierSpec) -> Path:
    """Where torchvision keeps the published file: ``<torch.hub dir>/checkpoints/<file name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / spec.weights_url.rsplit("/", 1)[-1]


def classifier_weights_path(name: str, weights: str | os.PathLike[str] | None) -> Path:
    """The user's ``weights`` file, else torchvision's cached file, else a download into that cache
    (10 s timeout, skipped with ``SALIENCY_OFFLINE=1``); failing all, a UserError saying where to
    put the file."""
    spec = get_classifier(name)
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise UserError(f"{name} classifier weights: {path} not found (classes.classifier_weights); "
                            f"pass a state dict file saved with torch.save")
        return path
    cached = cached_weights_path(spec)
    ensure_published(f"{name} classifier weights", WeightFile.from_hashed_url(cached.name, spec.weights_url), cached,
                     f"put {cached.name} from {spec.weights_url} at {cached} or pass --classifier-weights PATH")
    return cached


def load_classifier(name: str, weights: str | os.PathLike[str] | None, device: torch.device) -> nn.Module:
    """Classifier ``name`` with its ImageNet weights (see :func:`classifier_weights_path`), in eval mode;
    ``weights="random"`` keeps seeded random weights (smoke runs and tests: the real architecture,
    meaningless counts)."""
    spec = get_classifier(name)
    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return spec.build().to(device).eval()
    path = classifier_weights_path(name, weights)
    model = spec.build()
    load_state_dict_checked(model, load_checkpoint(path), path, f"{name} classifier")
    return model.to(device).eval()


def preprocessed_batches(dataset: PairFolder, preprocess: Callable[[torch.Tensor], torch.Tensor],
                         batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """The dataset's images, each through the classifier's own preprocessing, in batches on ``device``."""
    stems = dataset.stems
    for start in range(0, len(stems), batch_size):
        images = [torch.tensor(dataset.image(stem)).permute(2, 0, 1) for stem in stems[start:start + batch_size]]
        yield torch.stack([preprocess(image) for image in images]).to(device)


@torch.no_grad()
def count_top_classes(classifier: nn.Module, batches: Iterator[torch.Tensor], num_classes: int,
                      k: int = TOP_K, precision: str = "fp32") -> torch.Tensor:
    """How often each class is among an image's ``k`` most probable: ``(num_classes,)`` int64."""
    counts = torch.zeros(num_classes, dtype=torch.long)
    for batch in batches:
        with distributed.autocast(batch.device, precision):
            logits = classifier(batch)
        top = logits.float().topk(k, dim=1).indices
        counts += torch.bincount(top.flatten().cpu(), minlength=num_classes)
    return counts


def selection_size(counts: torch.Tensor, fraction: float) -> int:
    """``floor(fraction × P + 0.5)``, P = number of classes counted at least once (see module doc)."""
    return math.floor(fraction * int((counts > 0).sum()) + 0.5)


def top_fraction(counts: torch.Tensor, fraction: float) -> list[int]:
    """The :func:`selection_size` most frequent class ids, by count (descending) then id (ascending)."""
    order = torch.sort(-counts, stable=True).indices
    return order[: selection_size(counts, fraction)].tolist()


@dataclass(frozen=True)
class ChosenClasses:
    """What ``classes.json`` holds: the chosen ids and names, and the counts behind them."""

    dataset: str
    select: str
    ids: list[int]
    names: list[str]
    split: str | None = None
    classifier: str | None = None
    fraction: float | None = None
    images: int | None = None
    counts: list[int] | None = None  # per chosen id, in the order of ``ids``
    all_counts: list[int] | None = None  # per class of the classifier


def save_classes(path: Path, chosen: ChosenClasses) -> Path:
    rule = ("floor(fraction * classes predicted at least once + 0.5) most frequent in top-5, ties by lower id"
            if chosen.select == "auto" else f"select = {chosen.select}")
    return atomic_write_json(Path(path), {"format": FORMAT_VERSION, "rule": rule, **dataclasses.asdict(chosen)})


def read_classes(classes_dir: Path) -> dict[str, Any]:
    """Everything a ``classes.json`` records (ids, names, counts, rule, classifier), for the report."""
    return read_json_file(Path(classes_dir) / CLASSES_FILE, "classes file", "rerun `saliency classes`")


def load_classes(run_dir: Path, dataset: str) -> ChosenClasses:
    """The classes chosen for ``dataset`` in ``run_dir``; a UserError naming the command when there are none."""
    path = Path(run_dir) / "classes" / CLASSES_FILE
    command = f"`saliency classes --run {run_dir} --dataset {dataset}`"
    if not path.is_file():
        raise UserError(f"no classes chosen for dataset {dataset!r} in {run_dir} ({path} missing): run {command} first")
    try:
        raw = json.loads(path.read_text())
        fields = {f.name for f in dataclasses.fields(ChosenClasses)}
        chosen = ChosenClasses(**{key: value for key, value in raw.items() if key in fields})
    except (json.JSONDecodeError, TypeError) as error:
        raise UserError(f"{path}: not a classes file written by `saliency classes` ({error}); "
                        f"rerun {command}") from None
    if chosen.dataset != dataset:
        raise UserError(f"{path}: classes were chosen for dataset {chosen.dataset!r}, not {dataset!r}: run {command} "
                        f"(or pass --dataset {chosen.dataset})")
    return chosen


def _by_classifier(cfg: Config, device: torch.device) -> ChosenClasses:
    options = cfg.classes
    spec = get_classifier(options.classifier)
    dataset = resolve(options.dataset, options.split)
    classifier = load_classifier(options.classifier, options.classifier_weights, device)
    batches = preprocessed_batches(dataset, spec.preprocess(), options.batch_size, device)
    counts = count_top_classes(classifier, batches, len(spec.categories), precision=cfg.run.precision)
    ids = top_fraction(counts, options.fraction)
    if not ids:
        raise UserError(f"classes.fraction = {options.fraction} selects none of the {int((counts > 0).sum())} "
                        f"predicted classes; raise it")
    return ChosenClasses(dataset=options.dataset, select="auto", ids=ids, names=[spec.categories[i] for i in ids],
                         split=options.split, classifier=options.classifier, fraction=options.fraction,
                         images=len(dataset), counts=counts[ids].tolist(), all_counts=counts.tolist())


def _generator_classes(cfg: Config, ids: list[int] | None) -> ChosenClasses:
    """All classes of the configured generator, or the listed ones (checked against it)."""
    generator = generators.load(cfg.generator.name, weights="random", **cfg.generator.options)
    if ids is None and generator.n_classes == 0:  # unconditional (BigBiGAN): no class to choose
        return ChosenClasses(dataset=cfg.classes.dataset, select="all", ids=[], names=[])
    if ids is None:
        ids = list(range(generator.n_classes))
    bad = [i for i in ids if not 0 <= i < generator.n_classes]
    if bad or not ids or len(set(ids)) != len(ids):
        raise UserError(f"classes.select = {ids}: give distinct class ids of {cfg.generator.name} "
                        f"(0..{generator.n_classes - 1}); {bad or 'empty or repeated'} is not")
    return ChosenClasses(dataset=cfg.classes.dataset, select="all" if cfg.classes.select == "all" else "list",
                         ids=list(ids), names=[generator.class_names[i] for i in ids])


SELECTORS: dict[str, Callable[[Config, torch.device], ChosenClasses]] = {
    "auto": _by_classifier,
    "all": lambda cfg, device: _generator_classes(cfg, None),
}


def choose_classes(cfg: Config, device: torch.device) -> ChosenClasses:
    """C_D by ``classes.select``: a list of ids as given, else the named selector."""
    select = cfg.classes.select
    if isinstance(select, list):
        return _generator_classes(cfg, select)
    return SELECTORS[select](cfg, device)


def write_chart(path: Path, chosen: ChosenClasses) -> Path:
    """Bar chart of the most frequent classes (chosen ones dark, ten more after them), most frequent on top."""
    if chosen.classifier is None or chosen.all_counts is None:
        raise ValueError(f"no classifier counts to chart (classes.select = {chosen.select}); only 'auto' has them")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = torch.tensor(chosen.all_counts)
    bars = min(max(CHART_BARS[0], len(chosen.ids) + 10), CHART_BARS[1], int((counts > 0).sum()))
    order = torch.sort(-counts, stable=True).indices[:bars].tolist()
    categories = get_classifier(chosen.classifier).categories
    chosen_ids = set(chosen.ids)
    fig, ax = plt.subplots(figsize=(7, 0.25 * len(order) + 1.2))
    ax.barh(range(len(order)), [chosen.all_counts[i] for i in order],
            color=["#1f4e79" if i in chosen_ids else "#a6bddb" for i in order])
    ax.set_yticks(range(len(order)), [f"{categories[i]} ({i})" for i in order], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"images with the class in their top-{TOP_K}")
    ax.set_title(f"{chosen.dataset}/{chosen.split}: {len(chosen.ids)} classes chosen (dark) "
                 f"of {int((counts > 0).sum())} predicted", fontsize=9)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


def run_classes(cfg: Config, run_dir: Path, device: str | torch.device, force: bool = False) -> dict[str, Any]:
    """Stage 3 into ``run_dir/classes``: ``classes.json`` and, when a classifier counted, ``classes.png``."""
    device = distributed.resolve_device(device)
    cfg = distributed.settle_precision(cfg, device)
    options = cfg.classes
    section: dict[str, Any] = {"classes": dataclasses.asdict(options)}
    inputs: dict[str, Path] = {}
    if options.select == "auto":
        inputs["images"] = resolve(options.dataset, options.split).images_dir
        if options.classifier_weights not in (None, "random"):
            inputs["classifier_weights"] = Path(options.classifier_weights)
    else:
        section["generator"] = {"name": cfg.generator.name, "options": cfg.generator.options}

    def body(stage: Stage) -> dict[str, Any]:
        chosen = choose_classes(cfg, device)
        save_classes(stage.dir / CLASSES_FILE, chosen)
        metrics: dict[str, Any] = {"chosen": len(chosen.ids)}
        if chosen.all_counts is not None:
            write_chart(stage.dir / CHART_FILE, chosen)
            metrics.update(images=chosen.images, predicted=sum(c > 0 for c in chosen.all_counts))
        log.info("classes: %d chosen for %s: %s%s", len(chosen.ids), chosen.dataset, ", ".join(chosen.names[:8]),
                 " ..." if len(chosen.names) > 8 else "")
        return metrics

    stage = Stage(run_dir, "classes", config=section, inputs=inputs, precision=cfg.run.precision)
    return run_stage(stage, body, force=force, device=device)
