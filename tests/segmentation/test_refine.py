"""The bilateral solver (predict.refine): known answers on images whose edges are known, and real ECSSD."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy import sparse
from scipy.sparse.linalg import cg

from saliency.errors import UserError
from saliency.evaluation.sources import CenterBaseline
from saliency.evaluation.stage import evaluate
from saliency.images import read_gray, read_image
from saliency.segmentation.refine import BilateralGrid, Refinement, conjugate_gradient


def solver(**changes: object) -> Refinement:
    """The bilateral solver with its default parameters, ``changes`` on top."""
    return dataclasses.replace(Refinement.named("bilateral-solver"), **changes)


def two_regions(height: int = 48, width: int = 64, edge: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A dark left part and a bright right part (the object), and the object's true mask."""
    image = np.full((height, width, 3), 30, np.uint8)
    image[:, edge:] = (220, 200, 40)
    truth = np.zeros((height, width), bool)
    truth[:, edge:] = True
    return image, truth


def test_a_blurred_map_snaps_to_the_image_edge() -> None:
    """A soft ramp crossing 0.5 five pixels off the true edge: refined, each region becomes nearly
    flat, and the map thresholded at 0.5 is the true mask (the ramp's was five columns wide of it)."""
    image, truth = two_regions()
    columns = np.arange(image.shape[1], dtype=np.float32)
    blurred = np.broadcast_to(1 / (1 + np.exp(-(columns - 34) / 4)), truth.shape).astype(np.float32)
    refined = solver(confidence="uniform")(blurred, image)
    assert refined.shape == truth.shape and refined.dtype == np.float32
    assert 0.0 <= refined.min() and refined.max() <= 1.0
    assert ((blurred > 0.5) != truth).sum() == 5 * truth.shape[0]
    assert ((refined > 0.5) == truth).all()
    for region in (np.s_[:, 40:], np.s_[:, :40]):
        assert refined[region].std() < 0.5 * blurred[region].std()


def test_a_constant_map_stays_constant_and_none_is_the_identity() -> None:
    image, _ = two_regions()
    flat = np.full(image.shape[:2], 0.3, np.float32)
    for confidence in ("uniform", "certainty"):
        assert np.allclose(solver(confidence=confidence)(flat, image), 0.3, atol=1e-4)
    ramp = np.random.default_rng(0).random(image.shape[:2]).astype(np.float32)
    assert Refinement.named("none")(ramp, image) is ramp


def test_uncertain_pixels_follow_their_region_under_certainty_confidence() -> None:
    """Half the object is 0.5 (no opinion); with certainty confidence it takes the confident half's value."""
    image, truth = two_regions()
    probability = truth.astype(np.float32)
    probability[:24, 40:] = 0.5
    refined = solver(confidence="certainty")(probability, image)
    assert refined[:24, 44:].mean() > 0.9
    assert refined[:, :36].max() < 0.1


def test_conjugate_gradient_solves_a_known_system() -> None:
    rng = np.random.default_rng(1)
    basis = rng.standard_normal((20, 20))
    matrix = basis @ basis.T + 20 * np.eye(20)
    solution = rng.standard_normal(20)
    found = conjugate_gradient(lambda x: matrix @ x, matrix @ solution, np.zeros(20), 1 / np.diag(matrix), 100, 1e-12)
    assert np.allclose(found, solution, atol=1e-6)


def test_grid_neighbours_are_the_cells_one_step_along_each_axis() -> None:
    image = np.zeros((1, 3, 3), np.uint8)  # three pixels in a row, one cell each at sigma_spatial 1
    grid = BilateralGrid.of_image(image, 1.0, 8.0, 8.0)
    assert grid.cells == 3 and list(grid.cell_of_pixel) == [0, 1, 2]
    x_minus, x_plus = grid.neighbours[0], grid.neighbours[1]
    assert list(x_minus[1]) == [False, True, True] and list(x_minus[0][1:]) == [0, 1]
    assert list(x_plus[1]) == [True, True, False] and list(x_plus[0][:2]) == [1, 2]
    assert not any(exists.any() for _, exists in grid.neighbours[2:])


def test_unknown_settings_fail_with_the_key() -> None:
    with pytest.raises(UserError, match="predict.refine = 'crf'"):
        Refinement.named("crf").check()
    with pytest.raises(UserError, match="predict.refine_confidence"):
        solver(confidence="magic").check()


def test_center_baseline_on_real_ecssd_scores_both_ways(ecssd_root: Path) -> None:
    """On 20 real ECSSD test images the refined centre prior follows each image's edges (it differs
    from the raw prior), and the unrefined figures equal a plain evaluation's."""
    from saliency.datasets import open_pair_folder

    folder = open_pair_folder(ecssd_root)
    subset = type(folder)(folder.images_dir, folder.masks_dir, folder.stems[:20], "ecssd-20")
    scores = evaluate(subset, CenterBaseline(), ["mae", "iou"], Refinement.named("bilateral-solver"))
    plain = evaluate(subset, CenterBaseline(), ["mae", "iou"])
    assert scores.refined is not None and plain.refined is None
    assert scores.raw.summary == plain.raw.summary
    assert abs(scores.refined.summary["iou"] - scores.raw.summary["iou"]) > 0.005
    assert 0 < scores.refined.summary["mae"] < 0.5


