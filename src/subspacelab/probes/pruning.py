"""Pruning methods for the robustness-lottery comparison (Li et al., arXiv:2206.07918).

Magnitude masks (one-shot and the gradual cubic schedule of Zhu & Gupta 2017), lottery-ticket
rewinding (Frankle & Carbin 2019: reuse a trained net's mask on its early weights), and
edge-popup supermasks on frozen random weights (Ramanujan et al. 2020, arXiv:1911.13299: top-k
scores with a straight-through gradient, on scaled signed-constant weights).
"""

from __future__ import annotations

import math

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
            params[name].mul_(mask.to(params[name].device, params[name].dtype))


def mask_gradients(model: nn.Module, masks: dict[str, Tensor]) -> None:
    """Zero the gradients of pruned weights (call between backward and step)."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        if params[name].grad is not None:
            params[name].grad.mul_(mask.to(params[name].device, params[name].dtype))


def sparsity_of(masks: dict[str, Tensor]) -> float:
    """Fraction of pruned weights."""
    total = sum(m.numel() for m in masks.values())
    return 1.0 - sum(int(m.sum()) for m in masks.values()) / total


def gradual_sparsity(step: int, total: int, final: float, initial: float = 0.0) -> float:
    """Zhu & Gupta's cubic schedule ``s_f + (s_i − s_f)(1 − t/T)³`` for ``t`` in [0, T]."""
    t = min(max(step, 0), total) / total
    return final + (initial - final) * (1.0 - t) ** 3


class MaskHold:
    """``after_step`` hook holding fixed masks: zero the pruned weights after every step."""

    def __init__(self, masks: dict[str, Tensor]) -> None:
        self.masks = masks

    def __call__(self, model: nn.Module) -> None:
        """Re-apply the masks."""
        apply_masks(model, self.masks)


class GradualMagnitude:
    """``after_step`` hook of gradual magnitude pruning (Zhu & Gupta 2017): global magnitude
    masks recomputed at the start of every epoch at the cubic schedule's sparsity for that
    epoch, and held (re-applied) after every optimiser step.

    Call :meth:`start` on the model before training (epoch 1's masks), then pass the object as
    the hook; ``steps_per_epoch`` tells it where epochs end.
    """

    def __init__(self, steps_per_epoch: int, epochs: int, final: float) -> None:
        if steps_per_epoch < 1 or epochs < 1:
            raise ValueError(f"need steps_per_epoch, epochs >= 1, got {steps_per_epoch}, {epochs}")
        self.steps_per_epoch, self.epochs, self.final = steps_per_epoch, epochs, final
        self.step = 0
        self.masks: dict[str, Tensor] = {}

    def _prune(self, model: nn.Module, epoch: int) -> None:
        sparsity = gradual_sparsity(epoch, self.epochs, self.final)
        self.masks = magnitude_masks(prunable(model), sparsity)
        apply_masks(model, self.masks)

    def start(self, model: nn.Module) -> None:
        """Prune to epoch 1's sparsity (before the first step)."""
        self.step = 0
        self._prune(model, 1)

    def __call__(self, model: nn.Module) -> None:
        """Hold the masks; at an epoch's end, prune to the next epoch's sparsity."""
        apply_masks(model, self.masks)
        self.step += 1
        epoch, end = divmod(self.step, self.steps_per_epoch)
        if end == 0 and epoch < self.epochs:
            self._prune(model, epoch + 1)


class _TopK(torch.autograd.Function):
    """Binary mask of the top ``keep`` fraction of scores; straight-through gradient."""

    @staticmethod
    def forward(ctx: object, scores: Tensor, keep: float) -> Tensor:
        k = max(1, round(keep * scores.numel()))
        idx = torch.topk(scores.reshape(-1), k).indices
        mask = torch.zeros(scores.numel(), dtype=scores.dtype, device=scores.device)
        mask[idx] = 1.0
        return mask.reshape(scores.shape)

    @staticmethod
    def backward(ctx: object, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def topk_mask(scores: Tensor, keep: float) -> Tensor:
    """Edge-popup's mask: 1 on the top ``keep`` fraction of ``scores``, gradients pass through."""
    return _TopK.apply(scores, keep)


class EdgePopup(nn.Module):
    """Wraps a Linear/Conv layer as edge-popup does (Ramanujan et al. 2020, arXiv:1911.13299;
    the official allenai/hidden-networks code): the weights are frozen at the scaled signed
    Kaiming constant ``sign(w) · √2 / √(keep · fan_in)`` (``init: signed_constant`` with
    ``scale_fan``: only ``keep`` of the inputs survive), the layer has no bias (zeroed and
    frozen), and a score per weight, drawn Kaiming-uniform (``a = √5``, from ``generator``), is
    learned; the top-``keep`` fraction of ``|score|`` picks the weights used."""

    def __init__(
        self,
        layer: nn.Linear | nn.Conv1d | nn.Conv2d,
        keep: float,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 < keep <= 1.0:
            raise ValueError(f"keep: got {keep}; allowed: 0 < keep <= 1")
        self.layer = layer
        self.keep = keep
        fan_in = layer.weight[0].numel()
        with torch.no_grad():
            layer.weight.copy_(layer.weight.sign() * math.sqrt(2.0 / (keep * fan_in)))
            if layer.bias is not None:
                layer.bias.zero_()
        layer.weight.requires_grad_(False)
        if layer.bias is not None:
            layer.bias.requires_grad_(False)
        scores = torch.empty_like(layer.weight)
        nn.init.kaiming_uniform_(scores, a=math.sqrt(5), generator=generator)
        self.scores = nn.Parameter(scores)

    def mask(self) -> Tensor:
        """The current binary mask over the layer's weights (top ``keep`` of ``|scores|``)."""
        return topk_mask(self.scores.abs(), self.keep)

    def forward(self, x: Tensor) -> Tensor:
        """The layer with masked weights."""
        w = self.layer.weight * self.mask()
        if isinstance(self.layer, nn.Conv1d):
            return nn.functional.conv1d(
                x, w, self.layer.bias, self.layer.stride, self.layer.padding
            )
        if isinstance(self.layer, nn.Conv2d):
            return nn.functional.conv2d(
                x, w, self.layer.bias, self.layer.stride, self.layer.padding
            )
        return nn.functional.linear(x, w, self.layer.bias)
