"""Feature gates (subspacelab.modules.gates): hydra's class-pair gate, SE and CBAM's spatial
attention against known answers and hand counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from subspacelab.modules.count import count, count_params
from subspacelab.modules.gates import (
    ClassPairGate,
    FeatureFilter,
    OpenGate,
    SpatialAttention,
    SqueezeExcitation,
)


def _gate(fuse: bool = True) -> ClassPairGate:
    torch.manual_seed(0)
    return ClassPairGate(classes=5, dim=6, embed_dim=4, hidden=8, fuse=fuse).eval()


def test_class_pair_gate_shapes_range_and_pair_of_one_label() -> None:
    gate = _gate()
    y1, y2 = torch.tensor([0, 1, 4]), torch.tensor([2, 1, 3])
    g = gate(y1, y2)
    assert g.shape == (3, 6)
    assert bool(((g > 0) & (g < 1)).all())
    torch.testing.assert_close(gate(y1), gate(y1, y1))  # one label is the pair (y, y)
    torch.testing.assert_close(gate(y1, y2), gate(y2, y1))  # fusion is symmetric


def test_unfused_gate_is_the_product_of_single_class_gates() -> None:
    gate = _gate(fuse=False)
    y1, y2 = torch.tensor([0, 3]), torch.tensor([2, 2])
    torch.testing.assert_close(gate(y1, y2), gate(y1) * gate(y2))


def test_an_all_open_gate_is_the_identity_on_vectors_and_maps() -> None:
    f = FeatureFilter(OpenGate(3))
    y = torch.tensor([0, 2])
    z = torch.randn(2, 3)
    fmap = torch.randn(2, 3, 4, 5)
    assert torch.equal(f(z, y), z)
    assert torch.equal(f(fmap, y, y), fmap)


def test_filter_broadcasts_the_gate_over_positions() -> None:
    gate = _gate()
    f = FeatureFilter(gate).eval()
    y1, y2 = torch.tensor([1, 2]), torch.tensor([0, 4])
    fmap = torch.ones(2, 6, 3, 3)
    out = f(fmap, y1, y2)
    torch.testing.assert_close(out[:, :, 2, 1], gate(y1, y2))
    with pytest.raises(ValueError, match="do not match the gate"):
        f(torch.ones(2, 5), y1, y2)


def test_bad_labels_and_sizes_are_refused() -> None:
    gate = _gate()
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
        gate(torch.tensor([5]))
    with pytest.raises(ValueError, match="1-D integer"):
        gate(torch.tensor([0.0]))
    with pytest.raises(ValueError, match="differ in length"):
        gate(torch.tensor([0, 1]), torch.tensor([1]))
    with pytest.raises(ValueError, match="positive sizes"):
        ClassPairGate(0, 6, 4, 8)
    with pytest.raises(ValueError, match="reduction dividing"):
        SqueezeExcitation(6, 4)
    with pytest.raises(ValueError, match="odd and positive"):
        SpatialAttention(4)


def test_gate_statistics_of_a_half_open_gate() -> None:
    gate = _gate()
    for p in gate.mlp[-1].parameters():
        nn.init.zeros_(p)  # every logit 0: γ = 1/2 everywhere
    activation, entropy = gate.statistics()
    assert activation == pytest.approx(6 * 0.5)
    assert entropy == pytest.approx(float(torch.log(torch.tensor(2.0))))


def test_se_with_zero_weights_scales_by_one_half() -> None:
    se = SqueezeExcitation(8, 2)
    for p in se.parameters():
        nn.init.zeros_(p)
    x = torch.randn(3, 8, 5, 5)
    torch.testing.assert_close(se(x), 0.5 * x)


def test_se_weights_follow_the_channel_means() -> None:
    se = SqueezeExcitation(4, 2)
    with torch.no_grad():
        se.fc1.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0]]))
        se.fc1.bias.zero_()
        se.fc2.weight.copy_(torch.tensor([[1.0, 0], [0, 0], [0, 0], [0, 0]]))
        se.fc2.bias.zero_()
    x = torch.zeros(1, 4, 2, 2)
    x[0, 0] = 2.0  # channel 0's mean is 2: s_0 = σ(2), the others σ(0)
    s = se.weights(x).flatten()
    torch.testing.assert_close(s, torch.sigmoid(torch.tensor([2.0, 0, 0, 0])))


def test_spatial_attention_with_a_zero_kernel_scales_by_one_half() -> None:
    sa = SpatialAttention(7).eval()  # BN at init and in eval: the identity
    nn.init.zeros_(sa.conv.weight)
    x = torch.randn(2, 5, 6, 6)
    torch.testing.assert_close(sa(x), 0.5 * x)


def test_spatial_attention_sees_the_channel_mean_and_max() -> None:
    sa = SpatialAttention(1).eval()
    with torch.no_grad():
        sa.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(1, 2, 1, 1))  # mean - max
    x = torch.tensor([1.0, 3.0]).view(1, 2, 1, 1).expand(1, 2, 2, 2).contiguous()
    torch.testing.assert_close(
        sa.map(x), torch.full((1, 1, 2, 2), torch.sigmoid(torch.tensor(-1.0)))
    )


def test_parameter_and_mac_counts_by_hand() -> None:
    c, r, h, w, k = 16, 4, 6, 5, 7
    x = torch.zeros(2, c, h, w)
    se = count(SqueezeExcitation(c, r), x)
    assert se.params == 2 * c * (c // r) + c // r + c
    assert se.macs == c * h * w + 2 * c * (c // r)  # the pool and the two linear layers
    sa = count(SpatialAttention(k), x)
    assert sa.params == 2 * k * k + 2  # the 2→1 conv, BN's weight and bias
    assert sa.macs == h * w * 2 * k * k
    classes, d, e, hid = 10, 64, 32, 128
    gate = count(ClassPairGate(classes, d, e, hid), torch.zeros(2, dtype=torch.long))
    hand = classes * e + 2 * e + (e * hid + hid) + 2 * hid + (hid * d + d)
    assert (
        gate.params
        == hand
        == sum(p.numel() for p in ClassPairGate(classes, d, e, hid).parameters())
    )
    assert gate.macs == e * hid + hid * d
    assert count_params(FeatureFilter(OpenGate(d))) == 0
