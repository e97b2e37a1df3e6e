"""The equivariance probe (subspacelab.modules.equivariance) on exact and broken models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from subspacelab.modules.equivariance import Element, c4, equivariance_error, identity


def _symmetric_conv() -> nn.Conv2d:
    """A conv whose 3x3 kernels are invariant under 90° rotations: C4-equivariant exactly."""
    conv = nn.Conv2d(2, 3, 3, padding=1)
    with torch.no_grad():
        w = conv.weight
        conv.weight.copy_((w + w.rot90(1, (2, 3)) + w.rot90(2, (2, 3)) + w.rot90(3, (2, 3))) / 4)
    return conv


def test_an_exactly_equivariant_model_has_round_off_error() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(_symmetric_conv(), nn.ReLU(), nn.Conv2d(3, 4, 1))
    e = equivariance_error(model, torch.randn(5, 2, 9, 9), c4())
    assert e["max"] < 1e-6
    assert set(e) == {"rot90", "rot180", "rot270", "max"}


def test_an_invariant_pooling_head_and_a_broken_conv() -> None:
    torch.manual_seed(0)
    x = torch.randn(5, 2, 9, 9)
    invariant = nn.Sequential(_symmetric_conv(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert equivariance_error(invariant, x, c4(invariant=True))["max"] < 1e-6
    generic = nn.Conv2d(2, 3, 3, padding=1)
    assert equivariance_error(generic, x, c4())["max"] > 0.1


def test_a_permutation_action_and_bad_shapes() -> None:
    flip = Element("flip", lambda t: t.flip(-1), lambda t: t.flip(-1))
    assert equivariance_error(torch.relu, torch.randn(4, 6), [flip])["max"] == 0.0
    with pytest.raises(ValueError, match="shape"):
        equivariance_error(
            lambda t: t.sum(-1, keepdim=True) * t,
            torch.randn(4, 6),
            [Element("cut", lambda t: t[:, :3], identity)],
        )
    with pytest.raises(ValueError, match="at least one"):
        equivariance_error(torch.relu, torch.randn(2, 2), [])
