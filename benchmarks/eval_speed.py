"""Images per second of evaluation (all metrics) on the ECSSD test split.

    python benchmarks/eval_speed.py [--dataset ecssd] [--split test] [--repeats 2]

The prediction is the centre-prior baseline, so the figure is the cost of reading the masks,
resizing nothing, and computing every metric; prediction cost is measured by the U-Net benchmark.
"""

from __future__ import annotations

import argparse
import time

from saliency.config import METRIC_NAMES
from saliency.datasets import resolve
from saliency.evaluation.sources import BASELINES
from saliency.evaluation.stage import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ecssd")
    parser.add_argument("--split", default="test")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    dataset = resolve(args.dataset, args.split)
    for metrics in (["mae"], list(METRIC_NAMES)):
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            evaluate(dataset, BASELINES["center"](), metrics)
            best = min(best, time.perf_counter() - start)
        print(f"{args.dataset}/{args.split} {len(dataset)} images, metrics={','.join(metrics)}: "
              f"{len(dataset) / best:.1f} images/s ({best:.2f} s)")


if __name__ == "__main__":
    main()
