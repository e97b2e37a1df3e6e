"""Functions of a known active subspace, the gradient-based active-subspace baseline, and errors.

The world of grbf_active (D'Agostino, Ilievski & Shoemaker, "Learning active subspaces and
discovering important features with Gaussian radial basis functions neural networks", Neural
Networks 2024, arXiv:2307.05639): a ridge function of two directions in R^d,

    f(x) = sin(aᵀx) + ½ (bᵀx)²,  x ~ N(0, I_d),  y = f(x) + σ ε,

with a, b unit vectors supported on a few features. Its gradient ∇f = cos(aᵀx) a + (bᵀx) b lies
in span(a, b), so the active subspace (Constantine, Dow & Wang 2014, arXiv:1304.2070) is that
span, and the gradient outer-product matrix C = E[∇f ∇fᵀ] has the closed form

    C = E[cos²(aᵀx)] aaᵀ + E[(bᵀx)²] bbᵀ = ½(1 + e^{-2}) aaᵀ + bbᵀ

(the cross term E[cos(aᵀx) bᵀx] vanishes: the integrand is odd in x). The classical
estimate of the active subspace from data alone is the eigenbasis of the average outer product of
gradients estimated by local linear fits (Constantine 2015, *Active Subspaces*, Alg. 1.2):
:func:`local_linear_gradients` and :func:`gradient_active_subspace`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from subspacelab.geometry import principal_angles

__all__ = [
    "RidgeWorld",
    "dimension_by_energy",
    "gradient_active_subspace",
    "local_linear_gradients",
    "max_angle_degrees",
    "ridge_gradient",
    "ridge_value",
    "ridge_world",
    "spectral_projector_distance",
    "support_recall",
    "true_gradient_covariance",
]


@dataclass(frozen=True)
class RidgeWorld:
    """Samples of the ridge function and its truth: the directions, their span and support."""

    x_train: np.ndarray  # (n_train, d)
    y_train: np.ndarray  # (n_train,)
    x_test: np.ndarray  # (n_test, d)
    y_test: np.ndarray  # (n_test,)
    a: np.ndarray  # (d,) unit vector inside sin
    b: np.ndarray  # (d,) unit vector inside the square
    support: np.ndarray  # sorted feature indices where a or b is non-zero

    @property
    def basis(self) -> np.ndarray:
        """(d, 2) orthonormal basis of the true active subspace span(a, b)."""
        q, _ = np.linalg.qr(np.stack([self.a, self.b], axis=1))
        return q


def ridge_value(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """f(x) = sin(aᵀx) + ½ (bᵀx)² for each row of ``x``."""
    return np.sin(x @ a) + 0.5 * (x @ b) ** 2


def ridge_gradient(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """∇f(x) = cos(aᵀx) a + (bᵀx) b for each row of ``x`` (rows: points)."""
    return np.cos(x @ a)[:, None] * a[None, :] + (x @ b)[:, None] * b[None, :]


def true_gradient_covariance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """C = E[∇f ∇fᵀ] under x ~ N(0, I): E[cos²(u)] aaᵀ + ‖b‖² bbᵀ, u ~ N(0, ‖a‖²)."""
    cos2 = 0.5 * (1.0 + math.exp(-2.0 * float(a @ a)))
    return cos2 * np.outer(a, a) + float(b @ b) * np.outer(b, b)


def ridge_world(
    *, n_train: int, n_test: int, d: int, support_size: int, noise: float, seed: int
) -> RidgeWorld:
    """Draw a ridge world: a support of ``support_size`` features, unit a and b on it (Gaussian
    entries, normalised), Gaussian inputs and noisy targets; one seeded generator for all."""
    if d < 2 or not 2 <= support_size <= d:
        raise ValueError(f"need d >= 2 and 2 <= support_size <= d, got d={d}, {support_size}")
    if n_train < 1 or n_test < 1 or noise < 0:
        raise ValueError(
            f"need n_train, n_test >= 1 and noise >= 0, got {n_train}, {n_test}, {noise}"
        )
    rng = np.random.default_rng(seed)
    support = np.sort(rng.choice(d, size=support_size, replace=False))
    a, b = np.zeros(d), np.zeros(d)
    a[support] = rng.standard_normal(support_size)
    b[support] = rng.standard_normal(support_size)
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    x = rng.standard_normal((n_train + n_test, d))
    y = ridge_value(x, a, b) + noise * rng.standard_normal(n_train + n_test)
    return RidgeWorld(x[:n_train], y[:n_train], x[n_train:], y[n_train:], a, b, support)


def gradient_active_subspace(grads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors (columns) of Ĉ = (1/N) Σ ∇f_i ∇f_iᵀ."""
    if grads.ndim != 2 or grads.shape[0] < 1:
        raise ValueError(f"grads must be (N >= 1, d), got shape {grads.shape}")
    c = grads.T @ grads / grads.shape[0]
    vals, vecs = np.linalg.eigh(c)
    return vals[::-1].copy(), vecs[:, ::-1].copy()


