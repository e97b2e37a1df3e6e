"""ULSAM (arXiv 2006.15102) and the miniature's compact CNN; tested in tests/studies/test_ulsam.py.

ULSAM on F (m×h×w) with g subspaces of m/g channels: per subspace n,
A_n = softmax_{h·w}(ReLU(BN(PW_{m/g→1}(maxpool_{3×3,s1,p1}(ReLU(BN(DW_{1×1}(F_n)))))))),
F̂_n = A_n ⊙ F_n + F_n, output concat(F̂_1..F̂_g). The g per-subspace depthwise and pointwise
convolutions are one grouped convolution each (the same maps, one op).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from subspacelab.modules.count import Gate


class ULSAM(nn.Module):
    """Ultra-lightweight subspace attention over ``channels`` split into ``groups`` subspaces."""

    def __init__(self, channels: int, groups: int, bn_momentum: float = 0.1) -> None:
        super().__init__()
        if groups < 1 or channels % groups:
            raise ValueError(f"ULSAM needs g dividing the channels: {channels} % {groups} != 0")
        self.groups = groups
        self.dw = nn.Conv2d(channels, channels, 1, groups=channels)
        self.bn1 = nn.BatchNorm2d(channels, momentum=bn_momentum)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.pw = nn.Conv2d(channels, groups, 1, groups=groups)
        self.bn2 = nn.BatchNorm2d(groups, momentum=bn_momentum)
        self.relu = nn.ReLU()
        self.gate = Gate()

    def maps(self, x: Tensor) -> Tensor:
        """The g attention maps (b, g, h, w), each summing to one over its h·w positions."""
        a = self.relu(self.bn1(self.dw(x)))
        a = self.relu(self.bn2(self.pw(self.pool(a))))
        return torch.softmax(a.flatten(2), dim=-1).view_as(a)

    def forward(self, x: Tensor) -> Tensor:
        """A_n ⊙ F_n + F_n per subspace, concatenated (the channel count is unchanged)."""
        a = self.maps(x).repeat_interleave(x.shape[1] // self.groups, dim=1)
        return self.gate(x, a)


def separable(cin: int, cout: int, stride: int, bn_momentum: float) -> nn.Sequential:
    """MobileNet-V1's depthwise-separable block: 3×3 depthwise, BN, ReLU, 1×1, BN, ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False),
        nn.BatchNorm2d(cin, momentum=bn_momentum),
        nn.ReLU(),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout, momentum=bn_momentum),
        nn.ReLU(),
    )


class CompactCNN(nn.Module):
    """Stem 3×3 s2, separable blocks, optional ULSAM, global average pooling, linear head."""

    def __init__(
        self, blocks: nn.Sequential, stem: nn.Sequential, width: int, classes: int
    ) -> None:
        super().__init__()
        self.stem, self.blocks = stem, blocks
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (b, classes)."""
        return self.fc(self.pool(self.blocks(self.stem(x))).flatten(1))

    def attention(self) -> ULSAM | None:
        """The ULSAM module of the network, if any."""
        return next((m for m in self.modules() if isinstance(m, ULSAM)), None)


def arm_names(insert_groups: list[int], replace_groups: list[int]) -> list[str]:
    """The arms: ``baseline``, ``insert_g<g>`` and ``replace_g<g>``."""
    return [
        "baseline",
        *(f"insert_g{g}" for g in insert_groups),
        *(f"replace_g{g}" for g in replace_groups),
    ]


def build(
    arm: str,
    stem: int,
    widths: list[int],
    strides: list[int],
    bn_momentum: float,
    in_channels: int = 1,
    classes: int = 10,
) -> CompactCNN:
    """The compact CNN of one arm: ``baseline``; ``insert_g<g>`` (ULSAM after the last block);
    ``replace_g<g>`` (ULSAM in place of the last block, which maps its width to itself)."""
    kind, _, g = arm.partition("_g")
    if arm != "baseline" and (kind not in ("insert", "replace") or not g.isdigit()):
        raise ValueError(f"unknown arm {arm!r}: baseline, insert_g<g> or replace_g<g>")
    head = nn.Sequential(
        nn.Conv2d(in_channels, stem, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(stem, momentum=bn_momentum),
        nn.ReLU(),
    )
    cins = [stem, *widths[:-1]]
    layers: list[nn.Module] = [
        separable(cin, cout, s, bn_momentum)
        for cin, cout, s in zip(cins, widths, strides, strict=True)
    ]
    if kind == "replace":
        if widths[-1] != cins[-1] or strides[-1] != 1:
            raise ValueError("replace needs a last block that maps its width to itself at stride 1")
        layers[-1] = ULSAM(widths[-1], int(g), bn_momentum)
    elif kind == "insert":
        layers.append(ULSAM(widths[-1], int(g), bn_momentum))
    return CompactCNN(nn.Sequential(*layers), head, widths[-1], classes)


def map_entropy(maps: Tensor) -> float:
    """Mean entropy of attention maps (b, g, h, w) over maps, divided by log(h·w): 1 is uniform
    (no attention), 0 a single position."""
    p = maps.detach().flatten(2).clamp_min(1e-30)
    h = -(p * p.log()).sum(-1)
    return float(h.mean() / math.log(p.shape[-1]))
