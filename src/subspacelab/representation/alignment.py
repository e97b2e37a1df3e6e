"""Aligning two representation spaces through paired samples: CCA in its SVD form, orthogonal
Procrustes, a ridge affine map, and the scores that compare the aligned spaces (retrieval
recall@k, Hungarian matching accuracy, mutual k-NN).

Used by plato (Hadgi et al., "Escaping Plato's Cave: Towards the Alignment of 3D and Text
Latent Spaces", CVPR 2025, arXiv:2503.05283): project both spaces onto a shared canonical
subspace, then compare them there. Arrays are (samples, features); every function computes in
float64 and checks its inputs before any work.

CCA (Hotelling 1936), SVD form: with centred X, T and ridge ε (relative to the mean
eigenvalue of each covariance), Cxx = XᵀX/n + εI, Ctt = TᵀT/n + εI, Cxt = XᵀT/n,
``Cxx^{-1/2} Cxt Ctt^{-1/2} = U Σ Vᵀ``; the canonical directions are A = Cxx^{-1/2} U_k and
B = Ctt^{-1/2} V_k, the canonical correlations Σ_k, and Aᵀx, Bᵀt the paired canonical variates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


def _matrix(name: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} must be a non-empty (samples, features) matrix, got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has non-finite entries")
    return a


def _paired(x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, t = _matrix("x", x), _matrix("t", t)
    if x.shape[0] != t.shape[0]:
        raise ValueError(f"x and t must pair the same samples: {x.shape[0]} != {t.shape[0]} rows")
    return x, t


def _check_ridge(ridge: float) -> None:
    if not ridge >= 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")


def _inv_sqrt(c: np.ndarray, ridge: float) -> np.ndarray:
    """``(C + ε·mean(eig C)·I)^{-1/2}``; directions of (numerically) zero variance are dropped
    (a pseudo-inverse) when ``ridge`` is 0."""
    lam, vec = np.linalg.eigh(c)
    lam = lam + ridge * max(float(lam.mean()), 0.0)
    keep = lam > max(float(lam.max()), 0.0) * 1e-12
    root = np.zeros_like(lam)
    root[keep] = lam[keep] ** -0.5
    return (vec * root) @ vec.T


@dataclass(frozen=True)
class CCA:
    """A fitted CCA: train means, canonical directions ``a`` (dx, k) and ``b`` (dt, k), and the
    canonical correlations ``corr`` (k,), sorted from the largest."""

    x_mean: np.ndarray
    t_mean: np.ndarray
    a: np.ndarray
    b: np.ndarray
    corr: np.ndarray

    def project_x(self, x: np.ndarray) -> np.ndarray:
        """Canonical variates of the first space, ``(x − x̄) A``: (n, k)."""
        return (_matrix("x", x) - self.x_mean) @ self.a

    def project_t(self, t: np.ndarray) -> np.ndarray:
        """Canonical variates of the second space, ``(t − t̄) B``: (n, k)."""
        return (_matrix("t", t) - self.t_mean) @ self.b

    def top(self, k: int) -> CCA:
        """The same fit restricted to its top-``k`` canonical pairs."""
        if not 1 <= k <= self.corr.shape[0]:
            raise ValueError(f"k must be in [1, {self.corr.shape[0]}], got {k}")
        return CCA(self.x_mean, self.t_mean, self.a[:, :k], self.b[:, :k], self.corr[:k])


def cca(x: np.ndarray, t: np.ndarray, k: int | None = None, ridge: float = 0.0) -> CCA:
    """CCA of paired (n, dx) ``x`` and (n, dt) ``t`` in its SVD form, keeping ``k`` pairs (all
    ``min(dx, dt)`` by default). ``ridge`` ε is added to each covariance's eigenvalues in units
    of its mean eigenvalue (0: none, directions of zero variance dropped)."""
    x, t = _paired(x, t)
    _check_ridge(ridge)
    most = min(x.shape[1], t.shape[1])
    k = most if k is None else k
    if not 1 <= k <= most:
        raise ValueError(f"k must be in [1, min(dx, dt) = {most}], got {k}")
    n = x.shape[0]
    x_mean, t_mean = x.mean(axis=0), t.mean(axis=0)
    xc, tc = x - x_mean, t - t_mean
    wx, wt = _inv_sqrt(xc.T @ xc / n, ridge), _inv_sqrt(tc.T @ tc / n, ridge)
    u, s, vt = np.linalg.svd(wx @ (xc.T @ tc / n) @ wt, full_matrices=False)
    return CCA(x_mean, t_mean, wx @ u[:, :k], wt @ vt[:k].T, s[:k])


def principal_directions(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The mean (d,) and top-``k`` principal directions (d, k, orthonormal columns) of ``x``."""
    x = _matrix("x", x)
    if not 1 <= k <= min(x.shape):
        raise ValueError(f"k must be in [1, min(n, d) = {min(x.shape)}], got {k}")
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean, vt[:k].T


