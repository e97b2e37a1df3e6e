"""Pruning methods for the robustness-lottery comparison (Li et al., arXiv:2206.07918).

Magnitude masks (one-shot and the gradual cubic schedule of Zhu & Gupta 2017), lottery-ticket
rewinding (Frankle & Carbin 2019: reuse a trained net's mask on its early weights), and
edge-popup supermasks on frozen random weights (Ramanujan et al. 2020: top-k scores with a
straight-through gradient).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def prunable(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weight matrices/kernels of Linear and Conv layers (biases are never pruned)."""
    return {
        f"{name}.weight": mod.weight
        for name, mod in model.named_modules()
        if isinstance(mod, nn.Linear | nn.Conv1d | nn.Conv2d)
    }


def magnitude_masks(weights: dict[str, Tensor], sparsity: float) -> dict[str, Tensor]:
    """Global magnitude pruning: keep the ``1 − sparsity`` largest |w| over all layers."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity: got {sparsity}; allowed: 0 <= sparsity < 1")
    flat = torch.cat([w.detach().abs().reshape(-1) for w in weights.values()])
    n_prune = round(sparsity * flat.numel())
    if n_prune == 0:
        return {k: torch.ones_like(w, dtype=torch.bool) for k, w in weights.items()}
    threshold = torch.kthvalue(flat, n_prune).values
    return {k: w.detach().abs() > threshold for k, w in weights.items()}


def apply_masks(model: nn.Module, masks: dict[str, Tensor]) -> None:
    """Zero the masked weights in place."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask.to(params[name].dtype))


def mask_gradients(model: nn.Module, masks: dict[str, Tensor]) -> None:
    """Zero the gradients of pruned weights (call between backward and step)."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        if params[name].grad is not None:
            params[name].grad.mul_(mask.to(params[name].dtype))


def sparsity_of(masks: dict[str, Tensor]) -> float:
    """Fraction of pruned weights."""
    total = sum(m.numel() for m in masks.values())
    return 1.0 - sum(int(m.sum()) for m in masks.values()) / total


def gradual_sparsity(step: int, total: int, final: float, initial: float = 0.0) -> float:
    """Zhu & Gupta's cubic schedule ``s_f + (s_i − s_f)(1 − t/T)³`` for ``t`` in [0, T]."""
    t = min(max(step, 0), total) / total
    return final + (initial - final) * (1.0 - t) ** 3


class _TopK(torch.autograd.Function):
    """Binary mask of the top ``keep`` fraction of scores; straight-through gradient."""

    @staticmethod
    def forward(ctx: object, scores: Tensor, keep: float) -> Tensor:
        k = max(1, round(keep * scores.numel()))
        idx = torch.topk(scores.reshape(-1), k).indices
        mask = torch.zeros(scores.numel(), dtype=scores.dtype)
        mask[idx] = 1.0
        return mask.reshape(scores.shape)

    @staticmethod
    def backward(ctx: object, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def topk_mask(scores: Tensor, keep: float) -> Tensor:
    """Edge-popup's mask: 1 on the top ``keep`` fraction of ``scores``, gradients pass through."""
    return _TopK.apply(scores, keep)


class EdgePopup(nn.Module):
    """Wraps a Linear/Conv layer: its weights are frozen at init, a score per weight is learned
    and only the top-``keep`` scored weights are used (a supermask on random weights)."""

    def __init__(self, layer: nn.Linear | nn.Conv1d, keep: float) -> None:
        super().__init__()
        self.layer = layer
        self.keep = keep
        layer.weight.requires_grad_(False)
        if layer.bias is not None:
            layer.bias.requires_grad_(False)
        self.scores = nn.Parameter(layer.weight.detach().abs().clone())

    def mask(self) -> Tensor:
        """The current binary mask over the layer's weights."""
        return topk_mask(self.scores, self.keep)

    def forward(self, x: Tensor) -> Tensor:
        """The layer with masked weights."""
        w = self.layer.weight * self.mask()
        if isinstance(self.layer, nn.Conv1d):
            return nn.functional.conv1d(
                x, w, self.layer.bias, self.layer.stride, self.layer.padding
            )
        return nn.functional.linear(x, w, self.layer.bias)
