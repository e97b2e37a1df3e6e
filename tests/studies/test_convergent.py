"""Tests of the convergent study (Li et al., arXiv:1511.07543)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from subspacelab.registry import Metrics
from subspacelab.studies.convergent import core
from subspacelab.studies.convergent import study as cv


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


def _metrics(good: bool) -> Metrics:
    vals = {
        "conv1/bipartite_top_quartile": 0.9 if good else 0.7,
        "conv1/bipartite_bottom_quartile": 0.5,
        "conv1/bipartite_mean": 0.77,
        "conv2/bipartite_mean": 0.65 if good else 0.8,
        "conv1/untrained_bipartite_mean": 0.6,
        "conv2/untrained_bipartite_mean": 0.5 if good else 0.79,
        "conv1/semi_mean": 0.86,
        "conv2/semi_mean": 0.7 if good else 0.75,
        "conv1/lasso_r2/a0.01": 0.95,
        "conv2/lasso_r2/a0.01": 0.85 if good else 0.5,
        "conv1/one_to_one_r2": 0.64,
        "conv2/one_to_one_r2": 0.46,
        "conv1/both_nets_cluster_fraction": 0.5,
        "conv2/both_nets_cluster_fraction": 0.5 if good else 0.1,
    }
    return Metrics(vals)


def test_claims_both_ways() -> None:
    for claim in cv.CLAIMS:
        assert claim.check(_metrics(True)).holds, claim.id
        assert not claim.check(_metrics(False)).holds, claim.id
