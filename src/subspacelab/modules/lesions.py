"""Procedural skin-lesion images with ground-truth masks (the miniatures of dsl and mhs_vm).

dsl (Adiga V. S. et al., arXiv:2206.09068, spec §6) classifies 48×48 RGB "lesions": one blob on a
textured skin background, class = shape (ellipse, rectangle, star) × hue (brown, red), with
nuisance size, rotation, hair lines and vignetting, and the blob's mask kept for Dice. mhs_vm
(Ji, arXiv:2406.05992, spec §6) segments 64×64 images with one or two irregular blobs (a radius
perturbed by a few random Fourier modes). One generator serves both: :func:`lesions` draws
``n`` images from one seed, every random choice recorded in the returned attributes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES = ("ellipse", "rectangle", "star", "irregular")
HUES: dict[str, tuple[float, float, float]] = {
    "brown": (0.45, 0.28, 0.17),
    "red": (0.72, 0.18, 0.18),
}
SKIN = (0.88, 0.70, 0.60)


@dataclass(frozen=True)
class LesionSpec:
    """What to draw: image side, the shapes and hues a blob may take (the class is
    ``shape_index * len(hues) + hue_index`` of the first blob), blobs per image (inclusive range),
    blob radius as a fraction of the side (range), the most hair lines per image, and the
    vignetting strength (0: none; the corners are darkened by this fraction)."""

    size: int
    shapes: tuple[str, ...]
    hues: tuple[str, ...]
    blobs: tuple[int, int] = (1, 1)
    radius: tuple[float, float] = (0.14, 0.26)
    max_hairs: int = 3
    vignette: float = 0.3

    def check(self) -> None:
        """Raise ``ValueError`` naming the first field that cannot draw an image."""
        if self.size < 16:
            raise ValueError(f"size must be >= 16 pixels, got {self.size}")
        if not self.shapes or any(s not in SHAPES for s in self.shapes):
            raise ValueError(f"shapes must be a non-empty subset of {SHAPES}, got {self.shapes}")
        if not self.hues or any(h not in HUES for h in self.hues):
            raise ValueError(f"hues must be a non-empty subset of {tuple(HUES)}, got {self.hues}")
        lo, hi = self.blobs
        if not 1 <= lo <= hi:
            raise ValueError(f"blobs must be a range 1 <= lo <= hi, got {self.blobs}")
        rlo, rhi = self.radius
        if not 0.05 <= rlo <= rhi <= 0.4:
            raise ValueError(f"radius must be a range within [0.05, 0.4], got {self.radius}")
        if self.max_hairs < 0 or not 0.0 <= self.vignette < 1.0:
            raise ValueError("max_hairs must be >= 0 and vignette in [0, 1)")

    @property
    def n_classes(self) -> int:
        """Number of (shape, hue) classes."""
        return len(self.shapes) * len(self.hues)


@dataclass
class Lesions:
    """``n`` drawn images: ``images`` (n, 3, s, s) float32 in [0, 1], ``masks`` (n, s, s) bool
    (the union of the blobs), ``labels`` (n,) int64 class of the first blob, and per-image
    attributes (``shape``, ``hue`` indices, ``radius`` in pixels, ``angle``, ``hairs``,
    ``blobs``)."""

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    attributes: dict[str, np.ndarray]


def blob_mask(
    shape: str,
    size: int,
    centre: tuple[float, float],
    radius: float,
    angle: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """A (size, size) bool mask of one blob of ``shape`` centred at ``centre`` (row, col), of
    ``radius`` pixels, rotated by ``angle`` radians; ``irregular`` draws its Fourier modes from
    ``rng`` (the other shapes draw nothing)."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    dy, dx = rows - centre[0], cols - centre[1]
    u = np.cos(angle) * dx + np.sin(angle) * dy
    v = -np.sin(angle) * dx + np.cos(angle) * dy
    rho, phi = np.hypot(u, v), np.arctan2(v, u)
    if shape == "ellipse":
        return (u / radius) ** 2 + (v / (0.65 * radius)) ** 2 <= 1.0
    if shape == "rectangle":
        return (np.abs(u) <= radius) & (np.abs(v) <= 0.65 * radius)
    if shape == "star":
        return rho <= radius * (0.62 + 0.38 * np.cos(5 * phi))
    if shape == "irregular":
        k = np.arange(2, 6)
        amp = rng.uniform(0.0, 0.12, size=k.size)
        phase = rng.uniform(0.0, 2 * np.pi, size=k.size)
        waves = np.cos(k[:, None, None] * phi + phase[:, None, None])
        edge = 1.0 + np.sum(amp[:, None, None] * waves, 0)
        return rho <= radius * edge
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def _texture(size: int, rng: np.random.Generator, waves: int = 6) -> np.ndarray:
    """A smooth (size, size) field in about [-1, 1]: a sum of random plane waves."""
    rows, cols = np.mgrid[0:size, 0:size] / size
    field = np.zeros((size, size))
    for _ in range(waves):
        fy, fx = rng.uniform(-4, 4, size=2)
        field += np.cos(2 * np.pi * (fy * rows + fx * cols) + rng.uniform(0, 2 * np.pi))
    return field / np.sqrt(waves)


