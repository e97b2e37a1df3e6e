"""Directions in a network's activations: difference-in-means, linear probes per layer,
projection / ablation / steering along a direction, and the overlap of subspaces.

The measurement side of Winninger, Addad & Kapusta, "Using Mechanistic Interpretability to Craft
Adversarial Attacks against Large Language Models" (arXiv 2503.06269) and of the refusal direction
of Arditi et al. (arXiv 2406.11717):

* r^l = mean_{X+} R^l - mean_{X-} R^l and r̂ = r / ‖r‖ (:func:`diff_in_means`);
* a logistic probe p_l(e) = σ(w_lᵀe + b_l) per layer, fitted with BCE and Adam on full batches,
  every layer at once (:func:`fit_probes`), its held-out accuracy (:func:`probe_accuracy`);
* steering e ← e + a r̂ r̂ᵀ e (:func:`steer`; a = -1 is directional ablation, :func:`ablate`);
* cosines between directions and the overlap of two subspaces (:func:`cosine_matrix`,
  :func:`subspace_overlap`).

Arrays are torch tensors; a leading layer axis is optional everywhere (``(n, d)`` or
``(L, n, d)``). No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def _unit(v: Tensor, eps: float = 1e-12) -> Tensor:
    """``v / ‖v‖`` along the last axis; a zero vector stays zero (no direction to speak of)."""
    norm = v.norm(dim=-1, keepdim=True)
    return torch.where(norm > eps, v / norm.clamp_min(eps), torch.zeros_like(v))


def diff_in_means(pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
    """The difference of the class means ``r`` (``(..., d)``) and its unit vector ``r̂``.

    ``pos`` and ``neg`` are ``(n, d)`` or ``(L, n, d)`` (the sample axis is the second to last);
    where the means coincide, ``r̂`` is the zero vector."""
    if pos.shape[:-2] != neg.shape[:-2] or pos.shape[-1] != neg.shape[-1]:
        raise ValueError(f"pos {tuple(pos.shape)} and neg {tuple(neg.shape)} do not match")
    if pos.shape[-2] == 0 or neg.shape[-2] == 0:
        raise ValueError("each class needs at least one sample")
    r = pos.mean(dim=-2) - neg.mean(dim=-2)
    return r, _unit(r)


def project(x: Tensor, direction: Tensor) -> Tensor:
    """The component of ``x`` (``(..., n, d)``) along the unit vector of ``direction``
    (``(..., d)``): ``(xᵀû) û``."""
    u = _unit(direction).unsqueeze(-2)
    return (x * u).sum(-1, keepdim=True) * u


def steer(x: Tensor, direction: Tensor, a: float) -> Tensor:
    """``x + a û ûᵀ x``: a = -1 removes the component along ``direction`` (ablation), a = -2
    reflects it, a = 0 leaves ``x`` as it is."""
    return x + a * project(x, direction)


def ablate(x: Tensor, direction: Tensor) -> Tensor:
    """Directional ablation: ``x - û ûᵀ x`` (:func:`steer` with a = -1)."""
    return steer(x, direction, -1.0)


def cosine(a: Tensor, b: Tensor) -> Tensor:
    """Cosine between ``a`` and ``b`` along the last axis (0 where either is zero)."""
    return (_unit(a) * _unit(b)).sum(-1)


def cosine_matrix(directions: Tensor) -> Tensor:
    """Pairwise cosines ``(k, k)`` of the rows of ``directions`` (``(k, d)``): the cross-layer
    stability of a direction."""
    u = _unit(directions)
    return u @ u.T


def subspace_overlap(a: Tensor, b: Tensor) -> float:
    """Mean squared cosine of the principal angles between span(a) and span(b) (columns,
    ``(d, k_a)`` and ``(d, k_b)``): ‖Q_aᵀQ_b‖_F² / min(k_a, k_b), 1 when one span contains the
    other, 0 when they are orthogonal."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"subspaces of different ambient dimensions: {a.shape[0]} vs {b.shape[0]}")
    qa, _ = torch.linalg.qr(a.double())
    qb, _ = torch.linalg.qr(b.double())
    return float((qa.T @ qb).pow(2).sum() / min(qa.shape[1], qb.shape[1]))


@dataclass(frozen=True)
class Probes:
    """Logistic probes, one per layer: weights ``(L, d)``, biases ``(L,)``."""

    weight: Tensor
    bias: Tensor

    def logits(self, x: Tensor) -> Tensor:
        """``wᵀe + b`` per layer and sample: ``x`` is ``(L, n, d)``, the result ``(L, n)``."""
        return torch.einsum("lnd,ld->ln", x, self.weight) + self.bias[:, None]


def fit_probes(
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    lr: float,
    generator: torch.Generator | None = None,
) -> Probes:
    """One logistic probe per layer of ``x`` (``(L, n, d)``) on labels ``y`` (``(n,)``, 0/1):
    BCE, Adam, ``epochs`` full-batch steps, every layer at once (the layers share nothing: each
    probe ends where its own fit would). Initialised as ``nn.Linear(d, 1)`` is (uniform in
    ±1/√d, drawn from ``generator``)."""
    if x.ndim != 3 or y.shape != (x.shape[1],):
        raise ValueError(f"x must be (L, n, d) and y (n,): got {tuple(x.shape)}, {tuple(y.shape)}")
    if epochs < 1 or lr <= 0:
        raise ValueError(f"epochs >= 1 and lr > 0 needed: got {epochs}, {lr}")
    n_layers, _, d = x.shape
    bound = 1.0 / d**0.5
    x = x.detach().float()
    yf = y.detach().float().expand(n_layers, -1)
    w = (torch.rand(n_layers, d, generator=generator) * 2 - 1) * bound
    b = (torch.rand(n_layers, generator=generator) * 2 - 1) * bound
    w.requires_grad_(True)
    b.requires_grad_(True)
    opt = torch.optim.Adam([w, b], lr=lr)
    with torch.enable_grad():
        for _ in range(epochs):
            opt.zero_grad()
            logits = torch.einsum("lnd,ld->ln", x, w) + b[:, None]
            # per-layer means summed: each layer's gradient is its own probe's
            loss = (
                torch.nn.functional.binary_cross_entropy_with_logits(logits, yf, reduction="none")
                .mean(dim=1)
                .sum()
            )
            loss.backward()
            opt.step()
    return Probes(w.detach(), b.detach())


def probe_accuracy(probes: Probes, x: Tensor, y: Tensor) -> Tensor:
    """Accuracy ``(L,)`` of each layer's probe on ``x`` (``(L, n, d)``), labels ``y``
    (``(n,)``, 0/1), the decision at logit 0."""
    pred = (probes.logits(x.float()) > 0).long()
    return (pred == y.long()[None, :]).float().mean(dim=1)
