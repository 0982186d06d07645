"""Metrics: hand-computed answers, the library's definitions, and ground truth as prediction."""

from __future__ import annotations

import numpy as np
import pytest

from saliency.config import METRIC_NAMES
from saliency.datasets import resolve
from saliency.metrics import HIGHER_IS_BETTER, SaliencyEvaluator


def hand_fbeta_curve(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """F-beta (beta^2 = 0.3) at thresholds 255..0 on the 8-bit prediction, straight from the definition."""
    levels = np.round(pred * 255).astype(int)
    values = []
    for threshold in range(255, -1, -1):
        binary = levels >= threshold
        tp = np.logical_and(binary, gt).sum()
        precision = tp / binary.sum() if binary.sum() else 0.0
        recall = tp / gt.sum()
        denominator = 0.3 * precision + recall
        values.append(1.3 * precision * recall / denominator if denominator else 0.0)
    return np.array(values)


@pytest.fixture
def tiny_case() -> tuple[list[np.ndarray], list[np.ndarray]]:
    gt1 = np.zeros((4, 5), bool)
    gt1[1:3, 1:4] = True
    pred1 = np.array([[0, 0, 0, 0, 0],
                      [0, 255, 200, 100, 0],
                      [0, 255, 128, 127, 0],
                      [60, 0, 0, 0, 0]], np.float64) / 255
    gt2 = np.zeros((3, 3), bool)
    gt2[0, 0] = True
    pred2 = np.full((3, 3), 51 / 255)
    return [pred1, pred2], [gt1, gt2]


def test_hand_computed_values(tiny_case) -> None:
    preds, gts = tiny_case
    evaluator = SaliencyEvaluator()
    for i, (pred, gt) in enumerate(zip(preds, gts)):
        evaluator.add(str(i), pred, gt)
    result = evaluator.result()
    # MAE by hand: image 1 |errors| summed over 20 pixels; image 2: one fg pixel at 0.2, eight bg at 0.2.
    mae1 = (0 + 55 + 155 + 0 + 127 + 128 + 60) / 255 / 20
    mae2 = (1 - 0.2 + 8 * 0.2) / 9
    assert result.per_image[0]["mae"] == pytest.approx(mae1, abs=1e-6)
    assert result.per_image[1]["mae"] == pytest.approx(mae2, abs=1e-6)
    assert result.summary["mae"] == pytest.approx((mae1 + mae2) / 2, abs=1e-6)
    # IoU / accuracy at 0.5: image 1 predicts {(1,1),(1,2),(2,1),(2,2)} -> 4 of 6 gt, no false positive.
    assert result.per_image[0]["iou"] == pytest.approx(4 / 6, abs=1e-6)
    assert result.per_image[0]["accuracy"] == pytest.approx(18 / 20, abs=1e-6)
    assert result.per_image[1]["iou"] == pytest.approx(0.0, abs=1e-6)
    assert result.per_image[1]["accuracy"] == pytest.approx(8 / 9, abs=1e-6)
    curves = [hand_fbeta_curve(p, g) for p, g in zip(preds, gts)]
    assert result.per_image[0]["max_fbeta"] == pytest.approx(curves[0].max(), abs=1e-6)
    assert result.per_image[1]["mean_fbeta"] == pytest.approx(curves[1].mean(), abs=1e-6)
    assert result.summary["max_fbeta"] == pytest.approx(np.mean(curves, axis=0).max(), abs=1e-6)
    assert result.summary["mean_fbeta"] == pytest.approx(np.mean(curves), abs=1e-6)


def test_structure_measures_known_cases() -> None:
    gt = np.zeros((8, 8), bool)
    gt[2:6, 2:6] = True
    evaluator = SaliencyEvaluator(["s_measure", "e_measure"])
    evaluator.add("perfect", gt.astype(float), gt)
    # With no foreground at all S-measure is 1 - mean(prediction) by definition (Fan et al. 2017).
    empty = np.zeros((8, 8), bool)
    evaluator.add("empty", np.full((8, 8), 0.25), empty)
    rows = evaluator.result().per_image
    assert rows[0]["s_measure"] == pytest.approx(1.0, abs=1e-6)
    assert rows[1]["s_measure"] == pytest.approx(0.75, abs=1e-6)
    # E-measure of a perfect binary map: every pixel aligned (1) at thresholds 255..1; at threshold 0
    # everything is foreground, the demeaned prediction is 0 and each pixel scores 1/4. The reference
    # divides the sum by H*W - 1.
    assert rows[0]["e_measure"] == pytest.approx((255 * 64 + 64 / 4) / 63 / 256, abs=1e-9)


def test_predictions_are_not_rescaled() -> None:
    """A faint but right prediction keeps its MAE (pysodmetrics' default would stretch it to 0/1)."""
    gt = np.zeros((10, 10), bool)
    gt[:5] = True
    evaluator = SaliencyEvaluator(["mae"])
    evaluator.add("faint", gt * 0.4, gt)
    assert evaluator.result().summary["mae"] == pytest.approx(0.3, abs=1e-9)


def test_ground_truth_as_prediction_on_ecssd(data_root) -> None:
    dataset = resolve("ecssd", "test")
    evaluator = SaliencyEvaluator()
    for stem in dataset.stems[:40]:
        mask = dataset.mask(stem)
        evaluator.add(stem, mask.astype(np.float64), mask)
    summary = evaluator.result().summary
    assert summary["mae"] == 0.0
    assert summary["max_fbeta"] == pytest.approx(1.0, abs=1e-9)
    assert summary["iou"] == pytest.approx(1.0, abs=1e-9)
    assert summary["accuracy"] == pytest.approx(1.0, abs=1e-9)
    assert summary["s_measure"] == pytest.approx(1.0, abs=1e-6)


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        SaliencyEvaluator().add("x", np.zeros((2, 2)), np.zeros((3, 3), bool))


def test_every_metric_has_a_direction() -> None:
    """The report and the baselines' comparison read "better" from this table."""
    assert set(HIGHER_IS_BETTER) == set(METRIC_NAMES)
