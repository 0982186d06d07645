"""The ``saliency`` command: one thin command per stage over the stage functions.

Commands parse options, resolve the run config (file, then options) and call a stage function.
A :class:`UserError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import click

from saliency.config import Config, load_config
from saliency.errors import UserError
from saliency.evaluation import BASELINE_NAMES


def main() -> None:
    """Console entry point."""
    finished = False
    try:
        cli(standalone_mode=False)
        finished = True
    except UserError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(2)
    finally:
        # A stage launched by torchrun joined a process group: leave it so nccl exits cleanly (after
        # the other ranks, when this one finished: see distributed.shutdown).
        if "saliency.distributed" in sys.modules:
            sys.modules["saliency.distributed"].shutdown(in_step=finished)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.version_option(package_name="gan-saliency")
def cli(verbose: bool) -> None:
    """Unsupervised salient-object detection from a pretrained GAN's latent directions."""
    logging.basicConfig(format="%(message)s")
    # Under torchrun only rank 0 reports progress (every rank with --verbose); others warn.
    quiet = launched_rank() > 0 and not verbose
    logging.getLogger("saliency").setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)


SET_OPTION = click.option("--set", "settings", multiple=True, metavar="SECTION.KEY=VALUE",
                          help="Override any setting of the config (repeatable; the command's own options win).")


def stage_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options every stage command shares: run folder, config file, ``--set`` (as ``settings``)
    and force."""

    @click.option("--run", "run_dir", type=click.Path(path_type=Path), default=None,
                  help="Run folder (default runs/<run.name> from the config).")
    @click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
                  help="Pipeline YAML; --set and command options override it.")
    @SET_OPTION
    @click.option("--force", is_flag=True, help="Redo the stage even when it is complete (the old one is kept "
                  "until the new one completes).")
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


def resolve(config_path: Path | None, run_dir: Path | None, overrides: dict[str, Any],
            settings: tuple[str, ...] = ()) -> tuple[Config, Path]:
    """The config (file, then ``--set`` ``settings``, then the command's own options) and the run folder."""
    from saliency.config import parse_set_options

    given = {key: value for key, value in overrides.items() if value is not None}
    config = load_config(config_path, {**parse_set_options(settings), **given})
    return config, run_dir if run_dir is not None else Path("runs") / config.run.name


def launched_rank() -> int:
    """This process's rank under torchrun (0 outside it): only rank 0 prints results."""
    return int(os.environ.get("RANK", "0"))


def inference_settings(config: Config, config_path: Path | None, settings: tuple[str, ...],
                       **given: Any) -> dict[str, Any]:
    """Each inference setting (activation, offset, flip) for a checkpoint: the command's option, else
    the config's when one is given (a file or ``--set predict.*``), else ``None``: the checkpoint's own."""
    from saliency.config import parse_set_options

    configured = config_path is not None or any(key.startswith("predict.") for key in parse_set_options(settings))
    return {key: value if value is not None else (getattr(config.predict, key) if configured else None)
            for key, value in given.items()}


def print_metrics(metrics: dict[str, Any]) -> None:
    """The stage's metrics, once (by rank 0 under torchrun)."""
    if launched_rank() > 0:
        return
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
    from saliency.datasets.registry import get_spec

    result = prepare(name, source)
    splits = ", ".join(result.splits) or "no complete split"
    what = "images" if get_spec(name).images_only else "pairs"
    click.echo(f"{name}: {result.pairs} {what} verified in {result.root} (holds: {splits}; "
               f"{result.checked_sums} files matched its SHA256SUMS; "
               f"{len(result.mismatched_reference)} differ from the reference list); linked as data/{name}")


@cli.command("eval")
@click.option("--metric", "metrics", multiple=True, help="Metric to report (repeatable; default: all).")
@click.option("--dataset", default=None, help="Registered dataset name or a folder with images/ and masks/; "
              "several, comma-separated (ecssd,duts-te,dut-omron), are scored into one table.")
@click.option("--split", default=None, help="Split of a registered dataset (test, train, all).")
@click.option("--predictions", type=click.Path(path_type=Path), default=None,
              help="Folder of predictions named like the images (8- or 16-bit PNGs, float TIFFs in [0, 1]).")
@click.option("--baseline", type=click.Choice(BASELINE_NAMES), default=None,
              help="Evaluate a trivial prediction instead (the sanity floor).")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="A trained U-Net (a run's unet stage writes it): predict every image, keep the PNGs, and score them.")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Write metrics to this JSON file instead of the run folder.")
