"""``runs/NAME/report.html``: every stage of a run on one self-contained page.

The page reads only the run folder (manifests and the files each stage wrote) and embeds every
picture as a data URI, so it can be mailed or archived alone. A stage that never ran, is still
running or failed gets a one-line note instead of its content, and a stage whose files cannot be
shown gets a note too: a report of a partial or damaged run still renders. Every string that comes
from a file is escaped.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from saliency.classes import read_classes
from saliency.config import METRIC_NAMES
from saliency.datasets import resolve
from saliency.errors import UserError
from saliency.evaluation.published import FLOOR_MAE, MEASURED_BASELINES, PUBLISHED
from saliency.evaluation.stage import (
    METRICS_FILE,
    PREDICTIONS_FOLDER,
    REFINED_FOLDER,
    per_image_path,
    read_per_image,
    read_results,
    read_table,
    table_cells,
)
from saliency.images import decode_image, encode_jpeg, resize
from saliency.metrics import HIGHER_IS_BETTER
from saliency.ranking.artifacts import candidate_sheet_path, read_rank
from saliency.report.figures import best_and_worst, case_figure, ranking_metric
from saliency.runs import atomic_write_text, read_manifest
from saliency.stages import REGISTRY
from saliency.synthesis.shards import read_stats

REPORT_FILE = "report.html"
# Pictures larger than this are re-encoded as JPEG (and shrunk if needed): BigGAN direction grids
# are megabytes of PNG each, and the page should stay a few MB.
IMAGE_BUDGET = 512 * 1024
JPEG_QUALITY = 88
TOP_CANDIDATES = 8

METRIC_LABELS = {"mae": "MAE", "max_fbeta": "max Fβ", "mean_fbeta": "mean Fβ", "s_measure": "S-measure",
                 "e_measure": "E-measure", "iou": "IoU", "accuracy": "accuracy"}


# Paper figures quoted beside a stage's own (docs/method.md §1, §2).
PAPER_RCA = "paper, BigGAN: 0.85; random directions 0.76; coordinate axes 0.66"
PAPER_DVN = "paper, BigGAN on ILSVRC: DVN 0.71, DVN_top-50 0.83"


@dataclass(frozen=True)
class StageView:
    """One stage folder and its manifest (None when the stage never started)."""

    dir: Path
    manifest: dict[str, Any] | None

    @property
    def status(self) -> str:
        return "not run" if self.manifest is None else str(self.manifest.get("status", "unknown"))

    @property
    def metrics(self) -> dict[str, Any]:
        return (self.manifest or {}).get("metrics") or {}

    @property
    def config(self) -> dict[str, Any]:
        return (self.manifest or {}).get("config") or {}


def build_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` (atomically) from whatever the run folder holds; returns its path."""
    run_dir = Path(run_dir)
    stages = {name: StageView(run_dir / name, read_manifest(run_dir / name)) for name in SECTIONS}
    config = _read_config(run_dir / "config.yaml")
    name = str(_mapping(config.get("run")).get("name") or run_dir.name)
    parts = [_guarded(lambda: _overview(run_dir, name, config, stages), "overview", "Overview")]
    for number, (stage, (title, render)) in enumerate(SECTIONS.items(), start=1):
        parts.append(_stage_section(number, stage, title, stages[stage], render))
    return atomic_write_text(run_dir / REPORT_FILE, _page(name, parts))


# -- sections ------------------------------------------------------------------------------------

FIRST_MASKS_BEFORE = ("discover", "rank", "classes")  # stages that run whole before the first pair is drawn


def time_to_first_masks(metrics: dict[str, dict[str, Any]]) -> float | None:
    """Seconds from the start of a run to its first accepted synthetic pair: every stage before
    synthesis, then synthesis up to its first pair. None until synthesis has recorded that."""
    first_pair = (metrics.get("synth") or {}).get("seconds_to_first_pair")
    if first_pair is None:
        return None
    return sum(float((metrics.get(stage) or {}).get("seconds", 0.0)) for stage in FIRST_MASKS_BEFORE) + first_pair


