"""MCR² coding rates: R(Z) and the membership-weighted R_c(Z, Γ) of MLC, and MLC's schedule.

Ding, Tong, Chan, Dai, Ma & Haeffele, "Unsupervised Manifold Linearizing and Clustering",
ICCV 2023, arXiv:2301.01805 (coding rates after Yu et al., NeurIPS 2020, arXiv:2006.08558).
Features are rows here: Z is n×d (the paper writes its transpose).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor


def coding_rate(z: Tensor, eps2: float) -> Tensor:
    """R(Z) = ½ logdet(I + d/(n ε²) ZᵀZ) for n samples of dimension d (rows of ``z``)."""
    n, d = z.shape
    eye = torch.eye(d, dtype=z.dtype, device=z.device)
    return 0.5 * torch.linalg.slogdet(eye + (d / (n * eps2)) * z.T @ z)[1]


def membership_coding_rate(z: Tensor, gamma: Tensor, eps2: float) -> Tensor:
    """R_c(Z, Γ) = Σ_j tr(Γ_j)/(2n) · logdet(I + d/(tr(Γ_j) ε²) Zᵀ diag(Γ_j) Z), Γ_j row j.

    ``gamma`` is n_groups×n (rows are soft memberships; a one-hot partition gives the classic
    MCR² compression term). tr(Γ_j) gets +1e-8 so an empty row does not divide by zero.
    """
    n, d = z.shape
    if gamma.ndim != 2 or gamma.shape[1] != n:
        raise ValueError(f"gamma must have {n} columns, got {tuple(gamma.shape)}")
    tr = gamma.sum(dim=1) + 1e-8
    # Zᵀ diag(Γ_j) Z = Σ_i Γ_ji z_i z_iᵀ for every j at once: one GEMM of Γ with the flattened
    # outer products (no n×n×d intermediate, ~3x cheaper forward + backward)
    outer = (z[:, :, None] * z[:, None, :]).reshape(n, d * d)
    cov = (gamma @ outer).reshape(-1, d, d)
    eye = torch.eye(d, dtype=z.dtype, device=z.device)
    logdets = torch.linalg.slogdet(eye + (d / (tr * eps2))[:, None, None] * cov)[1]
    return torch.sum(tr / (2 * n) * logdets)


def mlc_loss(z: Tensor, gamma: Tensor, eps2: float, frob: float) -> tuple[Tensor, dict[str, float]]:
    """MLC objective −R(Z) + R_c(Z, Γ) + (γ/2)‖Γ‖²_F and its terms (γ = ``frob``).

    As in the paper and its reference code (CPP's ``loss_reg = pigam·0.5·‖Π‖²``), the Frobenius
    term is not normalised by the batch: for a doubly stochastic Γ with unit rows ‖Γ‖²_F runs
    from 1 (uniform) to n (Γ = I), so the regulariser's pull against the trivial Γ = I grows with
    the batch size n.
    """
    r = coding_rate(z, eps2)
    rc = membership_coding_rate(z, gamma, eps2)
    reg = 0.5 * frob * gamma.pow(2).sum()
    loss = -r + rc + reg
    return loss, {"R": float(r.detach()), "Rc": float(rc.detach()), "reg": float(reg.detach())}


@dataclass(frozen=True)
class MLCSchedule:
    """Optimisation settings of MLC's TCR warm-up and of MLC itself (arXiv:2301.01805, §4)."""

    warmup_steps: int
    steps: int
    batch: int
    eps2: float
    eta: float
    sinkhorn_iters: int
    sinkhorn_tol: float
    sinkhorn_max_iters: int
    gamma: float
    inv_weight: float
    lr: float
    lr_cluster: float
    momentum: float
    wd: float
    wd_cluster: float
    shift: int
    noise: float

    @classmethod
    def of(cls, settings: object) -> MLCSchedule:
        """The schedule read from a config section that has all of its fields by name (a
        study's ``train`` section)."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})
