"""oca: retrieval metrics by hand, claim checks both ways."""

from __future__ import annotations

import pytest
import torch

from subspacelab.registry import Metrics
from subspacelab.studies.oca.core import Embedder, retrieval
from subspacelab.studies.oca.study import CLAIMS

BY_ID = {c.id: c for c in CLAIMS}


def test_retrieval_by_hand() -> None:
    feats = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    assert retrieval(feats, feats, labels) == (1.0, 1.0)
    # labels that disagree with the geometry: each query's nearest is wrong; its one match is
    # ranked 3rd (queries 0, 2) or 2nd (queries 1, 3): AP = (1/3 + 1/2 + 1/3 + 1/2) / 4
    top1, ap = retrieval(feats, feats, torch.tensor([0, 1, 0, 1]))
    assert top1 == 0.0 and ap == pytest.approx(5 / 12)
    wide = torch.cat([feats, torch.randn(4, 3)], dim=1)  # truncated to the smaller dim
    assert retrieval(wide, feats, labels) == (1.0, 1.0)


def test_embedder_shapes_and_orthogonal_layer() -> None:
    net = Embedder(40, [4, 8], 10, 5, ortho=True, bias=False)
    logits, h = net(torch.randn(3, 40))
    assert logits.shape == (3, 5) and torch.allclose(h.norm(dim=1), torch.ones(3), atol=1e-5)
    assert net.ortho is not None and net.ortho.orthogonality_error() < 1e-5


def _m(oo: float, co: float, io: float, cc: float, bb: float, ii: float, err: float) -> Metrics:
    return Metrics(
        {
            "old_to_old_map": [oo],
            "oca_to_old_map": [co],
            "independent_to_old_map": [io],
            "oca_to_oca_map": [cc],
            "bct_to_bct_map": [bb],
            "independent_to_independent_map": [ii],
            "ortho_error_max": [err],
        }
    )


def test_claims_both_ways() -> None:
    good = _m(0.5, 0.55, 0.15, 0.7, 0.6, 0.72, 1e-6)
    bad = _m(0.5, 0.45, 0.35, 0.6, 0.6, 0.72, 1e-3)
    for cid in BY_ID:
        assert BY_ID[cid].check(good).holds, cid
        assert not BY_ID[cid].check(bad).holds, cid