def _overview(run_dir: Path, name: str, config: dict[str, Any], stages: dict[str, StageView]) -> str:
    generator = _mapping(config.get("generator") or stages["discover"].config.get("generator"))
    run = _mapping(config.get("run"))
    facts = {"run": name, "folder": str(run_dir), "generator": generator.get("name"),
             "generator options": generator.get("options"), "device": run.get("device"),
             "precision": run.get("precision", "fp32"), "seed": run.get("seed")}
    timings = [[stage, view.status, _duration(view.metrics.get("seconds")),
                (view.manifest or {}).get("started") or "—", (view.manifest or {}).get("ended") or "—"]
               for stage, view in stages.items()]
    total = sum(float(view.metrics.get("seconds", 0)) for view in stages.values())
    timings.append(["total", "", _duration(total), "", ""])
    first_masks = time_to_first_masks({stage: view.metrics for stage, view in stages.items()})
    if first_masks is not None:
        timings.append(["time to the first masks", "", _duration(first_masks), "", ""])
    versions: dict[str, Any] = next((view.manifest["versions"] for view in stages.values()
                                     if view.manifest and view.manifest.get("versions")), {})
    parts = [_facts(facts), "<h3>Stage timings</h3>",
             _table(["stage", "status", "time", "started", "ended"], timings), "<h3>Metrics and published numbers</h3>"]
    results = _eval_results(stages["eval"])
    if results is None:
        parts.append(_note("no evaluation yet: the published numbers alone"))
    elif results.get("dataset") == "ecssd":
        parts.append(_floor_check(results))
    elif results.get("stands_in_for"):
        parts.append(_note(f"{results['stands_in_for']} was not on this machine: scored on held-out generator samples "
                           f"instead, which no published number is comparable with (`saliency data "
                           f"{str(results['stands_in_for']).split('/')[0]} --from DIR`, then rerun)"))
    parts.append(_comparison((results or {}).get("metrics") or {}, (results or {}).get("dataset") or "ecssd"))
    parts.append(_facts({"package versions": ", ".join(f"{k} {v}" for k, v in versions.items()) or "—"}))
    if config:
        parts.append(f"<details><summary>config.yaml</summary><pre>{_e(yaml.safe_dump(config, sort_keys=False))}"
                     f"</pre></details>")
    return _section_html("overview", "Overview", "", "".join(parts))


def _discover(view: StageView) -> str:
    options = view.config.get("discover") or {}
    metrics = view.metrics
    summary = {"method": options.get("method", metrics.get("method")), "deformator": options.get("deformator"),
               "reconstructor": options.get("reconstructor"), "K (directions)": metrics.get("directions"),
               "steps": metrics.get("steps"), "batch size": options.get("batch_size"), "lr": options.get("lr"),
               "RCA": f"{_fmt(metrics.get('rca'))} on {_fmt(metrics.get('rca_samples'))} fresh samples ({PAPER_RCA})",
               "final loss": metrics.get("final_loss")}
    grids = [_figure(path, f"{path.stem}: a row per direction, one latent code moved from the most negative "
                           f"shift (left) to the most positive (right), unshifted in the middle")
             for path in sorted((view.dir / "grids").glob("*.png"))]
    curves = [_figure(view.dir / "curves.png", "training losses and direction accuracy")] \
        if (view.dir / "losses.csv").is_file() else [_note("no training steps: no loss curves")]
    return _facts(summary) + "<h3>Direction grids</h3>" + ("".join(grids) or _note("no direction grids")) + \
        "<h3>Training curves</h3>" + "".join(curves)


