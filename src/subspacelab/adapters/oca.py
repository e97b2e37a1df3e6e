"""OCA: an orthogonal transformation layer for backward-compatible representations.

Ricci, Biondi, Pernici, Del Bimbo, "Backward-Compatible Aligned Representations via an Orthogonal
Transformation Layer", ECCV 2024 workshops, arXiv:2408.08793. The new backbone outputs an
L2-normalised ``h ∈ R^{d_old + a}``; a learnable orthogonal ``Q`` (torch's orthogonal
parametrisation of a Linear layer, bias kept as in the official code) sits between ``h`` and the
classifier, and the first ``d_old`` dims of ``h`` (re-normalised) are pulled towards fixed old
prototypes. BCT (Shen et al., CVPR 2020, arXiv:2003.11942) uses the old prototypes as an
influence classifier on the whole (old-sized) embedding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrizations


class OrthogonalLayer(nn.Module):
    """``x ↦ Q x + b`` with ``Q ∈ O(dim)`` kept orthogonal by parametrisation."""

    def __init__(self, dim: int, bias: bool = True) -> None:
        super().__init__()
        self.linear = parametrizations.orthogonal(nn.Linear(dim, dim, bias=bias))

    @property
    def q(self) -> Tensor:
        """The current orthogonal matrix."""
        return self.linear.weight

    def orthogonality_error(self) -> float:
        """``‖QᵀQ − I‖_F`` in float64."""
        q = self.q.detach().double()
        return float((q.T @ q - torch.eye(q.shape[0], dtype=torch.float64)).norm())

    def forward(self, x: Tensor) -> Tensor:
        """``Q x + b``."""
        return self.linear(x)


def compat_part(h: Tensor, d_old: int) -> Tensor:
    """The first ``d_old`` dims of ``h``, re-normalised."""
    return F.normalize(h[:, :d_old], dim=1)


def oca_loss(
    class_logits: Tensor,
    h: Tensor,
    prototypes: Tensor,
    y: Tensor,
    weights: tuple[float, float, float] = (5.0, 10.0, 5.0),
    label_smoothing: float = 0.1,
) -> Tensor:
    """``w₁ CE(W_c Q h, y) + w₂ CE(P h_c, y) + w₃ (1 − cos(h_c, P_y))``.

    ``prototypes`` (C × d_old): the old model's class means, raw dot products as logits.
    """
    hc = compat_part(h, prototypes.shape[1])
    ce = F.cross_entropy(class_logits, y, label_smoothing=label_smoothing)
    influence = F.cross_entropy(hc @ prototypes.T, y, label_smoothing=label_smoothing)
    align = (1 - F.cosine_similarity(hc, prototypes[y], dim=1)).mean()
    return weights[0] * ce + weights[1] * influence + weights[2] * align


def bct_loss(
    class_logits: Tensor,
    h: Tensor,
    prototypes: Tensor,
    y: Tensor,
    weights: tuple[float, float] = (5.0, 10.0),
    label_smoothing: float = 0.1,
) -> Tensor:
    """BCT: ``w₁ CE(W h, y) + w₂ CE(P h, y)`` with the old prototypes as influence classifier."""
    ce = F.cross_entropy(class_logits, y, label_smoothing=label_smoothing)
    influence = F.cross_entropy(h @ prototypes.T, y, label_smoothing=label_smoothing)
    return weights[0] * ce + weights[1] * influence
