"""Tests of the nc_deep_linear study (Dang et al., arXiv:2301.00437)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from subspacelab.api import Metrics, fit, full_batch_loader, tensor_loader
from subspacelab.config import ParamsError, build
from subspacelab.nets.training import LocalEnv
from subspacelab.probes import collapse as nc
from subspacelab.studies.nc_deep_linear import core
from subspacelab.studies.nc_deep_linear import study as ncdl
from subspacelab.studies.nc_deep_linear.config import DataConfig
from subspacelab.studies.nc_deep_linear.core import UFMProblem
from subspacelab.studies.nc_deep_linear.lightning import (
    FullBatchLBFGS,
    solve_ufm,
    train_regularised_mse,
)


def _solve(problems: dict[str, UFMProblem], iters: int) -> None:
    solve_ufm(LocalEnv(), list(problems.values()), lr=0.1, momentum=0.9, iters=iters)


def test_ufm_solver_reaches_the_closed_form_for_one_layer() -> None:
    counts, lam = [20, 10, 5, 5], 5e-3
    problem = UFMProblem(counts, 8, 1, lam, 0.1, seeds=[0])
    _solve({"m1": problem}, 1200)
    sol = problem.solution(0)
    y, _ = core.one_hot_targets(counts)
    d = core.geometry_distances(sol.h, sol.weights, y, nc.deep_linear_geometry(counts, 1, lam, lam))
    assert sol.grad_norm < 1e-4
    assert d["nc1_max"] < 1e-8
    assert d["nc3"] < 0.02 and d["nc2_w"] < 0.02 and d["nc2_h"] < 0.02
    assert d["nc2_w_balanced"] > 10 * d["nc2_w"]


def test_joint_and_seed_batched_ufm_equal_separate_runs() -> None:
    counts = [6, 3, 3]
    spec = {"a": (1, 1e-2), "b": (3, 1e-3)}
    joint = {k: UFMProblem(counts, 4, m, lam, 0.1, seeds=[1, 2]) for k, (m, lam) in spec.items()}
    _solve(joint, 40)
    for name, (m, lam) in spec.items():
        for seed in (1, 2):
            alone = UFMProblem(counts, 4, m, lam, 0.1, seeds=[seed])
            _solve({name: alone}, 40)
            a, b = joint[name].solution(seed), alone.solution(seed)
            for p_joint, p_alone in zip([a.h, *a.weights], [b.h, *b.weights], strict=True):
                torch.testing.assert_close(p_joint, p_alone, rtol=1e-12, atol=1e-14)
            assert a.grad_norm == pytest.approx(b.grad_norm, rel=1e-9)
    with pytest.raises(ValueError, match="at least one seed"):
        UFMProblem(counts, 4, 1, 1e-3, 0.1, seeds=[])


def _xy(n: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_joint_regularised_mse_equals_separate_runs() -> None:
    x, y = _xy()

    def nets() -> dict[str, core.DeepLinearMLP]:
        out = {}
        for depth in (1, 2):
            torch.manual_seed(depth)
            out[f"M{depth}"] = core.DeepLinearMLP(5, 6, 1, depth, 3)
        return out

    decay = {"lam_w": 1e-3, "lam_h": 1e-3, "n_total": 30}
    joint = nets()
    before = {k: [p.detach().clone() for p in n.parameters()] for k, n in joint.items()}
    loader = tensor_loader(x, y, batch_size=8, seed=0)
    train_regularised_mse(LocalEnv(), joint, loader, lr=1e-2, epochs=2, **decay)
    for name, net in nets().items():
        loader = tensor_loader(x, y, batch_size=8, seed=0)
        train_regularised_mse(LocalEnv(), {name: net}, loader, lr=1e-2, epochs=2, **decay)
        for p_joint, p_alone in zip(joint[name].parameters(), net.parameters(), strict=True):
            assert torch.equal(p_joint, p_alone)
        assert not any(
            torch.equal(a, b) for a, b in zip(before[name], net.parameters(), strict=True)
        )  # it trained
    with pytest.raises(ValueError, match="at least one member"):
        solve_ufm(LocalEnv(), [], lr=0.1, momentum=0.9, iters=1)


def test_full_batch_objective_is_the_ufm_loss_and_lbfgs_descends() -> None:
    x, y = _xy(200)
    torch.manual_seed(0)
    net = core.DeepLinearMLP(5, 6, 2, 2, 3).double()
    x = x.double()
    lam_w, lam_h = 1e-3, 2e-3
    h = net.features(x)[0].T
    _, y1h = core.one_hot_targets([int((y == k).sum()) for k in range(3)])
    order = torch.argsort(y, stable=True)  # one_hot_targets sorts samples by class
    ufm = core.ufm_loss(h[:, order], [lin.weight for lin in net.linear], y1h, lam_w, lam_h)
    full = core.regularised_mse(net, x, y, lam_w, lam_h, len(y))
    torch.testing.assert_close(full, ufm)
    before = core.gradient_norm(net, x, y, lam_w, lam_h)
    polish = FullBatchLBFGS(net, lam_w=lam_w, lam_h=lam_h, max_iter=300, tol=1e-9)
    fit(LocalEnv(), polish, full_batch_loader(x, y, steps=1), epochs=1)
    with torch.no_grad():
        assert float(core.regularised_mse(net, x, y, lam_w, lam_h, len(y))) < float(full) - 0.01
    # a ReLU trunk makes the objective piecewise smooth: the norm falls, not to zero
    assert core.gradient_norm(net, x, y, lam_w, lam_h) < 0.25 * before


def test_seed_batched_ufm_loss_is_the_sum_of_the_seeds_losses() -> None:
    _, y1h = core.one_hot_targets([5, 3, 2])
    g = torch.Generator().manual_seed(0)
    h = torch.randn(2, 4, 10, generator=g, dtype=torch.float64)  # (seeds, d, N): d ≠ N
    ws = [torch.randn(2, 4, 4, generator=g, dtype=torch.float64)]
    ws.append(torch.randn(2, 3, 4, generator=g, dtype=torch.float64))
    alone = sum(core.ufm_loss(h[i], [w[i] for w in ws], y1h, 1e-2, 2e-2) for i in range(2))
    torch.testing.assert_close(core.ufm_loss(h, ws, y1h, 1e-2, 2e-2), alone)


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


def _metrics(**over: tuple[float, ...]) -> Metrics:
    """Three seeds, depths M1 (UFM) and M2 (network), every relation holding unless ``over``
    replaces a metric's per-seed values."""
    vals: dict[str, tuple[float, ...]] = {"ufm/M1/nc1_max": (1e-12, 2e-12, 1e-13)}
    for n in ("nc2_w", "nc2_h", "nc3"):
        vals[f"ufm/M1/{n}"] = (1e-4, 2e-4, 1e-4)
        vals[f"ufm/M1/{n}_balanced"] = (0.2, 0.21, 0.19)
    vals["collapse/mean_ratio"] = (1e-5,) * 3
    vals["collapse/row_ratio"] = (1e-5,) * 3
    vals["collapse/n2_lam2"] = (64.0,) * 3
    for i, v in enumerate((3.0, 2.0, 1.0)):
        vals[f"net/M2/nc1_layer{i}"] = (v, 1.1 * v, 0.9 * v)
    vals["net/M2/row_norm_spearman"] = (0.95, 0.93, 0.97)
    for name in ("grad_norm", "grad_init", "train_error"):
        vals[f"net/M2/{name}"] = (1e-3,) * 3
    vals.update(over)
    return Metrics(vals)


