"""Procedural shapes as labelled point clouds (the 3D group's miniatures, issue 18).

Every sampler draws points uniformly on the surface (area-weighted), from a seeded generator,
so the same seed gives the same cloud. :func:`icosphere` builds the unit sphere's mesh by
subdividing an icosahedron, for Laplacian checks against the sphere's spectrum.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Sampler = Callable[[int, np.random.Generator], np.ndarray]


def sphere(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniform on the unit sphere (normalised Gaussians)."""
    x = rng.standard_normal((n, 3))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def torus(n: int, rng: np.random.Generator, major: float = 1.0, minor: float = 0.35) -> np.ndarray:
    """``n`` points uniform on a torus (rejection on the angle density ∝ R + r cos v)."""
    out = np.empty((0, 3))
    while len(out) < n:
        u, v = rng.uniform(0, 2 * np.pi, (2, 2 * n))
        keep = rng.uniform(0, major + minor, 2 * n) < major + minor * np.cos(v)
        u, v = u[keep], v[keep]
        ring = major + minor * np.cos(v)
        out = np.vstack([out, np.stack([ring * np.cos(u), ring * np.sin(u), minor * np.sin(v)], 1)])
    return out[:n]


def box(
    n: int, rng: np.random.Generator, half: tuple[float, float, float] = (1, 0.6, 0.4)
) -> np.ndarray:
    """``n`` points uniform on the surface of an axis-aligned box of half-sides ``half``."""
    a, b, c = half
    areas = np.array([b * c, b * c, a * c, a * c, a * b, a * b])
    face = rng.choice(6, size=n, p=areas / areas.sum())
    p = rng.uniform(-1, 1, (n, 3)) * np.asarray(half)
    axis, sign = face // 2, np.where(face % 2 == 0, 1.0, -1.0)
    p[np.arange(n), axis] = sign * np.asarray(half)[axis]
    return p


def cylinder(
    n: int, rng: np.random.Generator, radius: float = 0.5, height: float = 1.6
) -> np.ndarray:
    """``n`` points uniform on a closed cylinder (side and both caps, by area)."""
    side, cap = 2 * np.pi * radius * height, np.pi * radius**2
    part = rng.choice(3, size=n, p=np.array([side, cap, cap]) / (side + 2 * cap))
    theta = rng.uniform(0, 2 * np.pi, n)
    r = np.where(part == 0, radius, radius * np.sqrt(rng.uniform(0, 1, n)))
    z = np.where(
        part == 0, rng.uniform(-height / 2, height / 2, n), np.where(part == 1, 1, -1) * height / 2
    )
    return np.stack([r * np.cos(theta), r * np.sin(theta), z], 1)


def cone(n: int, rng: np.random.Generator, radius: float = 0.7, height: float = 1.4) -> np.ndarray:
    """``n`` points uniform on a closed cone (lateral surface and base, by area)."""
    slant = np.hypot(radius, height)
    lateral, base = np.pi * radius * slant, np.pi * radius**2
    on_base = rng.uniform(0, lateral + base, n) >= lateral
    theta = rng.uniform(0, 2 * np.pi, n)
    s = np.sqrt(rng.uniform(0, 1, n))  # radius fraction: area grows with s²
    z = np.where(on_base, -height / 2, height / 2 - s * height)
    return np.stack([radius * s * np.cos(theta), radius * s * np.sin(theta), z], 1)


SHAPES: dict[str, Sampler] = {
    "sphere": sphere,
    "torus": torus,
    "box": box,
    "cylinder": cylinder,
    "cone": cone,
}


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3×3 rotation (QR of a Gaussian, signs fixed, det +1)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def shape_dataset(
    n_per_class: int,
    points: int,
    seed: int,
    shapes: tuple[str, ...] = tuple(SHAPES),
    noise: float = 0.01,
    rotate: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Clouds (n, points, 3) float32 and labels (n,): ``n_per_class`` of each shape, each
    randomly rotated and scaled (0.8-1.2), with Gaussian jitter ``noise``; shuffled."""
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown or not shapes:
        raise ValueError(f"shapes must be among {tuple(SHAPES)}, got {shapes}")
    if n_per_class < 1 or points < 1 or noise < 0:
        raise ValueError("n_per_class and points must be >= 1 and noise >= 0")
    rng = np.random.default_rng(seed)
    clouds, labels = [], []
    for label, name in enumerate(shapes):
        for _ in range(n_per_class):
            p = SHAPES[name](points, rng) * rng.uniform(0.8, 1.2)
            if rotate:
                p = p @ random_rotation(rng).T
            clouds.append(p + noise * rng.standard_normal(p.shape))
            labels.append(label)
    order = rng.permutation(len(labels))
    return np.asarray(clouds, np.float32)[order], np.asarray(labels, np.int64)[order]


def scene(
    shapes: tuple[str, ...], points: int, seed: int, spread: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """One scene: each named shape with ``points`` points, rotated and placed at a random
    centre in a cube of side ``spread``; returns the cloud (k·points, 3) and per-point instance
    labels (the shape's index in ``shapes``)."""
    rng = np.random.default_rng(seed)
    parts, labels = [], []
    for i, name in enumerate(shapes):
        if name not in SHAPES:
            raise ValueError(f"unknown shape {name!r}; known: {tuple(SHAPES)}")
        p = SHAPES[name](points, rng) @ random_rotation(rng).T
        parts.append(p + rng.uniform(-spread / 2, spread / 2, 3))
        labels.append(np.full(points, i))
    return np.concatenate(parts), np.concatenate(labels)


def icosphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    """The unit sphere as a triangle mesh: vertices (v, 3) and faces (f, 3), an icosahedron
    subdivided ``subdivisions`` times (each triangle into four) and projected to the sphere."""
    if subdivisions < 0:
        raise ValueError(f"subdivisions must be >= 0, got {subdivisions}")
    t = (1 + 5**0.5) / 2
    verts = [
        (-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t),
        (0, -1, -t), (0, 1, -t), (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1),
    ]  # fmt: skip
    faces = [
        (0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4),
        (11, 10, 2), (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8),
        (3, 8, 9), (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1),
    ]  # fmt: skip
    v = [np.asarray(p, float) / np.linalg.norm(p) for p in verts]
    for _ in range(subdivisions):
        mid: dict[tuple[int, int], int] = {}
        new = []
        for a, b, c in faces:
            ab, bc, ca = (_middle(v, mid, x, y) for x, y in ((a, b), (b, c), (c, a)))
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    return np.asarray(v), np.asarray(faces, np.int64)


def _middle(v: list[np.ndarray], mid: dict[tuple[int, int], int], a: int, b: int) -> int:
    """The index of the unit-sphere midpoint of edge (a, b), added to ``v`` once."""
    key = (min(a, b), max(a, b))
    if key not in mid:
        m = v[a] + v[b]
        v.append(m / np.linalg.norm(m))
        mid[key] = len(v) - 1
    return mid[key]