def _hair(size: int, rng: np.random.Generator) -> np.ndarray:
    """A (size, size) bool mask of one thin straight hair crossing the image."""
    rows, cols = np.mgrid[0:size, 0:size] + 0.5
    p = rng.uniform(0, size, size=2)
    theta = rng.uniform(0, np.pi)
    dist = np.abs((cols - p[1]) * np.sin(theta) - (rows - p[0]) * np.cos(theta))
    return dist < 0.6


def lesions(n: int, spec: LesionSpec, seed: int) -> Lesions:
    """``n`` lesion images drawn from ``seed`` (same spec and seed, same arrays)."""
    spec.check()
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    s = spec.size
    images = np.empty((n, 3, s, s), dtype=np.float32)
    masks = np.zeros((n, s, s), dtype=bool)
    attrs = {k: np.zeros(n) for k in ("shape", "hue", "radius", "angle", "hairs", "blobs")}
    rows, cols = np.mgrid[0:s, 0:s] + 0.5
    corner = ((rows - s / 2) ** 2 + (cols - s / 2) ** 2) / (s**2 / 2)
    for i in range(n):
        skin = np.asarray(SKIN) + rng.normal(0, 0.04, size=3)
        img = skin[:, None, None] * (1 + 0.06 * _texture(s, rng))[None]
        n_blobs = int(rng.integers(spec.blobs[0], spec.blobs[1] + 1))
        for b in range(n_blobs):
            si, hi = int(rng.integers(len(spec.shapes))), int(rng.integers(len(spec.hues)))
            radius = s * rng.uniform(*spec.radius)
            margin = min(radius, s / 2 - 1)
            centre = (rng.uniform(margin, s - margin), rng.uniform(margin, s - margin))
            angle = rng.uniform(0, 2 * np.pi)
            m = blob_mask(spec.shapes[si], s, centre, radius, angle, rng)
            colour = np.asarray(HUES[spec.hues[hi]]) + rng.normal(0, 0.03, size=3)
            tint = colour[:, None, None] * (1 + 0.10 * _texture(s, rng))[None]
            img = np.where(m[None], tint, img)
            masks[i] |= m
            if b == 0:
                attrs["shape"][i], attrs["hue"][i] = si, hi
                attrs["radius"][i], attrs["angle"][i] = radius, angle
        hairs = int(rng.integers(0, spec.max_hairs + 1))
        for _ in range(hairs):
            img = np.where(_hair(s, rng)[None], 0.12 + rng.uniform(0, 0.1), img)
        img = img * (1 - spec.vignette * corner)[None]
        images[i] = np.clip(img + rng.normal(0, 0.015, size=img.shape), 0, 1)
        attrs["hairs"][i], attrs["blobs"][i] = hairs, n_blobs
    labels = (attrs["shape"] * len(spec.hues) + attrs["hue"]).astype(np.int64)
    return Lesions(images, masks, labels, attrs)
