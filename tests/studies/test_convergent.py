"""Tests of the convergent study (Li et al., arXiv:1511.07543)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from subspacelab.config import ParamsError, build
from subspacelab.registry import Metrics
from subspacelab.studies.convergent import core
from subspacelab.studies.convergent import study as cv
from subspacelab.studies.convergent.config import TrainConfig
from subspacelab.studies.convergent.full import AlexNetUnits


def test_net_shapes_and_unit_samples() -> None:
    net = core.Net1D(40, 4, 10)
    a1, a2 = net.activations(torch.zeros(3, 40))
    assert a1.shape == (3, 4, 40) and a2.shape == (3, 4, 36)
    assert net(torch.zeros(3, 40)).shape == (3, 10)
    act = torch.arange(12.0).reshape(1, 3, 4)  # (n, C, L)
    np.testing.assert_array_equal(core.unit_samples(act)[1], [1.0, 5.0, 9.0])


def test_quartiles_and_pair_analysis_of_a_permuted_copy() -> None:
    assert core.quartile_means(np.arange(8.0)) == (6.5, 0.5)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((400, 6))
    b = a[:, [2, 0, 1, 5, 3, 4]] + 0.01 * rng.standard_normal((400, 6))
    row = core.analyse_pair(np.c_[a, np.zeros(400)], b, 200, [0.01], 3, 0)
    assert row["bipartite_mean"] == pytest.approx(1.0, abs=1e-3)
    assert row["semi_mean"] >= row["bipartite_mean"]
    assert row["one_to_one_r2"] > 0.99 and row["cka"] > 0.99
    assert 0.0 <= row["both_nets_cluster_fraction"] <= 1.0


PAIRS = 6


def _metrics(**over: float) -> Metrics:
    """Six pairs near the spec's prototype table; ``over`` shifts a metric on every pair (the
    shift grows slightly with the pair, so that values have a spread)."""
    base = {
        "conv1/bipartite_top_quartile": 0.94,
        "conv1/bipartite_bottom_quartile": 0.5,
        "conv1/bipartite_mean": 0.77,
        "conv2/bipartite_mean": 0.65,
        "conv1/semi_mean": 0.86,
        "conv2/semi_mean": 0.7,
        "conv1/lasso_r2/a0.01": 0.95,
        "conv2/lasso_r2/a0.01": 0.85,
        "conv1/one_to_one_r2": 0.64,
        "conv2/one_to_one_r2": 0.46,
        "conv1/both_nets_cluster_fraction": 0.6,
        "conv2/both_nets_cluster_fraction": 0.6,
        "conv1/null/bipartite_mean": 0.64,
        "conv2/null/bipartite_mean": 0.53,
        "conv1/null/lasso_r2/a0.01": 0.8,
        "conv2/null/lasso_r2/a0.01": 0.6,
        "conv1/null/one_to_one_r2": 0.6,
        "conv2/null/one_to_one_r2": 0.4,
        "conv1/null/both_nets_cluster_fraction": 0.3,
        "conv2/null/both_nets_cluster_fraction": 0.3,
    }
    vals = {}
    for k, v in base.items():
        vals[k] = [v + over.get(k, 0.0) + 0.002 * (i % 3) for i in range(PAIRS)]
    return Metrics(vals)


def test_claims_hold_on_the_prototype_numbers() -> None:
    for claim in cv.CLAIMS:
        assert claim.check(_metrics()).verdict == "holds", claim.id


@pytest.mark.parametrize(
    ("claim", "over"),
    [
        ("r1_spread", {"conv1/bipartite_top_quartile": -0.2}),
        ("r2_above_null", {"conv2/null/bipartite_mean": 0.1}),
        ("r3_depth", {"conv2/bipartite_mean": 0.2}),
        ("r4_subspace_sharing", {"conv2/lasso_r2/a0.01": -0.3}),
        # the control: the untrained net shows the same sparse-prediction gap as a trained one
        ("r4_subspace_sharing", {"conv1/null/lasso_r2/a0.01": 0.2}),
        ("r5_mixed_clusters", {"conv2/both_nets_cluster_fraction": -0.4}),
        # the control: mixed clusters with an untrained net are as frequent
        ("r5_mixed_clusters", {"conv1/null/both_nets_cluster_fraction": 0.35}),
    ],
)
def test_claims_fail_when_their_relation_or_control_fails(claim: str, over: dict) -> None:
    check = {c.id: c.check for c in cv.CLAIMS}[claim]
    assert check(_metrics(**over)).verdict == "does not hold"


def test_null_gap_within_the_pair_spread_is_inconclusive() -> None:
    m = dict(_metrics())
    vals = {k: list(v.values) for k, v in m.items()}
    vals["conv1/null/both_nets_cluster_fraction"] = [0.7, 0.5, 0.65, 0.55, 0.62, 0.58]
    check = {c.id: c.check for c in cv.CLAIMS}["r5_mixed_clusters"]
    assert check(Metrics(vals)).verdict == "inconclusive"


def test_accuracy_over_a_loader_is_batch_independent() -> None:
    torch.manual_seed(0)
    net = core.Net1D(12, 3, 10)
    x, y = torch.randn(37, 12), torch.arange(37) % 10
    whole = float((net(x).argmax(1) == y).double().mean())
    for batch_size in (5, 37):
        loader = DataLoader(TensorDataset(x, y), batch_size=batch_size)
        assert cv._accuracy(net, loader, torch.device("cpu")) == whole
    assert not net.training


def test_unit_samples_keep_evenly_spaced_positions() -> None:
    act = torch.arange(2 * 3 * 5.0).reshape(2, 3, 5)  # (n, C, P)
    out = core.unit_samples(act, positions=3)
    assert out.shape == (6, 3)
    np.testing.assert_array_equal(out[:3, 0], [0.0, 2.0, 4.0])  # input 0, positions 0, 2, 4
    assert core.unit_samples(act, positions=9).shape == (10, 3)


def _fake_alexnet(weights: None, num_classes: int) -> nn.Module:
    """torchvision's AlexNet layout (features[0..4]) at a small size."""
    net = nn.Module()
    net.features = nn.Sequential(
        nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 5, 3, 1, 1), nn.ReLU()
    )
    return net


def test_alexnet_units_read_conv1_and_conv2(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    fake = types.ModuleType("torchvision.models")
    fake.alexnet = _fake_alexnet  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    monkeypatch.setitem(sys.modules, "torchvision.models", fake)
    with torch.no_grad():
        a1, a2 = AlexNetUnits(10).activations(torch.rand(2, 3, 16, 16))
    assert a1.shape == (2, 4, 64) and a2.shape == (2, 5, 16)
    assert float(a1.min()) >= 0.0 and float(a2.min()) >= 0.0  # post-ReLU


def test_alexnet_without_torchvision_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(ImportError, match="subspacelab\\[full\\]"):
        AlexNetUnits()


def test_train_config_channels_rule() -> None:
    raw = {
        "arch": "alexnet",
        "channels": 8,
        "epochs": 1,
        "lr": 0.1,
        "weight_decay": 0.0,
        "batch_size": 2,
        "num_workers": 0,
    }
    with pytest.raises(ParamsError, match="channels"):
        build(TrainConfig, raw, "convergent.full.train")
    assert build(TrainConfig, {**raw, "channels": None}, "convergent.full.train").channels is None
