"""The method of shapesplat (arXiv 2408.10906): placeholder maths, tested in
tests/studies/test_shapesplat.py."""

from __future__ import annotations

import numpy as np


def planted(
    n: int, dim: int, rank: int, noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points near a random ``rank``-dimensional subspace of R^dim, and its basis."""
    basis, _ = np.linalg.qr(rng.standard_normal((dim, rank)))
    x = rng.standard_normal((n, rank)) @ basis.T + noise * rng.standard_normal((n, dim))
    return x, basis


def pca_basis(x: np.ndarray, rank: int) -> np.ndarray:
    """Orthonormal basis (dim, rank) of the top-``rank`` principal directions of ``x``."""
    _, _, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    return vt[:rank].T


def sine_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Sine of the largest principal angle between the spans of orthonormal ``a`` and ``b``."""
    cosines = np.linalg.svd(a.T @ b, compute_uv=False)
    return float(np.sqrt(max(0.0, 1.0 - float(cosines.min()) ** 2)))
