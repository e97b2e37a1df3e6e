"""Functional maps between shapes (Ovsjanikov et al., SIGGRAPH 2012) and their geodesic error.

A map T: Y → X transports functions f on X to f∘T on Y; in truncated eigenbases Φ_X, Φ_Y (k
columns each) it is the k×k matrix C with Φ_Y C ≈ Π Φ_X, Π the map's permutation. C is fitted
from corresponding descriptors (C A ≈ B with A = Φ_Xᵀ M_X F, B = Φ_Yᵀ M_Y G), optionally with the
Laplacian-commutativity penalty μ Σ_ij (λ^Y_i − λ^X_j)² C_ij²; the point-to-point map is read back
by nearest neighbours between Φ_Y C and Φ_X. Errors are graph geodesics on X divided by a
normaliser (the square root of the area, or the diameter), the field's usual report.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree


def functional_map(
    phi_x: np.ndarray,
    phi_y: np.ndarray,
    desc_x: np.ndarray,
    desc_y: np.ndarray,
    mass_x: sp.spmatrix,
    mass_y: sp.spmatrix,
    evals_x: np.ndarray | None = None,
    evals_y: np.ndarray | None = None,
    mu: float = 0.0,
) -> np.ndarray:
    """The k×k functional map C (functions on X to functions on Y) from corresponding
    descriptors desc_x (n_x, q) and desc_y (n_y, q), solved row by row in closed form."""
    a = phi_x.T @ (mass_x @ desc_x)  # (k, q)
    b = phi_y.T @ (mass_y @ desc_y)
    k = phi_x.shape[1]
    if mu and (evals_x is None or evals_y is None):
        raise ValueError("the commutativity penalty mu needs both shapes' eigenvalues")
    gram = a @ a.T
    c = np.empty((phi_y.shape[1], k))
    for i in range(phi_y.shape[1]):
        pen = mu * (evals_y[i] - evals_x) ** 2 if mu else np.zeros(k)  # type: ignore[index]
        c[i] = np.linalg.solve(gram + np.diag(pen) + 1e-12 * np.eye(k), a @ b[i])
    return c


def pointwise_map(c: np.ndarray, phi_x: np.ndarray, phi_y: np.ndarray) -> np.ndarray:
    """T: Y → X as indices (n_y,): each y's nearest x in the aligned spectral embedding
    (rows of Φ_X Cᵀ against rows of Φ_Y)."""
    return cKDTree(phi_x @ c.T).query(phi_y)[1]


def graph_geodesics(points: np.ndarray, k: int, sources: np.ndarray | None = None) -> np.ndarray:
    """Shortest-path distances on the symmetrised k-NN graph with Euclidean edge lengths,
    from ``sources`` (default: all points) to every point."""
    dist, idx = cKDTree(points).query(points, k + 1)
    n = len(points)
    g = sp.coo_matrix(
        (dist[:, 1:].ravel(), (np.repeat(np.arange(n), k), idx[:, 1:].ravel())), (n, n)
    )
    g = g.maximum(g.T).tocsr()
    out = dijkstra(g, directed=False, indices=sources)
    if np.isinf(out).any():
        raise ValueError(f"the {k}-NN graph is disconnected: raise k")
    return out


def geodesic_error(
    predicted: np.ndarray, truth: np.ndarray, geodesics_x: np.ndarray, normaliser: float
) -> float:
    """Mean geodesic distance on X between predicted and true images of Y's points, divided by
    ``normaliser``; ``geodesics_x`` is X's full distance matrix."""
    if predicted.shape != truth.shape:
        raise ValueError("predicted and true maps must have the same length")
    return float(np.mean(geodesics_x[predicted, truth]) / normaliser)
