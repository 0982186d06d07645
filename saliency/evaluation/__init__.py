"""Evaluation: prediction sources and the evaluation stage."""

from saliency.evaluation.sources import BASELINES, FolderSource, PredictionSource
from saliency.evaluation.stage import evaluate, run_eval

__all__ = ["BASELINES", "FolderSource", "PredictionSource", "evaluate", "run_eval"]
