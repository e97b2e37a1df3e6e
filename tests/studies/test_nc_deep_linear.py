"""Tests of the nc_deep_linear study (Dang et al., arXiv:2301.00437)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from subspacelab.config import ParamsError, build
from subspacelab.nets.training import LocalEnv, fit, full_batch_loader, tensor_loader
from subspacelab.probes import collapse as nc
from subspacelab.registry import Metrics
from subspacelab.studies.nc_deep_linear import core
from subspacelab.studies.nc_deep_linear import study as ncdl
from subspacelab.studies.nc_deep_linear.config import DataConfig
from subspacelab.studies.nc_deep_linear.lightning import JointMSE, JointUFM, UFMProblem, mse_onehot


def _solve(problems: dict[str, UFMProblem], iters: int) -> JointUFM:
    joint = JointUFM(problems, lr=0.1, momentum=0.9)
    fit(LocalEnv(), joint, full_batch_loader(steps=iters), epochs=1)
    joint.final_gradients()
    return joint


def test_ufm_solver_reaches_the_closed_form_for_one_layer() -> None:
    counts, lam = [20, 10, 5, 5], 5e-3
    problem = UFMProblem(counts, 8, 1, lam, 0.1, seed=0)
    _solve({"m1": problem}, 1200)
    sol = problem.solution()
    y, _ = core.one_hot_targets(counts)
    d = core.geometry_distances(sol.h, sol.weights, y, nc.deep_linear_geometry(counts, 1, lam, lam))
    assert sol.grad_norm < 1e-4
    assert d["nc1_max"] < 1e-8
    assert d["nc3"] < 0.02 and d["nc2_w"] < 0.02 and d["nc2_h"] < 0.02
    assert d["nc2_w_balanced"] > 10 * d["nc2_w"]


def test_joint_ufm_equals_separate_runs() -> None:
    counts = [6, 3, 3]
    spec = {"a": (1, 1e-2), "b": (3, 1e-3)}
    joint = {k: UFMProblem(counts, 4, m, lam, 0.1, seed=1) for k, (m, lam) in spec.items()}
    _solve(joint, 40)
    for name, (m, lam) in spec.items():
        alone = UFMProblem(counts, 4, m, lam, 0.1, seed=1)
        _solve({name: alone}, 40)
        for p_joint, p_alone in zip(joint[name].parameters(), alone.parameters(), strict=True):
            assert torch.equal(p_joint, p_alone)


def test_joint_mse_equals_separate_runs() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 5, generator=g), torch.randint(0, 3, (30,), generator=g)

    def nets() -> dict[str, torch.nn.Module]:
        out = {}
        for depth in (1, 2):
            torch.manual_seed(depth)
            out[f"M{depth}"] = core.DeepLinearMLP(5, 6, 1, depth, 3)
        return out

    joint = nets()
    module = JointMSE(joint, lr=1e-2, weight_decay=1e-3)
    fit(LocalEnv(), module, tensor_loader(x, y, batch_size=8, seed=0), epochs=2)
    for name, net in nets().items():
        alone = JointMSE({name: net}, lr=1e-2, weight_decay=1e-3)
        fit(LocalEnv(), alone, tensor_loader(x, y, batch_size=8, seed=0), epochs=2)
        for p_joint, p_alone in zip(joint[name].parameters(), net.parameters(), strict=True):
            assert torch.equal(p_joint, p_alone)
    assert float(mse_onehot(torch.eye(3), torch.arange(3))) == 0.0
    with pytest.raises(ValueError, match="at least one"):
        JointUFM({}, lr=0.1, momentum=0.9)


def test_ufm_loss_known_value() -> None:
    h = torch.eye(2, dtype=torch.float64)
    _, y1h = core.one_hot_targets([1, 1])
    assert core.ufm_loss(h, [torch.eye(2, dtype=torch.float64)], y1h, 0.0, 0.0) == 0.0
    val = core.ufm_loss(h, [torch.zeros(2, 2, dtype=torch.float64)], y1h, 0.0, 1.0)
    assert float(val) == pytest.approx(0.5 * 2 / 2 + 0.5 * 2)


def test_mlp_and_subsample() -> None:
    net = core.DeepLinearMLP(5, 7, 2, 3, 4)
    feats = net.features(torch.zeros(3, 5))
    assert len(feats) == 3 and net(torch.zeros(3, 5)).shape == (3, 4)
    assert all(lin.bias is None for lin in net.linear)
    y = np.repeat(np.arange(3), 10)
    idx = core.subsample(y, [5, 3, 1], 0)
    assert np.bincount(y[idx]).tolist() == [5, 3, 1]
    with pytest.raises(ValueError, match="requested"):
        core.subsample(y, [11, 1, 1], 0)


def test_config_needs_exactly_one_source() -> None:
    raw = {"mnist1d": None, "cifar10": False, "class_counts": [2, 1], "seed": 0}
    with pytest.raises(ParamsError, match="cifar10"):
        build(DataConfig, raw, "nc_deep_linear.mini.data")


def _metrics(good: bool) -> Metrics:
    dist = 1e-4 if good else 0.05
    vals: dict[str, float] = {"ufm/M1/nc1_max": 1e-12 if good else 1e-3}
    for n in ("nc2_w", "nc2_h", "nc3"):
        vals[f"ufm/M1/{n}"] = dist
        vals[f"ufm/M1/{n}_balanced"] = 0.2
    vals["collapse/mean_ratio"] = 1e-5 if good else 0.1
    vals["collapse/row_ratio"] = 1e-5 if good else 0.1
    vals["collapse/n2_lam2"] = 64.0
    for i, v in enumerate((3.0, 2.0, 1.0) if good else (3.0, 4.0, 1.0)):
        vals[f"net/M2/nc1_layer{i}"] = v
    vals["net/M2/row_norm_spearman"] = 0.9 if good else 0.5
    return Metrics(vals)


def test_claims_both_ways() -> None:
    for claim in ncdl.CLAIMS:
        assert claim.check(_metrics(True)).holds, claim.id
        assert not claim.check(_metrics(False)).holds, claim.id
