"""Pruning, corruptions and logit geometry against known answers (arXiv:2206.07918)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from subspacelab.probes import pruning as pr
from subspacelab.probes import robustness as rb


def test_magnitude_masks_keep_largest_globally() -> None:
    w = {"a": torch.tensor([1.0, -5.0, 0.1]), "b": torch.tensor([[3.0, -0.2], [0.3, 4.0]])}
    m = pr.magnitude_masks(w, 0.6)
    assert m["a"].tolist() == [False, True, False]
    assert m["b"].tolist() == [[True, False], [False, True]]
    assert pr.sparsity_of(m) == pytest.approx(4 / 7)  # round(0.6 · 7) = 4 pruned
    with pytest.raises(ValueError, match="sparsity"):
        pr.magnitude_masks(w, 1.0)


def test_apply_masks_and_gradual_schedule() -> None:
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    masks = pr.magnitude_masks(pr.prunable(net), 0.5)
    pr.apply_masks(net, masks)
    zeros = sum(int((w == 0).sum()) for w in pr.prunable(net).values())
    assert zeros == 9
    assert pr.gradual_sparsity(0, 10, 0.9) == pytest.approx(0.0)
    assert pr.gradual_sparsity(10, 10, 0.9) == pytest.approx(0.9)
    assert pr.gradual_sparsity(5, 10, 0.9) == pytest.approx(0.9 - 0.9 / 8)


def test_edge_popup_mask_and_straight_through() -> None:
    scores = torch.tensor([0.1, 0.9, 0.5, 0.3], requires_grad=True)
    mask = pr.topk_mask(scores, 0.5)
    assert mask.tolist() == [0.0, 1.0, 1.0, 0.0]
    (mask * torch.arange(4.0)).sum().backward()
    assert scores.grad.tolist() == [0.0, 1.0, 2.0, 3.0]
    layer = pr.EdgePopup(nn.Linear(5, 2), keep=0.3, generator=torch.Generator().manual_seed(0))
    assert not layer.layer.weight.requires_grad
    assert int(layer.mask().sum()) == 3
    assert layer(torch.ones(1, 5)).shape == (1, 2)
    # the scaled signed Kaiming constant: ±√(2 / (keep · fan_in)), no bias
    std = (2.0 / (0.3 * 5)) ** 0.5
    assert torch.allclose(layer.layer.weight.abs(), torch.full((2, 5), std))
    assert float(layer.layer.bias.abs().sum()) == 0.0
    # the mask is the top-k of |scores|; scores are Kaiming-uniform, ±1/√fan_in
    assert float(layer.scores.abs().max()) <= 5**-0.5
    flipped = layer.scores.detach().clone()
    with torch.no_grad():
        layer.scores.neg_()
    assert torch.equal(layer.mask(), pr.topk_mask(flipped.abs(), 0.3))
    with pytest.raises(ValueError, match="keep"):
        pr.EdgePopup(nn.Linear(5, 2), keep=0.0)


def test_corruptions_are_reproducible_and_grow_with_severity() -> None:
    x = np.sin(np.linspace(0, 6, 40))[None].repeat(8, 0).astype(np.float32)
    for name in rb.CORRUPTIONS:
        a, b = rb.corrupt(x, name, 3, seed=0), rb.corrupt(x, name, 3, seed=0)
        np.testing.assert_array_equal(a, b)
        assert a.shape == x.shape
        d1 = np.abs(rb.corrupt(x, name, 1, seed=0) - x).mean()
        d5 = np.abs(rb.corrupt(x, name, 5, seed=0) - x).mean()
        assert d5 > d1, name
    with pytest.raises(ValueError, match="severity"):
        rb.corrupt(x, "blur", 6, seed=0)
    with pytest.raises(ValueError, match="unknown corruption"):
        rb.corrupt(x, "fog", 1, seed=0)


def test_logit_geometry_hand_example() -> None:
    h = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    w = torch.eye(2)
    geo = rb.logit_geometry(h, w, torch.zeros(2), torch.tensor([0, 1]))
    assert geo.angle.tolist() == pytest.approx([0.0, math.pi / 4])
    assert geo.length.tolist() == pytest.approx([1.0, math.sqrt(2)])
    assert geo.margin.tolist() == pytest.approx([1 / math.sqrt(2), 0.0])


def test_mask_hold_and_gradual_magnitude_hooks() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 4))
    masks = pr.magnitude_masks(pr.prunable(net), 0.5)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)  # an optimiser step moved the pruned weights
    pr.MaskHold(masks)(net)
    for name, w in pr.prunable(net).items():
        assert bool((w[~masks[name]] == 0).all())
    hook = pr.GradualMagnitude(steps_per_epoch=2, epochs=3, final=0.8)
    hook.start(net)
    sparsities = [pr.sparsity_of(hook.masks)]
    for _ in range(6):
        hook(net)
        sparsities.append(pr.sparsity_of(hook.masks))
    expected = [pr.gradual_sparsity(e, 3, 0.8) for e in (1, 1, 2, 2, 3, 3, 3)]
    assert sparsities == pytest.approx(expected, abs=0.01)
    zeros = sum(int((w == 0).sum()) for w in pr.prunable(net).values())
    assert zeros / sum(w.numel() for w in pr.prunable(net).values()) == pytest.approx(0.8, abs=0.01)
