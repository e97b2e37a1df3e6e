"""Log-domain Sinkhorn projection onto doubly stochastic matrices (entropic OT, uniform marginals).

Used by MLC (Ding et al., ICCV 2023, arXiv:2301.01805) for its membership Γ = n·Sinkhorn_η(A).
"""

from __future__ import annotations

import torch
from torch import Tensor


def sinkhorn(affinity: Tensor, eta: float, iters: int) -> Tensor:
    """P ≥ 0 with rows and columns summing to 1/n approximately: the entropic projection of
    ``affinity`` (n×n) at temperature ``eta`` after ``iters`` alternating log-domain normalisations.

    The last update normalises the columns, so columns are exact and rows converge with ``iters``.
    Multiply by n for MLC's Γ (rows and columns summing to 1).
    """
    if affinity.ndim != 2 or affinity.shape[0] != affinity.shape[1]:
        raise ValueError(f"affinity must be square, got {tuple(affinity.shape)}")
    if eta <= 0 or iters < 1:
        raise ValueError("eta must be > 0 and iters >= 1")
    n = affinity.shape[0]
    log_marg = -torch.log(torch.tensor(float(n), dtype=affinity.dtype, device=affinity.device))
    log_p = affinity / eta
    for _ in range(iters):
        log_p = log_p - torch.logsumexp(log_p, dim=1, keepdim=True) + log_marg
        log_p = log_p - torch.logsumexp(log_p, dim=0, keepdim=True) + log_marg
    return torch.exp(log_p)