@click.option("--activation", default=None, help="With --checkpoint: sigmoid-logit or softmax "
              "(default: the config's predict.activation when --config is given, else the checkpoint's own).")
@click.option("--offset", type=float, default=None, help="With --checkpoint: added to the foreground logit "
              "before the activation (default: as --activation).")
@click.option("--flip/--no-flip", default=None, help="With --checkpoint: average with the mirrored image's "
              "prediction (default: as --activation).")
@click.option("--refine", type=click.Choice(["none", "bilateral-solver"]), default=None,
              help="Also score the maps refined with their image as guide (default: the config's predict.refine; "
                   "its parameters are the config's predict.refine_* settings).")
@click.option("--device", default=None, help="cpu, cuda or auto (with --checkpoint).")
@stage_options
def eval_command(metrics: tuple[str, ...], dataset: str | None, split: str | None, predictions: Path | None,
                 baseline: str | None, checkpoint: Path | None, output: Path | None, activation: str | None,
                 offset: float | None, flip: bool | None, refine: str | None, device: str | None,
                 run_dir: Path | None, config_path: Path | None, settings: tuple[str, ...],
                 force: bool) -> None:
    """Score saliency predictions on a dataset (MAE, F-beta, S-, E-measure, IoU, accuracy)."""
    from saliency.config import dataset_names
    from saliency.distributed import resolve_device, settle_precision
    from saliency.evaluation.sources import BASELINES, FolderSource, PredictionSource
    from saliency.evaluation.stage import run_eval
    from saliency.segmentation.refine import Refinement

    if sum(x is not None for x in (predictions, baseline, checkpoint)) != 1:
        raise UserError("eval: give exactly one of --predictions DIR, --checkpoint FILE or --baseline zeros|center")
    overrides = {"eval.dataset": dataset, "eval.split": split, "eval.metrics": list(metrics) or None,
                 "run.device": device, "predict.activation": activation, "predict.offset": offset,
                 "predict.flip": flip, "predict.refine": refine}
    config, run_dir = resolve(config_path, run_dir, overrides, settings)
    source_settings: dict[str, Any] = {}
    source: PredictionSource
    if checkpoint is not None:
        from saliency.evaluation.checkpoint import CheckpointSource

        saved = (output.with_suffix("") if output is not None else run_dir / "eval") / "predictions"
        chosen = inference_settings(config, config_path, settings, activation=activation, offset=offset, flip=flip)
        on = resolve_device(config.run.device)
        config = settle_precision(config, on)
        source = CheckpointSource(checkpoint, on, save_to=saved, precision=config.run.precision, **chosen)
        inputs = {"checkpoint": checkpoint}
        source_settings = {key: "checkpoint's own" if value is None else value for key, value in chosen.items()}
    elif predictions is not None:
        source, inputs = FolderSource(predictions), {"predictions": predictions}
    elif baseline is not None:  # exactly one of the three is given (checked above)
        source, inputs = BASELINES[baseline](), {}
    # Predictions beside an --output file are this call's own: bad input leaves none of them behind
    # (in a run folder, the eval stage's bookkeeping does the same).
    beside_output = output.with_suffix("") if checkpoint is not None and output is not None else None
    made_here = beside_output is not None and not beside_output.exists()
    try:
        summary = run_eval(config.eval.dataset, config.eval.split, source, config.eval.metrics,
                           run_dir=run_dir, output=output, force=force, inputs=inputs, settings=source_settings,
                           precision=config.run.precision, refinement=Refinement.of_config(config.predict))
    except UserError:
        if made_here and beside_output is not None:
            shutil.rmtree(beside_output, ignore_errors=True)
        raise
    if output is None and len(dataset_names(config.eval.dataset)) > 1:
        from saliency.evaluation.stage import TABLE_FILE

        click.echo((run_dir / "eval" / TABLE_FILE).read_text(), nl=False)
        click.echo(f"table: {run_dir / 'eval' / TABLE_FILE}")
        return
    click.echo(f"{source.name} on {config.eval.dataset}/{config.eval.split}")
    print_metrics(summary)


@cli.command("train-unet")
@click.option("--steps", type=int, default=None, help="Training steps (paper: 15000).")
@click.option("--batch-size", type=int, default=None, help="Batch size (paper: 128).")
@click.option("--source", type=click.Choice(["shards", "online"]), default=None,
              help="Train on the synth stage's shards or synthesize pairs on the fly.")
