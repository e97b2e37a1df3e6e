"""oca: retrieval metrics by hand, claims decided three ways on paired per-seed metrics."""

from __future__ import annotations

import pytest
import torch

from subspacelab.api import Metrics
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


def _m(
    oo: list[float],
    co: list[float],
    io: list[float],
    cc: list[float],
    bb: list[float],
    ii: list[float],
    err: list[float],
) -> Metrics:
    return Metrics(
        {
            "old_to_old/map": oo,
            "oca_to_old/map": co,
            "independent_to_old/map": io,
            "oca_to_oca/map": cc,
            "bct_to_bct/map": bb,
            "independent_to_independent/map": ii,
            "ortho_error_max": err,
        }
    )


OLD = [0.45, 0.50, 0.47]  # a seed effect larger than the gaps: pairing resolves them


def _shift(base: list[float], deltas: list[float]) -> list[float]:
    return [b + d for b, d in zip(base, deltas, strict=True)]


GOOD = _m(
    OLD,
    _shift(OLD, [0.03, 0.035, 0.032]),
    _shift(OLD, [-0.30, -0.31, -0.29]),
    [0.72, 0.78, 0.75],
    [0.69, 0.75, 0.72],
    [0.73, 0.80, 0.76],
    [1e-6, 2e-6, 5e-6],
)


def test_claims_hold() -> None:
    for cid in BY_ID:
        assert BY_ID[cid].check(GOOD).verdict == "holds", cid


def test_claims_do_not_hold() -> None:
    bad = _m(
        OLD,
        _shift(OLD, [-0.03, -0.035, -0.032]),  # OCA→old below old→old on every seed
        _shift(OLD, [-0.10, -0.11, -0.09]),  # independent→old only 10 pts below
        [0.72, 0.78, 0.75],
        [0.72, 0.78, 0.75],  # BCT as good as OCA
        [0.80, 0.86, 0.83],  # independent 8 pts above OCA
        [1e-6, 2e-3, 5e-6],  # one seed's Q drifted
    )
    for cid in BY_ID:
        assert BY_ID[cid].check(bad).verdict == "does not hold", cid


def test_claims_inconclusive_when_seeds_disagree() -> None:
    mixed = _m(
        OLD,
        _shift(OLD, [0.03, -0.03, 0.01]),
        _shift(OLD, [-0.30, -0.31, -0.29]),
        [0.72, 0.78, 0.75],
        [0.68, 0.79, 0.73],
        [0.73, 0.80, 0.76],
        [1e-6, 2e-6, 5e-6],
    )
    assert BY_ID["compatibility"].check(mixed).verdict == "inconclusive"
    assert BY_ID["new_model_quality"].check(mixed).verdict == "inconclusive"


def test_ortho_curve_mean_and_max_per_step() -> None:
    from subspacelab.studies.oca.study import STUDY, ortho_curve

    rows = ortho_curve([[1e-7, 3e-7, 2e-7], [3e-7, 1e-7]])
    (curve,) = STUDY.curves
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(set(r) == {curve.x, *curve.ys} for r in rows)
    assert rows[0]["mean"] == pytest.approx(2e-7) and rows[1]["max"] == pytest.approx(3e-7)
    assert rows[2]["mean"] == rows[2]["max"] == pytest.approx(2e-7)  # one seed left
    with pytest.raises(ValueError, match="no orthogonality error"):
        ortho_curve([[], []])
