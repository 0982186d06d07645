"""Fit ``predict.offset`` for a trained U-Net on a labelled validation folder: the logit offset b
that minimises the mean per-pixel log-loss of the (mirror-averaged) foreground probability, as
the bias of Platt scaling is fitted. Prints the log-loss, MAE, IoU and accuracy along the grid and
the chosen b (docs/method.md, predict.offset).

    python benchmarks/fit_offset.py --checkpoint runs/NAME/unet/model.pt --dataset ../shared/data/ecssd-val

Fit on a validation split (ecssd-val), never on the split you report.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from saliency.datasets import resolve
from saliency.segmentation.predict import Predictor, predict_image

EPSILON = 1e-6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--dataset", required=True, help="a folder with images/ and masks/ (a validation split)")
    parser.add_argument("--low", type=float, default=-1.0)
    parser.add_argument("--high", type=float, default=2.0)
    parser.add_argument("--step", type=float, default=0.125)
    args = parser.parse_args()

    predictor = Predictor(args.checkpoint, "cpu", offset=0.0)
    dataset = resolve(args.dataset)
    offsets = np.arange(args.low, args.high + args.step / 2, args.step)
    totals = {name: np.zeros(len(offsets)) for name in ("log_loss", "mae", "iou", "accuracy")}
    for stem in dataset.stems:
        image, mask = dataset.image(stem), dataset.mask(stem)
        for index, offset in enumerate(offsets):
            probability = predict_image(predictor.model, image, "cpu", predictor.inference.replace(offset=float(offset)))
            p = np.clip(probability.astype(np.float64), EPSILON, 1 - EPSILON)
            totals["log_loss"][index] += float(-(mask * np.log(p) + (~mask) * np.log(1 - p)).mean())
            totals["mae"][index] += float(np.abs(p - mask).mean())
            binary = p >= 0.5
            union = (binary | mask).sum()
            totals["iou"][index] += float((binary & mask).sum() / union) if union else 1.0
            totals["accuracy"][index] += float((binary == mask).mean())
    means = {name: values / len(dataset) for name, values in totals.items()}
    for index, offset in enumerate(offsets):
        print(f"offset {offset:+.3f}  " + "  ".join(f"{name} {values[index]:.4f}" for name, values in means.items()))
    best = int(np.argmin(means["log_loss"]))
    print(json.dumps({"checkpoint": args.checkpoint, "dataset": args.dataset, "offset": round(float(offsets[best]), 3),
                      **{name: round(float(values[best]), 4) for name, values in means.items()},
                      "at_zero": {name: round(float(values[int(np.argmin(np.abs(offsets)))]), 4)
                                  for name, values in means.items()}}))


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
