"""Clustering metrics: Hungarian-matched accuracy, NMI, ARI, conductance and modularity."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def cluster_accuracy(labels: np.ndarray, pred: np.ndarray) -> float:
    """Accuracy of ``pred`` after the best one-to-one matching of clusters to classes.

    The matching maximises the confusion-matrix trace (Hungarian algorithm); clusters without a
    class (more clusters than classes) count as errors.
    """
    labels = np.asarray(labels).ravel()
    pred = np.asarray(pred).ravel()
    if labels.shape != pred.shape or labels.size == 0:
        raise ValueError(f"labels and pred must be equal, non-empty: {labels.shape} {pred.shape}")
    _, li = np.unique(labels, return_inverse=True)
    _, pi = np.unique(pred, return_inverse=True)
    confusion = np.zeros((pi.max() + 1, li.max() + 1), dtype=np.int64)
    np.add.at(confusion, (pi, li), 1)
    rows, cols = linear_sum_assignment(-confusion)
    return float(confusion[rows, cols].sum() / labels.size)


def evaluate(labels: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """ACC (Hungarian), NMI and ARI of a clustering against ground-truth labels."""
    return {
        "acc": cluster_accuracy(labels, pred),
        "nmi": float(normalized_mutual_info_score(labels, pred)),
        "ari": float(adjusted_rand_score(labels, pred)),
    }


def _one_hot(pred: np.ndarray) -> sp.csr_matrix:
    _, idx = np.unique(pred, return_inverse=True)
    n = idx.size
    return sp.csr_matrix((np.ones(n), (np.arange(n), idx)), shape=(n, idx.max() + 1))


def conductance(
    pred: np.ndarray, adjacency: sp.spmatrix | None = None, *, factor: np.ndarray | None = None
) -> float:
    """Mean conductance cut(S, S̄)/min(vol S, vol S̄) of the clusters of ``pred``.

    The graph is either a non-negative ``adjacency`` or the Gram graph W = F Fᵀ of a non-negative
    ``factor`` F (n×d), which is never formed.
    """
    onehot = _one_hot(pred)
    if (adjacency is None) == (factor is None):
        raise ValueError("give exactly one of adjacency or factor")
    if adjacency is not None:
        adj = sp.csr_matrix(adjacency)
        degree = np.asarray(adj.sum(axis=1)).ravel()
        inside = np.asarray((onehot.T @ adj @ onehot).diagonal()).ravel()
    else:
        f = np.asarray(factor)
        degree = f @ (f.T @ np.ones(f.shape[0]))
        sums = onehot.T @ f
        inside = np.einsum("kd,kd->k", sums, sums)
    vol = np.asarray(onehot.T @ degree).ravel()
    total = degree.sum()
    cut = vol - inside
    denom = np.minimum(vol, total - vol)
    return float(np.mean(np.where(denom > 0, cut / np.maximum(denom, 1e-300), 0.0)))


def modularity(pred: np.ndarray, adjacency: sp.spmatrix) -> float:
    """Newman modularity Q = Σ_c [e_cc/2m − (vol_c/2m)²] of a partition of an undirected graph."""
    adj = sp.csr_matrix(adjacency)
    onehot = _one_hot(pred)
    degree = np.asarray(adj.sum(axis=1)).ravel()
    two_m = degree.sum()
    if two_m <= 0:
        raise ValueError("modularity of an empty graph")
    inside = np.asarray((onehot.T @ adj @ onehot).diagonal()).ravel()
    vol = np.asarray(onehot.T @ degree).ravel()
    return float(np.sum(inside / two_m - (vol / two_m) ** 2))