@click.option("--arch", type=click.Choice(["classic", "smp"]), default=None,
              help="classic (the authors' U-Net) or smp (segmentation-models-pytorch, with --encoder).")
@click.option("--encoder", default=None, help="segmentation-models-pytorch encoder name (--arch smp).")
@click.option("--device", default=None, help="cpu, cuda or auto.")
@stage_options
def train_unet_command(steps: int | None, batch_size: int | None, source: str | None, arch: str | None,
                       encoder: str | None, device: str | None, run_dir: Path | None, config_path: Path | None,
                       settings: tuple[str, ...], force: bool) -> None:
    """Train the U-Net on the synthetic pairs (stage 5)."""
    from saliency.segmentation.train import run_train_unet

    config, run_dir = resolve(config_path, run_dir, {
        "unet.steps": steps, "unet.batch_size": batch_size, "unet.source": source, "unet.arch": arch,
        "unet.encoder": encoder, "run.device": device}, settings)
    print_metrics(run_train_unet(config, run_dir, config.run.device, force=force))


@cli.command("self-train")
@click.option("--images", default=None, help="Unlabeled photographs: a registered dataset (duts-tr, ecssd-unlabeled, "
              "ecssd with --split train; its masks are never read) or a folder of images.")
@click.option("--split", default=None, help="Split of a registered dataset (default train).")
@click.option("--rounds", type=int, default=None, help="Rounds of pseudo-labelling and training (0 = off).")
@click.option("--steps", type=int, default=None, help="U-Net steps per round.")
@click.option("--monitor", default=None, help="A dataset with masks scored after each round (never trained on).")
@click.option("--device", default=None, help="cpu, cuda or auto.")
@stage_options
def self_train_command(images: str | None, split: str | None, rounds: int | None, steps: int | None,
                       monitor: str | None, device: str | None, run_dir: Path | None, config_path: Path | None,
                       settings: tuple[str, ...], force: bool) -> None:
    """Self-train the U-Net on unlabeled photographs with its own refined pseudo-masks (stage 6)."""
    from saliency.selftrain.stage import run_self_train

    config, run_dir = resolve(config_path, run_dir, {
        "selftrain.images": images, "selftrain.split": split, "selftrain.rounds": rounds, "selftrain.steps": steps,
        "selftrain.monitor": monitor, "run.device": device}, settings)
    print_metrics(run_self_train(config, run_dir, config.run.device, force=force))


@cli.command("run")
@click.argument("pipeline", type=click.Path(path_type=Path))
@SET_OPTION
@click.option("--run", "run_dir", type=click.Path(path_type=Path), default=None,
              help="Run folder (default runs/<run.name>).")
@click.option("--from", "first", default=None, help="First stage to run.")
@click.option("--until", "last", default=None, help="Last stage to run.")
@click.option("--force", is_flag=True, help="Redo the selected stages even when complete.")
def run_command(pipeline: Path, settings: tuple[str, ...], run_dir: Path | None, first: str | None,
                last: str | None, force: bool) -> None:
    """Run every stage of a pipeline YAML into one run folder (complete stages are skipped)."""
    from saliency.config import dataset_names
    from saliency.datasets.heldout import evaluation_target
    from saliency.evaluation.stage import TABLE_FILE
    from saliency.pipeline import run_pipeline, select_stages

    config, run_dir = resolve(pipeline, run_dir, {}, settings)
    results = run_pipeline(config, run_dir, select_stages(first, last), force=force)
    if launched_rank() > 0:
        return
    for name, metrics in results.items():
        click.echo(f"[{name}]")
        print_metrics(metrics)
    click.echo(f"run folder: {run_dir}")
    if "eval" in results and len(dataset_names(config.eval.dataset)) > 1:
        click.echo(f"table of every dataset: {run_dir / 'eval' / TABLE_FILE}")
    if "eval" in results and (advice := evaluation_target(config, run_dir).advice()):
        click.echo(advice)


@cli.command("report")
@click.option("--run", "run_dir", type=click.Path(path_type=Path), required=True, help="Run folder.")
def report_command(run_dir: Path) -> None:
    """Rebuild RUN/report.html: every stage's pictures and figures on one self-contained page."""
    from saliency.report import build_report

    if not run_dir.is_dir():
        raise UserError(f"run folder {run_dir} not found")
    click.echo(f"wrote {build_report(run_dir)}")


