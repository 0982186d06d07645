"""Wall time of `saliency --help` and of each command's `--help`, each in a fresh process.

    python benchmarks/cli_startup.py [--repeats 5]

Each figure is the median of ``--repeats`` runs of ``python -m saliency [COMMAND] --help`` (the
interpreter's own start included), so it is what a user waits for; help must not import torch.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from saliency.cli import cli

REPO = Path(__file__).resolve().parents[1]


def seconds(args: list[str], repeats: int) -> float:
    """Median wall time of ``python -m saliency ARGS --help``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "saliency", *args, "--help"], check=True, cwd=REPO,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"median of {args.repeats} runs, python {sys.version.split()[0]}")
    for command in [[], *([name] for name in sorted(cli.commands))]:
        label = " ".join(["saliency", *command, "--help"])
        print(f"{label:<36} {seconds(command, args.repeats):.3f} s")


if __name__ == "__main__":
    main()
