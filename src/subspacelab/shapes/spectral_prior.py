"""Priors over functional maps: DiffuMatch's spectral diffusion prior and the axiomatic
regularisers it replaces (Pierson, Li, Dai, Ovsjanikov, ICCV 2025, arXiv 2507.23715).

Conventions follow :mod:`subspacelab.shapes.fmaps`: C (k×k) maps spectral coefficients of
functions on X to those on Y, Φ_Y C ≈ Π Φ_X for the point map T: Y → X (Π its permutation),
and eigenvectors are M-orthonormal.

* :func:`gt_fmap` — the ground-truth map of a known T, C = Φ_Yᵀ M_Y Φ_X[T].
* :func:`solve_fmap` — the regularised least-squares solver of the DUO-FMNet / ULRSSM line
  (min ‖C A − B‖² + λ Σ_ij mask_ij C_ij², the resolvent Laplacian mask), differentiable.
* :func:`zoomout` — ZoomOut spectral upsampling (Melzi et al. 2019), the "proper" map target.
* :func:`axiomatic_losses` — orthogonality, bijectivity and Laplacian commutativity.
* :class:`Denoiser`, :func:`vp_loss`, :func:`sds_loss` — an EDM denoiser D(x; σ) over |C| as a
  k×k "image" with the VP preconditioning and loss (Karras et al. 2022), and the score
  distillation loss that uses it as a regulariser: |C| is pulled toward the mean denoised
  value of 32 noisy copies of itself.
* :class:`FeatureNet` — a tiny DiffusionNet-like per-vertex network: an MLP on XYZ and rounds
  of spectral heat diffusion with learned per-channel times.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn


def gt_fmap(
    phi_x: np.ndarray, phi_y: np.ndarray, mass_y: sp.spmatrix, p2p: np.ndarray | None = None
) -> np.ndarray:
    """C (k_y, k_x) of the point map T: Y → X given as indices into X (``None``: the identity,
    shared connectivity): C = Φ_Yᵀ M_Y Φ_X[T]."""
    if p2p is None:
        if phi_x.shape[0] != phi_y.shape[0]:
            raise ValueError("the identity map needs shapes with the same number of vertices")
        p2p = np.arange(phi_y.shape[0])
    return phi_y.T @ (mass_y @ phi_x[p2p])


def resolvent_mask(evals_x: Tensor, evals_y: Tensor, gamma: float = 0.5) -> Tensor:
    """The resolvent Laplacian-commutativity mask (k_y, k_x) of Ren et al. 2019: zero where
    the (jointly rescaled) eigenvalues agree, growing as they part."""
    scale = torch.maximum(evals_x.max(), evals_y.max())
    ex, ey = (evals_x / scale) ** gamma, (evals_y / scale) ** gamma
    re = ey[:, None] / (ey[:, None] ** 2 + 1) - ex[None, :] / (ex[None, :] ** 2 + 1)
    im = 1 / (ey[:, None] ** 2 + 1) - 1 / (ex[None, :] ** 2 + 1)
    return re**2 + im**2


def solve_fmap(a: Tensor, b: Tensor, evals_x: Tensor, evals_y: Tensor, lam: float) -> Tensor:
    """argmin_C ‖C a − b‖² + λ Σ_ij mask_ij C_ij² for spectral descriptors a (k, q) of X and
    b (k, q) of Y, row by row in closed form: (a aᵀ + λ diag(mask_i)) c_i = a b_iᵀ."""
    if a.shape != b.shape:
        raise ValueError(
            f"descriptors must have equal shapes, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    mask = resolvent_mask(evals_x, evals_y)
    system = (a @ a.T)[None] + lam * torch.diag_embed(mask)
    return torch.linalg.solve(system, (b @ a.T)[..., None])[..., 0]


def nearest_map(c: Tensor, phi_x: Tensor, phi_y: Tensor) -> Tensor:
    """T: Y → X (indices into X): each row of Φ_Y's nearest row of Φ_X Cᵀ (brute force,
    argmax of 2⟨y, x⟩ − |x|²)."""
    emb = phi_x @ c.T
    return (2 * phi_y @ emb.T - (emb**2).sum(dim=1)[None]).argmax(dim=1)


def zoomout(
    c: Tensor,
    phi_x: Tensor,
    phi_y: Tensor,
    mass_y: Tensor,
    k_end: int,
    step: int = 1,
    sub_y: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """ZoomOut from C (k, k) up to k_end eigenfunctions in increments of ``step``: alternate
    the point map T of the current C and C = Φ_Yᵀ M_Y Φ_X[T] one size up. Returns the final
    (k_end, k_end) map and its point map (all of Y into X). ``mass_y`` is the lumped mass as a
    vector. With ``sub_y`` (a vertex subset of Y, as pyFM's ``subsample`` but on Y only) the
    iterations map only sub_y's vertices (onto all of X) and fit C by least squares on them;
    the returned point map is then sub_y's."""
    k = c.shape[0]
    if not k <= k_end <= min(phi_x.shape[1], phi_y.shape[1]) or step < 1:
        raise ValueError(f"need k ({k}) <= k_end ({k_end}) <= the bases' size, and step >= 1")
    c = c.detach()
    py = phi_y if sub_y is None else phi_y[sub_y]
    while True:
        p2p = nearest_map(c, phi_x[:, :k], py[:, :k])
        if k == k_end:
            return c, p2p
        k = min(k + step, k_end)
        if sub_y is None:
            c = py[:, :k].T @ (mass_y[:, None] * phi_x[p2p, :k])
        else:
            c = torch.linalg.lstsq(py[:, :k], phi_x[p2p, :k]).solution


def farthest_points(points: Tensor, n: int) -> Tensor:
    """Indices of ``n`` points by farthest-point sampling from point 0 (deterministic)."""
    if not 1 <= n <= len(points):
        raise ValueError(f"n must be in [1, {len(points)}], got {n}")
    chosen = [0]
    dist = ((points - points[0]) ** 2).sum(dim=1)
    for _ in range(n - 1):
        nxt = int(dist.argmax())
        chosen.append(nxt)
        dist = torch.minimum(dist, ((points - points[nxt]) ** 2).sum(dim=1))
    return torch.tensor(chosen)


def axiomatic_losses(
    c12: Tensor, c21: Tensor, evals_x: Tensor, evals_y: Tensor
) -> dict[str, Tensor]:
    """Mean squared residuals of orthogonality (CᵀC = I), bijectivity (C₁₂C₂₁ = I, both ways)
    and Laplacian commutativity (C Λ_X = Λ_Y C, eigenvalues divided by the larger maximum)."""
    eye = torch.eye(c12.shape[0], dtype=c12.dtype)
    scale = torch.maximum(evals_x.max(), evals_y.max())
    ex, ey = evals_x / scale, evals_y / scale
    return {
        "ortho": ((c12.T @ c12 - eye) ** 2).mean() + ((c21.T @ c21 - eye) ** 2).mean(),
        "bij": ((c12 @ c21 - eye) ** 2).mean() + ((c21 @ c12 - eye) ** 2).mean(),
        "lap": ((c12 * ex[None] - ey[:, None] * c12) ** 2).mean()
        + ((c21 * ey[None] - ex[:, None] * c21) ** 2).mean(),
    }


def vp_sigma(t: Tensor, beta_d: float, beta_min: float) -> Tensor:
    """EDM's VP noise level σ(t) = sqrt(exp(β_d t²/2 + β_min t) − 1)."""
    return ((0.5 * beta_d * t**2 + beta_min * t).exp() - 1).sqrt()


class Denoiser(nn.Module):
    """D(x; σ) on k×k images with EDM's VP preconditioning: D = x − σ F(x/√(σ²+1), c_noise),
    c_noise = (M − 1) t(σ); F an MLP on the flattened image and a sinusoidal noise embedding
    (the spec's "small denoiser" standing in for DiT-S/4)."""

    def __init__(
        self, k: int, width: int, depth: int, beta_d: float = 19.9, beta_min: float = 0.1,
        m_steps: int = 1000, embed: int = 32,
    ) -> None:  # fmt: skip
        super().__init__()
        if k < 1 or width < 1 or depth < 1 or embed % 2:
            raise ValueError("need k, width, depth >= 1 and an even embed")
        self.k, self.beta_d, self.beta_min, self.m_steps, self.embed = (
            k,
            beta_d,
            beta_min,
            m_steps,
            embed,
        )
        layers: list[nn.Module] = []
        dim = k * k + embed
        for _ in range(depth):
            layers += [nn.Linear(dim, width), nn.SiLU()]
            dim = width
        layers.append(nn.Linear(dim, k * k))
        self.net = nn.Sequential(*layers)

    def sigma_to_t(self, sigma: Tensor) -> Tensor:
        """The inverse of :func:`vp_sigma`."""
        b, d = self.beta_min, self.beta_d
        return ((b**2 + 2 * d * (1 + sigma**2).log()).sqrt() - b) / d

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        """Denoised images (n, k, k) from noisy ``x`` (n, k, k) at noise levels ``sigma`` (n,)."""
        c_noise = (self.m_steps - 1) * self.sigma_to_t(sigma)
        freqs = torch.exp(
            -math.log(10000.0) * torch.arange(self.embed // 2, dtype=x.dtype) / (self.embed // 2)
        )
        ang = c_noise[:, None] * freqs[None]
        emb = torch.cat([ang.cos(), ang.sin()], dim=1)
        c_in = 1 / (sigma**2 + 1).sqrt()
        f = self.net(torch.cat([c_in[:, None] * x.flatten(1), emb], dim=1))
        return x - sigma[:, None, None] * f.view_as(x)


def vp_loss(den: Denoiser, y: Tensor, eps_t: float = 1e-5) -> Tensor:
    """EDM's VP loss on clean images y (n, k, k): t ~ U(ε_t, 1), σ = σ(t), weight 1/σ²."""
    t = eps_t + (1 - eps_t) * torch.rand(y.shape[0], dtype=y.dtype)
    sigma = vp_sigma(t, den.beta_d, den.beta_min)
    noisy = y + sigma[:, None, None] * torch.randn_like(y)
    return ((den(noisy, sigma) - y) ** 2 / sigma[:, None, None] ** 2).mean()


def sds_loss(den: Denoiser, c: Tensor, draws: int, scale: float, sigma_min: float = 0.01) -> Tensor:
    """Score distillation on |C|: σ_j = σ_min + U(0, 1)·scale, target = mean_j D(|C| + σ_j ε_j;
    σ_j) (no gradient), loss = mean (|C| − target)²."""
    x0 = c.abs()
    with torch.no_grad():
        sigma = sigma_min + scale * torch.rand(draws, dtype=c.dtype)
        noisy = x0[None] + sigma[:, None, None] * torch.randn((draws, *c.shape), dtype=c.dtype)
        target = den(noisy, sigma).mean(dim=0)
    return ((x0 - target) ** 2).mean()


class FeatureNet(nn.Module):
    """Per-vertex features from XYZ: a linear lift, ``rounds`` residual blocks of [spectral heat
    diffusion h ↦ Φ e^{−Λt} Φᵀ M h with a learned time per channel, then an MLP on (h,
    diffused h)], and a linear head (DiffusionNet without its gradient features)."""

    def __init__(self, in_dim: int, width: int, out_dim: int, rounds: int) -> None:
        super().__init__()
        if min(in_dim, width, out_dim, rounds) < 1:
            raise ValueError("in_dim, width, out_dim and rounds must be >= 1")
        self.lift = nn.Linear(in_dim, width)
        self.times = nn.Parameter(torch.full((rounds, width), 1e-3))
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * width, width), nn.SiLU(), nn.Linear(width, width))
            for _ in range(rounds)
        )
        self.head = nn.Linear(width, out_dim)

    def forward(self, x: Tensor, phi: Tensor, evals: Tensor, mass: Tensor) -> Tensor:
        """Features (n, out_dim) of vertices x (n, in_dim) on a shape with basis phi (n, K),
        eigenvalues (K,) and lumped mass (n,)."""
        h = self.lift(x)
        for times, block in zip(self.times, self.blocks, strict=True):
            spec = phi.T @ (mass[:, None] * h)
            diffused = phi @ (torch.exp(-evals[:, None] * times.clamp(min=1e-8)[None]) * spec)
            h = h + block(torch.cat([h, diffused], dim=1))
        return self.head(h)
