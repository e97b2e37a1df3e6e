"""The Gaussian RBF network with a learnable precision matrix and what its spectrum tells.

GRBFNN: D'Agostino, Ilievski & Shoemaker, Neural Networks 176 (2024) 106335, arXiv:2307.05639.

f(x) = Σ_k w_k exp(−½ (x − c_k)ᵀ P (x − c_k)), P = LLᵀ with L lower-triangular (its d(d+1)/2
entries are the parameters), centres c_k fixed at k-means centres. :class:`GRBFStack` holds S
independent networks (one per seed) evaluated in one batched call: their losses are summed, and
since Adam is element-wise each network trains exactly as it would alone. The quadratic form is
expanded (‖Lᵀx‖² − 2 (Lᵀx)·(Lᵀc) + ‖Lᵀc‖²), O((B + K) d² + B K d) instead of the official
einsum's O(B K d²).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

TASKS = ("regression", "binary", "multiclass")


class GRBFStack(nn.Module):
    """S Gaussian RBF networks with a full learnable precision each, over fixed centres.

    ``centres`` is (S, K, d). Each network s draws its initial parameters from its own generator
    seeded with ``seeds[s]``: the entries of L ~ N(0, 1/d) (the official N(0, 1) scaled by 1/√d,
    the spec's fix for vanishing kernels at large d) and the weights ~ N(0, 1) (official).
    """

    def __init__(self, centres: Tensor, n_out: int, seeds: list[int]) -> None:
        super().__init__()
        s, k, d = centres.shape
        if len(seeds) != s:
            raise ValueError(f"need one seed per network: {s} networks, {len(seeds)} seeds")
        if n_out < 1:
            raise ValueError(f"n_out must be >= 1, got {n_out}")
        self.d, self.n_out = d, n_out
        self.register_buffer("centres", centres.to(torch.float32))
        rows, cols = torch.tril_indices(d, d)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)
        vech, weights = [], []
        for seed in seeds:
            gen = torch.Generator().manual_seed(seed)
            vech.append(torch.randn(d * (d + 1) // 2, generator=gen) / math.sqrt(d))
            weights.append(torch.randn(k, n_out, generator=gen))
        self.vech = nn.Parameter(torch.stack(vech))
        self.weights = nn.Parameter(torch.stack(weights))

    def lower(self) -> Tensor:
        """(S, d, d) lower-triangular factors L."""
        lt = self.vech.new_zeros(self.vech.shape[0], self.d, self.d)
        lt[:, self.rows, self.cols] = self.vech
        return lt

    def precision(self) -> Tensor:
        """(S, d, d) precision matrices P = LLᵀ (PSD by construction)."""
        lt = self.lower()
        return lt @ lt.transpose(1, 2)

    def kernels(self, x: Tensor) -> Tensor:
        """(S, B, K) kernel values φ_k(x) for x of shape (S, B, d)."""
        lt = self.lower()
        xl, cl = x @ lt, self.centres @ lt  # rows: (Lᵀx)ᵀ
        q = (xl * xl).sum(-1, keepdim=True) - 2 * xl @ cl.transpose(1, 2)
        q = q + (cl * cl).sum(-1).unsqueeze(1)
        return torch.exp(-0.5 * q.clamp_min(0.0))

    def forward(self, x: Tensor) -> Tensor:
        """(S, B, n_out) outputs for inputs (S, B, d)."""
        return self.kernels(x) @ self.weights

    def penalty(self, lam_u: float, lam_w: float) -> Tensor:
        """(S,) λ_u ‖vech(L)‖₂ + λ_w ‖w‖₂ per network (norms, not squared, as the paper)."""
        return lam_u * self.vech.norm(dim=1) + lam_w * self.weights.flatten(1).norm(dim=1)


def data_loss(out: Tensor, y: Tensor, task: str) -> Tensor:
    """(S,) mean data loss per network: MSE (regression, y float), BCE on σ(f) (binary, y in
    {0, 1}) or softmax cross-entropy (multiclass, y class ids)."""
    if task == "regression":
        return (out.squeeze(-1) - y).pow(2).mean(1)
    if task == "binary":
        bce = nn.functional.binary_cross_entropy_with_logits
        return bce(out.squeeze(-1), y, reduction="none").mean(1)
    if task == "multiclass":
        ce = nn.functional.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none")
        return ce.view(y.shape).mean(1)
    raise ValueError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")


def predict(out: Tensor, task: str) -> Tensor:
    """Predictions from outputs (S, B, n_out): values, 0/1 labels or class ids."""
    if task == "regression":
        return out.squeeze(-1)
    if task == "binary":
        return (out.squeeze(-1) > 0).long()
    return out.argmax(-1)


def spectrum(precision: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues γ (descending, clipped at 0) and eigenvectors (columns) of one P."""
    vals, vecs = np.linalg.eigh(precision)
    return np.clip(vals[::-1], 0.0, None).copy(), vecs[:, ::-1].copy()


def feature_importance(precision: np.ndarray) -> np.ndarray:
    """s = |V| γ normalised to sum 1: absolute eigenvector entries weighted by eigenvalues."""
    vals, vecs = spectrum(precision)
    s = np.abs(vecs) @ vals
    total = s.sum()
    if total <= 0:
        raise ValueError("the precision matrix is zero: no feature importance")
    return s / total


def kmeans_centres(x: np.ndarray, k: int) -> np.ndarray:
    """k-means centres of KMeans(random_state=0) with sklearn's default n_init (the notebook)."""
    from sklearn.cluster import KMeans

    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"need 1 <= K <= {x.shape[0]} centres, got {k}")
    return KMeans(n_clusters=k, random_state=0, n_init="auto").fit(x).cluster_centers_


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Scale every array by the train mean and std (a constant feature keeps std 1)."""
    mean, std = train.mean(0), train.std(0)
    std = np.where(std > 0, std, 1.0)
    return [((a - mean) / std).astype(np.float32) for a in (train, *others)]


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination 1 − SS_res / SS_tot."""
    return float(1.0 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def baseline_rankings(x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Feature scores of the spec's baseline selectors (higher = more important): random-forest
    impurity, mutual information and L1-logistic regression (max |coef| over classes)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.feature_selection import mutual_info_classif
    from sklearn.linear_model import LogisticRegression

    rf = RandomForestClassifier(n_estimators=200, random_state=seed, n_jobs=1).fit(x, y)
    mi = mutual_info_classif(x, y, random_state=seed)
    l1 = LogisticRegression(l1_ratio=1.0, C=0.05, solver="saga", tol=1e-3, max_iter=3000)
    l1.fit(x, y)
    return {
        "rf_impurity": rf.feature_importances_,
        "mutual_info": mi,
        "l1_logistic": np.abs(l1.coef_).max(0),
    }


def top_m_accuracy(
    scores: np.ndarray,
    m: int,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
) -> float:
    """Test accuracy of a logistic regression trained on the ``m`` top-scored features."""
    from sklearn.linear_model import LogisticRegression

    top = np.argsort(-scores, kind="stable")[:m]
    clf = LogisticRegression(max_iter=3000).fit(x_train[:, top], y_train)
    return float((clf.predict(x_test[:, top]) == y_test).mean())
