"""The import graph has no cycle, between modules or between packages, counting the imports written
inside functions (a function-local import hides a cycle from Python, not from a reader); each
artifact file is named by one module; heavy libraries are loaded only where they are used."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "saliency"


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package (a package by its ``__init__``)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its file."""
    known = modules()

    def owner(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            for target in targets:
                if target.split(".")[0] == "saliency" and (found := owner(target)) not in (None, name):
                    graph[name].add(found)
    return graph


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same, between the package's first-level parts (``saliency.ranking``, ``saliency.masks``)."""
    def part(name: str) -> str:
        return ".".join(name.split(".")[:2])

    folded: dict[str, set[str]] = {}
    for name, targets in graph.items():
        folded.setdefault(part(name), set()).update(part(t) for t in targets if part(t) != part(name))
    return folded


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while (top := stack.pop()) != node:
                component.append(top)
            if component:
                found.append(sorted([node, *component]))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_checker_finds_a_cycle_hidden_in_a_function() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_function_local_imports() -> None:
    graph = import_graph()
    # saliency.pipeline imports the stages by name at run time; cli imports them inside commands
    assert "saliency.segmentation.train" in graph["saliency.cli"]
    assert "saliency.evaluation.checkpoint" in graph["saliency.evaluation.stage"]


def test_no_import_cycle_between_modules() -> None:
    assert cycles(import_graph()) == []


def test_no_import_cycle_between_packages() -> None:
    assert cycles(package_graph(import_graph())) == []


# Every artifact file a stage hands on, and the one module that writes and reads it.
ARTIFACT_OWNERS = {
    "directions.pt": "discovery/artifacts.py", "reconstructor.pt": "discovery/artifacts.py",
    "rank.json": "ranking/artifacts.py", "classes.json": "classes.py", "stats.json": "synthesis/shards.py",
    "samples.jsonl": "synthesis/shards.py", "model.pt": "segmentation/model.py", "metrics.json": "evaluation/stage.py",
    "per_image.csv": "evaluation/stage.py", "manifest.json": "runs.py", "last.pt": "training.py",
}


def test_each_artifact_file_name_is_in_exactly_one_module() -> None:
    for name, owner in ARTIFACT_OWNERS.items():
        holders = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if name in path.read_text())
        assert holders == [owner], f"{name} appears in {holders}; only {owner} may name it (others import its constant)"


# Libraries only some stages or settings use: the ResNet-18s (torchvision), the smp U-Net (segmentation-models-
# pytorch, timm), the photo augmentation (albumentations) and the curve metrics (pysodmetrics,
# scikit-learn). Each is imported where it is used, since every start of `saliency` (each torchrun
# process, each resumed stage) would otherwise spend about 7 s loading them.
OPTIONAL_LIBRARIES = ("torchvision", "segmentation_models_pytorch", "timm", "albumentations", "py_sod_metrics", "sklearn")


def test_importing_the_cli_and_every_stage_loads_no_optional_library() -> None:
    code = ("import importlib, sys\n"
            "from saliency.pipeline import STAGES\n"
            "import saliency.cli, saliency.report\n"
            "for target in STAGES.values():\n"
            "    importlib.import_module(target.partition(':')[0])\n"
            f"print(' '.join(name for name in {OPTIONAL_LIBRARIES!r} if name in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == []
