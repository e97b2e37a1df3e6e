"""K same-shaped conv layers, plain or adapted, applied at once as grouped convolutions.

A fit that trains K independent nets of one architecture (arms x tasks x seeds) can run each
layer of all K nets as one grouped conv over channel blocks: the input is ``(B, K·C_in, H, W)``
with net k's channels in block k, each net on its own batch. :class:`StackedConv2d` does so for
K layers of one kind:

* plain ``nn.Conv2d``: one grouped conv with the K weights concatenated;
* LoRA (Hu et al., arXiv:2106.09685) or FLoRA (Si et al., arXiv:2405.14739) with the same ranks,
  scale and dropout: ``op(x; W) + op(dropout(x); ΔW)`` as the adapters define it, computed as
  the frozen base weights (concatenated once) in one grouped conv that needs no weight
  gradient, plus the update through its factors without forming ΔW — LoRA's ``s · B A`` as
  the rank-r conv ``A`` then the 1x1 conv ``B``; FLoRA's ``s · G ×₁ A_in ×₂ A_out ×₃ A_h ×₄
  A_w`` as the 1x1 conv ``A_inᵀ``, the ``r_out × r_in × k_h × k_w`` conv ``G ×₃ A_h ×₄ A_w``
  and the 1x1 conv ``A_out`` — each one grouped conv over the K nets. LoRA without active
  dropout runs as one grouped conv with ``W + s · B A`` instead (on a CPU, grouped convs with
  one to three output channels per group cost more than the weight gradient they save).

The update path's input dropout draws its masks from the generator given (its own stream, so a
net trained alone would draw other masks); without dropout, every net's output equals its own
layer's up to float round-off (``tests/adapters/test_adapters.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from subspacelab.adapters.flora import FLoRA
from subspacelab.adapters.lora import LoRA

Signature = tuple[object, ...]


def signature(layer: nn.Module) -> Signature:
    """What must agree for layers to stack: the kind, the weight's shape, the geometry and,
    for an adapter, its ranks, scale and dropout."""
    if isinstance(layer, LoRA | FLoRA):
        base = layer.base
        ranks = tuple(layer.lora_a.shape) if isinstance(layer, LoRA) else tuple(layer.core.shape)
        extra: Signature = (type(layer).__name__, ranks, layer.scale, layer.dropout.p)
    elif isinstance(layer, nn.Conv2d):
        base, extra = layer, ("conv",)
    else:
        raise TypeError(f"cannot stack {type(layer).__name__}: need Conv2d, LoRA or FLoRA")
    if not isinstance(base, nn.Conv2d) or base.groups != 1 or base.dilation != (1, 1):
        raise TypeError("stacking needs plain Conv2d layers (groups 1, dilation 1)")
    geometry = (tuple(base.weight.shape), base.stride, base.padding, base.bias is not None)
    return (*extra, geometry)


class StackedConv2d:
    """K layers of one :func:`signature` applied to ``(B, K·C_in, H, W)`` as grouped convs."""

    def __init__(self, layers: Sequence[nn.Module], generator: torch.Generator) -> None:
        if not layers:
            raise ValueError("nothing to stack")
        sigs = {signature(m) for m in layers}
        if len(sigs) != 1:
            raise ValueError(f"layers to stack differ: {sorted(map(str, sigs))}")
        self.layers = list(layers)
        self.k = len(layers)
        self.generator = generator
        first = layers[0]
        self.adapter = first if isinstance(first, LoRA | FLoRA) else None
        self.base: nn.Conv2d = first.base if self.adapter is not None else first  # type: ignore[assignment]
        self.in_channels = self.base.in_channels
        if self.adapter is not None:  # frozen: concatenated once
            bases = [m.base for m in layers]  # type: ignore[union-attr]
            self.frozen_w = torch.cat([b.weight.detach() for b in bases])
            self.frozen_b = (
                torch.cat([b.bias.detach() for b in bases]) if self.base.bias is not None else None
            )

    def _conv(self, x: Tensor, w: Tensor, b: Tensor | None = None, *, spatial: bool) -> Tensor:
        if spatial:
            return F.conv2d(x, w, b, self.base.stride, self.base.padding, groups=self.k)
        return F.conv2d(x, w, b, groups=self.k)

    def __call__(self, x: Tensor) -> Tensor:
        """Every layer on its channel block of ``x``."""
        if self.adapter is None:
            w = torch.cat([m.weight for m in self.layers])  # type: ignore[union-attr]
            b = torch.cat([m.bias for m in self.layers]) if self.base.bias is not None else None  # type: ignore[union-attr]
            return self._conv(x, w, b, spatial=True)
        p = self.adapter.dropout.p
        dropping = p > 0 and self.adapter.training
        k, c_out, s = self.k, self.base.out_channels, self.adapter.scale
        if isinstance(self.adapter, LoRA):
            a = torch.stack([m.lora_a for m in self.layers])  # type: ignore[union-attr]
            b = torch.stack([m.lora_b for m in self.layers])  # type: ignore[union-attr]
            if not dropping:  # one conv with W + s·B A: cheaper than rank-r grouped convs
                w = self.frozen_w + s * torch.bmm(b, a).reshape(self.frozen_w.shape)
                return self._conv(x, w, self.frozen_b, spatial=True)
        out = self._conv(x, self.frozen_w, self.frozen_b, spatial=True)
        if dropping:
            x = x * (torch.rand(x.shape, generator=self.generator) >= p) / (1 - p)
        if isinstance(self.adapter, LoRA):
            z = self._conv(x, a.reshape(-1, *self.base.weight.shape[1:]), spatial=True)
            up = b.reshape(k * c_out, -1, 1, 1)
        else:
            g = torch.stack([m.core for m in self.layers])  # type: ignore[union-attr]
            a_in, a_out, a_h, a_w = (
                torch.stack([m.factors[n] for m in self.layers])  # type: ignore[union-attr]
                for n in range(4)
            )
            a_in_t = a_in.transpose(1, 2).reshape(-1, self.in_channels, 1, 1)
            z = self._conv(x, a_in_t, spatial=False)
            kernel = torch.einsum("kabcd,khc,kwd->kbahw", g, a_h, a_w)  # (K, r_out, r_in, kh, kw)
            z = self._conv(z, kernel.reshape(-1, *kernel.shape[2:]), spatial=True)
            up = a_out.reshape(k * c_out, -1, 1, 1)
        return out + s * self._conv(z, up, spatial=False)
