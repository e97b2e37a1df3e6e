"""Procedural 2-D scenes with dense labels: textured polygons and ellipses on a textured
background, each scene with its label map (class 0 the background, one class per shape).

The images of DiveUp's miniature (Liu & Fan, arXiv 2603.13571, spec §6: 64×64 scenes, 6
classes), where a feature upsampler is judged by a linear probe's segmentation of its output.
A class is a colour and a stripe texture (frequency and orientation), each shape jittering its
colour, the stripes' phase and their angle, so that no single pixel tells a class apart from its
neighbours' classes perfectly; later shapes occlude earlier ones. Seeded: the same seed gives the
same scenes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# the classes' base colours (RGB in [0, 1]) and stripes (period in pixels, angle in radians);
# row 0 is the background
PALETTE = np.array(
    [
        [0.45, 0.45, 0.45],
        [0.80, 0.30, 0.25],
        [0.25, 0.65, 0.30],
        [0.25, 0.35, 0.80],
        [0.80, 0.70, 0.25],
        [0.60, 0.30, 0.70],
        [0.25, 0.70, 0.70],
        [0.85, 0.50, 0.70],
    ]
)
STRIPES = ((16.0, 0.3), (4.0, 0.0), (6.0, 1.57), (3.0, 0.78), (8.0, 2.36), (5.0, 1.2),
           (7.0, 0.4), (3.5, 2.0))  # fmt: skip


@dataclass(frozen=True)
class SceneSpec:
    """Scene side (pixels), class count (background included), shapes per scene (an inclusive
    range), shape radius range (pixels), the colour jitter and the pixel noise's sd."""

    size: int
    classes: int
    min_shapes: int
    max_shapes: int
    min_radius: float
    max_radius: float
    jitter: float
    noise: float

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"scene size must be >= 8, got {self.size}")
        if not 2 <= self.classes <= len(PALETTE):
            raise ValueError(f"classes must be in 2..{len(PALETTE)}, got {self.classes}")
        if not 1 <= self.min_shapes <= self.max_shapes:
            raise ValueError(
                f"need 1 <= min_shapes <= max_shapes: {self.min_shapes}, {self.max_shapes}"
            )
        if not 0 < self.min_radius <= self.max_radius:
            raise ValueError(
                f"need 0 < min_radius <= max_radius: {self.min_radius}, {self.max_radius}"
            )
        if self.jitter < 0 or self.noise < 0:
            raise ValueError(f"jitter and noise must be >= 0, got {self.jitter}, {self.noise}")


@dataclass(frozen=True)
class Shape:
    """One drawn shape: ``kind`` (``polygon`` or ``ellipse``), its class and its pixel mask."""

    kind: str
    cls: int
    mask: np.ndarray


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y), each (size, size)."""
    c = np.arange(size) + 0.5
    return np.meshgrid(c, c, indexing="xy")


def polygon_mask(vertices: np.ndarray, size: int) -> np.ndarray:
    """Pixels (size, size) whose centres lie inside the polygon ``vertices`` ((k, 2) as x, y;
    any simple polygon: even-odd crossing rule)."""
    if vertices.ndim != 2 or vertices.shape[1] != 2 or len(vertices) < 3:
        raise ValueError(f"vertices must be (k >= 3, 2), got {vertices.shape}")
    x, y = _grid(size)
    inside = np.zeros((size, size), dtype=bool)
    for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0), strict=True):
        if y0 == y1:
            continue
        crosses = (y0 > y) != (y1 > y)
        at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (x < at)
    return inside


def ellipse_mask(
    centre: tuple[float, float], axes: tuple[float, float], angle: float, size: int
) -> np.ndarray:
    """Pixels (size, size) whose centres lie inside the ellipse (centre x, y; semi-axes;
    rotation ``angle`` in radians)."""
    if min(axes) <= 0:
        raise ValueError(f"semi-axes must be positive, got {axes}")
    x, y = _grid(size)
    dx, dy = x - centre[0], y - centre[1]
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    return (u / axes[0]) ** 2 + (v / axes[1]) ** 2 <= 1.0


def _texture(
    cls: int, size: int, phase: float, tilt: float, rng: np.random.Generator, jitter: float
) -> np.ndarray:
    """Class ``cls``'s striped colour field (size, size, 3) with a jittered colour."""
    period, angle = STRIPES[cls]
    x, y = _grid(size)
    a = angle + tilt
    wave = np.sin(2 * np.pi * (math.cos(a) * x + math.sin(a) * y) / period + phase)
    colour = np.clip(PALETTE[cls] + jitter * rng.standard_normal(3), 0.0, 1.0)
    return colour[None, None, :] * (1.0 + 0.35 * wave[..., None])


def render_scene(
    spec: SceneSpec, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[Shape]]:
    """One scene: image (3, size, size) float32, labels (size, size) int64, and the shapes in
    drawing order (later ones on top)."""
    s = spec.size
    image = _texture(0, s, rng.uniform(0, 2 * np.pi), rng.normal(0, 0.2), rng, spec.jitter)
    labels = np.zeros((s, s), dtype=np.int64)
    shapes = []
    for _ in range(int(rng.integers(spec.min_shapes, spec.max_shapes + 1))):
        cls = int(rng.integers(1, spec.classes))
        r = rng.uniform(spec.min_radius, spec.max_radius)
        centre = rng.uniform(0, s, size=2)
        if rng.random() < 0.5:
            k = int(rng.integers(3, 7))
            angles = np.sort(rng.uniform(0, 2 * np.pi, size=k))
            radii = r * rng.uniform(0.6, 1.0, size=k)
            verts = centre + np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
            mask, kind = polygon_mask(verts, s), "polygon"
        else:
            axes = (r, r * rng.uniform(0.4, 1.0))
            mask = ellipse_mask((centre[0], centre[1]), axes, rng.uniform(0, np.pi), s)
            kind = "ellipse"
        tex = _texture(cls, s, rng.uniform(0, 2 * np.pi), rng.normal(0, 0.2), rng, spec.jitter)
        image = np.where(mask[..., None], tex, image)
        labels[mask] = cls
        shapes.append(Shape(kind, cls, mask))
    image = image + spec.noise * rng.standard_normal(image.shape)
    return np.clip(image, 0.0, 1.0).transpose(2, 0, 1).astype(np.float32), labels, shapes


def render_scenes(n: int, spec: SceneSpec, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` scenes from ``seed``: images (n, 3, size, size) in [0, 1] and labels (n, size,
    size) in 0..classes-1."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    images, labels = zip(*(render_scene(spec, rng)[:2] for _ in range(n)), strict=True)
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels))