CHECKPOINT_HELP = "A U-Net from `saliency train-unet`, or a run folder (the U-Net its eval scores)."
INFERENCE_OPTIONS = (
    click.option("--activation", default=None, help="sigmoid-logit or softmax (default: the checkpoint's own)."),
    click.option("--offset", type=float, default=None, help="Added to the foreground logit before the activation "
                 "(default: the checkpoint's own)."),
    click.option("--flip/--no-flip", default=None, help="Average with the mirrored image's prediction "
                 "(default: the checkpoint's own)."),
    click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
                 help="Pipeline YAML whose predict section (and run.precision, run.device) to use, as `saliency eval` "
                      "does: the same config makes the maps eval scores."),
    SET_OPTION,
)


RUNTIME_OPTIONS = (
    click.option("--refine", type=click.Choice(["none", "bilateral-solver"]), default=None,
                 help="Refine each map with its image as guide (default: the config's predict.refine, else none; "
                      "parameters: the config's predict.refine_* settings)."),
    click.option("--precision", type=click.Choice(["fp32", "bf16", "auto"]), default=None,
                 help="Default: the config's run.precision (auto: bf16 where the device computes it fast)."),
    click.option("--device", default=None, help="cpu, cuda or auto (default: the config's run.device)."),
)


def _with(options: tuple[Callable[..., Any], ...]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


# The options that choose how a checkpoint predicts (predict, export, serve): inference settings and
# the config whose predict section supplies them; and, where maps are made here, refinement and device.
inference_options = _with(INFERENCE_OPTIONS)
runtime_options = _with(RUNTIME_OPTIONS)


def load_detector(checkpoint: Path, config_path: Path | None, settings: tuple[str, ...], device: str | None,
                  precision: str | None = None, refine: str | None = None, **given: Any) -> Any:
    """The :class:`~saliency.segmentation.predict.Detector` of a checkpoint as the options and config choose."""
    from saliency.distributed import resolve_device, resolve_precision
    from saliency.segmentation.predict import Detector
    from saliency.segmentation.refine import Refinement

    config, _ = resolve(config_path, None, {"predict.refine": refine, "run.precision": precision,
                                            "run.device": device}, settings)
    chosen = inference_settings(config, config_path, settings, **given)
    on = resolve_device(config.run.device)
    return Detector.load(checkpoint, on, precision=resolve_precision(config.run.precision, on),
                         refine=Refinement.of_config(config.predict), **chosen)


@cli.command("predict")
@click.argument("inputs", nargs=-1)
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True, help=CHECKPOINT_HELP)
@click.option("--images", "image_options", multiple=True, help="Images to predict, like INPUTS (repeatable).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the PNGs, one per image.")
@click.option("--format", "output_format", type=click.Choice(["probability", "mask", "cutout", "overlay"]),
              default="probability", show_default=True, help="The map (8-bit grey), the mask (0/255, map ≥ 0.5), the "
              "cut-out (RGBA, background transparent) or the overlay (the map as a red tint over the image).")
@runtime_options
@inference_options
def predict_command(inputs: tuple[str, ...], checkpoint: Path, image_options: tuple[str, ...], out: Path,
                    output_format: str, refine: str | None, precision: str | None, activation: str | None,
                    offset: float | None, flip: bool | None, device: str | None, config_path: Path | None,
                    settings: tuple[str, ...]) -> None:
    """Predict a PNG per image: INPUTS are image files, folders and glob patterns ('photos/*.jpg')."""
    from saliency.segmentation.predict import gather_images, predict_images

    images = (*inputs, *image_options)
    gather_images(images)  # bad input fails before the model loads
    detector = load_detector(checkpoint, config_path, settings, device, precision, refine,
                             activation=activation, offset=offset, flip=flip)
    written = predict_images(detector, images, out, output_format)
    click.echo(f"wrote {written} {output_format} PNGs to {out}")


