"""The ``saliency`` command: one thin command per stage over the stage functions.

Commands parse options, resolve the run config (file, then options) and call a stage function.
A :class:`UserError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Any, Callable

import click

from saliency.config import Config, load_config
from saliency.errors import UserError
from saliency.evaluation.sources import BASELINES


def main() -> None:
    """Console entry point."""
    try:
        cli(standalone_mode=False)
    except UserError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.version_option(package_name="saliency")
def cli(verbose: bool) -> None:
    """Unsupervised salient-object detection from a pretrained GAN's latent directions."""
    logging.basicConfig(format="%(message)s")
    logging.getLogger("saliency").setLevel(logging.DEBUG if verbose else logging.INFO)


def stage_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options every stage command shares: run folder, config file, force."""

    @click.option("--run", "run_dir", type=click.Path(path_type=Path), default=None,
                  help="Run folder (default runs/<run.name> from the config).")
    @click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
                  help="Pipeline YAML; command options override it.")
    @click.option("--force", is_flag=True, help="Redo the stage even when it is complete.")
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


def resolve(config_path: Path | None, run_dir: Path | None, overrides: dict[str, Any]) -> tuple[Config, Path]:
    """The config (file, then the command's options) and the run folder."""
    config = load_config(config_path, overrides)
    return config, run_dir if run_dir is not None else Path("runs") / config.run.name


def print_metrics(metrics: dict[str, Any]) -> None:
    for key, value in metrics.items():
        if isinstance(value, float):
            value = f"{value:.4f}"
        click.echo(f"{key:>16}: {value}")


@cli.command("data")
@click.argument("name")
@click.option("--from", "source", type=click.Path(path_type=Path), default=None,
              help="A local copy to verify and link (else the official archives are downloaded).")
def data_command(name: str, source: Path | None) -> None:
    """Verify a dataset copy (or download it) and link it into data/NAME."""
    from saliency.datasets.prepare import prepare

    result = prepare(name, source)
    splits = ", ".join(result.splits) or "no complete split"
    click.echo(f"{name}: {result.pairs} pairs verified in {result.root} (holds: {splits}; "
               f"{result.checked_sums} files matched its SHA256SUMS; "
               f"{len(result.mismatched_reference)} differ from the reference list); linked as data/{name}")


@cli.command("eval")
@click.option("--metric", "metrics", multiple=True, help="Metric to report (repeatable; default: all).")
@click.option("--dataset", default=None, help="Registered dataset name or a folder with images/ and masks/.")
@click.option("--split", default=None, help="Split of a registered dataset (test, train, all).")
@click.option("--predictions", type=click.Path(path_type=Path), default=None,
              help="Folder of 8-bit PNG predictions named like the images.")
@click.option("--baseline", type=click.Choice(sorted(BASELINES)), default=None,
              help="Evaluate a trivial prediction instead (the sanity floor).")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Write metrics to this JSON file instead of the run folder.")
@stage_options
def eval_command(metrics: tuple[str, ...], dataset: str | None, split: str | None, predictions: Path | None,
                 baseline: str | None, output: Path | None, run_dir: Path | None, config_path: Path | None,
                 force: bool) -> None:
    """Score saliency predictions on a dataset (MAE, F-beta, S-, E-measure, IoU, accuracy)."""
    from saliency.evaluation import FolderSource, run_eval

    if (predictions is None) == (baseline is None):
        raise UserError("eval: give exactly one of --predictions DIR or --baseline zeros|center")
    overrides = {"eval.dataset": dataset, "eval.split": split, "eval.metrics": list(metrics) or None}
    config, run_dir = resolve(config_path, run_dir, overrides)
    source = FolderSource(predictions) if predictions is not None else BASELINES[baseline]()
    inputs = {"predictions": predictions} if predictions is not None else {}
    summary = run_eval(config.eval.dataset, config.eval.split, source, config.eval.metrics,
                       run_dir=run_dir, output=output, force=force, inputs=inputs)
    click.echo(f"{source.name} on {config.eval.dataset}/{config.eval.split}")
    print_metrics(summary)


@cli.command("generate")
@click.option("--generator", "generator_name", default="toyworld", show_default=True, help="Registered generator.")
@click.option("--weights", default=None, help="Weights path, 'random', or none for the published weights.")
@click.option("--n", default=16, show_default=True, type=click.IntRange(min=1), help="Number of samples.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--classes", default=None, help="Comma-separated class ids to sample from.")
@click.option("--truncation", default=None, type=float)
@click.option("--out", type=click.Path(path_type=Path), default=Path("grid.png"), show_default=True)
def generate_command(generator_name: str, weights: str | None, n: int, seed: int, classes: str | None,
                     truncation: float | None, out: Path) -> None:
    """Write a grid of generator samples (with the true masks for toyworld)."""
    from saliency import generators
    from saliency.generators.preview import write_sample_grid

    generator = generators.load(generator_name, weights=weights)
    class_ids = parse_int_list(classes, "--classes")
    path = write_sample_grid(generator, n=n, seed=seed, out=out, classes=class_ids, truncation=truncation)
    click.echo(f"wrote {path}")


def parse_int_list(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise UserError(f"{option} {text!r}: expected comma-separated integers such as 1,2,3") from None
