"""``toyworld``: a small differentiable procedural generator whose answers are known.

Tests and the offline quickstart need a generator on which every stage can be checked against
ground truth, in seconds on a CPU. Here z ~ N(0, I) is mixed by a fixed seeded orthogonal matrix
into named factors (background whiteness, colours, textures, object pose, lighting), so that each
factor is one direction of z and no coordinate of z is one; the classes are object shapes. The
renderer draws one soft-edged shape over a striped background, all in vectorised torch, so images
are differentiable in z.

Ground truth exposed: :attr:`ToyWorld.factor_directions` (d×F, orthonormal columns) with
:attr:`ToyWorld.factor_names`, and :meth:`ToyWorld.object_mask` (the object's coverage; the true
binary mask is ``object_mask(z, classes) > MASK_THRESHOLD``).

Background whiteness is the last rendering step and touches only the background, so moving z along
its direction whitens everything but the object: the paper's threshold rule (mean RGB below 0.95
after a large shift) recovers the true mask, except on the few near-white objects (``obj_pale``
high), as on real data. Dimensions of z beyond the factors have no effect on the image.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from saliency.errors import UserError
from saliency.generators import register
from saliency.generators.base import Generator, as_torch_generator

FACTOR_NAMES: tuple[str, ...] = (
    "bg_white", "bg_hue", "bg_shade", "bg_texture", "bg_texture_angle",
    "obj_x", "obj_y", "obj_scale", "obj_rotation",
    "obj_hue", "obj_shade", "obj_pale", "obj_texture",
    "light_x", "light_y",
)
MASK_THRESHOLD = 0.5  # a pixel belongs to the object when at least half of it is covered

# Whiteness w = sigmoid(slope · (value − centre)): about 4 % of samples have a half-white
# background, and a shift of 6 along the direction whitens (w > 0.99) all but 0.3 % of samples.
_WHITE_SLOPE, _WHITE_CENTRE = 3.0, 1.75
# Near-white objects: colour pulled to white by sigmoid(slope · (value − centre)); about 3 % of
# samples get more than 90 % of the way to white, the objects the threshold rule misses.
_PALE_SLOPE, _PALE_CENTRE = 5.0, 1.45
# Coverage = sigmoid(−sharpness · signed distance in pixels): edges a third of a pixel wide. Wider
# edges cost mask IoU: the threshold rule takes in every pixel covered above about 10 %.
_EDGE_SHARPNESS = 16.0


def _polygon_planes(u: torch.Tensor, v: torch.Tensor, sides: int, apothem: float) -> torch.Tensor:
    """Signed distances ``(..., sides)`` to the edge lines of a regular polygon with its bottom
    edge level (image rows grow downwards), so an unrotated square is axis-aligned."""
    angles = torch.arange(sides, dtype=u.dtype, device=u.device) * (2 * math.pi / sides) + math.pi / 2
    return u.unsqueeze(-1) * torch.cos(angles) + v.unsqueeze(-1) * torch.sin(angles) - apothem


def _polygon(sides: int, apothem: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Convex regular polygon: inside every edge line."""
    return lambda u, v: _polygon_planes(u, v, sides, apothem).amax(-1)


