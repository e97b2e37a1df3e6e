"""cm3: the catalogue, graphs, slerp, (calibrated) uniformity, the arms, claims three ways; the
full profile on a tiny MMRec set (``<name>.inter``, ``image_feat.npy``, ``text_feat.npy``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from subspacelab.api import DownloadError, ParamsError, load_tensors, read_json, sha256_file
from subspacelab.config import study_config
from subspacelab.recsys.catalogue import catalogue
from subspacelab.recsys.datasets import DatasetError
from subspacelab.registry import Metrics
from subspacelab.runner import run_step
from subspacelab.studies.cm3 import core
from subspacelab.studies.cm3.config import CM3Config
from subspacelab.studies.cm3.study import STUDY
from tests.helpers import make_workspace, tiny_params


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


# ------------------------------------------------------------- full profile: an MMRec set


def _mmrec_files(where: Path, name: str) -> None:
    """A tiny MMRec set: 24 items in 2 clusters (near-identical features inside a cluster),
    12 users with 6 training, 1 validation and 1 test item each, and user 12 cold (test only)."""
    where.mkdir(parents=True)
    rows = []
    for u in range(12):
        items = [(u + 2 * k) % 24 for k in range(8)]
        rows += [(u, i, 0) for i in items[:6]] + [(u, items[6], 1), (u, items[7], 2)]
    rows.append((12, 3, 2))
    (where / f"{name}.inter").write_text(
        "userID\titemID\trating\ttimestamp\tx_label\n"
        + "".join(f"{u}\t{i}\t4.0\t1400000000\t{s}\n" for u, i, s in rows)
    )
    rng = np.random.default_rng(0)
    cluster = np.arange(24) % 2
    for file, dim in (("image_feat.npy", 16), ("text_feat.npy", 6)):
        centres = rng.normal(size=(2, dim))
        feats = centres[cluster] + 0.01 * rng.normal(size=(24, dim))
        np.save(where / file, feats.astype(np.float32))


def _full_params(pins: dict[str, str] | None = None) -> dict:
    params = tiny_params(["cm3"])
    full = params["cm3"]["full"]
    full["seeds"] = [0]
    full["model"].update(dim=8, layers=1, knn_k=3, similar_threshold=0.5)
    full["train"].update(epochs=2, batch=32)
    full["data"]["mmrec"].update(dataset="sports", **(pins or {}))
    params["lab"] = {**params["lab"], "profile": "full", "device": "cpu"}
    return params


def _pins(where: Path) -> dict[str, str]:
    names = {"inter": "sports.inter", "image": "image_feat.npy", "text": "text_feat.npy"}
    return {f"{k}_sha256": sha256_file(where / f) for k, f in names.items()}


def test_full_profile_refuses_unpinned_or_mismatched_files(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", _full_params())
    where = ws / "data/mmrec/sports"
    _mmrec_files(where, "sports")
    with pytest.raises(ParamsError, match=r"cm3\.full\.data\.mmrec\.inter_sha256"):
        run_step(ws, "cm3", "data")
    make_workspace(ws, _full_params({**_pins(where), "text_sha256": "0" * 64}))
    with pytest.raises(DownloadError, match="mismatch"):
        run_step(ws, "cm3", "data")
    assert not (ws / "data/cm3/data").exists() and (where / "text_feat.npy").is_file()


def test_full_config_errors_name_the_key() -> None:
    params = _full_params()
    params["cm3"]["full"]["data"]["mmrec"]["dataset"] = "books"
    with pytest.raises(ParamsError, match=r"cm3\.full\.data\.mmrec\.dataset"):
        study_config(CM3Config, params, "cm3", "full")
    params = _full_params({"image_sha256": "abc"})
    with pytest.raises(ParamsError, match=r"cm3\.full\.data\.mmrec\.image_sha256.*64"):
        study_config(CM3Config, params, "cm3", "full")
    params = _full_params()
    params["cm3"]["full"]["data"]["mmrec"]["dir"] = "../elsewhere"
    with pytest.raises(ParamsError, match=r"cm3\.full\.data\.mmrec\.dir.*'\.\.'"):
        study_config(CM3Config, params, "cm3", "full")


def test_full_data_step_refuses_an_all_zero_feature_row(tmp_path: Path) -> None:
    where = tmp_path / "ws/data/mmrec/sports"
    _mmrec_files(where, "sports")
    image = np.load(where / "image_feat.npy")
    image[5] = 0.0
    np.save(where / "image_feat.npy", image)
    ws = make_workspace(tmp_path / "ws", _full_params(_pins(where)))
    with pytest.raises(DatasetError, match=r"image_feat\.npy: 1 item row\(s\) .*item 5"):
        run_step(ws, "cm3", "data")
    assert not (ws / "data/cm3/data").exists()


def test_full_chain_on_an_mmrec_set(tmp_path: Path) -> None:
    where = tmp_path / "ws/data/mmrec/sports"
    _mmrec_files(where, "sports")
    ws = make_workspace(tmp_path / "ws", _full_params(_pins(where)))
    for step in ("data", "features", "fit", "evaluate"):
        run_step(ws, "cm3", step)
    t, _ = load_tensors(ws / "data/cm3/data/catalogue.safetensors", study="cm3")
    assert t["train"].shape == (72, 2) and t["val"].shape == (12, 2)
    assert t["test"].shape == (12, 2)  # the cold user 12 is dropped
    assert read_json(ws / "data/cm3/data/items.json")["n_users"] == 13
    text, _ = load_tensors(ws / "data/cm3/features/text.safetensors", study="cm3")
    assert torch.equal(text["text"], torch.from_numpy(np.load(where / "text_feat.npy")))
    claims = [c["id"] for c in read_json(ws / "reports/cm3/claims.json")]
    assert claims == ["R1", "R2", "R3"]
