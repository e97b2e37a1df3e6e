"""LoRA (Hu et al., arXiv:2106.09685) wrapping any ``nn.Linear`` or ``nn.Conv{1,2}d``.

``ΔW = s · B A`` with ``A ∈ R^{r × fan_in}`` (Kaiming-uniform) and ``B ∈ R^{out × r}`` (zeros);
for a conv, ``fan_in = in/groups · Π kernel`` and ΔW is reshaped to the kernel's shape. The base
layer is frozen; the forward is the base op (stride, padding, dilation, groups) with ``W + ΔW``
(for a linear layer through the rank-r factors, never forming ΔW); with input dropout (as
``peft``'s ``lora_dropout``) the update path sees ``dropout(x)``, the base path ``x``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Wrappable = nn.Linear | nn.Conv1d | nn.Conv2d


def apply_weight(base: Wrappable, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``op(x; weight, bias)`` with the base layer's geometry (stride, padding, …)."""
    if isinstance(base, nn.Linear):
        return F.linear(x, weight, bias)
    conv = F.conv1d if isinstance(base, nn.Conv1d) else F.conv2d
    return conv(x, weight, bias, base.stride, base.padding, base.dilation, base.groups)


def _fan_in(base: Wrappable) -> int:
    return int(base.weight[0].numel())


def lora_param_count(base: Wrappable, rank: int) -> int:
    """Exact trainable parameters of a rank-``rank`` LoRA on ``base``: ``r (out + fan_in)``."""
    return rank * (int(base.weight.shape[0]) + _fan_in(base))


class LoRA(nn.Module):
    """A frozen layer plus a trainable rank-``rank`` update ``s · B A`` (on ``dropout(x)``)."""

    def __init__(
        self, base: Wrappable, rank: int, scale: float = 1.0, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.scale = scale
        self.dropout = nn.Dropout(dropout)
        self.lora_a = nn.Parameter(torch.empty(rank, _fan_in(base)))
        self.lora_b = nn.Parameter(torch.zeros(base.weight.shape[0], rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def delta(self) -> Tensor:
        """ΔW in the base weight's shape."""
        return (self.scale * self.lora_b @ self.lora_a).reshape(self.base.weight.shape)

    def forward(self, x: Tensor) -> Tensor:
        """``base(x) + op(dropout(x); ΔW)``: through the rank-r factors for a linear layer; for
        a conv without active dropout as one op with ``W + ΔW`` (the same map, one conv)."""
        drop = self.dropout(x) if self.dropout.p > 0 and self.training else x
        if isinstance(self.base, nn.Linear):
            return self.base(x) + self.scale * F.linear(F.linear(drop, self.lora_a), self.lora_b)
        if drop is x:
            return apply_weight(self.base, x, self.base.weight + self.delta(), self.base.bias)
        return self.base(x) + apply_weight(self.base, drop, self.delta(), None)


def wrap_layers(
    model: nn.Module, factory: Callable[[Wrappable], nn.Module], names: list[str] | None = None
) -> nn.Module:
    """Replace each linear/conv submodule (or only those in ``names``) by ``factory(layer)``,
    in place; returns ``model``."""
    targets = [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d) and (names is None or n in names)
    ]
    if names is not None and len(targets) != len(names):
        missing = set(names) - {n for n, _ in targets}
        raise KeyError(f"no linear/conv layer named {sorted(missing)}")
    for name, layer in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, factory(layer))
    return model


def trainable_count(model: nn.Module) -> int:
    """Number of trainable (requires_grad) parameter entries."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
