"""Parameters and multiply-accumulates (MACs) of an ``nn.Module`` on one example input.

Forward hooks on the leaf modules record each one's MACs per sample, with the rules below
(bias adds and the normalisations are not MACs: BatchNorm folds into the previous conv at
inference). A leaf with parameters that no rule covers is an error, never a silent zero.

* ``Conv1d/2d/3d``: output elements × (in_channels / groups) × kernel volume;
* ``Linear``: output elements × in_features;
* ``AvgPool``/``AdaptiveAvgPool``: one accumulate per input element;
* :class:`Gate` (``x * a + x``, an attention map applied with a residual): one per element;
* ``BatchNorm``, activations, ``MaxPool``, ``Softmax``, ``Flatten``, ``Dropout``, ``Identity``: 0.

Counts are per sample (the batch's total divided by its size), in eval mode; ``thop`` (pinned
in the dev extra) agrees on convolutions and linear layers, and on average pooling up to the one
division per output that thop adds (tests/modules).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


class Gate(nn.Module):
    """``x * a + x``: an attention map ``a`` (broadcast over ``x``) applied with a residual,
    as a module so that the MAC counter sees its one multiply-add per element of ``x``."""

    def forward(self, x: Tensor, a: Tensor) -> Tensor:
        """``x ⊙ a + x``."""
        return torch.addcmul(x, x, a)


ZERO_MAC = (
    nn.modules.batchnorm._BatchNorm,
    nn.ReLU,
    nn.ReLU6,
    nn.GELU,
    nn.Sigmoid,
    nn.Hardswish,
    nn.Tanh,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool2d,
    nn.Softmax,
    nn.Flatten,
    nn.Dropout,
    nn.Identity,
)


def _conv(m: nn.Module, x: Tensor, y: Tensor) -> int:
    assert isinstance(m, nn.modules.conv._ConvNd)
    kernel = int(torch.tensor(m.kernel_size).prod())
    return y[0].numel() * (m.in_channels // m.groups) * kernel


def _linear(m: nn.Module, x: Tensor, y: Tensor) -> int:
    assert isinstance(m, nn.Linear)
    return y[0].numel() * m.in_features


def _per_input(m: nn.Module, x: Tensor, y: Tensor) -> int:
    return x[0].numel()


Rule = Callable[[nn.Module, Tensor, Tensor], int]

RULES: dict[type, Rule] = {
    nn.Conv1d: _conv,
    nn.Conv2d: _conv,
    nn.Conv3d: _conv,
    nn.Linear: _linear,
    nn.AvgPool2d: _per_input,
    nn.AdaptiveAvgPool2d: _per_input,
    Gate: _per_input,
}


@dataclass
class Count:
    """A model's trainable-or-not parameter count, its MACs per sample, and MACs per leaf name."""

    params: int
    macs: int
    per_module: dict[str, int] = field(default_factory=dict)


def count_params(model: nn.Module) -> int:
    """Number of parameters (every tensor in ``model.parameters()``, shared ones once)."""
    return sum(p.numel() for p in model.parameters())


def count(model: nn.Module, x: Tensor) -> Count:
    """Parameters and per-sample MACs of ``model`` on the example batch ``x`` (eval mode, no
    gradient; the model's mode is restored). Raises ``TypeError`` naming a parametrised leaf
    module no rule covers."""
    per: dict[str, int] = {}
    handles = []
    for name, m in model.named_modules():
        if any(True for _ in m.children()):
            continue
        rule = next((r for t, r in RULES.items() if type(m) is t), None)
        if rule is None:
            if isinstance(m, ZERO_MAC) or not any(True for _ in m.parameters(recurse=False)):
                continue
            raise TypeError(f"no MAC rule for {type(m).__name__} ({name or 'the model'})")

        def hook(
            m: nn.Module, inp: tuple[Tensor, ...], out: Tensor, name: str = name, rule: Rule = rule
        ) -> None:
            per[name] = per.get(name, 0) + rule(m, inp[0], out)

        handles.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return Count(params=count_params(model), macs=sum(per.values()), per_module=per)
