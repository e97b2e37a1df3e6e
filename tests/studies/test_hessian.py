"""Tests of the hessian study (Sagun et al., arXiv:1706.04454): core, loaders, claims."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from subspacelab.config import ParamsError, build
from subspacelab.registry import Metrics
from subspacelab.studies.hessian import core
from subspacelab.studies.hessian import study as hs_study
from subspacelab.studies.hessian.config import DataConfig


def test_blobs_and_matched_loss_training() -> None:
    x, y = core.blobs(60, 4, 3, 1.0, 5.0, 0)
    assert x.shape == (60, 4) and x.dtype == torch.float64 and set(y.tolist()) == {0, 1, 2}
    net = core.mlp(4, 5, 3, 0)
    loss, steps = core.train_to_loss(
        net, x, y, "ce", 0.5, lr=0.01, max_steps=500, batch_size=60, seed=0
    )
    assert loss <= 0.5 and steps < 500
    sp = core.spectrum(net, x, y, "ce", 3)
    assert sp.h_eigs.numel() == sum(p.numel() for p in net.parameters())
    assert torch.all(sp.h_eigs[:-1] >= sp.h_eigs[1:])
    assert 0.0 <= sp.overlap <= 1.0 + 1e-9


def test_barrier_known_answer() -> None:
    alphas = np.array([-0.5, 0.0, 0.5, 1.0, 1.5])
    assert core.barrier(alphas, np.array([9.0, 1.0, 3.0, 2.0, 9.0])) == pytest.approx(1.0)
    assert core.barrier(alphas, np.array([9.0, 1.0, 0.5, 2.0, 9.0])) == 0.0


def test_config_needs_exactly_one_source() -> None:
    raw = {"blobs": None, "mnist": None, "clusters": [2], "std_factor": 2.0}
    with pytest.raises(ParamsError, match="exactly one"):
        build(DataConfig, raw, "hessian.mini.data")


def _metrics(
    bulk_w: tuple[float, float], overlap: float, barrier: float, sep_bulk: float
) -> Metrics:
    vals: dict[str, float] = {}
    for i, w in enumerate((8, 16)):
        vals[f"bulk/mse/k2/w{w}"] = bulk_w[i]
        vals[f"overlap/mse/k2/w{w}"] = overlap
        vals[f"lambda1/mse/k2/w{w}"] = 1.0
        vals[f"outliers_gap/mse/k2/w{w}"] = 2
    vals["bulk/mse/k2_std2/w8"] = sep_bulk
    vals["lambda1/mse/k2_std2/w8"] = 2.0
    vals["outliers_gap/mse/k2_std2/w8"] = 2
    vals["overlap/mse/k2_std2/w8"] = overlap
    vals["sblb/barrier_over_init"] = barrier
    return Metrics(vals)


def test_claims_both_ways() -> None:
    good = _metrics((0.5, 0.6), 0.99, 0.01, 0.52)
    bad = _metrics((0.6, 0.5), 0.9, 0.2, 0.7)
    checks = {c.id: c.check for c in hs_study.CLAIMS}
    for cid in checks:
        assert checks[cid](good).holds, cid
        assert not checks[cid](bad).holds, cid
