"""LoRA and FLoRA at matched parameter budgets, with the same scale convention.

FLoRA (Si et al., arXiv:2405.14739) compares against LoRA (Hu et al., arXiv:2106.09685) "at a
similar parameter budget". Both adapters here are built by :func:`make_adapter` with one
``scale`` s for both (``ΔW = s · B A`` and ``ΔW = s · G ×_n A_n``: FLoRA's fixed-s convention,
no ``alpha / r`` division for either), and their ranks by :func:`match_budgets`:

* one LoRA rank on every layer (capped at ``min(out, fan_in)``), the one whose exact total is
  closest to the budget — LoRA is the coarse one: a rank costs ``Σ (out + fan_in)``;
* one FLoRA core rank ``r`` (ranks ``[r, r]`` for a linear layer, ``[r, r, s, s]`` for a conv,
  each capped at its mode's size), the one whose exact total is closest to LoRA's;
* the two totals must agree within ``tol`` (10 % by default), and two budgets must give
  different adapters (different ranks for both), else a clear error before any training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from subspacelab.adapters.flora import FLoRA, flora_param_count
from subspacelab.adapters.lora import LoRA, Wrappable, lora_param_count

MATCH_TOL = 0.10  # |FLoRA params / LoRA params − 1| allowed at one budget


def lora_rank(layer: Wrappable, r: int) -> int:
    """``r`` capped at the layer's ``min(out, fan_in)`` (at least 1)."""
    return max(1, min(r, int(layer.weight.shape[0]), int(layer.weight[0].numel())))


def flora_ranks(layer: Wrappable, r: int, spatial: int) -> list[int]:
    """``[r, r]`` for a linear layer, ``[r, r, s, s]`` for a conv (modes ``[in, out, k…]``),
    each capped at its mode's size (at least 1)."""
    w = layer.weight
    modes = [int(w.shape[1]), int(w.shape[0]), *(int(k) for k in w.shape[2:])]
    wanted = [r, r] + [spatial] * (len(modes) - 2)
    return [max(1, min(a, m)) for a, m in zip(wanted, modes, strict=True)]


def lora_total(layers: Sequence[Wrappable], r: int) -> int:
    """Exact trainable parameters of rank-``r`` LoRA on every layer."""
    return sum(lora_param_count(m, lora_rank(m, r)) for m in layers)


def flora_total(layers: Sequence[Wrappable], r: int, spatial: int) -> int:
    """Exact trainable parameters of core-rank-``r`` FLoRA on every layer."""
    return sum(flora_param_count(m, flora_ranks(m, r, spatial)) for m in layers)


def _closest(count: Callable[[int], int], target: int, top: int) -> int:
    """The rank in ``1..top`` whose (non-decreasing) count is closest to ``target``; the
    smaller on a tie."""
    r = 1
    while r < top and count(r) < target:
        r += 1
    if r > 1 and abs(count(r - 1) - target) <= abs(count(r) - target):
        return r - 1
    return r


@dataclass(frozen=True)
class BudgetMatch:
    """One budget's LoRA and FLoRA ranks and their exact parameter counts."""

    budget: int
    lora_rank: int
    lora_params: int
    flora_rank: int
    flora_params: int

    @property
    def mismatch(self) -> float:
        """``FLoRA params / LoRA params − 1``."""
        return self.flora_params / self.lora_params - 1


def match_budgets(
    layers: Sequence[Wrappable], budgets: Sequence[int], spatial: int, tol: float = MATCH_TOL
) -> list[BudgetMatch]:
    """LoRA and FLoRA ranks for each budget (parameters), as the module docstring says.

    Raises ``ValueError`` when a budget's two totals differ by more than ``tol`` or when two
    budgets give the same LoRA or FLoRA rank (the same adapter twice)."""
    if not layers:
        raise ValueError("budget matching needs at least one layer")
    top = max(max(int(m.weight.shape[0]), int(m.weight[0].numel())) for m in layers)
    matches = []
    for b in budgets:
        r_l = _closest(lambda r: lora_total(layers, r), b, top)
        n_l = lora_total(layers, r_l)
        r_f = _closest(lambda r: flora_total(layers, r, spatial), n_l, top)
        match = BudgetMatch(b, r_l, n_l, r_f, flora_total(layers, r_f, spatial))
        if abs(match.mismatch) > tol:
            raise ValueError(
                f"budget {b} parameters: LoRA rank {r_l} has {n_l}, the closest FLoRA (rank "
                f"{r_f}) {match.flora_params}, {100 * match.mismatch:+.1f} % off (allowed "
                f"±{100 * tol:.0f} %); choose another budget"
            )
        matches.append(match)
    for i, a in enumerate(matches):
        for b in matches[i + 1 :]:
            if a.lora_rank == b.lora_rank or a.flora_rank == b.flora_rank:
                raise ValueError(
                    f"budgets {a.budget} and {b.budget} parameters give the same adapter (LoRA "
                    f"ranks {a.lora_rank}/{b.lora_rank}, FLoRA ranks {a.flora_rank}/"
                    f"{b.flora_rank}); choose budgets further apart"
                )
    return matches


def make_adapter(
    kind: str, layer: Wrappable, rank: int, spatial: int, scale: float, dropout: float = 0.0
) -> nn.Module:
    """``layer`` frozen under LoRA (``kind="lora"``, rank capped) or FLoRA (``"flora"``, ranks
    ``[r, r(, s, s)]``), the same ``scale`` and input ``dropout`` for both."""
    if kind == "lora":
        return LoRA(layer, lora_rank(layer, rank), scale=scale, dropout=dropout)
    if kind == "flora":
        return FLoRA(layer, flora_ranks(layer, rank, spatial), scale=scale, dropout=dropout)
    raise ValueError(f"adapter kind must be 'lora' or 'flora', got {kind!r}")
