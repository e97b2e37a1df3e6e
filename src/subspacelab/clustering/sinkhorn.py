"""Sinkhorn projection onto doubly stochastic matrices (entropic OT, uniform marginals).

Used by MLC (Ding et al., ICCV 2023, arXiv:2301.01805) for its membership Γ = n·Sinkhorn_η(A).
"""

from __future__ import annotations

import torch
from torch import Tensor

MAX_LOG_RANGE = 60.0  # exp(-60) is far from float32 underflow, so the kernel is exact enough


def sinkhorn(
    affinity: Tensor, eta: float, iters: int, tol: float = 1e-6, max_iters: int = 1000
) -> Tensor:
    """P ≥ 0 with rows and columns summing to 1/n: the entropic projection of ``affinity`` (n×n)
    at temperature ``eta``, P = diag(u) exp(A/η − max) diag(v).

    The scalings are first iterated without gradient tracking until the column sums are within
    ``tol`` (relative) of 1/n, at most ``max_iters`` alternating updates; then ``iters`` further
    alternating updates run with gradients from there (the unrolled approximation of the
    projection's implicit gradient; at the fixed point they leave P unchanged). The last update
    normalises the rows, as MLC's reference Sinkhorn (CPP, ``model/sink_distance.py``) does, so
    rows are exact and columns within ``tol`` once converged; if ``max_iters`` is reached first P
    is returned as it is (check its marginals). Multiply by n for MLC's Γ.

    The kernel exp(A/η − max A/η) is formed once and each update is a matrix-vector product,
    which needs the affinity's range to stay within ``MAX_LOG_RANGE``·η (MLC's |CCᵀ| ∈ [0, 1]
    at η = 0.175 spans 5.7).
    """
    if affinity.ndim != 2 or affinity.shape[0] != affinity.shape[1]:
        raise ValueError(f"affinity must be square, got {tuple(affinity.shape)}")
    if eta <= 0 or iters < 1 or tol <= 0 or max_iters < 1:
        raise ValueError("need eta > 0, iters >= 1, tol > 0 and max_iters >= 1")
    n = affinity.shape[0]
    log_k = affinity / eta
    top = log_k.detach().max()
    if float(top - log_k.detach().min()) > MAX_LOG_RANGE:
        raise ValueError(
            f"affinity spans more than {MAX_LOG_RANGE:g}·eta; the kernel would underflow"
        )
    kernel = torch.exp(log_k - top)
    marg = 1.0 / n
    with torch.no_grad():
        k = kernel.detach()
        v = torch.ones(n, dtype=k.dtype, device=k.device)
        u = marg / (k @ v)
        for _ in range(max_iters):
            cols = v * (k.T @ u)  # rows are exact after the row update
            if float((cols / marg - 1.0).abs().max()) <= tol:
                break
            v = marg / (k.T @ u)
            u = marg / (k @ v)
    for _ in range(iters):
        v = marg / (kernel.T @ u)
        u = marg / (kernel @ v)
    return u[:, None] * kernel * v[None, :]
