"""Refinement of a saliency map with its image as guide (``predict.refine``; docs/method.md §5).

``bilateral-solver`` is Barron & Poole's fast bilateral solver (ECCV 2016), which the strongest
label-free saliency methods apply to their masks (TokenCut, SelfMask, FOUND): the map is smoothed
within regions of similar colour and kept sharp across the image's edges, so a blurry blob snaps
to the object's outline. The refined map stays a probability in [0, 1] (no threshold: MAE and the
F-measure curve score it as they score the raw map).

Why it is written here: OpenCV's contrib build declares the same solver
(``cv2.ximgproc.fastBilateralSolverFilter``), but its published wheels are built without Eigen and
the call fails with "needs to be compiled with EIGEN" (checked on opencv-contrib-python-headless
4.14.0.94 and 5.0.0.93). The solver is short in numpy: a bilateral grid (pixels hashed to cells of
position, luma and chroma), its bistochastized blur, and a Jacobi-preconditioned conjugate-gradient
solve in grid space, as the paper describes (§3-4).

It follows the reference solver step for step: the one of Barron & Poole's notebook that TokenCut
and FOUND ship (``bilateral_solver.py``), so that maps refined here are refined as theirs are. With
uniform confidence the two agree within 1e-4 on real ECSSD images (tests/segmentation/test_refine.py
checks this against an independent reference; before, they differed by up to 0.77 per pixel). It
takes the JPEG (JFIF) RGB->YCbCr matrix, not OpenCV's YUV; grid coordinates truncated, not rounded
(a grey pixel's chroma, 128, lies exactly on a cell boundary, so the colour transform is a float64
matrix product as in the reference: summed in another order, some land in the next cell); and the
degrees recomputed from the final bistochastic scale, so each row of the smoothness term sums
to zero. CG starts from each cell's mean target and stops on the reference's rule (scipy's ``cg``).
Beyond the reference: the ``certainty`` confidence, a zero start where no pixel of a cell is
trusted (the reference divides by zero there), and the map clipped to [0, 1] (the exact solution
lies within the target's range; 25 CG steps may overshoot by a hair, and the map is saved as an
8-bit probability).

Refinement acts on the 8-bit map that is saved and scored, so ``saliency predict`` writes exactly the
refined maps ``saliency eval`` scores when both run with the same ``predict.refine*`` settings (the
defaults when ``predict`` is given no config).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from saliency.config import PredictConfig
from saliency.errors import UserError
from saliency.images import resize

BISTOCHASTIC_ITERATIONS = 10  # the paper's normalisation converges in a few
DIAGONAL_FLOOR = 1e-5  # keeps the Jacobi preconditioner finite where a cell has no confidence
CG_TOLERANCE = 1e-5  # the reference's: stop once the residual is this fraction of the right-hand side's norm
# Full-range (JPEG/JFIF) RGB -> YCbCr, the coefficients the reference uses; chroma is offset to [0, 255].
YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
YCBCR_OFFSET = np.array([0.0, 128.0, 128.0])


@dataclasses.dataclass(frozen=True)
class Refinement:
    """A named refinement and its parameters: the ``predict.refine*`` settings (their defaults and
    meaning are in :class:`saliency.config.PredictConfig`)."""

    name: str
    sigma_spatial: float
    sigma_luma: float
    sigma_chroma: float
    smoothness: float
    iterations: int
    confidence: str

    @classmethod
    def of_config(cls, predict: PredictConfig) -> "Refinement":
        return cls(predict.refine, predict.refine_sigma_spatial, predict.refine_sigma_luma, predict.refine_sigma_chroma,
                   predict.refine_smoothness, predict.refine_iterations, predict.refine_confidence)

    @classmethod
    def named(cls, name: str) -> "Refinement":
        """``name`` with the default parameters."""
        return cls.of_config(dataclasses.replace(PredictConfig(), refine=name))  # type: ignore[arg-type]

    @property
    def active(self) -> bool:
        return self.name != "none"

    def settings(self) -> dict[str, Any]:
        """What a manifest records: the name alone when off, every parameter when on."""
        return dataclasses.asdict(self) if self.active else {"name": self.name}

    def check(self) -> None:
        """Fail before any work on an unknown name."""
        if self.name not in REFINERS:
            raise UserError(f"predict.refine = {self.name!r} is not known; choose one of {', '.join(REFINERS)}")
        if self.confidence not in CONFIDENCES:
            raise UserError(f"predict.refine_confidence = {self.confidence!r} is not known; "
                            f"choose one of {', '.join(CONFIDENCES)}")

    def __call__(self, probability: np.ndarray, image: np.ndarray) -> np.ndarray:
        """``probability`` ``(H, W)`` in [0, 1] refined with RGB uint8 ``image`` as guide (resized to
        the map's size when it differs); the map itself when the refinement is ``none``."""
        refine = REFINERS[self.name]
        if refine is None:
            return probability
        if image.shape[:2] != probability.shape:
            image = resize(image, probability.shape)
        return refine(self, probability.astype(np.float32), image)


def uniform_confidence(probability: np.ndarray) -> np.ndarray:
    """Every pixel trusted alike (TokenCut's and SelfMask's use of the solver)."""
    return np.ones_like(probability)


def certainty_confidence(probability: np.ndarray) -> np.ndarray:
    """Trust grows with distance from 0.5: confident pixels hold, uncertain ones follow their region."""
    return np.abs(2.0 * probability - 1.0).astype(np.float32)


CONFIDENCES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "uniform": uniform_confidence, "certainty": certainty_confidence}


