"""Choose the bilateral solver's settings (predict.refine_*) on a validation set, never the test split.

Scores one source (a folder of predictions, or a baseline) unrefined and under TokenCut's
settings (σ_spatial 16, σ_luma 16, σ_chroma 8, λ 128, uniform confidence) and each one-step
variation of them, and prints a line per setting. Usage:

    python benchmarks/refine_sweep.py --dataset data/ecssd-val --predictions RUN/val-predictions
    python benchmarks/refine_sweep.py --dataset data/ecssd-val --baseline center
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from saliency.config import PredictConfig
from saliency.datasets import resolve
from saliency.evaluation.sources import BASELINES, FolderSource, PredictionSource
from saliency.evaluation.stage import evaluate
from saliency.segmentation.refine import Refinement

METRICS = ["mae", "max_fbeta", "iou", "accuracy"]
CENTRE = {"refine_sigma_spatial": 16.0, "refine_sigma_luma": 16.0, "refine_sigma_chroma": 8.0,
          "refine_smoothness": 128.0, "refine_confidence": "uniform"}  # TokenCut's
# One setting at a time away from the centre (a full grid would take hours on 2 cores).
VARIATIONS = [{}, {"refine_sigma_spatial": 8.0}, {"refine_sigma_spatial": 32.0}, {"refine_sigma_luma": 8.0},
              {"refine_sigma_luma": 32.0}, {"refine_sigma_chroma": 16.0}, {"refine_smoothness": 32.0},
              {"refine_smoothness": 512.0}, {"refine_confidence": "certainty"}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--predictions")
    source.add_argument("--baseline", choices=sorted(BASELINES))
    args = parser.parse_args()
    dataset = resolve(args.dataset)
    predictions: PredictionSource = FolderSource(args.predictions) if args.predictions else BASELINES[args.baseline]()
    plain = evaluate(dataset, predictions, METRICS).raw.summary
    print(json.dumps({"setting": "unrefined", **{k: round(v, 4) for k, v in plain.items()}}), flush=True)
    for variation in VARIATIONS:
        setting = {**CENTRE, **variation}
        refinement = Refinement.of_config(dataclasses.replace(PredictConfig(), refine="bilateral-solver", **setting))
        started = time.perf_counter()
        scores = evaluate(dataset, predictions, METRICS, refinement).headline.summary
        print(json.dumps({"setting": {k.removeprefix("refine_"): v for k, v in setting.items()},
                          **{k: round(v, 4) for k, v in scores.items()},
                          "s_per_image": round((time.perf_counter() - started) / len(dataset), 3)}), flush=True)


if __name__ == "__main__":
    main()
