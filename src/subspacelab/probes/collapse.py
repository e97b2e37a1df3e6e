"""Neural-collapse metrics NC1-NC4 and the closed-form deep-linear geometry.

NC metrics after Papyan, Han & Donoho (PNAS 2020), in the forms used by Dang et al., "Neural
Collapse in Deep Linear Networks: From Balanced to Imbalanced Data" (ICML 2023,
arXiv:2301.00437) and Tirer, Huang & Niles-Weed, "Perturbation Analysis of Neural Collapse"
(ICML 2023, arXiv:2210.16658). The closed form is Dang et al.'s bias-free imbalanced MSE
minimiser of the deep-linear unconstrained-features model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


def class_means(h: Tensor, y: Tensor, num_classes: int) -> Tensor:
    """Class means of features ``h`` (n, d) with labels ``y``: shape (K, d), float64."""
    h = h.to(torch.float64)
    counts = torch.bincount(y, minlength=num_classes).to(torch.float64)
    if bool((counts == 0).any()):
        raise ValueError(f"every class needs a sample; counts {counts.tolist()}")
    sums = torch.zeros(num_classes, h.shape[1], dtype=torch.float64).index_add_(0, y, h)
    return sums / counts[:, None]


def nc1(h: Tensor, y: Tensor, num_classes: int, rtol: float = 1e-10) -> float:
    """NC1 = tr(Σ_W Σ_B^†)/K: within-class over between-class variability (0 = collapse).

    Σ_B has rank <= K−1 after centring, so its pseudo-inverse is taken with relative tolerance
    ``rtol``.
    """
    h = h.to(torch.float64)
    mu = class_means(h, y, num_classes)
    centred = h - mu[y]
    mb = mu - mu.mean(dim=0)
    # Σ_B = mbᵀ mb / K shares its non-zero eigenvalues with the K × K Gram mb mbᵀ / K, whose
    # eigenvectors u_j give Σ_B's as v_j = mbᵀ u_j / √(K s_j); then tr(Σ_W Σ_B^†) =
    # Σ_j v_jᵀ Σ_W v_j / s_j = (1/n) Σ_j ‖centred v_j‖² / s_j, without any d × d matrix.
    s, u = torch.linalg.eigh(mb @ mb.T / num_classes)
    keep = s > rtol * s.abs().max()
    v = mb.T @ u[:, keep] / torch.sqrt(num_classes * s[keep])
    proj = (centred @ v).square().sum(dim=0) / h.shape[0]
    return float((proj / s[keep]).sum()) / num_classes


def normalized_distance(a: Tensor, b: Tensor) -> float:
    """``‖a/‖a‖_F − b/‖b‖_F‖_F``: the distance of two matrices up to scale."""
    a, b = a.to(torch.float64), b.to(torch.float64)
    return float(torch.linalg.norm(a / torch.linalg.norm(a) - b / torch.linalg.norm(b)))


def etf_gram(num_classes: int) -> Tensor:
    """The Gram of a simplex ETF: ``I − 11ᵀ/K`` (up to scale)."""
    k = num_classes
    return torch.eye(k, dtype=torch.float64) - torch.full((k, k), 1.0 / k, dtype=torch.float64)


def nc2_etf(means: Tensor) -> float:
    """NC2: distance of the normalised Gram of the globally centred class means to the ETF's."""
    m = means.to(torch.float64)
    m = m - m.mean(dim=0)
    return normalized_distance(m @ m.T, etf_gram(m.shape[0]))


def nc2_orthogonal(means: Tensor) -> float:
    """Distance of the normalised Gram of the uncentred class means to an equal-norm orthogonal
    frame (the balanced bias-free geometry)."""
    m = means.to(torch.float64)
    return normalized_distance(m @ m.T, torch.eye(m.shape[0], dtype=torch.float64))


def nc3(weight: Tensor, means: Tensor) -> float:
    """NC3 (self-duality): ``‖W/‖W‖ − M̄/‖M̄‖‖_F`` with M̄ the centred class means (K, d)."""
    m = means.to(torch.float64)
    return normalized_distance(weight, m - m.mean(dim=0))


def nc4(h: Tensor, logits: Tensor, means: Tensor) -> float:
    """NC4: fraction of samples whose prediction differs from the nearest class mean's."""
    nearest = torch.cdist(h.to(torch.float64), means.to(torch.float64)).argmin(dim=1)
    return float((nearest != logits.argmax(dim=1)).double().mean())


@dataclass(frozen=True)
class DeepLinearGeometry:
    """Dang et al.'s closed form for imbalanced bias-free MSE with M linear layers.

    ``x``/``s``: per-class roots and singular values (0 for a collapsed class); the three
    ``*_diag`` are the predicted diagonals (up to scale) of ``WWᵀ``, ``H̄ᵀH̄`` and ``WH̄`` with
    ``W = W_M⋯W_1`` (K, d) and ``H̄`` (d, K) the uncentred class means of the free features.
    """

    x: np.ndarray
    s: np.ndarray
    ww_diag: np.ndarray
    hh_diag: np.ndarray
    wh_diag: np.ndarray


def _largest_positive_root(coeffs: np.ndarray) -> float:
    roots = np.roots(coeffs)
    real = roots[np.abs(roots.imag) <= 1e-9 * np.maximum(1.0, np.abs(roots.real))].real
    positive = real[real > 0]
    return float(positive.max()) if positive.size else 0.0


def deep_linear_geometry(
    counts: list[int], depth: int, lam_w: float, lam_h: float
) -> DeepLinearGeometry:
    """The closed-form geometry for class sizes ``counts`` and ``depth`` = M linear layers.

    ``b = M·N·(N λ_W^M λ_H)^{1/M}``; ``x_k`` the largest positive root of
    ``(b/n_k)(x^M + 1)² − M x^{M−1}`` (0 if none); ``s_k = (N λ_H x_k^M)^{1/(2M)}``.
    """
    if depth < 1 or not counts or min(counts) < 1 or lam_w <= 0 or lam_h <= 0:
        raise ValueError("need depth >= 1, class counts >= 1 and positive weight decays")
    m, n = depth, float(sum(counts))
    b = m * n * (n * lam_w**m * lam_h) ** (1.0 / m)
    xs = []
    for nk in counts:
        # (b/n_k)(x^M + 1)^2 - M x^(M-1), highest power first
        poly = np.zeros(2 * m + 1)
        poly[0] += b / nk
        poly[m] += 2 * b / nk
        poly[2 * m] += b / nk
        poly[m + 1] -= m
        xs.append(_largest_positive_root(poly))
    x = np.asarray(xs)
    s = (n * lam_h * x**m) ** (1.0 / (2 * m))
    s2m = s ** (2 * m)
    return DeepLinearGeometry(
        x=x,
        s=s,
        ww_diag=s2m,
        hh_diag=s2m / (s2m + n * lam_h) ** 2,
        wh_diag=s2m / (s2m + n * lam_h),
    )
