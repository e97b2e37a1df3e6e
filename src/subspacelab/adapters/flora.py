"""FLoRA (Si et al., arXiv:2405.14739): N-dimensional PEFT through a Tucker core.

``ΔW = s · G ×₁ A₁ ×₂ A₂ … ×_N A_N`` with modes ordered as in the official code,
``[in, out, k_h, k_w]`` for a conv and ``[in, out]`` for a linear layer, then permuted to torch's
``(out, in, k…)``. The core G starts at zero (ΔW = 0); the factors are Kaiming-normal with
a = √3. Parameters per layer: ``Π r_n + Σ I_n r_n`` (for grouped convs the in mode is in/groups).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from subspacelab.adapters.lora import Wrappable, apply_weight


def _modes(base: Wrappable) -> list[int]:
    w = base.weight
    return [int(w.shape[1]), int(w.shape[0]), *(int(s) for s in w.shape[2:])]


def flora_param_count(base: Wrappable, ranks: Sequence[int]) -> int:
    """Exact trainable parameters of FLoRA on ``base`` with ``ranks`` (one per mode)."""
    modes = _modes(base)
    if len(ranks) != len(modes):
        raise ValueError(f"need {len(modes)} ranks for modes {modes}, got {list(ranks)}")
    return math.prod(ranks) + sum(i * r for i, r in zip(modes, ranks, strict=True))


def tucker_delta(core: Tensor, factors: Sequence[Tensor]) -> Tensor:
    """``G ×₁ A₁ … ×_N A_N`` (modes [in, out, k…]) permuted to ``(out, in, k…)``."""
    if len(factors) != core.ndim:
        raise ValueError(f"core has {core.ndim} modes but {len(factors)} factors were given")
    full = core
    for factor in factors:  # mode products in turn: each contracts the leading mode, appends I_n
        full = torch.tensordot(full, factor, dims=([0], [1]))
    return full.transpose(0, 1)


class FLoRA(nn.Module):
    """A frozen linear/conv layer plus the Tucker update ``s · G ×_n A_n``."""

    def __init__(
        self, base: Wrappable, ranks: Sequence[int], scale: float = 4.0, dropout: float = 0.0
    ) -> None:
        super().__init__()
        modes = _modes(base)
        if len(ranks) != len(modes) or any(r < 1 for r in ranks):
            raise ValueError(f"need {len(modes)} positive ranks for modes {modes}, got {ranks}")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.scale = scale
        self.dropout = nn.Dropout(dropout)
        self.core = nn.Parameter(torch.zeros(*ranks))
        self.factors = nn.ParameterList(
            [nn.Parameter(torch.empty(i, r)) for i, r in zip(modes, ranks, strict=True)]
        )
        for f in self.factors:
            nn.init.kaiming_normal_(f, a=math.sqrt(3))

    def delta(self) -> Tensor:
        """ΔW in the base weight's shape (out, in, k…)."""
        return self.scale * tucker_delta(self.core, list(self.factors))

    def forward(self, x: Tensor) -> Tensor:
        """``base(x) + op(dropout(x); ΔW)`` — one op with ``W + ΔW`` when no dropout applies."""
        w, b = self.base.weight, self.base.bias
        if self.dropout.p == 0 or not self.training:
            return apply_weight(self.base, x, w + self.delta(), b)
        return apply_weight(self.base, x, w, b) + apply_weight(
            self.base, self.dropout(x), self.delta(), None
        )
