"""LoRA, FLoRA and OCA's orthogonal layer: exact parameter counts and exact updates; budgets
matched between LoRA and FLoRA (joint training is tested in tests/nets/test_joint.py)."""

from __future__ import annotations

import pytest
import tensorly as tl
import torch
import torch.nn.functional as F
from torch import nn

from subspacelab.adapters import (
    FLoRA,
    LoRA,
    OrthogonalLayer,
    bct_loss,
    flora_param_count,
    lora_param_count,
    oca_loss,
    trainable_count,
    tucker_delta,
    wrap_layers,
)
from subspacelab.adapters.budget import (
    MATCH_TOL,
    flora_ranks,
    flora_total,
    lora_rank,
    lora_total,
    make_adapter,
    match_budgets,
)
from subspacelab.adapters.stacked import StackedConv2d
from subspacelab.nets.joint import Member, train_one
from subspacelab.nets.training import LocalEnv


def test_lora_counts_and_identity_at_init() -> None:
    torch.manual_seed(0)
    lin, conv = nn.Linear(10, 6), nn.Conv2d(8, 16, 3)
    assert lora_param_count(lin, 2) == 2 * (6 + 10) == trainable_count(LoRA(lin, 2))
    assert lora_param_count(conv, 2) == 2 * (16 + 72) == trainable_count(LoRA(conv, 2))
    x = torch.randn(2, 8, 5, 5)
    assert torch.equal(LoRA(conv, 3)(x), conv(x))  # B = 0
    with pytest.raises(ValueError, match="rank"):
        LoRA(lin, 0)


def test_lora_delta_matches_weight_update() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1, stride=2)
    lora = LoRA(conv, 2, scale=0.5)
    nn.init.normal_(lora.lora_b)
    x = torch.randn(2, 4, 7, 7)
    ref = F.conv2d(x, conv.weight + lora.delta(), conv.bias, stride=2, padding=1)
    assert torch.allclose(lora(x), ref, atol=1e-5)


def test_flora_paper_counts() -> None:
    conv = nn.Conv2d(256, 256, 3)
    assert flora_param_count(conv, [16, 16, 2, 2]) == 9228  # flora.md §3's example
    assert lora_param_count(conv, 16) == 40960
    small = nn.Conv2d(8, 16, 3)
    assert trainable_count(FLoRA(small, [4, 4, 2, 2])) == flora_param_count(small, [4, 4, 2, 2])
    assert flora_param_count(nn.Linear(10, 6), [3, 3]) == 9 + 30 + 18
    grouped = nn.Conv2d(8, 8, 3, groups=4)  # in mode is in/groups = 2
    assert flora_param_count(grouped, [2, 2, 1, 1]) == 4 + 2 * 2 + 8 * 2 + 3 + 3
    with pytest.raises(ValueError, match="ranks"):
        flora_param_count(conv, [2, 2])


def test_tucker_mode_order_against_explicit_einsum() -> None:
    g = torch.Generator().manual_seed(0)
    core = torch.randn(3, 2, 2, 1, generator=g)
    a_in, a_out = torch.randn(5, 3, generator=g), torch.randn(7, 2, generator=g)
    a_h, a_w = torch.randn(3, 2, generator=g), torch.randn(3, 1, generator=g)
    got = tucker_delta(core, [a_in, a_out, a_h, a_w])
    ref = torch.einsum("abcd,ia,ob,hc,wd->oihw", core, a_in, a_out, a_h, a_w)
    assert got.shape == (7, 5, 3, 3)
    assert torch.allclose(got, ref, atol=1e-5)
    # cross-check against TensorLy's Tucker reconstruction (a dev dependency: runs in every
    # `make test`); its modes are FLoRA's (in, out, h, w), the conv weight's are (out, in, h, w)
    full = tl.tucker_to_tensor((core.numpy(), [f.numpy() for f in (a_in, a_out, a_h, a_w)]))
    assert torch.allclose(torch.from_numpy(full).transpose(0, 1), ref, atol=1e-4)
    with pytest.raises(ValueError, match="factors"):
        tucker_delta(core, [a_in])


