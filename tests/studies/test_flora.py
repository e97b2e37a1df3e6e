"""flora: budget matching, the tasks, claim checks both ways."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from subspacelab.adapters import flora_param_count, lora_param_count, trainable_count
from subspacelab.registry import Metrics
from subspacelab.studies.flora import core
from subspacelab.studies.flora.study import CLAIMS

BY_ID = {c.id: c for c in CLAIMS}


def test_budget_matching_is_exact_and_close() -> None:
    net = core.SmallCNN([16, 32, 32, 32], [2, 1, 2, 1], 10)
    total = core.conv_param_count(net)
    assert total == 16 * 9 + 32 * 16 * 9 + 2 * 32 * 32 * 9
    budget = round(0.05 * total)
    r_f, n_f, r_l, n_l = core.match_budget(core.convs(net), budget, 2)
    assert n_f == sum(flora_param_count(c, core.flora_ranks(c, r_f, 2)) for c in core.convs(net))
    assert n_l == sum(
        lora_param_count(c, min(r_l, c.weight.shape[0], c.weight[0].numel()))
        for c in core.convs(net)
    )
    adapted = core.SmallCNN([16, 32, 32, 32], [2, 1, 2, 1], 10)
    core.adapt(adapted, "flora", r_f, 2, 4.0)
    adapted.head.requires_grad_(False)
    assert trainable_count(adapted) == n_f
    assert abs(n_f - budget) / budget < 0.3 and abs(n_l - budget) / budget < 0.3


def test_stacked_losses_equal_each_net_alone() -> None:
    """The grouped-conv evaluation of many arms gives each arm's own loss and gradients."""
    torch.manual_seed(0)
    base = core.SmallCNN([4, 8, 8, 8], [2, 1, 2, 1], 10)
    nets = []
    for kind, rank in (("full", 0), ("flora", 2), ("lora", 1)):
        net = copy.deepcopy(base)
        if kind != "full":
            core.adapt(net, kind, rank, 2, 4.0)
        for p in net.parameters():
            if p.requires_grad and p.dim() > 1:
                torch.nn.init.normal_(p, std=0.1)  # ΔW ≠ 0
        nets.append(net)
    xs = [torch.rand(5, 1, 16, 16) for _ in nets]
    ys = [torch.randint(0, 10, (5,)) for _ in nets]
    alone = torch.stack([F.cross_entropy(n(x), y) for n, x, y in zip(nets, xs, ys, strict=True)])
    grads_alone = torch.autograd.grad(alone.sum(), list(nets[1].parameters())[-4:])
    stacked = core.stacked_losses(nets, xs, ys)
    grads = torch.autograd.grad(stacked.sum(), list(nets[1].parameters())[-4:])
    assert torch.allclose(stacked, alone, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grads, grads_alone, strict=True))
    assert [c.out_channels for c in core.convs(nets[1])] == [4, 8, 8, 8]


def test_tasks() -> None:
    x, y = torch.rand(4, 1, 16, 16), torch.tensor([0, 4, 5, 9])
    assert torch.equal(core.make_task("relabel", x, y, 0)[1], torch.tensor([5, 9, 0, 4]))
    assert torch.equal(core.make_task("invert", x, y, 0)[0], 1 - x)
    noisy, _ = core.make_task("bandpass", x, y, 0)
    assert torch.equal(noisy, core.make_task("bandpass", x, y, 0)[0])  # seeded
    with pytest.raises(KeyError, match="unknown task"):
        core.make_task("blur", x, y, 0)
    assert core.upsample(torch.rand(2, 64).numpy(), 16).shape == (2, 1, 16, 16)


def _m(
    flora2: float, lora2: float, flora5: float, lora5: float, probe: float, full: float
) -> Metrics:
    return Metrics(
        {
            "flora_0.02_acc": [flora2],
            "lora_0.02_acc": [lora2],
            "flora_0.05_acc": [flora5],
            "lora_0.05_acc": [lora5],
            "linear_probe_acc": [probe],
            "full_ft_acc": [full],
        }
    )


def test_claims_both_ways() -> None:
    good = _m(0.80, 0.79, 0.82, 0.81, 0.6, 0.85)
    bad = _m(0.80, 0.798, 0.80, 0.81, 0.81, 0.85)
    for cid in BY_ID:
        assert BY_ID[cid].check(good).holds, cid
        assert not BY_ID[cid].check(bad).holds, cid
    # PEFT may exceed full FT by up to 1 pt ("≈"), not more
    assert BY_ID["probe_lt_peft_le_full"].check(_m(0.8, 0.8, 0.8, 0.8, 0.5, 0.795)).holds
    assert not BY_ID["probe_lt_peft_le_full"].check(_m(0.9, 0.8, 0.8, 0.8, 0.5, 0.8)).holds
