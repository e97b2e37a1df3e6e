"""The full profile of ``ulsam`` (Saini et al., arXiv:2006.15102, spec §7): MobileNet-V2
(Sandler et al., arXiv:1801.04381) with ULSAM at late inverted-residual blocks, trained on
ImageNet-1K and fine-tuned on the fine-grained sets.

The network is written here (the standard width-1.0 definition, as torchvision's) so it needs no
optional package and is tested on CPU; only the image pipelines need torchvision.
"""

from __future__ import annotations

from torch import Tensor, nn

from subspacelab.studies.ulsam.core import ULSAM

# (expansion t, output channels c, repeats n, first stride s) of MobileNet-V2's body
MBV2_BODY = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
             (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip


def _conv_bn(cin: int, cout: int, k: int, stride: int, groups: int, act: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    return [*layers, nn.ReLU6(inplace=True)] if act else layers


class InvertedResidual(nn.Module):
    """Expand 1×1 (ReLU6), depthwise 3×3 (ReLU6), project 1×1 (linear); residual when the block
    keeps its width at stride 1."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else _conv_bn(cin, hidden, 1, 1, 1, True)
        layers += _conv_bn(hidden, hidden, 3, stride, hidden, True)
        layers += _conv_bn(hidden, cout, 1, 1, 1, False)
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout
        self.width = cout

    def forward(self, x: Tensor) -> Tensor:
        """The block's output."""
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    """MobileNet-V2 (width 1.0): stem 3×3 s2 (32), 17 inverted residuals, 1×1 to 1280, GAP,
    dropout 0.2, linear."""

    def __init__(self, blocks: list[nn.Module], classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Sequential(*_conv_bn(3, 32, 3, 2, 1, True)),
            *blocks,
            nn.Sequential(*_conv_bn(320, 1280, 1, 1, 1, True)),
        )
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (b, classes)."""
        return self.head(self.features(x).mean((2, 3)))

    def reset_head(self, classes: int) -> None:
        """A new linear head for ``classes`` (fine-tuning on another label set)."""
        self.head[1] = nn.Linear(1280, classes)


def mobilenet_v2_blocks() -> list[InvertedResidual]:
    """The 17 inverted residuals of MobileNet-V2 (block 1 is the first, as torchvision's
    ``features[1]``)."""
    blocks, cin = [], 32
    for t, c, n, s in MBV2_BODY:
        for i in range(n):
            blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
            cin = c
    return blocks


def residual_sites() -> dict[int, int]:
    """Blocks (1-based) that keep their width at stride 1, where ULSAM can replace one, and
    their widths."""
    return {i + 1: b.width for i, b in enumerate(mobilenet_v2_blocks()) if b.residual}


def build_mobilenet_v2(arm: str, sites: list[int], classes: int = 1000) -> MobileNetV2:
    """One arm on MobileNet-V2: ``baseline``; ``insert_g<g>`` (ULSAM after each site block);
    ``replace_g<g>`` (ULSAM in place of each site block, spec §3 placement)."""
    kind, _, g = arm.partition("_g")
    if arm != "baseline" and (kind not in ("insert", "replace") or not g.isdigit()):
        raise ValueError(f"unknown arm {arm!r}: baseline, insert_g<g> or replace_g<g>")
    allowed = residual_sites()
    if any(s not in allowed for s in sites):
        raise ValueError(f"ULSAM sites must be width-keeping blocks {list(allowed)}, got {sites}")
    blocks: list[nn.Module] = []
    for i, block in enumerate(mobilenet_v2_blocks(), start=1):
        if i in sites and kind == "replace":
            blocks.append(ULSAM(block.width, int(g)))
            continue
        blocks.append(block)
        if i in sites and kind == "insert":
            blocks.append(ULSAM(block.width, int(g)))
    return MobileNetV2(blocks, classes)