@dataclasses.dataclass(frozen=True)
class BilateralGrid:
    """Pixels hashed to the cells of a 5-D grid (x, y, luma, two chroma), each axis scaled by its sigma.

    ``cell_of_pixel`` splats (a pixel adds to its cell) and slices (a pixel reads its cell);
    ``neighbours`` holds, per axis and direction, each cell's neighbour index and whether it exists.
    """

    cell_of_pixel: np.ndarray
    cells: int
    neighbours: tuple[tuple[np.ndarray, np.ndarray], ...]

    @classmethod
    def of_image(cls, image: np.ndarray, sigma_spatial: float, sigma_luma: float, sigma_chroma: float) -> "BilateralGrid":
        height, width = image.shape[:2]
        ycbcr = image.reshape(-1, 3).astype(np.float64) @ YCBCR.T + YCBCR_OFFSET
        ys, xs = np.mgrid[:height, :width]
        scaled = np.column_stack([xs.ravel() / sigma_spatial, ys.ravel() / sigma_spatial, ycbcr[:, 0] / sigma_luma,
                                  ycbcr[:, 1] / sigma_chroma, ycbcr[:, 2] / sigma_chroma])
        # Cells are the integer parts (a pixel belongs to the cell whose lower corner it passes).
        coordinates = np.floor(scaled).astype(np.int64)
        coordinates -= coordinates.min(axis=0)
        # One integer key per cell; the base leaves room for a neighbour one past either end of an
        # axis, so stepping along one axis never lands on another cell's key.
        base = int(coordinates.max()) + 3
        strides = base ** np.arange(coordinates.shape[1], dtype=np.int64)
        keys, cell_of_pixel = np.unique(coordinates @ strides, return_inverse=True)
        neighbours = []
        for stride in strides:
            for step in (-stride, stride):
                wanted = keys + step
                index = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
                neighbours.append((index, keys[index] == wanted))
        return cls(cell_of_pixel.ravel(), len(keys), tuple(neighbours))

    def splat(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.cell_of_pixel, weights=values.ravel(), minlength=self.cells)

    def blur(self, values: np.ndarray) -> np.ndarray:
        """The [1 2 1] blur along every axis of the grid (missing neighbours count as zero)."""
        out = len(self.neighbours) * values
        for index, exists in self.neighbours:
            out += np.where(exists, values[index], 0.0)
        return out


def bilateral_solver(refinement: Refinement, probability: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Minimise  λ/2 Σ_ij W_ij (x_i − x_j)² + Σ_i c_i (x_i − t_i)²  over the map x (t the map given,
    c the confidence, W the bilateral affinity of the image), solved in the bilateral grid."""
    grid = BilateralGrid.of_image(image, refinement.sigma_spatial, refinement.sigma_luma, refinement.sigma_chroma)
    target = probability.astype(np.float64).ravel()
    confidence = CONFIDENCES[refinement.confidence](probability).astype(np.float64).ravel()
    counts = grid.splat(np.ones_like(target))
    # Bistochastize: scale the blur so that every cell's row sums to its pixel count...
    scale = np.ones(grid.cells)
    for _ in range(BISTOCHASTIC_ITERATIONS):
        scale = np.sqrt(scale * counts / grid.blur(scale))
    # ...and take the degrees from the scale reached, so the smoothness term's rows sum to exactly zero
    # (a constant map costs nothing) however far the iterations went.
    degree = scale * grid.blur(scale)
    cell_confidence = grid.splat(confidence)
    smoothness = refinement.smoothness

    def system(x: np.ndarray) -> np.ndarray:
        return smoothness * (degree * x - scale * grid.blur(scale * x)) + cell_confidence * x

    rhs = grid.splat(confidence * target)
    diagonal = np.maximum(smoothness * (degree - len(grid.neighbours) * scale ** 2) + cell_confidence, DIAGONAL_FLOOR)
    # Start from each cell's confidence-weighted mean target (zero where no pixel of it is trusted).
    start = np.divide(rhs, cell_confidence, out=np.zeros_like(rhs), where=cell_confidence > 0)
    solution = conjugate_gradient(system, rhs, start, 1.0 / diagonal, refinement.iterations)
    return np.clip(solution[grid.cell_of_pixel], 0.0, 1.0).reshape(probability.shape).astype(np.float32)


def conjugate_gradient(system: Callable[[np.ndarray], np.ndarray], rhs: np.ndarray, start: np.ndarray,
                       inverse_diagonal: np.ndarray, iterations: int, tolerance: float = CG_TOLERANCE) -> np.ndarray:
    """Jacobi-preconditioned conjugate gradient for a symmetric positive-definite ``system``: at most
    ``iterations`` steps, fewer once the residual's norm is below ``tolerance`` times the right-hand
    side's (scipy's ``cg`` rule with ``rtol``, which the reference calls)."""
    x = start.copy()
    residual = rhs - system(x)
    z = inverse_diagonal * residual
    direction = z.copy()
    rz = residual @ z
    stop = tolerance * max(float(np.linalg.norm(rhs)), 1e-12)
    for _ in range(iterations):
        if np.linalg.norm(residual) < stop:
            break
        applied = system(direction)
        step = rz / (direction @ applied)
        x += step * direction
        residual -= step * applied
        z = inverse_diagonal * residual
        rz, previous = residual @ z, rz
        direction = z + (rz / previous) * direction
    return x


REFINERS: dict[str, Callable[[Refinement, np.ndarray, np.ndarray], np.ndarray] | None] = {
    "none": None, "bilateral-solver": bilateral_solver}
