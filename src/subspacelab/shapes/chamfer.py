"""The symmetric Chamfer distance between point clouds, batched (issue 18's toolkit)."""

from __future__ import annotations

import torch
from torch import Tensor


def chamfer(a: Tensor, b: Tensor) -> Tensor:
    """(batch,) mean squared distance from each point of ``a`` (batch, n, d) to its nearest in
    ``b`` (batch, m, d), plus the same from ``b`` to ``a``."""
    if a.dim() != 3 or b.dim() != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[2]:
        raise ValueError(f"chamfer needs (batch, n, d) and (batch, m, d), got {a.shape}, {b.shape}")
    d = torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist").pow(2)  # exact
    return d.min(dim=2).values.mean(dim=1) + d.min(dim=1).values.mean(dim=1)
