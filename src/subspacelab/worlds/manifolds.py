"""Manifolds with known Laplace–Beltrami eigenspaces, kNN graph Laplacians, and spectral errors.

The worlds of eigenstructures (Velich, Piven, Bensaïd, Cremers, Dagès & Kimmel, "Learning
eigenstructures of unstructured data manifolds", CVPR 2026, arXiv:2512.01103), each sampled with a
known density and returned with its eigenfunctions at the samples and their eigenvalues:

* the unit sphere S² with density ρ(x) ∝ 1 + c·x₃: real spherical harmonics of degree l,
  eigenvalue l(l + 1), multiplicity 2l + 1;
* the flat (Clifford) torus S¹ × S¹ ⊂ R⁴, uniform: Fourier modes of (θ, φ), eigenvalue j² + k²;
* an "image manifold": a bump shifted around a periodic 1-D grid of ``dim`` pixels (a circle
  embedded in R^dim, plus noise): Fourier modes cos(kt), sin(kt) of the shift t, eigenvalue k².

Eigenspaces are compared as subspaces (a degenerate eigenspace has no preferred basis):
:func:`energy_captured` is the mean squared cosine of the principal angles between span(true
functions) and span(basis) in a given inner product. The graph side (the Laplacian eigenmaps
baseline, the benchmark's reference) is :func:`knn_graph` and :func:`graph_laplacian`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = [
    "ManifoldSample",
    "best_scale",
    "circle_of_bumps",
    "eigenspace_groups",
    "eigenvalue_error",
    "energy_captured",
    "flat_torus",
    "graph_laplacian",
    "knn_graph",
    "real_spherical_harmonics",
    "sphere",
]


@dataclass(frozen=True)
class ManifoldSample:
    """Points, their true sampling density (w.r.t. the manifold's normalised area), the true
    eigenfunctions at the points (columns, by ascending eigenvalue) and the eigenvalues."""

    points: np.ndarray  # (n, ambient)
    density: np.ndarray  # (n,) ρ at each point, ∫ρ dA = 1 over the normalised area
    functions: np.ndarray  # (n, m)
    eigenvalues: np.ndarray  # (m,) ascending


def real_spherical_harmonics(points: np.ndarray, l_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Real spherical harmonics of degree 0..l_max at unit vectors ``points`` (n, 3), orthonormal
    for the uniform area measure (∫ Y² dA = 1): (n, (l_max + 1)²) values and each column's l."""
    from scipy.special import sph_harm_y

    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (n, 3) unit vectors, got shape {points.shape}")
    polar = np.arccos(np.clip(points[:, 2], -1.0, 1.0))
    azimuth = np.arctan2(points[:, 1], points[:, 0])
    cols, degrees = [], []
    for ell in range(l_max + 1):
        cols.append(sph_harm_y(ell, 0, polar, azimuth).real)
        for m in range(1, ell + 1):
            y = sph_harm_y(ell, m, polar, azimuth)
            cols += [math.sqrt(2) * y.real, math.sqrt(2) * y.imag]
        degrees += [ell] * (2 * ell + 1)
    return np.stack(cols, axis=1), np.asarray(degrees)


def sphere(n: int, tilt: float, l_max: int, seed: int) -> ManifoldSample:
    """n points on S² drawn by rejection from ρ(x) = (1 + tilt·x₃) / (4π), |tilt| < 1, with the
    spherical harmonics up to degree ``l_max`` (eigenvalues l(l + 1))."""
    if not -1 < tilt < 1 or n < 1 or l_max < 0:
        raise ValueError(f"need n >= 1, |tilt| < 1 and l_max >= 0, got {n}, {tilt}, {l_max}")
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    while sum(len(o) for o in out) < n:
        x = rng.standard_normal((2 * n, 3))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        keep = rng.uniform(0, 1 + abs(tilt), 2 * n) < 1 + tilt * x[:, 2]
        out.append(x[keep])
    points = np.concatenate(out)[:n]
    functions, degrees = real_spherical_harmonics(points, l_max)
    density = (1 + tilt * points[:, 2]) / (4 * math.pi)
    return ManifoldSample(points, density, functions, (degrees * (degrees + 1)).astype(float))


def _fourier(t: np.ndarray, k: int) -> list[np.ndarray]:
    return [np.ones_like(t)] if k == 0 else [np.cos(k * t), np.sin(k * t)]


def flat_torus(n: int, k_max: int, seed: int) -> ManifoldSample:
    """n uniform points on the Clifford torus (cos θ, sin θ, cos φ, sin φ) with the Fourier modes
    of frequencies |j|, |k| <= k_max (eigenvalue j² + k²), normalised to mean square 1 under the
    uniform measure, sorted by eigenvalue."""
    if n < 1 or k_max < 0:
        raise ValueError(f"need n >= 1 and k_max >= 0, got {n}, {k_max}")
    rng = np.random.default_rng(seed)
    theta, phi = rng.uniform(0, 2 * math.pi, (2, n))
    points = np.stack([np.cos(theta), np.sin(theta), np.cos(phi), np.sin(phi)], axis=1)
    funcs, vals = [], []
    for j in range(k_max + 1):
        for k in range(k_max + 1):
            for f in _fourier(theta, j):
                for g in _fourier(phi, k):
                    funcs.append(f * g * math.sqrt(2 ** ((j > 0) + (k > 0))))
                    vals.append(float(j * j + k * k))
    order = np.argsort(vals, kind="stable")
    density = np.full(n, 1.0 / (4 * math.pi**2))
    return ManifoldSample(points, density, np.stack(funcs, 1)[:, order], np.asarray(vals)[order])


def circle_of_bumps(
    n: int, dim: int, width: float, noise: float, k_max: int, seed: int
) -> ManifoldSample:
    """n images of a periodic bump exp(cos(2πp/dim − t)/width²) on ``dim`` pixels (max-scaled
    to 1), shift t uniform on [0, 2π), plus N(0, noise²) pixel noise; truth: the Fourier modes of
    t up to frequency k_max (eigenvalue k², mean square 1)."""
    if n < 1 or dim < 3 or width <= 0 or noise < 0 or k_max < 0:
        raise ValueError(f"bad circle_of_bumps sizes: n={n}, dim={dim}, width={width}")
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 2 * math.pi, n)
    grid = 2 * math.pi * np.arange(dim) / dim
    images = np.exp((np.cos(grid[None, :] - t[:, None]) - 1) / width**2)
    images += noise * rng.standard_normal(images.shape)
    funcs, vals = [], []
    for k in range(k_max + 1):
        for f in _fourier(t, k):
            funcs.append(f * math.sqrt(2 if k else 1))
            vals.append(float(k * k))
    density = np.full(n, 1.0 / (2 * math.pi))
    return ManifoldSample(images, density, np.stack(funcs, 1), np.asarray(vals))