# Full-range (JFIF) RGB -> YCbCr as Barron & Poole's notebook writes it; chroma offset by 128.
JFIF_YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def reference_bilateral_solver(image: np.ndarray, target: np.ndarray, confidence: np.ndarray, sigma_spatial: float,
                               sigma_luma: float, sigma_chroma: float, lam: float, iterations: int) -> np.ndarray:
    """The solver of Barron & Poole (ECCV 2016, §3-4) as their notebook and its copies in TokenCut and
    FOUND compute it, written independently with explicit sparse matrices: splat S (vertex x pixel),
    blur B = 2d I + the ±1 neighbours along each of the d = 5 axes, bistochastic scale n with degree
    m = n (B n), and A = λ (diag m − diag n B diag n) + diag(S c) solved from the per-vertex mean
    target by scipy's Jacobi-preconditioned CG (relative tolerance 1e-5), then sliced (Sᵀ), unclipped."""
    height, width = target.shape
    # tensordot as in the notebook: its float rounding decides the chroma cell of every grey pixel,
    # which lies exactly on a cell boundary (128 / 8).
    ycbcr = np.tensordot(image, JFIF_YCBCR, axes=([2], [1])) + np.array([0.0, 128.0, 128.0])
    rows, columns = np.mgrid[:height, :width]
    position = np.dstack([columns / sigma_spatial, rows / sigma_spatial, ycbcr[..., :1] / sigma_luma,
                          ycbcr[..., 1:] / sigma_chroma]).reshape(-1, 5)
    vertices, vertex_of_pixel = np.unique(position.astype(np.int64), axis=0, return_inverse=True)  # truncated
    pixels, count = len(position), len(vertices)
    splat = sparse.csr_matrix((np.ones(pixels), (vertex_of_pixel.ravel(), np.arange(pixels))), shape=(count, pixels))
    index = {vertex: i for i, vertex in enumerate(map(tuple, vertices.tolist()))}
    links = [(i, index[neighbour]) for vertex, i in index.items() for axis in range(5) for step in (-1, 1)
             if (neighbour := vertex[:axis] + (vertex[axis] + step,) + vertex[axis + 1:]) in index]
    first, second = np.array(links).T
    blur = 10 * sparse.identity(count, format="csr") + sparse.csr_matrix(
        (np.ones(len(links)), (first, second)), shape=(count, count))
    pixel_count = splat @ np.ones(pixels)
    n = np.ones(count)
    for _ in range(10):
        n = np.sqrt(n * pixel_count / (blur @ n))
    m = n * (blur @ n)
    c, t = confidence.ravel().astype(np.float64), target.ravel().astype(np.float64)
    system = lam * (sparse.diags(m) - sparse.diags(n) @ blur @ sparse.diags(n)) + sparse.diags(splat @ c)
    rhs = splat @ (c * t)
    jacobi = sparse.diags(1.0 / np.maximum(system.diagonal(), 1e-5))
    solution, _ = cg(system, rhs, x0=rhs / (splat @ c), M=jacobi, maxiter=iterations, rtol=1e-5, atol=0.0)
    return (splat.T @ solution).reshape(height, width)


def test_uniform_confidence_equals_the_reference_solver_on_real_ecssd(ecssd_root: Path) -> None:
    """With TokenCut's settings and uniform confidence, our maps equal the reference solver's within
    1e-4 on real ECSSD images at their own resolution, the target a coarse network-like map (the
    ground-truth mask blurred by 12 pixels). Before the fixes (OpenCV's YUV, rounded cells, the
    degrees not recomputed after bistochastization) these differed by 0.34 to 0.55 on each image."""
    refinement = solver(sigma_spatial=16.0, sigma_luma=16.0, sigma_chroma=8.0, smoothness=128.0, iterations=25,
                        confidence="uniform")
    stems = sorted(path.stem for path in (ecssd_root / "images").glob("*.jpg"))[::100]
    assert len(stems) >= 4
    for stem in stems:
        image = read_image(ecssd_root / "images" / f"{stem}.jpg")
        mask = read_gray(ecssd_root / "ground_truth_mask" / f"{stem}.png")
        target = cv2.GaussianBlur(mask, (0, 0), 12)
        expected = reference_bilateral_solver(image, target, np.ones_like(target), 16.0, 16.0, 8.0, 128.0, 25)
        refined = refinement(target, image)
        assert np.abs(refined - expected).max() < 1e-4, stem
