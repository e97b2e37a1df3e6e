"""Spectral clustering of an affinity, the self-expressive post-processing, and the k-means and
spectral baselines shared by the subspace-clustering studies."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import eigsh
from sklearn.cluster import KMeans, SpectralClustering


def postprocess_coefficients(coef: np.ndarray, top_k: int | None) -> np.ndarray:
    """Affinity from self-expressive coefficients: A = (|C| + |Cᵀ|)/2 with a zero diagonal,
    keeping the ``top_k`` largest entries of each row (DSC-Net/LIHF prior), re-symmetrised.

    ``top_k=None`` keeps every entry.
    """
    c = np.abs(np.asarray(coef, dtype=np.float64))
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"coefficients must be square, got {c.shape}")
    np.fill_diagonal(c, 0.0)
    if top_k is not None:
        if top_k < 1:
            raise ValueError("top_k must be >= 1")
        k = min(top_k, c.shape[0] - 1)
        keep = np.argpartition(-c, k - 1, axis=1)[:, :k]
        mask = np.zeros_like(c, dtype=bool)
        np.put_along_axis(mask, keep, True, axis=1)
        c = np.where(mask, c, 0.0)
    return 0.5 * (c + c.T)


def _eigsh_start(n: int) -> dict[str, Any]:
    """Fixed start for ARPACK: ``v0``, and a seeded ``rng`` for the fresh vectors ARPACK asks
    for when the Krylov space becomes invariant (a disconnected affinity graph); scipy would
    draw those from OS entropy, making the embedding differ from call to call."""
    return {"v0": np.ones(n) / np.sqrt(n), "rng": np.random.default_rng(0)}


def spectral_embedding(affinity: np.ndarray | sp.spmatrix, k: int) -> np.ndarray:
    """Top-k eigenvectors of D^{-½} A D^{-½} (i.e. of 2I − L_sym), rows L2-normalised."""
    a = (
        sp.csr_matrix(affinity, dtype=np.float64)
        if sp.issparse(affinity)
        else np.asarray(affinity, dtype=np.float64)
    )
    n = a.shape[0]
    if k < 1 or k >= n:
        raise ValueError(f"need 1 <= k < n, got k={k}, n={n}")
    degree = np.asarray(a.sum(axis=1)).ravel()
    inv_sqrt = 1.0 / np.sqrt(np.maximum(degree, 1e-12))
    if sp.issparse(a):
        norm = sp.diags(inv_sqrt) @ a @ sp.diags(inv_sqrt)
        _, vecs = eigsh(norm + sp.identity(n), k=k, which="LM", **_eigsh_start(n))
    else:
        norm = inv_sqrt[:, None] * a * inv_sqrt[None, :]
        norm = 0.5 * (norm + norm.T)
        if n <= 4 * k + 50:
            vecs = np.linalg.eigh(norm)[1][:, -k:]
        else:  # top-k only: eigsh on the shifted operator (2I − L_sym = I + D^-½AD^-½)
            norm[np.diag_indices(n)] += 1.0
            vecs = eigsh(norm, k=k, which="LM", **_eigsh_start(n))[1]
    return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)


def spectral_clustering(
    affinity: np.ndarray | sp.spmatrix, k: int, seed: int, n_init: int = 10
) -> np.ndarray:
    """Normalised spectral clustering (Ng-Jordan-Weiss): embedding, then k-means."""
    emb = spectral_embedding(affinity, k)
    return KMeans(k, n_init=n_init, random_state=seed).fit_predict(emb)


def kmeans_baseline(x: np.ndarray, k: int, seed: int, n_init: int = 10) -> np.ndarray:
    """k-means (k-means++ init, ``n_init`` restarts) on the rows of ``x``."""
    return KMeans(k, n_init=n_init, random_state=seed).fit_predict(np.asarray(x, np.float64))


def spectral_baseline(x: np.ndarray, k: int, seed: int, n_neighbors: int = 10) -> np.ndarray:
    """scikit-learn spectral clustering on a symmetric kNN graph of the rows of ``x``."""
    model = SpectralClustering(
        k,
        affinity="nearest_neighbors",
        n_neighbors=n_neighbors,
        random_state=seed,
        assign_labels="kmeans",
    )
    return model.fit_predict(np.asarray(x, np.float64))
