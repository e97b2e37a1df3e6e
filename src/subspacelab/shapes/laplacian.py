"""Laplacians of meshes and point clouds and their low eigenbases (issue 18's toolkit).

* :func:`cotan_laplacian` — the cotangent Laplacian of a triangle mesh (Pinkall-Polthier) with the
  lumped (barycentric) mass: L φ = λ M φ approximates −Δ on the surface, so the unit sphere's
  eigenvalues tend to l(l+1) with multiplicity 2l+1.
* :func:`knn_laplacian` — the graph Laplacian D − W of a point cloud's symmetrised k-NN graph with
  heat-kernel weights (Belkin-Niyogi), identity mass: the same eigenspaces up to scale.
* :func:`eigenbasis` — the k smallest generalised eigenpairs by shift-invert Lanczos (scipy's
  ``eigsh`` with σ just below 0), eigenvectors M-orthonormal. With a diagonal mass (lumped, or the
  identity) it solves the symmetric problem M^-1/2 L M^-1/2 y = λ y instead, factorising
  L' − σI once with SuperLU in symmetric mode under a minimum-degree ordering of L' + L'ᵀ: much
  less fill than the column ordering ``eigsh`` uses by default (benchmarks/shapes.py).

robust-laplacian (Sharp & Crane, SGP 2020) is the reference the tests cross-check against.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, eigsh, splu
from scipy.spatial import cKDTree


def cotan_laplacian(verts: np.ndarray, faces: np.ndarray) -> tuple[sp.csr_matrix, sp.dia_matrix]:
    """(L, M): the positive semi-definite cotangent stiffness matrix and the lumped mass (a third
    of the area of each incident triangle) of the mesh (verts (v, 3), faces (f, 3))."""
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.min() < 0 or faces.max() >= len(verts):
        raise ValueError("faces must be (f, 3) vertex indices into verts")
    n = len(verts)
    rows, cols, vals = [], [], []
    area = np.zeros(n)
    for k in range(3):
        i, j, o = faces[:, k], faces[:, (k + 1) % 3], faces[:, (k + 2) % 3]
        u, w = verts[i] - verts[o], verts[j] - verts[o]
        cross = np.linalg.norm(np.cross(u, w), axis=1)
        cot = np.einsum("ij,ij->i", u, w) / np.maximum(cross, 1e-300)
        rows += [i, j]
        cols += [j, i]
        vals += [-0.5 * cot, -0.5 * cot]
        np.add.at(area, o, cross / 6.0)  # each face adds a third of its area (|u×w|/2) per vertex
    off = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), (n, n)
    )
    off = off.tocsr()
    lap = sp.diags(-np.asarray(off.sum(axis=1)).ravel()) + off
    return lap.tocsr(), sp.diags(area)


def knn_laplacian(points: np.ndarray, k: int) -> tuple[sp.csr_matrix, sp.dia_matrix]:
    """(D − W, I) of the symmetrised k-NN graph with w_ij = exp(−d²/t), t the mean squared
    k-NN distance."""
    if not 1 <= k < len(points):
        raise ValueError(f"k must be in [1, {len(points) - 1}], got {k}")
    dist, idx = cKDTree(points).query(points, k + 1)
    dist, idx = dist[:, 1:], idx[:, 1:]
    t = float(np.mean(dist**2))
    n = len(points)
    w = sp.coo_matrix(
        (np.exp(-(dist**2) / t).ravel(), (np.repeat(np.arange(n), k), idx.ravel())), (n, n)
    )
    w = w.maximum(w.T).tocsr()
    return (sp.diags(np.asarray(w.sum(axis=1)).ravel()) - w).tocsr(), sp.identity(n, format="dia")


def eigenbasis(
    lap: sp.spmatrix, mass: sp.spmatrix, k: int, sigma: float = -1e-8
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest eigenvalues (ascending) and M-orthonormal eigenvectors (n, k) of
    L φ = λ M φ, by shift-invert Lanczos around ``sigma`` (just below 0: L is singular).

    Reproducible: ARPACK starts from a seeded vector (scipy would draw it from OS entropy, and
    the eigenvectors' signs would change from run to run), and each eigenvector's sign is
    fixed so that its entry of largest magnitude is positive."""
    n = lap.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}], got {k}")
    diag = mass.diagonal()
    if (mass - sp.diags(diag)).count_nonzero() or np.any(diag <= 0):
        vals, vecs = eigsh(lap.tocsc(), k=k, M=mass.tocsc(), sigma=sigma, which="LM", **_start(n))
    else:
        scale = 1.0 / np.sqrt(diag)
        sym = (sp.diags(scale) @ lap @ sp.diags(scale)).tocsc()
        lu = splu(
            (sym - sigma * sp.identity(n, format="csc")).tocsc(),
            permc_spec="MMD_AT_PLUS_A",
            diag_pivot_thresh=0.0,
            options={"SymmetricMode": True},
        )
        inv = LinearOperator((n, n), matvec=lu.solve, dtype=float)
        vals, vecs = eigsh(sym, k=k, sigma=sigma, which="LM", OPinv=inv, **_start(n))
        vecs = scale[:, None] * vecs
    order = np.argsort(vals)
    vecs = vecs[:, order]
    peak = vecs[np.abs(vecs).argmax(axis=0), np.arange(k)]
    return vals[order], vecs * np.where(peak < 0, -1.0, 1.0)


def _start(n: int) -> dict[str, object]:
    """A seeded ARPACK start ``v0`` and ``rng`` for any restart vector it asks for."""
    rng = np.random.default_rng(0)
    return {"v0": rng.standard_normal(n), "rng": rng}
