"""LoRA, FLoRA and OCA's orthogonal layer: exact parameter counts and exact updates."""

from __future__ import annotations

import copy

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
from subspacelab.adapters.training import (
    Member,
    accuracy,
    predict,
    train_joint,
    train_loop,
    zipped_loader,
)
from subspacelab.nets.training import LocalEnv, LossModule, fit, tensor_loader


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
    train_loop(
        LocalEnv(),
        layer,
        lambda a, b: F.mse_loss(layer(a), b),
        x,
        target,
        epochs=5,
        batch_size=16,
        lr=0.05,
        seed=0,
    )
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


def test_training_helpers() -> None:
    lin = nn.Linear(2, 2)
    assert accuracy(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])) == 0.5
    assert predict(lin, torch.zeros(3, 2)).shape == (3, 2)
    lin.requires_grad_(False)
    with pytest.raises(ValueError, match="trainable"):
        train_loop(
            LocalEnv(),
            lin,
            lambda a, b: a.sum(),
            torch.zeros(2, 2),
            torch.zeros(2),
            epochs=1,
            batch_size=1,
            lr=0.1,
            seed=0,
        )


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def _ce(net: nn.Module):
    return lambda a, b: F.cross_entropy(net(a), b)


def test_joint_training_equals_separate_runs_bit_for_bit() -> None:
    """Members with their own data, seeds and learning rates end exactly where their own
    LossModule runs over tensor_loader end; training leaves the global RNG alone."""
    torch.manual_seed(0)
    data = [(torch.randn(50, 4), torch.randint(0, 3, (50,))) for _ in range(2)]
    specs = [(0, 0.01, 3), (1, 0.05, 4), (0, 0.02, 3)]  # (data, lr, seed)
    nets = [_mlp() for _ in specs]
    refs = [copy.deepcopy(n) for n in nets]
    for net, (d, lr, seed) in zip(refs, specs, strict=True):
        module = LossModule(net, lambda n, b: F.cross_entropy(n(b[0]), b[1]), lr=lr)
        fit(LocalEnv(), module, tensor_loader(*data[d], batch_size=16, seed=seed), epochs=3)
    members = [
        Member(net, _ce(net), *data[d], lr, seed)
        for net, (d, lr, seed) in zip(nets, specs, strict=True)
    ]
    state = torch.get_rng_state()
    history = train_joint(LocalEnv(), members, epochs=3, batch_size=16)
    assert torch.equal(torch.get_rng_state(), state)
    assert len(history) == 3 and all(len(h) == 3 and h[-1] < h[0] for h in history)
    for net, ref in zip(nets, refs, strict=True):
        assert all(
            torch.equal(p, q) for p, q in zip(net.parameters(), ref.parameters(), strict=True)
        )


def test_joint_training_errors() -> None:
    net = _mlp()
    x, y = torch.randn(8, 4), torch.zeros(8, dtype=torch.long)
    with pytest.raises(ValueError, match="shares"):
        train_joint(LocalEnv(), [Member(net, _ce(net), x, y, 0.1, 0)] * 2, epochs=1, batch_size=4)
    with pytest.raises(ValueError, match="one length"):
        zipped_loader([(x, y), (x[:6], y[:6])], [0, 1], batch_size=4)
    with pytest.raises(ValueError, match="at least one"):
        train_joint(LocalEnv(), [], epochs=1, batch_size=4)