def _rank(view: StageView) -> str:
    rank = read_rank(view.dir)
    choice = rank["choice"]
    candidates = sorted(rank.get("candidates", []), key=lambda c: c["score"], reverse=True)
    chosen = next((c for c in candidates if _same_move(c, choice)), None)
    top_key = next((key for key in rank if key.startswith("dvn_top")), "dvn_top50")
    how = "overridden in the config" if choice.get("overridden") else "automatic choice"
    summary = {"directions ranked": len(rank.get("dvn", [])), "DVN mean": rank.get("dvn_mean"),
               f"DVN_top-{top_key.removeprefix('dvn_top')}": rank.get(top_key), "reference": PAPER_DVN,
               "chosen": f"{_move(choice)}, shift {_fmt(choice['shift'])} ({how})",
               "its score and DVN": f"{_fmt(chosen['score'])}, {_fmt(chosen['dvn'])}" if chosen else None}
    shown = candidates[:TOP_CANDIDATES]
    if chosen is not None and chosen not in shown:
        shown.append(chosen)
    columns = ["direction", "sign", "shift", "dvn", "passing", "background", "stillness", "agreement", "score"]
    table = _table(columns, [[_signed(c["sign"]) if k == "sign" else _fmt(c.get(k)) for k in columns] for c in shown],
                   highlight={i for i, c in enumerate(shown) if _same_move(c, choice)})
    return (_facts(summary) + _figure(view.dir / "dvn.png", "DVN per direction, best first (red: chosen)")
            + f"<h3>Top candidates by score (of {len(candidates)})</h3>" + table
            + "<h3>Candidate sheets</h3>" + _candidate_sheets(view.dir, rank, choice, candidates))


def _candidate_sheets(rank_dir: Path, rank: dict[str, Any], choice: dict[str, Any],
                      candidates: list[dict[str, Any]]) -> str:
    """The chosen direction's sheet and the sheet of the best candidate of another direction or sign."""
    magnitudes = ", ".join(_fmt(m) for m in rank.get("settings", {}).get("masks", {}).get("magnitudes", []))
    layout = f"top row: samples; then for each shift ({magnitudes}) the shifted samples and their masks (white: object)"
    sheets = [_figure(candidate_sheet_path(rank_dir, choice["direction"], choice["sign"]), f"chosen: {_move(choice)}; {layout}")]
    runner_up = next((c for c in candidates if (c["direction"], c["sign"]) != (choice["direction"], choice["sign"])
                      and candidate_sheet_path(rank_dir, c["direction"], c["sign"]).is_file()), None)
    if runner_up is not None:
        sheets.append(_figure(candidate_sheet_path(rank_dir, runner_up["direction"], runner_up["sign"]),
                              f"best other candidate: {_move(runner_up)} (score {_fmt(runner_up['score'])})"))
    return "".join(sheets)


def _classes(view: StageView) -> str:
    chosen = read_classes(view.dir)
    ids, names, counts = chosen.get("ids", []), chosen.get("names", []), chosen.get("counts")
    summary = {"dataset": chosen.get("dataset"), "split": chosen.get("split"), "selection": chosen.get("rule"),
               "classifier": chosen.get("classifier"), "images counted": chosen.get("images"),
               "classes chosen": len(ids)}
    parts = [_facts(summary)]
    if (view.dir / "classes.png").is_file():
        parts.append(_figure(view.dir / "classes.png", "how often each class is in the images' top-5 (dark: chosen)"))
    if counts is not None:
        rows = [[name, str(i), str(count)] for i, name, count in zip(ids, names, counts)]
        parts.append(f"<details><summary>all {len(ids)} chosen classes</summary>"
                     f"{_table(['class', 'id', 'images'], rows)}</details>")
    else:
        parts.append(f"<p>{_e(', '.join(f'{name} ({i})' for i, name in zip(ids, names)))}</p>")
    return "".join(parts)