def _star(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Pentagram: the points outside at most one of the inner pentagon's five edge lines."""
    return _polygon_planes(u, v, 5, 0.53).topk(2, dim=-1).values[..., 1]


def _radius(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Distance from the origin, smoothed at 0 so its gradient stays finite."""
    return torch.sqrt(u * u + v * v + 1e-8)


def _box(u: torch.Tensor, v: torch.Tensor, half_u: float, half_v: float) -> torch.Tensor:
    return torch.maximum(u.abs() - half_u, v.abs() - half_v)


# Signed distance (negative inside) of each shape in its own frame, sized to an area near pi.
SHAPES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "disk": lambda u, v: _radius(u, v) - 1.0,
    "square": _polygon(4, 0.886),
    "triangle": _polygon(3, 0.778),
    "star": _star,
    "hexagon": _polygon(6, 0.952),
    "cross": lambda u, v: torch.minimum(_box(u, v, 1.15, 0.42), _box(u, v, 0.42, 1.15)),
    "ring": lambda u, v: (_radius(u, v) - 0.85).abs() - 0.35,
    "crescent": lambda u, v: torch.maximum(_radius(u, v) - 1.15, 0.8 - _radius(u - 0.75, v)),
}


def _hue_rgb(value: torch.Tensor) -> torch.Tensor:
    """A fully saturated colour ``(N, 3)`` with mean 0.5 whose hue turns smoothly with ``value``;
    pi radians per unit, so N(0, 1) values give hues nearly uniform around the circle."""
    phases = torch.arange(3, dtype=value.dtype, device=value.device) * (2 * math.pi / 3)
    return 0.5 + 0.5 * torch.cos(math.pi * value.unsqueeze(-1) - phases)


def _stripes(coord: torch.Tensor, frequency: float) -> torch.Tensor:
    """Stripes in [0, 1] across ``coord``."""
    return 0.5 + 0.5 * torch.sin(frequency * coord)


def _lit(colour: torch.Tensor, light: torch.Tensor) -> torch.Tensor:
    """``colour`` in [0, 1] brightened (light > 0) or darkened (light < 0), staying in [0, 1] for
    |light| <= 1; black and white stay as they are, so near-white objects stay near-white."""
    return colour + light * colour * (1.0 - colour)


def _spatial(values: torch.Tensor) -> torch.Tensor:
    """Per-sample values ``(N,)`` or ``(N, C)`` shaped to broadcast over ``(N, C, R, R)`` images."""
    return values.reshape(values.shape[0], -1, 1, 1)


class FactorWorld(Generator):
    """A procedural world whose z is mixed into named factors by a fixed seeded rotation: the
    validation, the mixing, the pixel grid and the factor read-out that toyworld and toyscene share."""

    factor_names: list[str]
    # buffers
    factor_directions: torch.Tensor
    strengths: torch.Tensor
    grid_x: torch.Tensor
    grid_y: torch.Tensor

    def __init__(self, name: str, factor_names: tuple[str, ...], class_names: list[str], dim_z: int,
                 resolution: int, seed: int, min_resolution: int, rng: torch.Generator) -> None:
        super().__init__()
        if dim_z < len(factor_names):
            raise UserError(f"{name}: dim_z={dim_z} is below its {len(factor_names)} factors; "
                            f"set dim_z >= {len(factor_names)}")
        if resolution < min_resolution:
            raise UserError(f"{name}: resolution={resolution} is too small; set resolution >= {min_resolution}")
        self.dim_z, self.resolution, self.seed = dim_z, resolution, seed
        self.class_names = list(class_names)
        self.n_classes = len(self.class_names)
        self.factor_names = list(factor_names)
        mixing, upper = torch.linalg.qr(torch.randn(dim_z, dim_z, generator=rng))
        mixing = mixing * torch.sign(torch.diagonal(upper))  # unique QR: same seed, same matrix
        self.register_buffer("factor_directions", mixing[:, : len(factor_names)].contiguous(), persistent=False)
        # Row scales of the first layer (diag(strength) · directionsᵀ). The renderer divides them back
        # out, so they do not change images; they give closed-form methods (SeFa, GANSpace) distinct
        # eigenvalues to sort by, largest for background whiteness (the first factor), the strongest effect.
        self.register_buffer("strengths", torch.linspace(2.0, 0.6, len(factor_names)), persistent=False)
        coords = (torch.arange(resolution, dtype=torch.float32) + 0.5) * (2.0 / resolution) - 1.0
        self.register_buffer("grid_x", coords.view(1, 1, 1, -1), persistent=False)
        self.register_buffer("grid_y", coords.view(1, 1, -1, 1), persistent=False)

    def first_layer_weight(self) -> torch.Tensor:
        """``(F, dim_z)``: the factor directions as rows, scaled by distinct strengths."""
        return self.strengths.unsqueeze(1) * self.factor_directions.T

    def early_features(self, z: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        """``(N, F)``: the first layer's output, i.e. the factor values times their strengths."""
        return z @ self.first_layer_weight().T

    def factors(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Factor values ``(N,)`` by name, each N(0, 1) when z is: the projections of z on the directions."""
        values = self.early_features(z) / self.strengths
        return dict(zip(self.factor_names, values.unbind(1)))


class ToyWorld(FactorWorld):
    """Procedural shapes on backgrounds; ``dim_z`` latent, ``resolution`` px, mixing from ``seed``."""

    def __init__(self, dim_z: int = 32, resolution: int = 64, seed: int = 0) -> None:
        super().__init__("toyworld", FACTOR_NAMES, list(SHAPES), dim_z, resolution, seed, 8, as_torch_generator(seed))

    def object_mask(self, z: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Object coverage ``(N, 1, R, R)`` in [0, 1]; the true binary mask is ``> MASK_THRESHOLD``."""
        return self._object(self.factors(z), classes)[0]

    def forward(self, z: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        f = self.factors(z)
        alpha, u = self._object(f, classes)
        light = self._light(f)
        obj = _lit(self._object_colour(f, u), light)
        background = _lit(self._background(f), light)
        whiteness = _spatial(torch.sigmoid(_WHITE_SLOPE * (f["bg_white"] - _WHITE_CENTRE)))
        # Whitening last and on the background only, so the object is the same at any whiteness.
        background = background + whiteness * (1.0 - background)
        return (alpha * obj + (1.0 - alpha) * background) * 2.0 - 1.0

    def _object(self, f: dict[str, torch.Tensor], classes: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Coverage ``(N, 1, R, R)`` and the object-frame coordinate ``u`` (for its texture)."""
        if classes is None or classes.min() < 0 or classes.max() >= self.n_classes:
            raise ValueError(f"toyworld is class-conditional: pass shape ids in 0..{self.n_classes - 1}, "
                             f"e.g. from sample_classes")
        scale = _spatial(0.25 + 0.3 * torch.sigmoid(f["obj_scale"]))
        angle = _spatial(0.8 * f["obj_rotation"])
        dx = self.grid_x - _spatial(0.5 * torch.tanh(0.6 * f["obj_x"]))
        dy = self.grid_y - _spatial(0.5 * torch.tanh(0.6 * f["obj_y"]))
        u = (torch.cos(angle) * dx + torch.sin(angle) * dy) / scale
        v = (torch.cos(angle) * dy - torch.sin(angle) * dx) / scale
        distance = torch.zeros_like(u)
        for index, shape in enumerate(SHAPES.values()):
            rows = (classes == index).nonzero().squeeze(1)
            if len(rows):
                distance = distance.index_put((rows,), shape(u[rows], v[rows]))
        pixels = distance * scale * (self.resolution / 2)
        return torch.sigmoid(-_EDGE_SHARPNESS * pixels), u

    def _object_colour(self, f: dict[str, torch.Tensor], u: torch.Tensor) -> torch.Tensor:
        """Object colour ``(N, 3, R, R)`` in (0, 1]: hue and shade, pulled to white by ``obj_pale``."""
        shade = 0.3 + 0.7 * torch.sigmoid(1.3 * f["obj_shade"])
        colour = _spatial(shade.unsqueeze(1) * (0.25 + 0.75 * _hue_rgb(f["obj_hue"])))
        pale = _spatial(torch.sigmoid(_PALE_SLOPE * (f["obj_pale"] - _PALE_CENTRE)))
        colour = colour + pale * (1.0 - colour)
        texture = _spatial(0.45 * torch.sigmoid(2.0 * f["obj_texture"] - 1.0))
        return colour * (1.0 - texture * _stripes(u, 2.5 * math.pi))

    def _background(self, f: dict[str, torch.Tensor]) -> torch.Tensor:
        """Background ``(N, 3, R, R)`` in (0, 1): a coloured shade with stripes at some angle."""
        shade = 0.15 + 0.7 * torch.sigmoid(f["bg_shade"])
        colour = _spatial(shade.unsqueeze(1) * (0.3 + 0.7 * _hue_rgb(f["bg_hue"])))
        angle = _spatial(f["bg_texture_angle"])
        across = torch.cos(angle) * self.grid_x + torch.sin(angle) * self.grid_y
        texture = _spatial(0.5 * torch.sigmoid(1.5 * f["bg_texture"] - 0.5))
        return colour * (1.0 - texture * _stripes(across, 3.0 * math.pi))

    def _light(self, f: dict[str, torch.Tensor]) -> torch.Tensor:
        """Light ``(N, 1, R, R)`` in (-0.7, 0.7): from a direction, bright on one side, dark on the other."""
        slope = 0.6 * (_spatial(f["light_x"]) * self.grid_x + _spatial(f["light_y"]) * self.grid_y)
        return 0.7 * torch.tanh(slope)


@register("toyworld")
def build_toyworld(weights: str | None = None, dim_z: int = 32, resolution: int = 64, seed: int = 0) -> ToyWorld:
    """Builder for the registry; the toy world is fully defined by its options and has no weights."""
    if weights not in (None, "random"):
        raise UserError(f"toyworld has no weights (got weights={weights!r}); leave weights unset or 'random'")
    return ToyWorld(dim_z=dim_z, resolution=resolution, seed=seed)