@cli.command("export")
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True, help=CHECKPOINT_HELP)
@click.option("--format", "export_format", type=click.Choice(["onnx", "torchscript"]), required=True,
              help="onnx (onnxruntime and friends) or torchscript (torch.jit.load, C++ libtorch).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="The file to write (default: beside the checkpoint, model.onnx or model.torchscript.pt).")
@click.option("--force", is_flag=True, help="Replace an existing file.")
@inference_options
def export_command(checkpoint: Path, export_format: str, out: Path | None, force: bool, activation: str | None,
                   offset: float | None, flip: bool | None, config_path: Path | None, settings: tuple[str, ...]) -> None:
    """Write the detector as one file: RGB (N, 3, H, W) float in [0, 1] -> probability (N, 1, H, W), any size."""
    from saliency.segmentation.export import TOLERANCE, default_path, export_detector

    detector = load_detector(checkpoint, config_path, settings, "cpu", "fp32", "none",
                             activation=activation, offset=offset, flip=flip)
    target = out if out is not None else default_path(detector.checkpoint, export_format)
    difference = export_detector(detector, export_format, target, overwrite=force)
    checked = (f"largest difference from PyTorch {difference:.1e} (≤ {TOLERANCE:g})" if difference == difference
               else "not checked: install onnxruntime to check it")
    click.echo(f"wrote {target} ({checked})")


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


@cli.command("discover")
@click.option("--generator", "generator_name", default=None, help="Registered generator (e.g. biggan-128, toyworld).")
@click.option("--weights", default=None, help="Weights path, 'random', or none for the published weights.")
@click.option("--method", default=None, help="voynov, lu (trained), optimize (one background direction, minutes) or sefa, "
                                                  "ganspace, random, coordinate, import.")
@click.option("--deformator", default=None, help="ortho, unit-norm, linear or fc.")
@click.option("--init", default=None, help="Deformator start: random (authors' code) or identity.")
@click.option("--reconstructor", default=None, help="resnet18 or lenet.")
@click.option("--directions", type=int, default=None, help="K (default: the latent dimension, as in the paper).")
@click.option("--steps", type=int, default=None, help="Training steps of voynov/lu (closed-form methods: of the reconstructor, "
                                                        "for RCA; optimize has discover.optimize_steps).")
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--classes", default=None, help="Comma-separated class ids to condition on.")
@click.option("--import-path", default=None, help="Authors' deformator file, for --method import.")
@click.option("--seed", type=int, default=None)
@click.option("--device", default=None, help="cpu, cuda or auto.")
@stage_options
def discover_command(generator_name: str | None, weights: str | None, method: str | None, deformator: str | None,
                     init: str | None, reconstructor: str | None, directions: int | None, steps: int | None,
                     batch_size: int | None,
                     lr: float | None, classes: str | None, import_path: str | None, seed: int | None,
                     device: str | None, run_dir: Path | None, config_path: Path | None, settings: tuple[str, ...],
                     force: bool) -> None:
    """Stage 1: discover K latent directions (launch with torchrun for several GPUs)."""
    from saliency.discovery.train import run_discover

    overrides = {"generator.name": generator_name, "generator.weights": weights, "discover.method": method,
                 "discover.deformator": deformator, "discover.init": init, "discover.reconstructor": reconstructor,
                 "discover.directions": directions, "discover.steps": steps, "discover.batch_size": batch_size,
                 "discover.lr": lr, "discover.classes": parse_int_list(classes, "--classes"),
                 "discover.import_path": import_path, "discover.seed": seed, "run.device": device}
    config, run_dir = resolve(config_path, run_dir, overrides, settings)
    print_metrics(run_discover(config, run_dir, config.run.device, force=force))


@cli.command("classes")
@click.option("--dataset", default=None, help="Registered dataset or folder whose images pick the classes.")
@click.option("--split", default=None, help="Split of the dataset (paper: train).")
@click.option("--classifier", default=None, help="ImageNet classifier (resnet18).")
@click.option("--classifier-weights", default=None, help="State dict file (default: torchvision's cache).")
@click.option("--fraction", type=float, default=None, help="Share of the predicted classes to keep (paper: 0.25).")
@click.option("--select", default=None, help="auto (classifier counts), all, or comma-separated generator class ids.")
@click.option("--generator", "generator_name", default=None, help="Generator whose classes 'all' or a list names.")
@click.option("--device", default=None, help="cpu, cuda or auto.")
@stage_options
def classes_command(dataset: str | None, split: str | None, classifier: str | None, classifier_weights: str | None,
                    fraction: float | None, select: str | None, generator_name: str | None, device: str | None,
                    run_dir: Path | None, config_path: Path | None, settings: tuple[str, ...],
                    force: bool) -> None:
    """Stage 3: choose the generator classes that fit a dataset (top-5 counts of an ImageNet classifier)."""
    from saliency.classes import run_classes

    chosen = select if select in (None, "auto", "all") else parse_int_list(select, "--select")
    overrides = {"classes.dataset": dataset, "classes.split": split, "classes.classifier": classifier,
                 "classes.classifier_weights": classifier_weights, "classes.fraction": fraction,
                 "classes.select": chosen, "generator.name": generator_name, "run.device": device}
    config, run_dir = resolve(config_path, run_dir, overrides, settings)
    print_metrics(run_classes(config, run_dir, config.run.device, force=force))


@cli.command("synth-dataset")
@click.option("--dataset", default=None, help="Dataset the classes were chosen for (by `saliency classes`).")
@click.option("--n", type=int, default=None, help="Accepted image/mask pairs to write.")
@click.option("--generator", "generator_name", default=None, help="Registered generator.")
@click.option("--weights", default=None, help="Weights path, 'random', or none for the published weights.")
@click.option("--mask-mode", default=None, help="intensity (paper), diff (authors' code), lighting or mean_thr "
              "(BigBiGAN follow-up).")
@click.option("--threshold", type=float, default=None, help="Brightness threshold of the mask rule (0.95).")
@click.option("--shard-size", type=int, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--seed", type=int, default=None)
@click.option("--device", default=None, help="cpu, cuda or auto.")
@stage_options
def synth_dataset_command(dataset: str | None, n: int | None, generator_name: str | None, weights: str | None,
                          mask_mode: str | None, threshold: float | None, shard_size: int | None,
                          batch_size: int | None, seed: int | None, device: str | None, run_dir: Path | None,
                          config_path: Path | None, settings: tuple[str, ...], force: bool) -> None:
    """Stage 4: write filtered image/mask pairs in shards along rank's choice (launch with torchrun for several GPUs)."""
    from saliency.synthesis.stage import run_synth

    overrides = {"classes.dataset": dataset, "synth.n": n, "generator.name": generator_name,
                 "generator.weights": weights, "synth.mask_mode": mask_mode, "synth.threshold": threshold,
                 "synth.shard_size": shard_size, "synth.batch_size": batch_size, "synth.seed": seed, "run.device": device}
    config, run_dir = resolve(config_path, run_dir, overrides, settings)
    print_metrics(run_synth(config, run_dir, config.run.device, force=force))


@cli.command("rank")
@click.option("--real", default=None, help="Dataset name or image folder for DVN, or 'generated' (generator samples).")
@click.option("--top", type=int, default=None, help="Directions (best by DVN) tested for background removal.")
@click.option("--direction", type=int, default=None, help="Override the choice: index of a discovered direction.")
@click.option("--sign", type=click.Choice(["1", "+1", "-1"]), default=None, help="Override the choice's sign.")
@click.option("--magnitude", type=float, default=None, help="Fix the shift magnitude the choice is made at and synthesis "
                                                                "uses (rank.magnitude; rank.shift is DVN's shift length).")
@click.option("--seed", type=int, default=None)
@click.option("--device", default=None, help="cpu, cuda or auto.")
@stage_options
def rank_command(real: str | None, top: int | None, direction: int | None, sign: str | None, magnitude: float | None,
                 seed: int | None, device: str | None, run_dir: Path | None, config_path: Path | None,
                 settings: tuple[str, ...], force: bool) -> None:
    """Stage 2: rank directions by DVN and choose the background-removal direction, sign and shift."""
    from saliency.ranking.stage import run_rank

    overrides = {"rank.real": real, "rank.top": top, "rank.direction": direction,
                 "rank.sign": None if sign is None else int(sign), "rank.magnitude": magnitude, "rank.seed": seed,
                 "run.device": device}
    config, run_dir = resolve(config_path, run_dir, overrides, settings)
    print_metrics(run_rank(config, run_dir, config.run.device, force=force))


@cli.command("serve")
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True, help=CHECKPOINT_HELP)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface; the page has no login).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port (0: any free one).")
@click.option("--max-upload-mb", type=click.FloatRange(min=0, min_open=True), default=20.0, show_default=True,
              help="Largest image file taken, in MB of 2^20 bytes (larger ones are refused with HTTP 413).")
@runtime_options
@inference_options
def serve_command(checkpoint: Path, host: str, port: int, max_upload_mb: float, refine: str | None,
                  precision: str | None, device: str | None, activation: str | None, offset: float | None, flip: bool | None,
                  config_path: Path | None, settings: tuple[str, ...]) -> None:
    """A local web page: drop or pick an image, see and download its saliency map, mask and cut-out."""
    from saliency.serve import require_extras

    require_extras()  # before the model loads: Flask and waitress are the [serve] extra
    from saliency.serve.app import MEGABYTE, serve

    detector = load_detector(checkpoint, config_path, settings, device, precision, refine,
                             activation=activation, offset=offset, flip=flip)
    serve(detector, host, port, max_upload_bytes=int(max_upload_mb * MEGABYTE))
