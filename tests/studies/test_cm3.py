"""cm3: the catalogue, graphs, slerp, (calibrated) uniformity, the arms, claims three ways."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from subspacelab.recsys.catalogue import catalogue
from subspacelab.registry import Metrics
from subspacelab.studies.cm3 import core
from subspacelab.studies.cm3.study import STUDY


def test_catalogue_splits_per_user_and_texts_name_the_item() -> None:
    cat = catalogue(60, 12, 10, 8, 16, 0.1, 3.0, seed=0)
    assert len(cat.train) == 12 * 8 and len(cat.val) == 12 and len(cat.test) == 12
    everything = np.concatenate([cat.train, cat.val, cat.test])
    assert len({tuple(p) for p in everything}) == len(everything)  # no pair twice
    assert cat.texts[0].startswith("A ") and cat.image.shape == (60, 16)
    again = catalogue(60, 12, 10, 8, 16, 0.1, 3.0, seed=0)
    assert np.array_equal(again.train, cat.train) and again.texts == cat.texts


def test_normalised_adjacency_known_values() -> None:
    adj = core.normalised_adjacency(2, 2, np.array([[0, 0], [0, 1], [1, 1]])).to_dense()
    # user 0 has degree 2, item 0 degree 1: entry = 1/sqrt(2 * 1)
    assert adj[0, 2] == pytest.approx(1 / math.sqrt(2))
    assert adj[1, 3] == pytest.approx(1 / math.sqrt(1 * 2))
    torch.testing.assert_close(adj, adj.T)


def test_knn_graph_is_symmetric_normalised() -> None:
    feats = np.random.default_rng(0).normal(size=(10, 4))
    g = core.knn_graph(feats, 3)
    assert (g.diagonal() == 0).all() and ((g > 0).sum(1) == 3).all()


def test_slerp_stays_on_the_sphere_and_hits_the_ends() -> None:
    p = torch.nn.functional.normalize(torch.randn(5, 3), dim=1)
    q = torch.nn.functional.normalize(torch.randn(5, 3), dim=1)
    for lam, want in ((1.0, p), (0.0, q)):
        torch.testing.assert_close(core.slerp(p, q, torch.full((5,), lam)), want)
    mid = core.slerp(p, q, torch.full((5,), 0.5))
    torch.testing.assert_close(mid.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(mid, torch.nn.functional.normalize(p + q, dim=1))


def test_uniformity_known_answers_and_calibration() -> None:
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert float(core.uniformity(x)) == pytest.approx(-8.0)  # ‖x_i - x_j‖² = 4
    same = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert float(core.uniformity(same)) == pytest.approx(0.0)
    # orthogonal: plain exp(-2 * 2) = e^-4; calibrated with s = 0.5: exp(4 (0 - 0.5)) = e^-2
    ortho = torch.eye(2)
    assert float(core.uniformity(ortho)) == pytest.approx(-4.0)
    assert float(core.uniformity(ortho, torch.full((2, 2), 0.5))) == pytest.approx(-2.0)


def test_arms_train_and_score() -> None:
    from subspacelab.nets.training import LocalEnv

    torch.manual_seed(0)
    cat = catalogue(40, 10, 10, 8, 16, 0.1, 3.0, seed=1)
    text = torch.nn.functional.normalize(torch.randn(40, 12), dim=1)
    image = torch.from_numpy(cat.image)
    adj = core.normalised_adjacency(10, 40, cat.train)
    graph = core.knn_graph(text.numpy(), 3)
    arms = [core.Recommender(a, adj, graph, text, image, 10, 6, 2, 0.5) for a in core.ARMS]
    before = [a.scores().clone() for a in arms]
    rows = core.triples(cat.train, 40, 2, seed=0)
    seen = {tuple(p) for p in cat.train.tolist()}
    assert not any((int(u), int(n)) in seen for u, _, n in rows.tolist())
    core.train_arms(LocalEnv(), arms, rows, batch_size=32, lr=1e-2, weight_decay=0.0,
               gamma=0.9, min_sim=0.0, max_sim=1.0, label="t")  # fmt: skip
    for arm, old in zip(arms, before, strict=True):
        arm.eval()
        assert arm.scores().shape == (10, 40) and not torch.equal(arm.scores(), old)
    with pytest.raises(ValueError, match="unknown arm"):
        core.Recommender("mf", adj, graph, text, image, 10, 6, 2, 0.5)


def _metrics(gain: float, cos_gain: float, unif_ratio: float, spread: float) -> Metrics:
    noise = np.array([1.0, -1.0, 0.5, 0.0, -0.5]) * spread
    base = 0.10 + np.array([0.01, -0.01, 0.0, 0.005, -0.005])
    return Metrics(
        {
            "cm3/ndcg_20": list(base * (1 + gain) + noise),
            "directau/ndcg_20": list(base),
            "bpr/ndcg_20": list(base),
            "cm3_nocal/ndcg_20": list(base),
            "cm3/similar_cos": list(0.5 + cos_gain + noise),
            "directau/similar_cos": [0.5] * 5,
            "cm3/item_uniformity": list(-3.0 * unif_ratio + noise),
            "directau/item_uniformity": [-3.0] * 5,
            "similar_pairs": [100.0] * 5,
        }
    )


def test_claims_three_ways() -> None:
    assert [c.check(_metrics(0.1, 0.1, 1.0, 1e-4)).verdict for c in STUDY.claims] == ["holds"] * 3
    bad = _metrics(-0.1, -0.1, 1.0, 1e-4)
    assert [c.check(bad).verdict for c in STUDY.claims] == ["does not hold"] * 3
    assert STUDY.claims[2].check(_metrics(0.1, 0.1, 1.5, 1e-4)).verdict == "does not hold"
    assert STUDY.claims[0].check(_metrics(0.02, 0.1, 1.0, 0.01)).verdict == "inconclusive"


def test_ranking_curves_average_seeds_per_cut_off() -> None:
    from subspacelab.studies.cm3.study import ranking_curves

    metrics = {
        f"{a}/{q}_{k}": [0.1 * i + k / 100, 0.1 * i + k / 100 + 0.02]
        for i, a in enumerate(core.ARMS)
        for q in ("recall", "ndcg")
        for k in (10, 20)
    }
    curves = ranking_curves(metrics)
    assert sorted(curves) == sorted(c.name for c in STUDY.curves)
    for curve in STUDY.curves:
        rows = curves[curve.name]
        assert [r["k"] for r in rows] == [10, 20]
        assert all(set(r) == {curve.x, *curve.ys} for r in rows)
    assert curves["ndcg_vs_k"][1]["directau"] == pytest.approx(0.1 + 0.2 + 0.01)