def _synth(view: StageView) -> str:
    stats = read_stats(view.dir)
    area_range = stats.get("area_range") or ["?", "?"]
    summary = {"pairs": stats.get("pairs"), "drawn": stats.get("drawn"),
               "acceptance rate": stats.get("acceptance_rate"), "resolution": stats.get("resolution"),
               "classes": stats.get("classes"), "direction": stats.get("direction"), "shift": stats.get("shift"),
               "mask mode": stats.get("mask_mode"), "threshold": stats.get("threshold"),
               "kept areas": f"{_fmt(area_range[0])} to {_fmt(area_range[1])} ({stats.get('area_bounds', '')})"}
    return (_facts(summary) + "<h3>Mask areas of the drawn samples</h3>" + _histogram(stats.get("area_histogram") or {})
            + _figure(view.dir / "sheet.png", "the first pairs: images above their masks"))


def _unet(view: StageView) -> str:
    options = view.config.get("unet") or {}
    metrics = view.metrics
    summary = {"pairs from": options.get("source"), "encoder": options.get("encoder"),
               "encoder weights": options.get("encoder_weights") or "none (from scratch)",
               "steps": metrics.get("steps"), "batch size": options.get("batch_size"), "lr": options.get("lr"),
               "final loss": metrics.get("final_loss"), "MAE on eval images during training": metrics.get("sample_mae")}
    return _facts(summary) + _figure(view.dir / "curves.png", "training loss, pixel accuracy and periodic MAE")


def _selftrain(view: StageView) -> str:
    from saliency.selftrain.stage import ROUNDS_FIGURE, SHEET, read_rounds, round_dir

    options = view.config.get("selftrain") or {}
    if not view.metrics.get("rounds"):
        return _note("No self-training: selftrain.rounds is 0, or no unlabeled images were on this machine "
                     "(its log says which).")
    summary = {"unlabeled images": options.get("images"), "used": view.metrics.get("images"),
               "rounds": view.metrics.get("rounds"), "steps per round": options.get("steps"),
               "refinement": options.get("refine"), "synthetic share": options.get("synthetic")}
    rows = read_rounds(view.dir)
    table = _table(list(rows[0]), [[row[column] for column in rows[0]] for row in rows]) if rows else ""
    sheets = "".join(_figure(round_dir(view.dir, index) / SHEET,
                             f"round {index}: photograph | map | refined | pseudo-mask (grey ignored, red frame "
                             f"dropped)") for index in range(1, int(view.metrics["rounds"]) + 1))
    return _facts(summary) + table + _figure(view.dir / ROUNDS_FIGURE, "pseudo-labels and monitoring scores by round") \
        + sheets


def _eval(view: StageView) -> str:
    results = read_results(view.dir)
    metrics = results.get("metrics") or {}
    refine = results.get("refine") or {}
    summary = {"dataset": results.get("dataset"), "split": results.get("split"), "images": results.get("images"),
               "predictions from": results.get("source"), "in place of": results.get("stands_in_for") or "—",
               "refinement": ", ".join(f"{k} {v}" for k, v in refine.items()) if refine.get("name") not in (None, "none")
               else "none"}
    unrefined = (results.get("unrefined") or {}).get("metrics")
    if unrefined:
        rows = [[METRIC_LABELS.get(k, k), _fmt(unrefined.get(k)), _fmt(v), _better(k)] for k, v in metrics.items()]
        table = _table(["metric", "this run", "this run, refined", "better"], rows)
    else:
        table = _table(["metric", "this run", "better"], [[METRIC_LABELS.get(k, k), _fmt(v), _better(k)]
                                                          for k, v in metrics.items()])
    parts = [_facts(summary), table]
    if (rows_of_table := read_table(view.dir)) is not None:
        header, cells = table_cells(rows_of_table)
        parts += ["<h3>Per dataset, beside published figures</h3>", _table(header, cells)]
    return "".join(parts) + _cases(view.dir, results)