def local_linear_gradients(
    x: np.ndarray, y: np.ndarray, *, n_points: int, n_neighbors: int, seed: int
) -> np.ndarray:
    """Gradients estimated from data alone (Constantine 2015, Alg. 1.2): at ``n_points`` sample
    points drawn without replacement, the slope of a least-squares affine fit of y on the
    ``n_neighbors`` nearest samples (the point itself included). Exact for an affine function."""
    n, d = x.shape
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},), got {y.shape}")
    if not d + 1 <= n_neighbors <= n or not 1 <= n_points <= n:
        raise ValueError(
            f"need d + 1 = {d + 1} <= n_neighbors <= {n} and 1 <= n_points <= {n}, "
            f"got n_neighbors={n_neighbors}, n_points={n_points}"
        )
    rng = np.random.default_rng(seed)
    centres = rng.choice(n, size=n_points, replace=False)
    sq = (x * x).sum(1)
    dist = sq[centres, None] - 2.0 * x[centres] @ x.T + sq[None, :]
    near = np.argpartition(dist, n_neighbors - 1, axis=1)[:, :n_neighbors]
    grads = np.empty((n_points, d))
    for i, idx in enumerate(near):
        design = np.concatenate([np.ones((n_neighbors, 1)), x[idx]], axis=1)
        coef, *_ = np.linalg.lstsq(design, y[idx], rcond=None)
        grads[i] = coef[1:]
    return grads


def dimension_by_energy(eigvals: np.ndarray, share: float) -> int:
    """The smallest r whose top-r eigenvalues (descending input, clipped at 0) hold at least
    ``share`` of their sum: the active-subspace dimension read from the eigenvalue decay."""
    vals = np.clip(np.asarray(eigvals, dtype=np.float64), 0.0, None)
    if vals.ndim != 1 or vals.size < 1 or vals.sum() <= 0:
        raise ValueError(f"need a non-zero vector of eigenvalues, got {eigvals!r}")
    if np.any(np.diff(vals) > 1e-12 * vals[0]):
        raise ValueError("eigenvalues must be sorted in descending order")
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    cum = np.cumsum(vals) / vals.sum()
    return int(np.searchsorted(cum, share - 1e-12)) + 1


def max_angle_degrees(estimate: np.ndarray, truth: np.ndarray) -> float:
    """The largest principal angle (degrees) between span(estimate) and span(truth)."""
    angles = principal_angles(torch.from_numpy(estimate), torch.from_numpy(truth))
    return float(angles.max()) * 180.0 / math.pi


def spectral_projector_distance(estimate: np.ndarray, truth: np.ndarray) -> float:
    """‖P_est − P_true‖₂ (spectral norm) of the orthogonal projectors onto two spans of equal
    dimension: the sine of their largest principal angle (``lowrank.projector_distance`` is the
    Frobenius-norm one)."""
    angles = principal_angles(torch.from_numpy(estimate), torch.from_numpy(truth))
    return float(torch.sin(angles.max()))


def support_recall(importance: np.ndarray, support: np.ndarray) -> float:
    """Share of the true support among the ``len(support)`` most important features."""
    top = np.argsort(-np.asarray(importance), kind="stable")[: len(support)]
    return len(set(top.tolist()) & set(np.asarray(support).tolist())) / len(support)
