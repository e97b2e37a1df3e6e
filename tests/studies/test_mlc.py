"""MLC study: membership, warm-up/fit smoke on tiny data, ranks, claims both ways."""

from __future__ import annotations

import numpy as np
import torch

from subspacelab.nets.training import LocalEnv
from subspacelab.registry import Metrics
from subspacelab.studies.mlc import core
from subspacelab.studies.mlc.study import STUDY


def test_membership_is_doubly_stochastic_with_enough_iterations() -> None:
    c = torch.nn.functional.normalize(torch.randn(40, 6, dtype=torch.float64), dim=1)
    g = core.membership(c, 0.175, 200)
    torch.testing.assert_close(g.sum(0), torch.ones(40, dtype=torch.float64))
    torch.testing.assert_close(g.sum(1), torch.ones(40, dtype=torch.float64), atol=1e-6, rtol=0)


def test_numerical_rank() -> None:
    z = np.random.default_rng(0).standard_normal((50, 2)) @ np.random.default_rng(
        1
    ).standard_normal((2, 8))
    assert core.numerical_rank(z, 0.01) == 2


def test_warmup_and_fit_change_the_network_and_copy_heads() -> None:
    torch.manual_seed(0)
    x = torch.rand(64, 64)
    net = core.MLCNet(64, [32], 8)
    s = core.MLCSchedule(2, 2, 32, 0.1, 0.175, 5, 0.05, 1.0, 0.01, 0.01, 0.9, 0.0, 0.0, 1, 0.05)
    before = net.subspace.weight.detach().clone()
    core.warmup(LocalEnv(), net, x, 8, s, seed=0)
    assert not torch.equal(before, net.subspace.weight)
    core.copy_subspace_to_cluster(net)
    z, c = core.embed(net, x)
    torch.testing.assert_close(z, c)
    terms = core.fit_mlc(LocalEnv(), net, x, 8, s, seed=0)
    assert set(terms) == {"R", "Rc", "reg"}
    shifted = core.augment(
        torch.arange(16.0).reshape(1, 16), 1, 0.0, 4, torch.Generator().manual_seed(0)
    )
    assert sorted(shifted.ravel().tolist()) == list(range(16))


def _m(
    mlc_d: float,
    raw_d: float,
    warm_d: float,
    mlc_s: float,
    km_s: float,
    sc_s: float,
    rank: float,
    row: float,
) -> Metrics:
    return Metrics(
        {
            "z_dim": 30.0,
            "digits_mlc_acc": [mlc_d],
            "digits_raw_kmeans_acc": [raw_d],
            "digits_warm_kmeans_acc": [warm_d],
            "manifolds_mlc_acc": [mlc_s],
            "manifolds_raw_kmeans_acc": [km_s],
            "manifolds_raw_spectral_acc": [sc_s],
            "manifolds_rank_max": [rank],
            "digits_rank_max": [rank],
            "manifolds_row_dev": [row],
            "manifolds_col_dev": [0.0],
            "digits_row_dev": [row],
            "digits_col_dev": [0.0],
        }
    )


def test_claims_both_ways() -> None:
    checks = {c.id: c.check for c in STUDY.claims}
    good = _m(0.85, 0.79, 0.8, 0.95, 0.7, 0.8, 8.0, 1e-4)
    bad = _m(0.82, 0.79, 0.8, 0.95, 0.93, 0.8, 12.0, 1e-2)
    for cid in ("a", "b", "c", "d"):
        assert checks[cid](good).holds, cid
        assert not checks[cid](bad).holds, cid


def test_cluster_head_trains_with_its_own_learning_rate() -> None:
    torch.manual_seed(0)
    x = torch.rand(48, 16)
    net = core.MLCNet(16, [12], 6)
    frozen = core.MLCSchedule(0, 3, 24, 0.1, 0.175, 5, 0.05, 1.0, 0.01, 0.0, 0.9, 0.0, 0.0, 0, 0.0)
    head, trunk = net.cluster.weight.detach().clone(), net.subspace.weight.detach().clone()
    core.fit_mlc(LocalEnv(), net, x, None, frozen, seed=0)
    assert torch.equal(head, net.cluster.weight)  # lr_cluster = 0: the head does not move
    assert not torch.equal(trunk, net.subspace.weight)