def _cases(eval_dir: Path, results: dict[str, Any]) -> str:
    """The best and worst images by per-image MAE, each group one composed picture."""
    per_image = read_per_image(per_image_path(eval_dir, results))
    metric = ranking_metric(list(per_image[0])) if per_image else None
    predictions = eval_dir / (REFINED_FOLDER if results.get("unrefined") else PREDICTIONS_FOLDER)
    if metric is None or not predictions.is_dir():
        return _note("no saved predictions or per-image scores: no prediction pictures")
    parts = ["<h3>Predictions next to ground truth</h3>"]
    try:
        dataset = resolve(str(results.get("dataset")), results.get("split"))
        columns = "image | ground truth | prediction"
    except UserError as error:
        dataset, columns = None, "prediction"
        parts.append(_note(f"the dataset cannot be opened here ({error}): predictions only"))
    for label, group in zip(("best", "worst"), best_and_worst(per_image, metric)):
        listing = ", ".join(f"{case.stem} ({METRIC_LABELS.get(metric, metric)} {_fmt(case.value)})" for case in group)
        parts.append(_figure_bytes(case_figure([case.stem for case in group], predictions, dataset),
                                   f"{len(group)} {label} images by {METRIC_LABELS.get(metric, metric)}; "
                                   f"columns: {columns}; rows from the top: {listing}"))
    return "".join(parts)


# How each stage's folder is shown; the sections' order and headings are the stages' (saliency.stages).
RENDERERS: dict[str, Callable[[StageView], str]] = {
    "discover": _discover, "rank": _rank, "classes": _classes, "synth": _synth, "unet": _unet,
    "selftrain": _selftrain, "eval": _eval,
}
SECTIONS: dict[str, tuple[str, Callable[[StageView], str]]] = {
    entry.name: (entry.title, RENDERERS[entry.name]) for entry in REGISTRY}


# -- building blocks -----------------------------------------------------------------------------

def _stage_section(number: int, stage: str, title: str, view: StageView, render: Callable[[StageView], str]) -> str:
    heading = f"{number}. {title}"
    manifest = view.manifest or {}
    state = f"{view.status}, {_duration(view.metrics.get('seconds'))}" if view.status == "complete" else view.status
    status = f'<p class="status {_e(view.status.replace(" ", "-"))}">{_e(stage)}: {_e(state)}</p>'
    if view.manifest is None:
        return _section_html(stage, heading, status, _note("not run yet"))
    if view.status == "failed":
        return _section_html(stage, heading, status, _note(f"failed: {manifest.get('error') or 'no error recorded'}"))
    if view.status != "complete":
        return _section_html(stage, heading, status, _note(f"not finished (status {view.status}, "
                                                            f"started {manifest.get('started')})"))
    return _guarded(lambda: _section_html(stage, heading, status, render(view)),
                    stage, heading, status)


def _guarded(build: Callable[[], str], anchor: str, heading: str, status: str = "") -> str:
    """``build()``, or a note when the stage's files cannot be shown (missing, damaged, unexpected)."""
    try:
        return build()
    except Exception as error:  # noqa: BLE001 - one damaged file must not cost the rest of the report
        note = _note(f"cannot show this section: {type(error).__name__}: {error}")
        return _section_html(anchor, heading, status, note)


def _section_html(anchor: str, heading: str, status: str, body: str) -> str:
    return f'<section id="{_e(anchor)}"><h2>{_e(heading)}</h2>{status}{body}</section>\n'


def _floor_check(results: dict[str, Any]) -> str:
    """Whether the metrics beat the trivial baselines, known for the ECSSD test split: predicting no
    object at all (the MAE floor) and a centred Gaussian."""
    metrics = results.get("metrics") or {}
    mae = metrics.get("mae")
    if results.get("split") != "test" or mae is None:
        return ""
    if mae >= FLOOR_MAE:
        parts = [_note(f"MAE {_fmt(mae)} is not below the all-zero floor {FLOOR_MAE}: these predictions score worse "
                       f"than predicting no object anywhere")]
    else:
        parts = [f"<p>MAE {_fmt(mae)} is below the all-zero floor {FLOOR_MAE} ({100 * mae / FLOOR_MAE:.0f} % of it).</p>"]
    for baseline in MEASURED_BASELINES:
        shared = [m for m in baseline.metrics if m in metrics]
        lost = [METRIC_LABELS[m] for m in shared if not _beats(m, metrics[m], baseline.metrics[m])]
        verdict = f"loses on {', '.join(lost)}" if lost else "beats it on every metric"
        parts.append(f"<p>Against {_e(baseline.method)}: {verdict}.</p>")
    return "".join(parts)


