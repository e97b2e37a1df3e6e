"""Asymmetric genus-0 "blob" meshes with a shared connectivity (DiffuMatch's miniature,
Pierson et al., ICCV 2025, arXiv 2507.23715, spec section 6).

A blob is the icosphere (:func:`subspacelab.shapes.clouds.icosphere`) with every vertex moved
along its direction by a random low-frequency radial field r(u) = 1 + Σ_{l=1..l_max} Σ_m c_lm
Y_lm(u) (real spherical harmonics, c_lm ~ N(0, (amplitude · decay^(l-1))²); odd degrees break
the symmetries), then stretched by a random anisotropic scaling and, for a "bent" family, bent
about the y axis. Every blob keeps the icosphere's faces, so vertex i of one blob corresponds to
vertex i of every other: the ground-truth map between any two is the identity.

A study draws its training category from one :class:`BlobFamily` and a shifted "new
category" (elongated along x and bent, with another coefficient spectrum) from a second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import lpmv

from subspacelab.shapes.clouds import icosphere


def real_sph_harm(dirs: np.ndarray, l_max: int) -> np.ndarray:
    """Orthonormal real spherical harmonics Y_lm (l = 0..l_max, m = -l..l, in that order) at
    unit directions ``dirs`` (n, 3): an (n, (l_max + 1)²) matrix."""
    if l_max < 0:
        raise ValueError(f"l_max must be >= 0, got {l_max}")
    if dirs.ndim != 2 or dirs.shape[1] != 3:
        raise ValueError("dirs must be (n, 3)")
    cos_t = np.clip(dirs[:, 2], -1.0, 1.0)
    phi = np.arctan2(dirs[:, 1], dirs[:, 0])
    cols = []
    for deg in range(l_max + 1):
        for m in range(-deg, deg + 1):
            am = abs(m)
            norm = math.sqrt(
                (2 * deg + 1) / (4 * math.pi) * math.factorial(deg - am) / math.factorial(deg + am)
            )
            leg = lpmv(am, deg, cos_t)
            if m == 0:
                cols.append(norm * leg)
            elif m > 0:
                cols.append(math.sqrt(2) * norm * leg * np.cos(am * phi))
            else:
                cols.append(math.sqrt(2) * norm * leg * np.sin(am * phi))
    return np.stack(cols, axis=1)


@dataclass(frozen=True)
class BlobFamily:
    """A distribution of blobs: harmonic amplitude and decay per degree, the per-axis scale
    range, an extra stretch of the x axis, and the bend curvature range (|κ|, random sign)."""

    amplitude: float
    decay: float
    l_max: int
    scale: tuple[float, float]
    stretch: tuple[float, float]
    bend: tuple[float, float]

    def __post_init__(self) -> None:
        bad = []
        if self.amplitude < 0 or self.decay <= 0:
            bad.append("amplitude >= 0 and decay > 0")
        if self.l_max < 1:
            bad.append("l_max >= 1")
        for name in ("scale", "stretch"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                bad.append(f"{name} = (low, high) with 0 < low <= high")
        if not 0 <= self.bend[0] <= self.bend[1]:
            bad.append("bend = (low, high) with 0 <= low <= high")
        if bad:
            raise ValueError("BlobFamily: " + "; ".join(bad))


def bend(verts: np.ndarray, kappa: float) -> np.ndarray:
    """Bend about the y axis with curvature ``kappa``: the x axis becomes an arc of radius
    1/κ (x, z) ↦ ((R − z) sin(x/R), R − (R − z) cos(x/R)); κ = 0 is the identity."""
    if kappa == 0:
        return verts.copy()
    r = 1.0 / kappa
    x, y, z = verts[:, 0], verts[:, 1], verts[:, 2]
    theta = x / r
    return np.stack([(r - z) * np.sin(theta), y, r - (r - z) * np.cos(theta)], axis=1)


def blob(sphere: np.ndarray, family: BlobFamily, rng: np.random.Generator) -> np.ndarray:
    """One blob of ``family``: the unit-sphere vertices ``sphere`` (v, 3) displaced, scaled and
    bent as the module docstring says; the radius is kept >= 0.3 so the surface stays embedded."""
    ylm = real_sph_harm(sphere, family.l_max)
    std = np.concatenate(
        [np.zeros(1)]
        + [np.full(2 * deg + 1, family.amplitude * family.decay ** (deg - 1))
           for deg in range(1, family.l_max + 1)]
    )  # fmt: skip
    radius = np.maximum(1.0 + ylm @ (std * rng.standard_normal(len(std))), 0.3)
    scale = rng.uniform(*family.scale, size=3)
    scale[0] *= rng.uniform(*family.stretch)
    verts = sphere * radius[:, None] * scale
    kappa = rng.uniform(*family.bend) * rng.choice([-1.0, 1.0])
    verts = bend(verts, float(kappa))
    return verts - verts.mean(axis=0)


def sample_blobs(
    n: int, family: BlobFamily, subdivisions: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` blobs of ``family`` on the icosphere of ``subdivisions``: vertices (n, v, 3) and
    the shared faces (f, 3)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    sphere, faces = icosphere(subdivisions)
    return np.stack([blob(sphere, family, rng) for _ in range(n)]), faces


def mesh_area(verts: np.ndarray, faces: np.ndarray) -> float:
    """Total surface area of the triangle mesh."""
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    return float(0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum())
