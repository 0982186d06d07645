"""Saliency metrics: MAE, max/mean F-beta, S-measure, E-measure, IoU and accuracy at 0.5.

Curves and structure measures come from pysodmetrics, called with ``normalize=False`` so that a
prediction is scored as it is (its default rescales every prediction to its own [min, max],
which docs/method.md §6 rules out). Predictions are float arrays in [0, 1] at the ground truth's size;
ground truths are boolean. Dataset figures follow the literature's conventions:

- ``mae``, ``s_measure``, ``iou``, ``accuracy``: the mean of per-image values;
- ``max_fbeta`` / ``mean_fbeta``: the max / mean over the 256 thresholds of the per-image F-beta
  curves (beta^2 = 0.3) averaged over images;
- ``e_measure``: the mean over thresholds of the image-averaged E-measure curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saliency.config import METRIC_NAMES

BETA_SQUARED = 0.3

HIGHER_IS_BETTER = {"mae": False, "max_fbeta": True, "mean_fbeta": True, "s_measure": True,
                    "e_measure": True, "iou": True, "accuracy": True}


@dataclass
class EvaluationResult:
    summary: dict[str, float]
    per_image: list[dict[str, float | str]]


class SaliencyEvaluator:
    """Accumulates predictions image by image and reports dataset and per-image figures."""

    def __init__(self, metrics: list[str] | tuple[str, ...] = METRIC_NAMES):
        unknown = [m for m in metrics if m not in HIGHER_IS_BETTER]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; known: {list(HIGHER_IS_BETTER)}")
        self.metrics = list(dict.fromkeys(metrics))
        self.stems: list[str] = []
        # Imported here: pysodmetrics pulls in scikit-learn and SciPy (2 s), which only scoring needs.
        import py_sod_metrics as sod

        self._mae = sod.MAE()
        self._sm = sod.Smeasure()
        self._em = sod.Emeasure()
        # Kept here as well as handed to FmeasureV2: the results are read from the handlers we made,
        # not from FmeasureV2's private attributes.
        self._threshold_handlers = {
            "fbeta": sod.FmeasureHandler(with_dynamic=True, with_adaptive=False, beta=BETA_SQUARED),
            "iou": sod.IOUHandler(with_dynamic=False, with_adaptive=False, with_binary=True),
            "accuracy": sod.OverallAccuracyHandler(with_dynamic=False, with_adaptive=False, with_binary=True),
        }
        self._handlers = sod.FmeasureV2(metric_handlers=self._threshold_handlers)
        self._needs = {
            "mae": self._mae, "s_measure": self._sm, "e_measure": self._em,
            "max_fbeta": self._handlers, "mean_fbeta": self._handlers, "iou": self._handlers,
            "accuracy": self._handlers,
        }

    def add(self, stem: str, prediction: np.ndarray, mask: np.ndarray) -> None:
        """Score one image: ``prediction`` float in [0, 1] and boolean ``mask`` of the same shape."""
        if prediction.shape != mask.shape:
            raise ValueError(f"{stem}: prediction {prediction.shape} and mask {mask.shape} differ in shape")
        prediction = np.clip(prediction.astype(np.float64), 0.0, 1.0)
        mask = mask.astype(bool)
        for evaluator in {id(self._needs[m]): self._needs[m] for m in self.metrics}.values():
            evaluator.step(prediction, mask, normalize=False)
        self.stems.append(stem)

    def result(self) -> EvaluationResult:
        per_image: dict[str, list[float]] = {}
        summary: dict[str, float] = {}
        handlers = self._threshold_handlers
        if "mae" in self.metrics:
            per_image["mae"] = [float(v) for v in self._mae.maes]
            summary["mae"] = float(np.mean(per_image["mae"]))
        if {"max_fbeta", "mean_fbeta"} & set(self.metrics):
            curves = np.asarray(handlers["fbeta"].dynamic_results, dtype=np.float64)  # (N, 256)
            if "max_fbeta" in self.metrics:
                per_image["max_fbeta"] = curves.max(axis=1).tolist()
                summary["max_fbeta"] = float(curves.mean(axis=0).max())
            if "mean_fbeta" in self.metrics:
                per_image["mean_fbeta"] = curves.mean(axis=1).tolist()
                summary["mean_fbeta"] = float(curves.mean())
        if "s_measure" in self.metrics:
            per_image["s_measure"] = [float(v) for v in self._sm.sms]
            summary["s_measure"] = float(np.mean(per_image["s_measure"]))
        if "e_measure" in self.metrics:
            curves = np.asarray(self._em.changeable_ems, dtype=np.float64)
            per_image["e_measure"] = curves.mean(axis=1).tolist()
            summary["e_measure"] = float(curves.mean())
        for name in ("iou", "accuracy"):
            if name in self.metrics:
                per_image[name] = [float(v) for v in handlers[name].binary_results]
                summary[name] = float(np.mean(per_image[name]))
        ordered = {m: summary[m] for m in self.metrics}
        rows: list[dict[str, float | str]] = [{"image": stem, **{m: per_image[m][i] for m in self.metrics}}
                                              for i, stem in enumerate(self.stems)]
        return EvaluationResult(ordered, rows)
