"""The parameter/MAC counter (subspacelab.modules.count) against a hand count and thop."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from subspacelab.modules.count import Gate, count


def test_one_conv_layer_by_hand() -> None:
    conv = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1, bias=True)
    c = count(conv, torch.zeros(2, 3, 16, 16))
    # output 8 x 8 x 8; each output: 3 * 3 * 3 MACs; params: 8*3*3*3 + 8
    assert c.macs == 8 * 8 * 8 * 27
    assert c.params == 8 * 27 + 8


def test_depthwise_pointwise_linear_pool_and_gate_by_hand() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)
            self.pw = nn.Conv2d(4, 6, 1, bias=False)
            self.bn = nn.BatchNorm2d(6)
            self.gate = Gate()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(6, 10)

        def forward(self, x: Tensor) -> Tensor:
            h = self.bn(self.pw(self.dw(x)))
            h = self.gate(
                h, torch.softmax(h.mean(1, keepdim=True).flatten(2), -1).view_as(h[:, :1])
            )
            return self.fc(self.pool(h).flatten(1))

    c = count(Net(), torch.zeros(3, 4, 5, 5))
    assert c.per_module == {
        "dw": 25 * 4 * 9,
        "pw": 25 * 6 * 4,
        "gate": 6 * 25,
        "pool": 6 * 25,
        "fc": 60,
    }
    assert c.params == 36 + 24 + 12 + 70  # dw, pw, BN (weight, bias), fc (60 + 10)


def test_an_uncovered_parametrised_module_is_an_error() -> None:
    with pytest.raises(TypeError, match="Bilinear"):
        count(nn.Bilinear(3, 3, 2), torch.zeros(1, 3))


def test_the_mode_is_restored() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    net.train()
    count(net, torch.zeros(1, 1, 5, 5))
    assert net.training


def test_agrees_with_thop_on_a_separable_cnn() -> None:
    thop = pytest.importorskip("thop")
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, stride=2, padding=1, bias=False),
        nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False),
        nn.Conv2d(16, 32, 1, bias=False),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1, groups=32),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    ).eval()
    x = torch.zeros(1, 1, 40, 40)
    ours = count(net, x)
    macs, params = thop.profile(net, inputs=(x,), verbose=False)
    assert ours.params == int(params)
    # thop also counts the average pool's one division per output (32 channels): we do not
    assert ours.macs == int(macs) - 32
