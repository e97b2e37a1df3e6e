"""MLC study: membership, warm-up/fit smoke on tiny data, ranks, claims both ways."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from subspacelab.api import Metrics
from subspacelab.clustering import MLCSchedule
from subspacelab.nets.training import LocalEnv
from subspacelab.studies.mlc import core
from subspacelab.studies.mlc.study import STUDY


def test_membership_is_doubly_stochastic_to_tolerance() -> None:
    c = torch.nn.functional.normalize(torch.randn(40, 6, dtype=torch.float64), dim=1)
    g = core.membership(c, 0.175, 5, 1e-8, 1000)
    ones = torch.ones(40, dtype=torch.float64)
    torch.testing.assert_close(g.sum(1), ones, atol=1e-12, rtol=0)  # ends on the row update
    torch.testing.assert_close(g.sum(0), ones, atol=1e-7, rtol=0)
    # an iteration cap too small to converge leaves the columns off: claim (d) can fail
    loose = core.membership(c, 0.175, 1, 1e-8, 1)
    assert float((loose.sum(0) - 1).abs().max()) > 1e-7


def test_numerical_rank() -> None:
    z = np.random.default_rng(0).standard_normal((50, 2)) @ np.random.default_rng(
        1
    ).standard_normal((2, 8))
    assert core.numerical_rank(z, 0.01) == 2


def test_warmup_and_fit_change_the_network_and_copy_heads() -> None:
    torch.manual_seed(0)
    x = torch.rand(64, 64)
    net = core.MLCNet(64, [32], 8)
    s = MLCSchedule(
        2, 2, 32, 0.1, 0.175, 5, 1e-5, 100, 0.05, 1.0, 0.01, 0.01, 0.9, 0.0, 0.0, 1, 0.05
    )
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
    mlc_d: list[float],
    raw_d: list[float],
    warm_d: list[float],
    mlc_s: list[float],
    km_s: list[float],
    sc_s: list[float],
    rank: list[float],
    row: list[float],
) -> Metrics:
    """Three seeds of every metric the claims read (paired by index)."""
    return Metrics(
        {
            "z_dim": 30.0,
            "digits/mlc/acc": mlc_d,
            "digits/raw_kmeans/acc": raw_d,
            "digits/warm_kmeans/acc": warm_d,
            "manifolds/mlc/acc": mlc_s,
            "manifolds/raw_kmeans/acc": km_s,
            "manifolds/raw_spectral/acc": sc_s,
            "manifolds/mlc/rank_max": rank,
            "digits/mlc/rank_max": rank,
            "manifolds/mlc/row_dev": row,
            "manifolds/mlc/col_dev": [0.0] * len(row),
            "digits/mlc/row_dev": row,
            "digits/mlc/col_dev": [0.0] * len(row),
        }
    )


def test_claims_hold_fail_and_are_inconclusive() -> None:
    checks = {c.id: c.check for c in STUDY.claims}
    good = _m(
        [0.85, 0.86, 0.87],
        [0.79, 0.79, 0.8],
        [0.8, 0.78, 0.8],
        [0.95, 0.96, 0.94],
        [0.7, 0.72, 0.71],
        [0.8, 0.79, 0.8],
        [8.0, 9.0, 8.0],
        [1e-4, 2e-5, 0.0],
    )
    bad = _m(
        [0.82, 0.81, 0.82],
        [0.79, 0.79, 0.8],
        [0.8, 0.8, 0.81],
        [0.95, 0.95, 0.96],
        [0.93, 0.94, 0.93],
        [0.8, 0.8, 0.8],
        [12.0, 13.0, 12.0],
        [1e-4, 1e-2, 0.0],  # one seed's Γ is off: the invariant fails
    )
    # the seeds straddle each threshold: gains of +12, −2 and +5 points over k-means, etc.
    unsure = _m(
        [0.91, 0.77, 0.85],
        [0.79, 0.79, 0.8],
        [0.7, 0.72, 0.71],
        [0.99, 0.8, 0.95],
        [0.7, 0.9, 0.8],
        [0.7, 0.8, 0.8],
        [6.0, 14.0, 10.0],
        [1e-4, 2e-5, 0.0],
    )
    for cid in ("a", "b", "c", "d"):
        assert checks[cid](good).verdict == "holds", cid
        assert checks[cid](bad).verdict == "does not hold", cid
    for cid in ("a", "b", "c"):
        assert checks[cid](unsure).verdict == "inconclusive", cid


def test_cluster_head_trains_with_its_own_learning_rate() -> None:
    torch.manual_seed(0)
    x = torch.rand(48, 16)
    net = core.MLCNet(16, [12], 6)
    frozen = MLCSchedule(
        0, 3, 24, 0.1, 0.175, 5, 1e-5, 100, 0.05, 1.0, 0.01, 0.0, 0.9, 0.0, 0.0, 0, 0.0
    )
    head, trunk = net.cluster.weight.detach().clone(), net.subspace.weight.detach().clone()
    core.fit_mlc(LocalEnv(), net, x, None, frozen, seed=0)
    assert torch.equal(head, net.cluster.weight)  # lr_cluster = 0: the head does not move
    assert not torch.equal(trunk, net.subspace.weight)


def test_class_spectrum_sees_low_rank_classes_and_the_curve_averages() -> None:
    from subspacelab.studies.mlc.study import STUDY, class_spectrum, spectrum_curve

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    z = np.concatenate([rng.normal(size=(20, 1)) @ rng.normal(size=(1, 4)) for _ in range(2)])
    flat = class_spectrum(z, y)  # each class a line: one non-zero singular value
    assert flat[0] == pytest.approx(1.0) and max(flat[1:]) < 1e-12
    full = class_spectrum(rng.normal(size=(40, 4)), y)
    assert len(full) == 4 and min(full) > 0.1
    rows = spectrum_curve([{"mlc": flat, "warmup": full}, {"mlc": flat[:2], "warmup": full}])
    (curve,) = STUDY.curves
    assert all(set(r) == {curve.x, *curve.ys} for r in rows)
    assert [r["index"] for r in rows] == [1.0, 2.0, 3.0, 4.0]
    assert rows[3]["warmup"] == pytest.approx(full[3]) and rows[3]["mlc"] == pytest.approx(0.0)
