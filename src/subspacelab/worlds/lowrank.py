"""Mixtures of low-rank Gaussians (MoLRG) with their true subspaces, and exact metrics.

The world of Wang, Zhang, Zhang, Chen, Ma & Qu, "Diffusion Models Learn Low-Dimensional
Distributions via Subspace Clustering" (2024, arXiv:2409.02426): pick a component c ~ π, then
x = U*_c a with a ~ N(0, I_{d_c}) and U*_k ∈ R^{n×d_k} orthonormal. The official generator takes
disjoint column blocks of one random orthogonal matrix (mutually orthogonal subspaces); the
harder case draws each basis independently (random, non-orthogonal subspaces).

Everything here is exact against that truth:

* :func:`molrg` — seeded samples with their bases, labels and mixing weights;
* :func:`posterior_mean` — E[x_0 | x_t] of the MoLRG under x_t = s x_0 + γ ε (the Bayes-optimal
  denoiser, softmax weights by logsumexp);
* :func:`projector_distance`, :func:`subspace_error` (min over permutations of the max over
  components of ‖P̂_k − P*_k‖_F / √(2d)), :func:`principal_angles` (re-exported from
  :mod:`subspacelab.geometry.bases`), :func:`captured_energy`;
* :func:`k_subspaces` — the K-subspaces baseline (alternating assignment / PCA refit, restarts,
  spectral initialisation on |X Xᵀ|), and :func:`pca_basis` for K = 1.

Conventions: points are rows (x has shape (N, n)); a basis has shape (n, d); a union of K
subspaces of equal dimension is a (K, n, d) array. NumPy float64 for generation and metrics,
torch for :func:`posterior_mean` (it is differentiable in the bases).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from subspacelab.geometry.bases import principal_angles

__all__ = [
    "MoLRG",
    "captured_energy",
    "k_subspaces",
    "ks_objective",
    "matched",
    "molrg",
    "pca_basis",
    "posterior_mean",
    "principal_angles",
    "projector_distance",
    "spectral_labels",
    "subspace_error",
    "union_residual",
]

SUBSPACES = ("orthogonal", "random")


@dataclass(frozen=True)
class MoLRG:
    """Samples of a mixture of low-rank Gaussians and their truth.

    ``x`` (N, n) float64; ``labels`` (N,) the component of each row; ``bases`` one (n, d_k)
    orthonormal basis per component; ``weights`` the mixing weights π (sum 1); ``noise`` the std
    of the isotropic off-subspace noise that was added.
    """

    x: np.ndarray
    labels: np.ndarray
    bases: tuple[np.ndarray, ...]
    weights: np.ndarray
    noise: float

    @property
    def dims(self) -> tuple[int, ...]:
        """The intrinsic dimensions d_k."""
        return tuple(b.shape[1] for b in self.bases)

    def stacked(self) -> np.ndarray:
        """The bases as one (K, n, d) array (equal dimensions only)."""
        if len(set(self.dims)) != 1:
            raise ValueError(f"bases of unequal dimensions {self.dims} cannot be stacked")
        return np.stack(self.bases)


def molrg(
    ambient: int,
    dims: list[int],
    counts: list[int],
    seed: int | Sequence[int],
    *,
    subspaces: str = "orthogonal",
    noise: float = 0.0,
) -> MoLRG:
    """``counts[k]`` points on component k of a MoLRG in R^ambient with intrinsic dims ``dims``.

    ``subspaces="orthogonal"``: the bases are disjoint column blocks of one Haar-random orthogonal
    matrix (the official generator; needs Σ d_k ≤ ambient); ``"random"``: each basis is drawn
    independently (Haar on the Stiefel manifold), so subspaces are generically non-orthogonal.
    The mixing weights are counts / Σ counts; rows are ordered by component. ``seed`` is an int
    or a sequence of ints (NumPy's SeedSequence entropy: one independent world per grid cell).
    """
    if subspaces not in SUBSPACES:
        raise ValueError(f"subspaces must be one of {SUBSPACES}, got {subspaces!r}")
    if len(dims) != len(counts) or not dims:
        raise ValueError(f"need one count per component, got dims {dims} and counts {counts}")
    if min(dims) < 1 or max(dims) > ambient:
        raise ValueError(f"intrinsic dims must be in [1, ambient={ambient}], got {dims}")
    if min(counts) < 1:
        raise ValueError(f"every component needs at least one point, got counts {counts}")
    if subspaces == "orthogonal" and sum(dims) > ambient:
        raise ValueError(f"orthogonal subspaces need sum(dims)={sum(dims)} <= ambient={ambient}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    if subspaces == "orthogonal":
        q = _haar(rng, ambient, sum(dims))
        edges = np.cumsum([0, *dims])
        bases = tuple(q[:, edges[k] : edges[k + 1]] for k in range(len(dims)))
    else:
        bases = tuple(_haar(rng, ambient, d) for d in dims)
    xs = [rng.standard_normal((c, d)) @ b.T for b, c, d in zip(bases, counts, dims, strict=True)]
    x = np.concatenate(xs)
    if noise > 0:
        x = x + noise * rng.standard_normal(x.shape)
    labels = np.repeat(np.arange(len(dims)), counts)
    weights = np.asarray(counts, dtype=np.float64) / sum(counts)
    return MoLRG(x, labels, bases, weights, float(noise))


def _haar(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """n × d orthonormal columns, Haar-distributed (QR of a Gaussian with the sign fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((n, d)))
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def posterior_mean(
    x_t: Tensor, bases: Tensor, scale: Tensor | float, gamma: Tensor, log_pi: Tensor | None = None
) -> Tensor:
    """E[x_0 | x_t] for a MoLRG with orthonormal ``bases`` (K, n, d) under x_t = s x_0 + γ ε.

    E[x_0 | x_t] = Σ_k w_k(x_t) · s/(s² + γ²) · U_k U_kᵀ x_t with
    w = softmax_k(s² ‖U_kᵀ x_t‖² / (2γ²(s² + γ²)) + log π_k) (equal d_k: the
    −(d_k/2) log(s² + γ²) terms cancel). ``x_t`` is (..., n); ``gamma`` (and ``scale``) broadcast
    against its leading dims; the weights go through log-softmax, so small γ does not overflow.
    """
    if bases.ndim != 3 or bases.shape[1] != x_t.shape[-1]:
        raise ValueError(
            f"bases must be (K, n, d) with n = x_t.shape[-1] = {x_t.shape[-1]}, "
            f"got {tuple(bases.shape)}"
        )
    s = torch.as_tensor(scale, dtype=x_t.dtype)
    coords = torch.einsum("...n,knd->...kd", x_t, bases)  # U_kᵀ x_t
    var = s**2 + gamma**2
    logits = (s**2 * coords.square().sum(-1)) / (2 * gamma**2 * var).unsqueeze(-1)
    if log_pi is not None:
        logits = logits + log_pi
    w = torch.softmax(logits, dim=-1)
    shrink = (s / var).unsqueeze(-1)
    return shrink * torch.einsum("...k,...kd,knd->...n", w, coords, bases)


def _check_union(name: str, u: np.ndarray) -> None:
    if u.ndim != 3 or u.shape[2] > u.shape[1]:
        raise ValueError(f"{name} must be (K, n, d) with d <= n, got shape {u.shape}")


def projector_distance(a: np.ndarray, b: np.ndarray) -> float:
    """‖A Aᵀ − B Bᵀ‖_F for orthonormal bases a, b (n, d): √2 · ‖sin θ‖₂ over principal angles."""
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"need two (n, d) bases of one shape, got {a.shape} and {b.shape}")
    cross = a.T @ b
    sq = a.shape[1] + b.shape[1] - 2.0 * float(np.square(cross).sum())
    return float(np.sqrt(max(sq, 0.0)))