def procrustes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Orthogonal Procrustes: the (dx, dy) ``W`` with orthonormal rows (dx ≤ dy) or columns
    minimising ``‖xW − y‖_F``, i.e. ``U Vᵀ`` of the SVD of ``xᵀy`` (Schönemann 1966). Centre
    (and scale) the inputs first if a translation is not wanted in the fit."""
    x, y = _paired(x, y)
    u, _, vt = np.linalg.svd(x.T @ y, full_matrices=False)
    return u @ vt


def ridge_affine(x: np.ndarray, y: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """Affine least squares ``argmin ‖xW + 1bᵀ − y‖² + λ‖W‖²``, λ = ``ridge`` × n × the mean
    eigenvalue of x's covariance; returns ``(W (dx, dy), b (dy,))``."""
    x, y = _paired(x, y)
    _check_ridge(ridge)
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ xc
    lam = ridge * float(np.trace(gram)) / x.shape[1]
    w = np.linalg.lstsq(gram + lam * np.eye(x.shape[1]), xc.T @ yc, rcond=None)[0]
    return w, y_mean - x_mean @ w


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``S_ij = cos(a_i, b_j)``: (n, m); a zero row has cosine 0 with everything."""
    a, b = _matrix("a", a), _matrix("b", b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must live in one space: {a.shape[1]} != {b.shape[1]} features")
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    a = a / np.where(na > 0, na, 1.0)[:, None]
    b = b / np.where(nb > 0, nb, 1.0)[:, None]
    return a @ b.T


def _square(sim: np.ndarray) -> np.ndarray:
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1] or sim.shape[0] < 1:
        raise ValueError(f"sim must be a square (pool, pool) matrix, got {sim.shape}")
    if not np.isfinite(sim).all():
        raise ValueError("sim has non-finite entries")
    return sim


def retrieval_recall(sim: np.ndarray, ks: tuple[int, ...] = (1, 5)) -> dict[int, float]:
    """Recall@k of retrieving column i for query row i in a square similarity ``sim`` (pool N,
    chance k/N). Ties are broken at random in expectation: with g columns scoring above the
    true one and e others tied with it, the hit probability is ``clip((k − g)/(e + 1), 0, 1)``,
    so identical candidates share the credit and the score is deterministic."""
    sim = _square(sim)
    if any(k < 1 for k in ks):
        raise ValueError(f"every k must be >= 1, got {ks}")
    true = np.diag(sim)[:, None]
    greater = (sim > true).sum(axis=1)
    tied = (sim == true).sum(axis=1) - 1
    return {k: float(np.clip((k - greater) / (tied + 1), 0.0, 1.0).mean()) for k in ks}


def matching_accuracy(sim: np.ndarray) -> float:
    """The share of rows that the one-to-one assignment maximising total similarity (Hungarian,
    on −S) pairs with their own column (chance 1/N)."""
    sim = _square(sim)
    rows, cols = linear_sum_assignment(sim, maximize=True)
    return float(np.mean(rows == cols))


def mutual_knn(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Mutual k-NN alignment: the mean overlap ``|N_a(i) ∩ N_b(i)| / k`` of each sample's k
    nearest neighbours (cosine, itself excluded) in the two paired spaces."""
    a, b = _paired(a, b)
    n = a.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, n − 1 = {n - 1}], got {k}")

    def neighbours(z: np.ndarray) -> np.ndarray:
        s = cosine_similarity(z, z)
        np.fill_diagonal(s, -np.inf)
        return np.argsort(-s, axis=1, kind="stable")[:, :k]

    na, nb = neighbours(a), neighbours(b)
    return float(np.mean([len(np.intersect1d(p, q)) / k for p, q in zip(na, nb, strict=True)]))