def test_claims_hold_on_good_metrics() -> None:
    for claim in ncdl.CLAIMS:
        assert claim.check(_metrics()).verdict == "holds", claim.id


@pytest.mark.parametrize(
    ("claim", "over"),
    [
        ("r1_closed_form_geometry", {"ufm/M1/nc1_max": (1e-12, 1e-3, 1e-12)}),  # one seed
        ("r1_closed_form_geometry", {"ufm/M1/nc3_balanced": (5e-4, 1e-3, 5e-4)}),  # not 10×
        ("r2_minority_collapse", {"collapse/row_ratio": (1e-5, 1e-5, 0.1)}),
        ("r3_network", {"net/M2/nc1_layer1": (4.0, 4.4, 3.6)}),  # NC1 rises at layer 1
        ("r3_network", {"net/M2/row_norm_spearman": (0.5, 0.4, 0.6)}),
    ],
)
def test_claims_fail_when_a_part_fails(claim: str, over: dict) -> None:
    check = {c.id: c.check for c in ncdl.CLAIMS}[claim]
    assert check(_metrics(**over)).verdict == "does not hold"


def test_network_claim_is_inconclusive_when_seeds_disagree() -> None:
    check = {c.id: c.check for c in ncdl.CLAIMS}["r3_network"]
    assert check(_metrics(**{"net/M2/row_norm_spearman": (0.95, 0.5, 0.9)})).verdict == (
        "inconclusive"
    )