def test_flora_forward_and_zero_init() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1)
    fl = FLoRA(conv, [2, 2, 2, 2], scale=4.0)
    x = torch.randn(2, 4, 5, 5)
    assert torch.equal(fl(x), conv(x))
    nn.init.normal_(fl.core)
    ref = F.conv2d(x, conv.weight + fl.delta(), conv.bias, padding=1)
    assert torch.allclose(fl(x), ref, atol=1e-5)
    lin = nn.Linear(5, 3)
    fl_lin = FLoRA(lin, [2, 2])
    nn.init.normal_(fl_lin.core)
    a_in, a_out = fl_lin.factors
    assert torch.allclose(fl_lin.delta(), 4.0 * a_out @ fl_lin.core.T @ a_in.T, atol=1e-5)


def test_wrap_layers() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    wrap_layers(net, lambda layer: LoRA(layer, 1), names=["2"])
    assert isinstance(net[2], LoRA) and isinstance(net[0], nn.Linear)
    assert trainable_count(net) == 4 * 8 + 8 + 1 * (2 + 8)
    with pytest.raises(KeyError, match="no linear"):
        wrap_layers(net, lambda layer: layer, names=["7"])


def test_orthogonal_layer_stays_orthogonal_under_training() -> None:
    torch.manual_seed(0)
    layer = OrthogonalLayer(6)
    x, target = torch.randn(64, 6), torch.randn(64, 6)
    member = Member(layer, lambda a, b: F.mse_loss(layer(a), b), 0.05, data=(x, target), seed=0)
    train_one(LocalEnv(), member, epochs=5, batch_size=16)
    assert layer.orthogonality_error() < 1e-4


def test_oca_and_bct_losses_by_hand() -> None:
    h = F.normalize(torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]), dim=1)
    protos = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1])
    logits = torch.zeros(2, 2)
    # h_c = [1,0] and [0,1] exactly: alignment term 0
    hc = torch.eye(2)
    ce = F.cross_entropy(logits, y, label_smoothing=0.1)
    infl = F.cross_entropy(hc @ protos.T, y, label_smoothing=0.1)
    assert torch.allclose(oca_loss(logits, h, protos, y), 5 * ce + 10 * infl)
    h2 = torch.eye(2)
    assert torch.allclose(bct_loss(logits, h2, protos, y), 5 * ce + 10 * infl)


def test_lora_input_dropout() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    lora = LoRA(conv, 2, scale=4.0, dropout=0.5)
    nn.init.normal_(lora.lora_b)
    x = torch.randn(2, 3, 5, 5)
    lora.eval()  # no dropout: one conv with W + ΔW
    assert torch.allclose(lora(x), F.conv2d(x, conv.weight + lora.delta(), conv.bias, padding=1))
    lora.train()
    torch.manual_seed(1)
    got = lora(x)
    torch.manual_seed(1)
    dropped = nn.functional.dropout(x, 0.5)
    ref = conv(x) + F.conv2d(dropped, lora.delta(), None, padding=1)
    assert torch.allclose(got, ref, atol=1e-5)
    lin = LoRA(nn.Linear(5, 3), 2, dropout=0.5).eval()
    assert torch.equal(lin(torch.ones(1, 5)), lin.base(torch.ones(1, 5)))  # B = 0


def _layers() -> list[nn.Module]:
    return [nn.Conv2d(1, 32, 3), nn.Conv2d(32, 64, 3), nn.Conv2d(64, 64, 3), nn.Linear(64, 64)]


def test_match_budgets_picks_lora_then_the_closest_flora() -> None:
    layers = _layers()
    # one LoRA rank: (32 + 9) + (64 + 288) + (64 + 576) + (64 + 64) = 1161
    assert lora_total(layers, 1) == 1161 and lora_total(layers, 3) == 3483
    (a, b) = match_budgets(layers, [2300, 3300], 2)
    assert (a.lora_rank, a.lora_params, b.lora_rank, b.lora_params) == (2, 2322, 3, 3483)
    assert (a.flora_rank, b.flora_rank) == (5, 8)
    for m in (a, b):
        counts = {r: flora_total(layers, r, 2) for r in range(1, 40)}
        best = min(counts.values(), key=lambda n: abs(n - m.lora_params))
        assert m.flora_params == best == counts[m.flora_rank]
        assert abs(m.mismatch) <= MATCH_TOL
    assert flora_ranks(layers[0], 8, 2) == [1, 8, 2, 2] and flora_ranks(layers[3], 8, 2) == [8, 8]
    assert lora_rank(layers[0], 50) == 9  # min(out, fan_in) = min(32, 9)


