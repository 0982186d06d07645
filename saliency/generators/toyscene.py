"""``toyscene``: a procedural generator with natural-image statistics and known answers.

The quickstart needs a generator whose U-Net transfers to photographs, with no download. The toy
world (:mod:`.toyworld`) draws flat shapes on striped gradients; photographs have textured,
cluttered, out-of-focus backgrounds and textured, shaded, off-centre objects, and a U-Net trained
on the former marks texture as object. This world renders, in vectorised torch (differentiable in
z, so directions can be discovered through it):

- a background of 1/f noise texture (amplitude ∝ 1/frequency, as natural images), dead-leaves
  clutter (occluding discs of power-law sizes, the standard model of natural-image occlusion), a
  colour, an illumination gradient, a distractor blob, and defocus blur of all of it;
- one object: a smooth random silhouette per class (radial harmonics, or a two-part body), its
  own texture, parts of a second colour, rounded shading and a lit side, placed off-centre (its
  centre within an eighth of the frame's width of the middle, so only the largest reach the frame's
  edge) at many sizes;
- global lighting, then the background's whitening, last and on the background only.

As in the toy world, z ~ N(0, I) is mixed by a fixed seeded orthogonal matrix into named factors,
so each factor is one direction of z and no coordinate is one. Known answers:
:attr:`ToyScene.factor_directions` (d×F, orthonormal) with :attr:`ToyScene.factor_names`,
``bg_white`` the background-removal direction, and :meth:`ToyScene.object_mask` (the object's
coverage; the true mask is ``> MASK_THRESHOLD``). Textures come from fixed canvases drawn from the
generator's seed and sampled where the factors say, so the same z always gives the same image.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from saliency.errors import UserError
from saliency.generators import register
from saliency.generators.base import as_torch_generator
from saliency.generators.toyworld import _EDGE_SHARPNESS, MASK_THRESHOLD, FactorWorld, _hue_rgb, _lit, _spatial

FACTOR_NAMES: tuple[str, ...] = (
    "bg_white", "bg_hue", "bg_saturation", "bg_shade", "bg_texture", "bg_grain", "bg_pan_x", "bg_pan_y",
    "bg_clutter", "bg_blur", "bg_gradient", "bg_gradient_angle",
    "distractor_x", "distractor_y", "distractor_hue", "distractor_size",
    "obj_x", "obj_y", "obj_scale", "obj_aspect", "obj_rotation", "obj_form",
    "obj_hue", "obj_saturation", "obj_shade", "obj_pale", "obj_texture", "obj_shading", "obj_parts", "obj_hue2",
    "light_x", "light_y",
)
__all__ = ["FACTOR_NAMES", "MASK_THRESHOLD", "ToyScene", "build_toyscene"]

# Whiteness w = sigmoid(slope · (value − centre)): few samples have a half-white background, and a
# shift of 6 along the direction whitens nearly all of them.
_WHITE_SLOPE, _WHITE_CENTRE = 3.0, 1.75
_PALE_SLOPE, _PALE_CENTRE = 5.0, 1.45
_OBJECT_CAP = 0.9  # object colour channels stay below this (before paleness), so θ = 0.95 finds them
_BACKGROUND_TEXTURE, _OBJECT_TEXTURE = 0.6, 0.6  # largest contrast of each one's 1/f texture
_SPREAD = 0.25  # object centres within ±_SPREAD of the frame's half-width (photographers centre their subject)
_SCALE = (0.25, 0.6)  # object radius in half-widths: smallest, range


def _radial(harmonics: tuple[tuple[int, float, float], ...]) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor],
                                                                          torch.Tensor]:
    """A star-shaped silhouette r(θ) = 1 + Σ a_k (1 + form/2) cos(kθ + φ_k); returns the signed
    radial distance ρ − r(θ) (negative inside), ``form`` ``(N, 1, 1, 1)`` deepening the lobes."""

    def distance(u: torch.Tensor, v: torch.Tensor, form: torch.Tensor) -> torch.Tensor:
        rho = torch.sqrt(u * u + v * v + 1e-8)
        theta = torch.atan2(v, u)
        radius = torch.ones_like(rho)
        for k, amplitude, phase in harmonics:
            radius = radius + amplitude * (1 + 0.5 * form) * torch.cos(k * theta + phase)
        return rho - radius

    return distance


def _two_part(u: torch.Tensor, v: torch.Tensor, form: torch.Tensor) -> torch.Tensor:
    """A body and a head (an animal, a bottle, a figure): the union of two ellipses whose size
    ratio follows ``form``."""
    body = torch.sqrt((u / 1.05) ** 2 + (v / 0.7) ** 2 + 1e-8) - 1.0
    head_radius = 0.45 + 0.1 * torch.tanh(form)
    head = torch.sqrt((u - 0.95) ** 2 + (v + 0.45) ** 2 + 1e-8) - head_radius / 0.7
    return torch.minimum(body, head)


# Signed distance-like functions (negative inside) of each class, area near pi at form 0.
SHAPES: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "blob": _radial(((2, 0.12, 0.3), (3, 0.08, 1.1))),
    "oval": _radial(((2, 0.3, 0.0),)),
    "star": _radial(((5, 0.3, 0.0),)),
    "flower": _radial(((6, 0.2, 0.0), (2, 0.08, 0.5))),
    "bean": _radial(((1, 0.15, 0.0), (2, 0.25, 0.4), (3, 0.08, 2.0))),
    "lumpy": _radial(((3, 0.16, 0.2), (4, 0.12, 1.3), (7, 0.06, 0.7))),
    "boxy": _radial(((4, -0.12, 0.0),)),
    "two-part": _two_part,
}


def _pink_noise(channels: int, size: int, rng: torch.Generator) -> torch.Tensor:
    """``(channels, size, size)`` fields with amplitude ∝ 1/f (natural images' spectrum), each
    scaled to zero mean and unit standard deviation; periodic, so sampling may wrap."""
    frequency_y = torch.fft.fftfreq(size).view(-1, 1)
    frequency_x = torch.fft.rfftfreq(size).view(1, -1)
    radius = torch.sqrt(frequency_y ** 2 + frequency_x ** 2)
    amplitude = 1.0 / radius.clamp_min(1.0 / size)
    amplitude[0, 0] = 0.0
    white = torch.randn(channels, size, size, generator=rng)
    fields = torch.fft.irfft2(torch.fft.rfft2(white) * amplitude, s=(size, size))
    fields = fields - fields.mean(dim=(1, 2), keepdim=True)
    return fields / fields.std(dim=(1, 2), keepdim=True)


def _dead_leaves(size: int, rng: torch.Generator, leaves: int = 400) -> torch.Tensor:
    """``(3, size, size)`` colours of a dead-leaves image: discs with radii ∝ r^-3 between
    size/60 and size/6, each occluding those drawn before it, colours random hues and shades."""
    ys = torch.arange(size, dtype=torch.float32).view(-1, 1)
    xs = torch.arange(size, dtype=torch.float32).view(1, -1)
    canvas = torch.full((3, size, size), 0.5)
    low, high = size / 60, size / 6
    for _ in range(leaves):
        # Inverse-CDF draw from a density ∝ r^-3 on [low, high].
        u = float(torch.rand(1, generator=rng))
        radius = (low ** -2 - u * (low ** -2 - high ** -2)) ** -0.5
        cy, cx = (torch.rand(2, generator=rng) * size).tolist()
        # Wrap around so the canvas tiles (it is sampled with wrapping pans).
        dy = torch.remainder(ys - cy + size / 2, size) - size / 2
        dx = torch.remainder(xs - cx + size / 2, size) - size / 2
        inside = dy ** 2 + dx ** 2 <= radius ** 2
        hue = torch.rand(1, generator=rng) * 2 - 1
        colour = (0.2 + 0.7 * torch.rand(1, generator=rng)) * (0.35 + 0.65 * _hue_rgb(hue)[0])
        canvas[:, inside] = colour.view(3, 1)
    return canvas


def _blurred(canvas: torch.Tensor, sigma: float) -> torch.Tensor:
    """A Gaussian blur of a periodic canvas ``(C, S, S)`` (circular padding)."""
    radius = int(3 * sigma) + 1
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-offsets ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    channels = canvas.shape[0]
    x = F.pad(canvas.unsqueeze(0), (radius, radius, radius, radius), mode="circular")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return x[0]


def _saturated(colour: torch.Tensor, saturation: torch.Tensor) -> torch.Tensor:
    """``colour`` ``(N, 3)`` moved toward its grey by 1 − ``saturation`` ``(N,)``."""
    grey = colour.mean(dim=1, keepdim=True)
    return grey + saturation.unsqueeze(1) * (colour - grey)


class ToyScene(FactorWorld):
    """Textured, cluttered, defocused scenes with one object; ``dim_z`` latent, ``resolution`` px,
    canvases and mixing from ``seed``."""

    # buffers: (sharp, blurred) canvases
    noise: torch.Tensor
    clutter: torch.Tensor

    def __init__(self, dim_z: int = 32, resolution: int = 64, seed: int = 0) -> None:
        rng = as_torch_generator(seed)  # the mixing first, then the canvases, from one stream
        super().__init__("toyscene", FACTOR_NAMES, list(SHAPES), dim_z, resolution, seed, 16, rng)
        # Canvases twice the image size, sampled with pans; blurred copies give the defocus.
        size = 2 * resolution
        noise = _pink_noise(3, size, rng)  # two background fields (coarse/fine mix), one object field
        clutter = _dead_leaves(size, rng)
        sigma = resolution / 40
        self.register_buffer("noise", torch.stack([noise, _blurred(noise, sigma)]), persistent=False)
        self.register_buffer("clutter", torch.stack([clutter, _blurred(clutter, sigma)]), persistent=False)

    def object_mask(self, z: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Object coverage ``(N, 1, R, R)`` in [0, 1]; the true binary mask is ``> MASK_THRESHOLD``."""
        return self._object_geometry(self.factors(z), classes)[0]

    def forward(self, z: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        f = self.factors(z)
        alpha, u, v, edge = self._object_geometry(f, classes)
        light = 0.6 * torch.tanh(0.6 * (_spatial(f["light_x"]) * self.grid_x + _spatial(f["light_y"]) * self.grid_y))
        obj = self._object_colour(f, u, v, edge, light)
        background = _lit(self._background(f), light)
        whiteness = _spatial(torch.sigmoid(_WHITE_SLOPE * (f["bg_white"] - _WHITE_CENTRE)))
        background = background + whiteness * (1.0 - background)  # last, and on the background only
        return (alpha * obj + (1.0 - alpha) * background) * 2.0 - 1.0

    # -- pieces ----------------------------------------------------------------------------------

    def _sample(self, canvas: torch.Tensor, x: torch.Tensor, y: torch.Tensor, blur: torch.Tensor) -> torch.Tensor:
        """``canvas`` ``(2, C, S, S)`` (sharp, blurred) read at image-space points ``x``, ``y``
        ``(N, 1, R, R)`` in canvas coordinates (wrapping), mixed by ``blur`` ``(N, 1, 1, 1)``."""
        x, y = torch.broadcast_tensors(x, y)
        grid = torch.stack([torch.remainder(x + 1, 2) - 1, torch.remainder(y + 1, 2) - 1], dim=-1)[:, 0]
        both = canvas.flatten(0, 1).unsqueeze(0).expand(len(x), -1, -1, -1)
        read = F.grid_sample(both, grid, mode="bilinear", padding_mode="border", align_corners=False)
        sharp, soft = read.chunk(2, dim=1)
        return sharp + blur * (soft - sharp)

    def _background(self, f: dict[str, torch.Tensor]) -> torch.Tensor:
        """Background ``(N, 3, R, R)`` in [0, 1]: colour × 1/f texture, dead-leaves clutter, a
        gradient and a distractor, all defocused together by ``bg_blur``."""
        blur = _spatial(torch.sigmoid(1.5 * f["bg_blur"]))
        pan_x = _spatial(0.5 * torch.tanh(0.5 * f["bg_pan_x"]))
        pan_y = _spatial(0.5 * torch.tanh(0.5 * f["bg_pan_y"]))
        x, y = self.grid_x * 0.5 + pan_x, self.grid_y * 0.5 + pan_y  # the image covers a quarter of the canvas
        fields = self._sample(self.noise[:, :2], x, y, blur)
        grain = _spatial(torch.sigmoid(1.5 * f["bg_grain"]))
        texture = fields[:, :1] + grain * (fields[:, 1:] - fields[:, :1])
        contrast = _spatial(_BACKGROUND_TEXTURE * torch.sigmoid(1.5 * f["bg_texture"]))
        shade = 0.15 + 0.7 * torch.sigmoid(f["bg_shade"])
        colour = _saturated(0.3 + 0.7 * _hue_rgb(f["bg_hue"]), torch.sigmoid(1.5 * f["bg_saturation"]))
        background = _spatial(shade.unsqueeze(1) * colour) * (1.0 + contrast * texture).clamp(0.2, 1.8)
        clutter = self._sample(self.clutter, x, y, blur)
        share = _spatial(0.85 * torch.sigmoid(2.0 * f["bg_clutter"] - 0.5))
        background = background + share * (clutter * (0.6 + 0.4 * background) - background)
        angle = _spatial(math.pi * torch.tanh(f["bg_gradient_angle"]))
        ramp = torch.cos(angle) * self.grid_x + torch.sin(angle) * self.grid_y
        background = background * (1.0 + _spatial(0.4 * torch.tanh(f["bg_gradient"])) * ramp)
        background = self._distractor(f, background, blur)
        return background.clamp(0.0, 1.0)

    def _distractor(self, f: dict[str, torch.Tensor], background: torch.Tensor, blur: torch.Tensor) -> torch.Tensor:
        """A small soft blob of its own colour behind the object, as defocused as the background."""
        cx = _spatial(0.7 * torch.tanh(0.8 * f["distractor_x"]))
        cy = _spatial(0.7 * torch.tanh(0.8 * f["distractor_y"]))
        radius = _spatial(0.08 + 0.15 * torch.sigmoid(f["distractor_size"]))
        distance = torch.sqrt((self.grid_x - cx) ** 2 + (self.grid_y - cy) ** 2 + 1e-8) - radius
        softness = 0.01 + 0.06 * blur
        alpha = torch.sigmoid(-distance / softness)
        colour = _spatial(0.2 + 0.6 * _hue_rgb(f["distractor_hue"]))
        return background + 0.9 * alpha * (colour - background)

    def _object_geometry(self, f: dict[str, torch.Tensor],
                         classes: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """Coverage ``(N, 1, R, R)``, object-frame coordinates ``u``, ``v`` and the depth below the
        edge ``edge`` (0 at the rim, 1 at the centre), for the texture and the shading."""
        if classes is None or classes.min() < 0 or classes.max() >= self.n_classes:
            raise ValueError(f"toyscene is class-conditional: pass shape ids in 0..{self.n_classes - 1}, "
                             f"e.g. from sample_classes")
        scale = _spatial(_SCALE[0] + _SCALE[1] * torch.sigmoid(f["obj_scale"]))
        aspect = _spatial(torch.exp(0.25 * torch.tanh(f["obj_aspect"])))
        angle = _spatial(math.pi * torch.tanh(0.5 * f["obj_rotation"]))
        # Photographers centre their subject, not always: most centres within a fifth of the frame.
        dx = self.grid_x - _spatial(_SPREAD * torch.tanh(0.6 * f["obj_x"]))
        dy = self.grid_y - _spatial(_SPREAD * torch.tanh(0.6 * f["obj_y"]))
        u = (torch.cos(angle) * dx + torch.sin(angle) * dy) / (scale * aspect)
        v = (torch.cos(angle) * dy - torch.sin(angle) * dx) * aspect / scale
        form = _spatial(torch.tanh(f["obj_form"]))
        distance = torch.zeros_like(u)
        for index, shape in enumerate(SHAPES.values()):
            rows = (classes == index).nonzero().squeeze(1)
            if len(rows):
                distance = distance.index_put((rows,), shape(u[rows], v[rows], form[rows]))
        pixels = distance * scale * (self.resolution / 2)
        coverage = torch.sigmoid(-_EDGE_SHARPNESS * pixels)
        return coverage, u, v, (-distance).clamp(0.0, 1.0)

    def _object_colour(self, f: dict[str, torch.Tensor], u: torch.Tensor, v: torch.Tensor,
                       edge: torch.Tensor, light: torch.Tensor) -> torch.Tensor:
        """Object colour ``(N, 3, R, R)``: hue, saturation and shade, its own texture (moving with
        it), rounded shading lit from the light's side, the scene's light; capped below white, then
        near-white when ``obj_pale`` is high."""
        shade = 0.25 + 0.65 * torch.sigmoid(1.3 * f["obj_shade"])
        colour = _saturated(0.2 + 0.8 * _hue_rgb(f["obj_hue"]), 0.3 + 0.7 * torch.sigmoid(1.5 * f["obj_saturation"]))
        base = _spatial(shade.unsqueeze(1) * colour)
        texture = self._sample(self.noise[:, 2:], 0.35 * u, 0.35 * v, torch.zeros_like(u[:, :, :1, :1]))
        # Parts of another colour (clothes, markings): where a coarser read of the object's field is high.
        second_shade = 0.25 + 0.65 * torch.sigmoid(-1.3 * f["obj_shade"])
        second = _spatial(second_shade.unsqueeze(1) * (0.2 + 0.8 * _hue_rgb(f["obj_hue2"])))
        coarse = self._sample(self.noise[:, 2:], 0.12 * u + 0.5, 0.12 * v + 0.5, torch.ones_like(u[:, :, :1, :1]))
        parts = torch.sigmoid(6.0 * coarse)
        base = base + _spatial(torch.sigmoid(2.5 * f["obj_parts"])) * parts * (second - base)
        contrast = _spatial(_OBJECT_TEXTURE * torch.sigmoid(1.5 * f["obj_texture"] - 0.5))
        rounding = _spatial(0.45 * torch.sigmoid(1.5 * f["obj_shading"]))
        side = (_spatial(torch.tanh(f["light_x"])) * u + _spatial(torch.tanh(f["light_y"])) * v) * 0.25
        shading = (1.0 - rounding * (1.0 - edge) ** 2 + side).clamp(0.3, 1.4)
        colour = _lit((base * (1.0 + contrast * texture) * shading).clamp(0.0, 1.0), light).clamp(0.0, _OBJECT_CAP)
        pale = _spatial(torch.sigmoid(_PALE_SLOPE * (f["obj_pale"] - _PALE_CENTRE)))
        return colour + pale * (1.0 - colour)


@register("toyscene")
def build_toyscene(weights: str | None = None, dim_z: int = 32, resolution: int = 64, seed: int = 0) -> ToyScene:
    """Builder for the registry; the scene world is fully defined by its options and has no weights."""
    if weights not in (None, "random"):
        raise UserError(f"toyscene has no weights (got weights={weights!r}); leave weights unset or 'random'")
    return ToyScene(dim_z=dim_z, resolution=resolution, seed=seed)