def eigenspace_groups(eigenvalues: np.ndarray, rtol: float = 1e-9) -> list[np.ndarray]:
    """Index arrays of the runs of equal eigenvalues (input ascending): the eigenspaces."""
    vals = np.asarray(eigenvalues, dtype=float)
    groups, start = [], 0
    for i in range(1, len(vals) + 1):
        if i == len(vals) or abs(vals[i] - vals[start]) > rtol * max(1.0, abs(vals[start])):
            groups.append(np.arange(start, i))
            start = i
    return groups


def energy_captured(
    basis: np.ndarray, functions: np.ndarray, weights: np.ndarray | None = None
) -> float:
    """Mean squared cosine of the principal angles between span(functions) (n, m) and
    span(basis) (n, k) in the inner product ⟨u, v⟩ = Σ wᵢ uᵢ vᵢ (default wᵢ = 1): the share of the
    true functions' energy inside the basis' span, 1 when it contains them all."""
    if basis.shape[0] != functions.shape[0]:
        raise ValueError(f"basis {basis.shape} and functions {functions.shape}: rows differ")
    w = np.ones(basis.shape[0]) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (basis.shape[0],) or np.any(w <= 0):
        raise ValueError("weights must be positive, one per row")
    root = np.sqrt(w)[:, None]
    qa, _ = np.linalg.qr(root * basis)
    qb, _ = np.linalg.qr(root * functions)
    return float(np.sum((qa.T @ qb) ** 2) / functions.shape[1])


def knn_graph(points: np.ndarray, k: int, sigma: float | None) -> sp.csr_matrix:
    """Symmetric kNN graph (i ~ j if either is among the other's k nearest, no self loops) with
    Gaussian weights exp(−‖xᵢ − xⱼ‖² / (2σ²)), or weight 1 when ``sigma`` is None."""
    from sklearn.neighbors import NearestNeighbors

    n = points.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"need 1 <= k < n = {n}, got k={k}")
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    rows = np.repeat(np.arange(n), k)
    d = dist[:, 1:].ravel()
    w = np.ones_like(d) if sigma is None else np.exp(-(d**2) / (2 * sigma**2))
    g = sp.csr_matrix((w, (rows, idx[:, 1:].ravel())), shape=(n, n))
    return g.maximum(g.T).tocsr()


def graph_laplacian(weights: sp.spmatrix, kind: str) -> sp.csr_matrix:
    """L = D − W (``combinatorial``) or I − D^{-1/2} W D^{-1/2} (``symmetric``)."""
    deg = np.asarray(weights.sum(axis=1)).ravel()
    if np.any(deg <= 0):
        raise ValueError("a vertex has no edges: the graph Laplacian is undefined there")
    if kind == "combinatorial":
        return (sp.diags(deg) - weights).tocsr()
    if kind == "symmetric":
        s = sp.diags(1 / np.sqrt(deg))
        return (sp.identity(weights.shape[0]) - s @ weights @ s).tocsr()
    raise ValueError(f"unknown Laplacian {kind!r}; allowed: combinatorial, symmetric")


def eigenvalue_error(estimate: np.ndarray, reference: np.ndarray) -> float:
    """max_i |λ̂ᵢ − λᵢ| / max_i |λᵢ|: the worst error relative to the largest reference value."""
    est, ref = np.asarray(estimate, dtype=float), np.asarray(reference, dtype=float)
    if est.shape != ref.shape or not np.any(ref):
        raise ValueError(f"need equal shapes and a non-zero reference, got {est.shape}, {ref}")
    return float(np.max(np.abs(est - ref)) / np.max(np.abs(ref)))


def best_scale(estimate: np.ndarray, reference: np.ndarray) -> float:
    """The least-squares c with c·λ̂ ≈ λ (eigenvalues known only up to scale)."""
    est, ref = np.asarray(estimate, dtype=float), np.asarray(reference, dtype=float)
    denom = float(est @ est)
    if denom == 0:
        raise ValueError("the estimate is zero: no scale fits")
    return float(est @ ref) / denom