def test_match_budgets_refuses_unmatched_or_repeated_adapters() -> None:
    layers = _layers()
    with pytest.raises(ValueError, match="same adapter"):
        match_budgets(layers, [2322, 2500], 2)  # both LoRA rank 2
    with pytest.raises(ValueError, match=r"\+10\.4 % off"):
        match_budgets(layers, [1161], 2)  # LoRA rank 1: FLoRA 1282 (rank 3) or 849 (rank 2)
    with pytest.raises(ValueError, match="at least one layer"):
        match_budgets([], [10], 2)


def test_make_adapter_same_scale_for_both() -> None:
    conv = nn.Conv2d(4, 6, 3)
    lora, fl = make_adapter("lora", conv, 2, 2, 4.0), make_adapter("flora", conv, 2, 2, 4.0)
    assert isinstance(lora, LoRA) and isinstance(fl, FLoRA)
    assert lora.scale == fl.scale == 4.0
    with pytest.raises(ValueError, match="kind"):
        make_adapter("loha", conv, 2, 2, 4.0)


def _stack_inputs(k: int, c: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    xs = [torch.randn(3, c, 7, 7) for _ in range(k)]
    return xs, torch.cat(xs, dim=1)


@pytest.mark.parametrize("kind", ["conv", "lora", "flora"])
def test_stacked_conv_equals_each_layer(kind: str) -> None:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(3):
        conv = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        layer = conv if kind == "conv" else make_adapter(kind, conv, 2, 2, 4.0)
        for p in layer.parameters():
            if p.requires_grad:
                nn.init.normal_(p, std=0.3)  # ΔW ≠ 0
        layers.append(layer)
    xs, x = _stack_inputs(3, 4)
    out = StackedConv2d(layers, torch.Generator())(x)
    ref = torch.cat([m(xk) for m, xk in zip(layers, xs, strict=True)], dim=1)
    assert torch.allclose(out, ref, atol=1e-5)
    params = [p for m in layers for p in m.parameters() if p.requires_grad]
    g = torch.autograd.grad(out.square().sum(), params)
    g_ref = torch.autograd.grad(ref.square().sum(), params)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(g, g_ref, strict=True))


@pytest.mark.parametrize("kind", ["lora", "flora"])
def test_stacked_conv_dropout(kind: str) -> None:
    torch.manual_seed(0)
    layers = [make_adapter(kind, nn.Conv2d(2, 3, 3, padding=1), 1, 2, 4.0, 0.5) for _ in range(2)]
    for m in layers:
        for p in m.parameters():
            if p.requires_grad:
                nn.init.normal_(p)
    xs, x = _stack_inputs(2, 2)
    out = StackedConv2d(layers, torch.Generator().manual_seed(5))(x)
    keep = torch.rand(x.shape, generator=torch.Generator().manual_seed(5)) >= 0.5
    dropped = (x * keep / 0.5).split(2, dim=1)
    ref = torch.cat(
        [
            m.base(xk) + F.conv2d(d, m.delta(), None, padding=1)
            for m, xk, d in zip(layers, xs, dropped, strict=True)
        ],
        dim=1,
    )
    assert torch.allclose(out, ref, atol=1e-5)
    for m in layers:
        m.eval()
    no_drop = StackedConv2d(layers, torch.Generator())(x)
    alone = torch.cat([m(xk) for m, xk in zip(layers, xs, strict=True)], 1)
    assert torch.allclose(no_drop, alone, atol=1e-5)


def test_stacked_conv_refusals() -> None:
    lora = make_adapter("lora", nn.Conv2d(2, 3, 3), 1, 2, 4.0)
    with pytest.raises(ValueError, match="differ"):
        StackedConv2d(
            [lora, make_adapter("lora", nn.Conv2d(2, 3, 3), 2, 2, 4.0)], torch.Generator()
        )
    with pytest.raises(ValueError, match="nothing"):
        StackedConv2d([], torch.Generator())
    with pytest.raises(TypeError, match="groups 1"):
        StackedConv2d([nn.Conv2d(2, 2, 3, groups=2)], torch.Generator())
    with pytest.raises(TypeError, match="cannot stack"):
        StackedConv2d([nn.Linear(2, 2)], torch.Generator())