def _beats(metric: str, value: float, reference: float) -> bool:
    return value < reference if metric == "mae" else value > reference


def _comparison(metrics: dict[str, Any], dataset: str) -> str:
    """This run's metrics beside every figure published on its dataset, one row per metric, then the
    published figures on the other benchmarks (where this run has none)."""
    parts = []
    quoted = (*PUBLISHED, *MEASURED_BASELINES)
    for name in [dataset, *dict.fromkeys(p.dataset for p in quoted if p.dataset != dataset)]:
        published = [p for p in quoted if p.dataset == name]
        own = metrics if name == dataset else {}
        names = [m for m in METRIC_NAMES if m in own or any(m in p.metrics for p in published)]
        if not names:
            continue
        header = ["metric", "better", "this run", *(p.method for p in published)]
        rows = [[METRIC_LABELS[m], _better(m), _fmt(own.get(m)), *(_fmt(p.metrics.get(m)) for p in published)]
                for m in names]
        sources = "".join(f"<li>{_e(p.method)}: {_e(p.source)}</li>" for p in published)
        parts.append(f"<h4>{_e(name)}</h4>" + _table(header, rows, emphasis_column=2)
                     + f'<ul class="sources">{sources}</ul>')
    return "".join(parts)


def _histogram(histogram: dict[str, Any]) -> str:
    """Area histogram of the drawn and accepted samples as a table with bars (bins that hold any)."""
    edges, drawn, accepted = histogram.get("edges", []), histogram.get("drawn", []), histogram.get("accepted", [])
    top = max(drawn, default=0) or 1
    rows = []
    for low, high, count, kept in zip(edges, edges[1:], drawn, accepted):
        if count:
            bar = (f'<span class="bar drawn" style="width:{100 * count / top:.1f}%"></span>'
                   f'<span class="bar kept" style="width:{100 * kept / top:.1f}%"></span>')
            rows.append(f"<tr><td>{low:.2f}–{high:.2f}</td><td>{count}</td><td>{kept}</td>"
                        f'<td class="bars">{bar}</td></tr>')
    if not rows:
        return _note("no area histogram")
    return ('<table class="histogram"><tr><th>mask area</th><th>drawn</th><th>kept</th><th>'
            '<span class="bar drawn legend"></span> drawn <span class="bar kept legend"></span> kept</th></tr>'
            + "".join(rows) + "</table>")


def _table(header: list[str], rows: list[list[str]], highlight: set[int] | None = None,
           emphasis_column: int | None = None) -> str:
    """A table of plain-text cells (all escaped); ``highlight`` marks rows, ``emphasis_column`` a column."""
    def cell(tag: str, index: int, text: str) -> str:
        attribute = ' class="emphasis"' if index == emphasis_column else ""
        return f"<{tag}{attribute}>{_e(text)}</{tag}>"

    def row_tag(index: int) -> str:
        return '<tr class="highlight">' if index in (highlight or set()) else "<tr>"

    head = "".join(cell("th", i, text) for i, text in enumerate(header))
    body = "".join(row_tag(r) + "".join(cell("td", i, text) for i, text in enumerate(row)) + "</tr>"
                   for r, row in enumerate(rows))
    return f"<table><tr>{head}</tr>{body}</table>"


def _facts(facts: dict[str, Any], caption: str = "") -> str:
    """A two-column list of named values (None values left out)."""
    rows = "".join(f"<tr><th>{_e(key)}</th><td>{_e(_fmt(value))}</td></tr>" for key, value in facts.items()
                   if value is not None)
    title = f"<caption>{_e(caption)}</caption>" if caption else ""
    return f'<table class="facts">{title}{rows}</table>' if rows else ""


