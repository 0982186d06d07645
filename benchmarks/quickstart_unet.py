"""The quickstart's U-Net stage alone, on pairs made along a toy generator's true background
direction (what rank chooses when discovery succeeds), scored on a real dataset: the experiment
behind the table of docs/quickstart.md.

    python benchmarks/quickstart_unet.py --dataset ../shared/data/ecssd-val [--generator toyscene]
        [--steps 600] [--score-every 200] [--width 16] [--augment none|photo] [--ema 0.99] [--flip]
        [--seed 0] [--threads 2] [--precision fp32|bf16|auto]

Choose settings on ecssd-val (or any folder with images/ and masks/), never on the test split.
Prints one JSON line per scored step: the settings, the step, training minutes so far and the
scores. With a constant learning rate, the weights' moving average at step N of a longer run is
that of an N-step run, so one run answers "how many steps".
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from saliency import distributed, generators
from saliency.datasets import resolve
from saliency.evaluation.checkpoint import CheckpointSource
from saliency.evaluation.stage import evaluate
from saliency.masks import MaskRule
from saliency.segmentation.model import UnetSpec, build_unet, save_unet
from saliency.segmentation.train import UnetSettings, train_unet
from saliency.synthesis.online import OnlinePairs, PairSampler

METRICS = ["mae", "max_fbeta", "iou", "accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="a folder with images/ and masks/ (e.g. ecssd-val)")
    parser.add_argument("--generator", default="toyscene")
    parser.add_argument("--dim-z", type=int, default=48)
    parser.add_argument("--shift", type=float, default=26.0, help="along the true background direction")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--score-every", type=int, default=0, help="also score every N steps (0 = at the end only)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lr-step", type=int, default=0, help="multiply the lr by 0.2 every N steps (0 = never)")
    parser.add_argument("--width", type=int, default=16, help="classic U-Net base width (64 = the authors')")
    parser.add_argument("--augment", default="none")
    parser.add_argument("--ema", type=float, default=None, help="decay of the weights' moving average")
    parser.add_argument("--activation", default="softmax")
    parser.add_argument("--offset", type=float, default=0.0, help="added to the foreground logit (predict.offset)")
    parser.add_argument("--flip", action="store_true", help="average with the mirrored image's prediction")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--precision", default="fp32", help="run.precision of the pairs, training and scoring")
    args = parser.parse_args()
    precision = distributed.resolve_precision(args.precision, torch.device("cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)

    generator = generators.load(args.generator, dim_z=args.dim_z, resolution=64)
    truth = generator.factor_directions[:, generator.factor_names.index("bg_white")]
    pairs = OnlinePairs(PairSampler(generator, truth, args.shift, None, MaskRule(), batch_size=64, seed=args.seed,
                                       precision=precision))
    spec = UnetSpec("classic", width=args.width)
    torch.manual_seed(args.seed)
    model = build_unet(spec)
    every = args.score_every or args.steps
    settings = UnetSettings(args.steps, args.batch_size, args.lr, 0.2, args.lr_step or args.steps + 1, 1.0, args.seed,
                            checkpoint_every=args.steps, eval_every=every, augment=args.augment, ema=args.ema,
                            precision=precision)
    start = time.perf_counter()
    step, scoring = 0, 0.0

    def score(trained: torch.nn.Module) -> float:
        """Called by train_unet every ``eval_every`` steps with the model it would save."""
        nonlocal step, scoring
        step = min(step + every, args.steps)
        began = time.perf_counter()
        minutes = (began - start - scoring) / 60
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = Path(folder) / "model.pt"
            save_unet(trained, checkpoint, spec, {"resolution": generator.resolution})
            source = CheckpointSource(checkpoint, activation=args.activation, offset=args.offset, flip=args.flip,
                                      precision=precision)
            scores = evaluate(resolve(args.dataset), source, METRICS).summary
        print(json.dumps({"settings": vars(args), "step": step, "train_minutes": round(minutes, 1),
                          "scores": {name: round(scores[name], 4) for name in METRICS}}), flush=True)
        scoring += time.perf_counter() - began
        return scores["mae"]

    train_unet(model, pairs, settings, torch.device("cpu"), monitor=score)

if __name__ == "__main__":
    main()