def _pairwise(est: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(K, K) normalised projector distances ‖P̂_i − P*_j‖_F / √(2d)."""
    _check_union("est", est)
    _check_union("truth", truth)
    if est.shape != truth.shape:
        raise ValueError(f"est {est.shape} and truth {truth.shape} must have one shape")
    d = truth.shape[2]
    cross = np.einsum("ind,jne->ijde", est, truth)
    sq = 2.0 * d - 2.0 * np.square(cross).sum(axis=(2, 3))
    return np.sqrt(np.maximum(sq, 0.0) / (2.0 * d))


def _bottleneck(cost: np.ndarray) -> tuple[float, np.ndarray]:
    """min over permutations p of max_i cost[i, p(i)], and such a p (exact).

    The smallest threshold t among the entries for which the bipartite graph {cost <= t} has a
    perfect matching (checked by an assignment on the 0/1 excess cost).
    """
    for t in np.unique(cost):
        rows, cols = linear_sum_assignment((cost > t).astype(np.float64))
        if not (cost[rows, cols] > t).any():
            return float(t), cols
    raise AssertionError("unreachable: the largest entry always admits a matching")


def subspace_error(est: np.ndarray, truth: np.ndarray) -> float:
    """e = min over permutations of max_k ‖P̂_k − P*_k‖_F / √(2d) for unions (K, n, d).

    0 for the same subspaces in any order; 1 when every estimated subspace is orthogonal to its
    matched true one. The permutation is the exact bottleneck assignment.
    """
    return _bottleneck(_pairwise(est, truth))[0]


def matched(est: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``est`` reordered so that component k is matched to ``truth``'s component k."""
    _, cols = _bottleneck(_pairwise(est, truth))
    order = np.empty_like(cols)
    order[cols] = np.arange(len(cols))
    return est[order]


def captured_energy(est: np.ndarray, truth: np.ndarray) -> float:
    """Mean over matched components of ‖P̂_k U*_k‖²_F / d: 1 for the true subspaces.

    Equals 1 − mean_k e_k² where e_k = ‖P̂_k − P*_k‖_F / √(2d).
    """
    m = matched(est, truth)
    d = truth.shape[2]
    return float(np.mean(np.square(np.einsum("knd,kne->kde", m, truth)).sum(axis=(1, 2)) / d))


def union_residual(x: np.ndarray, bases: np.ndarray) -> np.ndarray:
    """Per-row relative distance to the union: min_k ‖x − U_k U_kᵀ x‖ / ‖x‖."""
    _check_union("bases", bases)
    coords = np.einsum("in,knd->ikd", x, bases)
    inside = np.square(coords).sum(axis=2)  # ‖U_kᵀ x‖²
    total = np.square(x).sum(axis=1, keepdims=True)
    res = np.maximum(total - inside, 0.0).min(axis=1)
    return np.sqrt(res / np.maximum(total[:, 0], np.finfo(np.float64).tiny))


def ks_objective(x: np.ndarray, bases: np.ndarray) -> float:
    """The K-subspaces objective Σ_i max_k ‖U_kᵀ x_i‖² (larger is better)."""
    _check_union("bases", bases)
    return float(np.square(np.einsum("in,knd->ikd", x, bases)).sum(axis=2).max(axis=1).sum())


def pca_basis(x: np.ndarray, d: int) -> np.ndarray:
    """Top-d left singular vectors of xᵀ (uncentred PCA of the rows), shape (n, d).

    With fewer than d rows the remaining columns are the next left singular vectors of the full
    SVD (an arbitrary but deterministic completion of the span).
    """
    if d > x.shape[1]:
        raise ValueError(f"d={d} exceeds the ambient dimension {x.shape[1]}")
    u, _, _ = np.linalg.svd(x.T, full_matrices=True)
    return u[:, :d]


def spectral_labels(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Spectral clustering of the affinity |X Xᵀ| (rows normalised) into k groups."""
    from sklearn.cluster import SpectralClustering

    if k == 1:
        return np.zeros(len(x), dtype=np.int64)
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.finfo(np.float64).tiny)
    affinity = np.abs(xn @ xn.T)
    model = SpectralClustering(k, affinity="precomputed", random_state=seed, n_init=10)
    return model.fit_predict(affinity).astype(np.int64)


def _refit(x: np.ndarray, labels: np.ndarray, k: int, d: int, old: np.ndarray) -> np.ndarray:
    out = old.copy()
    for c in range(k):
        members = x[labels == c]
        if len(members):
            out[c] = pca_basis(members, d)
    return out


def _ks_run(x: np.ndarray, bases: np.ndarray, iters: int) -> tuple[np.ndarray, float]:
    k, _, d = bases.shape
    labels = np.full(len(x), -1)
    for _ in range(iters):
        new = np.square(np.einsum("in,knd->ikd", x, bases)).sum(axis=2).argmax(axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        bases = _refit(x, labels, k, d, bases)
    return bases, ks_objective(x, bases)


def k_subspaces(
    x: np.ndarray, k: int, d: int, seed: int, *, restarts: int, iters: int = 100
) -> np.ndarray:
    """The K-subspaces baseline: the best (by :func:`ks_objective`) of ``restarts`` random
    initialisations and one from :func:`spectral_labels`, each alternating nearest-subspace
    assignment and per-cluster PCA until the labels stop changing (at most ``iters`` rounds).
    K = 1 is PCA. Returns the bases (k, n, d)."""
    if x.ndim != 2 or d > x.shape[1] or k < 1 or restarts < 0 or iters < 1:
        raise ValueError(
            f"need x (N, n) with d <= n, k >= 1, restarts >= 0, iters >= 1; got x {x.shape}, "
            f"k={k}, d={d}, restarts={restarts}, iters={iters}"
        )
    if k == 1:
        return pca_basis(x, d)[None]
    rng = np.random.default_rng(seed)
    n = x.shape[1]
    starts = [
        _refit(x, spectral_labels(x, k, seed), k, d, np.stack([_haar(rng, n, d)] * k)),
        *(np.stack([_haar(rng, n, d) for _ in range(k)]) for _ in range(restarts)),
    ]
    runs = [_ks_run(x, b, iters) for b in starts]
    return max(runs, key=lambda r: r[1])[0]
