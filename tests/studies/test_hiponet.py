"""hiponet (arXiv 2502.07746): the models against known answers, the claims both ways, the
config's errors and the full profile's readers on tiny files written here."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from subspacelab.api import DownloadError, Metrics, sha256_file
from subspacelab.config import ParamsError, study_config, unpinned
from subspacelab.shapes import wavelets as wv
from subspacelab.studies.hiponet import core, full
from subspacelab.studies.hiponet.config import CohortData, HiponetConfig
from subspacelab.studies.hiponet.study import ARMS, STUDY, _group_row
from tests.helpers import tiny_params


def _x(b: int = 4, n: int = 15, d: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, n, d, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("features", "blocks"), [("scattering", 6), ("diffusion", 3)])
def test_hiponet_pools_views_and_scales(features: str, blocks: int) -> None:
    torch.manual_seed(0)
    net = core.HiPoNet(6, 2, 8.0, 0.5, 3, 16, 3, 3, features).eval()
    assert net.embed(_x()).shape == (4, 2 * blocks * 6)
    assert net(_x()).shape == (4, 3)
    assert (
        float(net.alpha.detach().min()) >= 0 and float(net.alpha.detach().max()) <= 1
    )  # U(0, 1) init
    # the per-cloud embedding does not depend on the order of the cells
    perm = torch.randperm(15)
    torch.testing.assert_close(net.embed(_x()[:, perm]), net.embed(_x()), atol=1e-5, rtol=1e-4)


def test_fixed_alpha_is_one_and_not_trained() -> None:
    net = core.HiPoNet(6, 1, 8.0, 0.5, 3, 16, 3, 3, "scattering", learn_alpha=False)
    assert torch.equal(net.alpha, torch.ones(1, 6))
    assert all(p is not net.alpha for p in net.parameters())
    knn = core.HiPoNet(6, 1, 8.0, 0.5, 3, 16, 3, 3, "scattering", learn_alpha=False, knn=4)
    w = knn.affinity(wv.reweight(_x(), knn.alpha))
    assert int(((w[0, 0] > 0).sum(1) - 1).min()) >= 4
    with pytest.raises(ValueError, match="features"):
        core.HiPoNet(6, 1, 8.0, 0.5, 3, 16, 3, 3, "wavelets")


def test_alpha_mass_and_edge_density_known_answers() -> None:
    alpha = torch.tensor([[1.0, 1.0, 0.0, 0.0], [-1.0, 0.0, 1.0, 2.0]])
    torch.testing.assert_close(core.alpha_mass(alpha, 2), torch.tensor([1.0, 0.25]))
    x = _x(2, 10, 4)
    assert core.edge_density(x, torch.zeros(1, 4), 1.0, 0.5) == 1.0  # all cells coincide
    assert core.edge_density(x, torch.full((1, 4), 1e3), 1.0, 0.5) == 0.0  # none is close


def test_gcn_adjacency_is_symmetric_normalised() -> None:
    a = core.knn_adjacency(_x(1, 12, 3), 3)[0]
    torch.testing.assert_close(a, a.T)
    binary = (a > 0).float()
    deg = binary.sum(1)
    torch.testing.assert_close(a, binary / torch.sqrt(deg[:, None] * deg[None, :]))
    for model in (
        core.GCN(3, 8, 3, 2),
        core.DeepSets(3, [8], 2),
        core.PointNetClassifier(3, [8, 16], 2),
    ):
        assert model.eval()(_x(2, 12, 3)).shape == (2, 2)


def test_simplicial_embedding_counts_and_width() -> None:
    x = _x(1, 10, 3)[0]
    alpha = torch.full((2, 3), 0.2)  # close cells: a complete graph on 10 nodes
    feats, edges, tris = core.simplicial_embedding(x, alpha, 5.0, 0.5, 3, 100)
    assert feats.shape == (2 * wv.scattering_width(3) * 3,)
    assert edges == 2 * 45 and tris == 2 * 100  # C(10, 3) = 120 triangles, capped at 100
    assert bool(torch.isfinite(feats).all())


def _metrics(hip: list[float], best: list[float], fixed: list[float], mass: list[float]) -> Metrics:
    n = len(hip)
    values = {f"cohort/{a}/acc": [0.4] * n for a in ARMS}
    values.update(
        {
            "cohort/hiponet/acc": hip,
            "cohort/pointnet/acc": best,
            "cohort/hiponet_fixed/acc": fixed,
            "cohort/hiponet/alpha_mass": mass,
            "cohort/hiponet/alpha_mass_init": [0.13] * n,
        }
    )
    return Metrics(values)


def test_claims_hold_fail_and_are_inconclusive() -> None:
    checks = {c.id: c.check for c in STUDY.claims}
    good = _metrics([0.90, 0.91, 0.92], [0.80, 0.81, 0.83], [0.70, 0.72, 0.71], [0.7, 0.72, 0.75])
    bad = _metrics([0.80, 0.81, 0.82], [0.85, 0.86, 0.84], [0.85, 0.86, 0.88], [0.2, 0.25, 0.3])
    unsure = _metrics([0.90, 0.80, 0.85], [0.83, 0.83, 0.83], [0.95, 0.75, 0.83], [0.9, 0.3, 0.6])
    for cid in ("beats_baselines", "views_find_label_markers", "learned_beats_fixed"):
        assert checks[cid](good).verdict == "holds", cid
        assert checks[cid](bad).verdict == "does not hold", cid
        assert checks[cid](unsure).verdict == "inconclusive", cid
    # (a) compares with the best baseline by mean, whichever it is
    gcn_best = dict(good.items())
    values = {k: list(v.values) for k, v in gcn_best.items()}
    values["cohort/gcn/acc"] = [0.95, 0.95, 0.95]
    assert checks["beats_baselines"](Metrics(values)).verdict == "does not hold"


def test_group_row_has_the_group_header() -> None:
    m = {k: list(v.values) for k, v in _metrics([0.9] * 3, [0.8] * 3, [0.7] * 3, [0.7] * 3).items()}
    row = _group_row(m)
    assert row.splitlines()[0] == (
        "| task | subspace or basis | our method | baseline | ours vs baseline "
        "| what the miniature leaves out |"
    )
    assert "pointnet" in row and row.count("\n") == 2


@pytest.mark.parametrize(
    ("section", "change", "field"),
    [
        ("data", {"k2_cells": 999}, "k2_cells"),
        ("model", {"knn": 999}, "model"),
        ("data", {"train_fraction": 1.0}, "train_fraction"),
    ],
)
def test_config_errors_name_the_field(section: str, change: dict, field: str) -> None:
    params = tiny_params(["hiponet"])
    params["hiponet"]["mini"][section].update(change)
    with pytest.raises(ParamsError, match=field):
        study_config(HiponetConfig, params, "hiponet", "mini")


def test_full_profile_lists_its_unpinned_files() -> None:
    cfg = study_config(HiponetConfig, tiny_params(["hiponet"]), "hiponet", "full")
    assert cfg.data.cohort is not None
    missing = unpinned(cfg, "hiponet.full")
    assert any("pc.pkl" in m for m in missing) and any("labels.npy" in m for m in missing)
    pinned = CohortData("melanoma", "x", {"pc.pkl": "sha256:ab", "labels.npy": "sha256:cd"}, "", "")
    assert pinned.unpinned() == {}


# --- full-profile readers on tiny files in the official layout --------------------------------


def _clouds(sizes: list[int], d: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal((n, d)).astype(np.float32) for n in sizes]


def test_melanoma_and_pdo_readers(tmp_path: Path) -> None:
    (tmp_path / "pc.pkl").write_bytes(pickle.dumps(_clouds([5, 7, 6])))
    np.save(tmp_path / "labels.npy", np.array([1, 0, 1]))
    clouds, labels = full.load_cohort("melanoma", tmp_path)
    assert [c.shape for c in clouds] == [(5, 3), (7, 3), (6, 3)]
    assert labels.tolist() == [1, 0, 1]
    (tmp_path / "pc_pdo_treatment.pkl").write_bytes(pickle.dumps(_clouds([250, 100, 300])))
    np.save(tmp_path / "labels_pdo_treatment.npy", np.array(["drugB", "ctrl", "ctrl"]))
    clouds, labels = full.load_cohort("pdo", tmp_path)  # the 100-cell cloud is dropped
    assert [len(c) for c in clouds] == [250, 300] and labels.tolist() == [1, 0]


def test_covid_reader_takes_frames_and_a_label_dict(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    frames = {
        p: pd.DataFrame(c, columns=["CD3", "CD4"])
        for p, c in zip("ab", _clouds([150, 40], 2), strict=True)
    }
    (tmp_path / "filtered_point_clouds_final.pickle").write_bytes(pickle.dumps(frames))
    labels = {"a": "severe", "b": "mild"}
    (tmp_path / "filtered_point_cloud_labels_final.pickle").write_bytes(pickle.dumps(labels))
    clouds, y = full.load_cohort("covid", tmp_path)
    assert [c.shape for c in clouds] == [(100, 2), (40, 2)]  # the first 100 cells
    assert y.tolist() == [1, 0]


def test_st_reader_appends_the_spatial_view(tmp_path: Path) -> None:
    coords = [torch.randn(6, 2), torch.randn(8, 2)]
    genes = [torch.randn(6, 4), torch.randn(8, 4)]
    idx = [torch.tensor([0, 2, 4]), torch.tensor([1, 3, 5, 7])]
    for kind, obj in (
        ("spatial_cords", coords),
        ("gene_expr", genes),
        ("labels", torch.tensor([0, 1])),
        ("indices", idx),
    ):
        torch.save(obj, tmp_path / f"{kind}_dlpfc_layer.pt")
    clouds, y = full.load_cohort("st", tmp_path, "dlpfc", "layer")
    assert [c.shape for c in clouds] == [(3, 6), (4, 6)]
    np.testing.assert_allclose(clouds[0][:, 4:], coords[0][idx[0]].numpy())
    assert y.tolist() == [0, 1]


def test_custom_reader_and_bad_pickles(tmp_path: Path) -> None:
    path = tmp_path / "point_clouds.pkl"
    path.write_bytes(pickle.dumps({"clouds": _clouds([4, 4]), "labels": ["x", "y"]}))
    clouds, y = full.load_cohort("custom", tmp_path)
    assert len(clouds) == 2 and y.tolist() == [0, 1]
    path.write_bytes(pickle.dumps({"clouds": _clouds([4])}))
    with pytest.raises(ValueError, match="'clouds' and 'labels'"):
        full.load_cohort("custom", tmp_path)

    class Evil:
        def __reduce__(self) -> tuple:
            return (os.system, ("echo pwned",))

    path.write_bytes(pickle.dumps({"clouds": Evil(), "labels": [0]}))
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        full.load_cohort("custom", tmp_path)
    with pytest.raises(ValueError, match="unknown cohort"):
        full.cohort_files("mnist", "", "")


def test_verify_checks_presence_and_pins(tmp_path: Path) -> None:
    (tmp_path / "pc.pkl").write_bytes(b"clouds")
    good = {"pc.pkl": f"sha256:{sha256_file(tmp_path / 'pc.pkl')}"}
    full.verify(tmp_path, good, ["pc.pkl"])
    with pytest.raises(DownloadError, match="no sha256"):
        full.verify(tmp_path, {}, ["pc.pkl"])
    with pytest.raises(DownloadError, match="differs"):
        full.verify(tmp_path, {"pc.pkl": "sha256:00"}, ["pc.pkl"])
    with pytest.raises(DownloadError, match="missing"):
        full.verify(tmp_path, good, ["labels.npy"])


def test_subsample_fixes_the_cell_count() -> None:
    out = full.subsample(_clouds([10, 3]), 5, np.random.default_rng(0))
    assert out.shape == (2, 5, 3) and out.dtype == np.float32