def _figure(path: Path, caption: str) -> str:
    if not path.is_file():
        return _note(f"missing picture: {path.parent.name}/{path.name}")
    return _figure_bytes(path.read_bytes(), caption)


def _figure_bytes(data: bytes, caption: str) -> str:
    return f'<figure><img src="{data_uri(data)}" alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>'


def data_uri(data: bytes, budget: int = IMAGE_BUDGET) -> str:
    """A PNG as it is when it fits ``budget``, else a JPEG of it, shrunk until it fits."""
    if len(data) <= budget:
        return "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    image = decode_image(data, "picture")
    while True:
        jpeg = encode_jpeg(image, JPEG_QUALITY)
        height, width = image.shape[:2]
        if len(jpeg) <= budget or min(height, width) < 64:
            return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
        scale = 0.95 * math.sqrt(budget / len(jpeg))
        image = resize(image, (max(1, round(height * scale)), max(1, round(width * scale))))


def _eval_results(view: StageView) -> dict[str, Any] | None:
    return read_results(view.dir) if view.status == "complete" and (view.dir / METRICS_FILE).is_file() else None


def _read_config(path: Path) -> dict[str, Any]:
    """The run's resolved config, or {} when there is none (stages run one by one) or it is unreadable."""
    try:
        return _mapping(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError):
        return {}


def _mapping(value: Any) -> dict[str, Any]:
    """``value`` when it is a mapping, else {} (a hand-edited config may hold anything)."""
    return value if isinstance(value, dict) else {}


def _same_move(candidate: dict[str, Any], choice: dict[str, Any]) -> bool:
    return (candidate["direction"], candidate["sign"], float(candidate["shift"])) == \
        (choice["direction"], choice["sign"], float(choice["shift"]))


def _better(metric: str) -> str:
    return "↑\u00a0higher" if HIGHER_IS_BETTER.get(metric, True) else "↓\u00a0lower"


def _move(candidate: dict[str, Any]) -> str:
    return f"direction {candidate['direction']}, sign {_signed(candidate['sign'])}"


def _signed(sign: int) -> str:
    return "+1" if sign > 0 else "−1"


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{key}={_fmt(item)}" for key, item in value.items())
    return str(value)


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "—"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _page(name: str, sections: list[str]) -> str:
    links = " · ".join(f'<a href="#{anchor}">{_e(title)}</a>' for anchor, title in
                       [("overview", "overview"), *((stage, stage) for stage in SECTIONS)])
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>saliency run {_e(name)}</title><style>{STYLE}</style></head>\n<body>"
            f"<h1>saliency run: {_e(name)}</h1><nav>{links}</nav>\n{''.join(sections)}</body></html>\n")


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1150px; margin: 1.5em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: .2em; } h2 { border-bottom: 2px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
nav { color: #666; } nav a { color: #1f4e79; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } caption { text-align: left; font-weight: bold; padding: .2em 0; }
table.facts th { width: 14em; font-weight: normal; color: #444; }
tr.highlight td { background: #fff3c4; font-weight: bold; }
.emphasis { background: #e8f0fa; font-weight: bold; }
.status { font-weight: bold; } .status.complete { color: #1a7f37; } .status.failed { color: #b42318; }
.status.running, .status.not-run, .status.unknown { color: #9a6700; }
.note { background: #fff8e6; border-left: 4px solid #e0a800; padding: .4em .8em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: .9em; }
ul.sources { font-size: .85em; color: #555; }
table.histogram td.bars { width: 320px; position: relative; }
.bar { display: block; height: .55em; } .bar.drawn { background: #a6bddb; } .bar.kept { background: #1f4e79; }
.bar.legend { display: inline-block; width: 1em; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: .85em; }
"""
