"""A synthetic single-cell cohort: one point cloud (cells × markers) per patient (the miniature
of HiPoNet, Viswanath et al., arXiv:2502.07746, spec §6).

Each patient's cloud has ``n_cells`` cells in ``n_markers`` markers, built from three parts:

* markers 0-3 carry the **label process**: a 2-D shape drawn in a random plane of R⁴ — class 0 a
  noisy circle (one loop, H₁ = 1), class 1 two Gaussian clusters, class 2 a line segment — each
  scaled to unit variance per planar coordinate, so that the classes share their marginal
  variance and differ only in shape;
* markers 4-9 carry a **nuisance process**: a loop, two clusters or a blob in a random plane of
  R⁶, drawn independently of the label;
* the remaining markers are pure N(0, 1) noise.

A random per-patient offset shifts every marker (label-independent batch effects), so marker
means carry no label information. Everything is drawn from one seeded generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LABEL_MARKERS = 4  # markers 0-3
NUISANCE_MARKERS = 6  # markers 4-9
CLASSES = ("loop", "clusters", "line")


@dataclass(frozen=True)
class Cohort:
    """Clouds ``x`` (patients, cells, markers) float32, labels ``y`` (patients,) int64 in
    ``range(len(CLASSES))``, and each patient's loop count ``loops`` (H₁ of the label shape)."""

    x: np.ndarray
    y: np.ndarray
    loops: np.ndarray


def planar_shape(kind: str, n: int, rng: np.random.Generator, jitter: float) -> np.ndarray:
    """``n`` points (n, 2) of a loop, two clusters, a line segment or a blob, of unit variance
    along the first axis (before ``jitter``, the sd of added isotropic noise)."""
    if kind == "loop":
        theta = rng.uniform(0.0, 2 * np.pi, n)
        p = np.stack([np.cos(theta), np.sin(theta)], 1) * np.sqrt(2.0)
    elif kind == "clusters":
        side = rng.integers(0, 2, n) * 2 - 1
        spread = 0.3
        p = np.stack([side * np.sqrt(1 - spread**2), np.zeros(n)], 1)
        p += spread * rng.standard_normal((n, 2))
    elif kind == "line":
        p = np.stack([rng.uniform(-np.sqrt(3), np.sqrt(3), n), np.zeros(n)], 1)
    elif kind == "blob":
        p = rng.standard_normal((n, 2))
    else:
        raise ValueError(f"unknown shape {kind!r}; allowed: loop, clusters, line, blob")
    return p + jitter * rng.standard_normal((n, 2))


def _embed(p: np.ndarray, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Planar points placed in a uniformly random 2-plane of R^dim (orthonormal frame)."""
    frame, _ = np.linalg.qr(rng.standard_normal((dim, 2)))
    return p @ frame.T


def cohort(n_patients: int, n_cells: int, n_markers: int, jitter: float, seed: int) -> Cohort:
    """The cohort of the module docstring; balanced classes in a shuffled order."""
    if n_patients < len(CLASSES) or n_cells < 3:
        raise ValueError(
            f"need >= {len(CLASSES)} patients and >= 3 cells, got {n_patients}, {n_cells}"
        )
    if n_markers < LABEL_MARKERS + NUISANCE_MARKERS:
        raise ValueError(
            f"n_markers must be >= {LABEL_MARKERS + NUISANCE_MARKERS} (label + nuisance "
            f"markers), got {n_markers}"
        )
    if jitter < 0:
        raise ValueError(f"jitter must be >= 0, got {jitter}")
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n_patients) % len(CLASSES))
    x = np.empty((n_patients, n_cells, n_markers), dtype=np.float32)
    nuisance = ("loop", "clusters", "blob")
    for i, label in enumerate(y):
        label_part = _embed(planar_shape(CLASSES[label], n_cells, rng, jitter), 4, rng)
        kind = nuisance[rng.integers(len(nuisance))]
        nuisance_part = _embed(planar_shape(kind, n_cells, rng, jitter), NUISANCE_MARKERS, rng)
        noise = rng.standard_normal((n_cells, n_markers - LABEL_MARKERS - NUISANCE_MARKERS))
        cells = np.concatenate([label_part, nuisance_part, noise], 1)
        x[i] = cells + rng.normal(0.0, 1.0, n_markers)  # a per-patient offset
    loops = (y == CLASSES.index("loop")).astype(np.int64)
    return Cohort(x=x, y=y.astype(np.int64), loops=loops)


def standardise(x: np.ndarray) -> np.ndarray:
    """Per-cloud, per-marker standardisation (x: (..., cells, markers)); constant markers keep
    a unit scale (as HiPoNet's loaders do)."""
    mean = x.mean(axis=-2, keepdims=True)
    std = x.std(axis=-2, keepdims=True)
    return ((x - mean) / np.where(std < 1e-8, 1.0, std)).astype(np.float32)
