"""Hydra/SimLAP's full profile (arXiv 2410.18200, spec §7): CIFAR-10 and the ResNet-18 of the
authors' CIFAR recipe (3×3 stride-1 stem, no max-pool: 32×32 inputs keep their resolution
through the stem). torchvision comes from the optional ``full`` extra, imported here only."""

from __future__ import annotations

from torch import nn


def resnet18_cifar() -> nn.Module:
    """torchvision's ResNet-18 with a CIFAR stem and no classifier: r ∈ R^512."""
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    net.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net
