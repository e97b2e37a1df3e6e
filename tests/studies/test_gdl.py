"""gdl (arXiv 2104.13478): the worlds and the non-C4 blueprint models against known answers,
the claims both ways and the config's errors."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from subspacelab.api import Metrics
from subspacelab.config import ParamsError, study_config
from subspacelab.data.download import DownloadError
from subspacelab.modules.equivariance import equivariance_error
from subspacelab.studies.gdl import core, full
from subspacelab.studies.gdl.config import QM9_TARGETS, GdlConfig
from subspacelab.studies.gdl.study import STUDY
from tests.helpers import tiny_params


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_sets_world_targets_and_canonical_order() -> None:
    x, y = core.sets_world(5, 4, 2, _gen())
    assert torch.all(x[:, 1:, 0] >= x[:, :-1, 0])  # sorted by the first coordinate
    torch.testing.assert_close(y[:, 0], x.pow(2).sum(-1).mean(1))
    torch.testing.assert_close(y[:, 1], x[:, -1, 0])
    moved = core.permute_rows(x, _gen(1))
    torch.testing.assert_close(moved.sort(1).values, x.sort(1).values)


def test_graphs_world_counts_triangles() -> None:
    g, y = core.graphs_world(6, 5, (1.0, 1.0), _gen())
    a = g[:, :, :5]
    assert torch.equal(a, a.transpose(1, 2)) and torch.all(torch.diagonal(a, dim1=1, dim2=2) == 0)
    # complete graph K5: C(5, 3) = 10 triangles, scaled by C(5, 3)·1³
    torch.testing.assert_close(y, torch.ones(6, 1))
    assert torch.all(g[:, :, 5] == 1)
    with pytest.raises(ValueError, match="edge probabilities"):
        core.graphs_world(3, 6, (0.0, 0.0), _gen())


def test_clouds_world_shapes() -> None:
    x, y = core.clouds_world(60, 12, 0.0, _gen())
    torch.testing.assert_close(x.mean(1), torch.zeros(60, 3))
    flat = x[y != 0][:, :, 2]  # ring and plane lie in the plane z = 0 (centred)
    assert flat.abs().max() < 1e-6
    ring = x[y == 1]
    radius = ring[:, :, :2].norm(dim=-1)
    assert set(y.tolist()) == {0, 1, 2}
    assert (radius.std(1) < 0.5).all()
    assert x[y == 0][:, :, 2].abs().max() > 0.1  # the helix rises


def test_tile_repeats_to_length() -> None:
    assert core.tile(7, torch.tensor([3, 1, 2])).tolist() == [3, 1, 2, 3, 1, 2, 3]


def test_deepsets_and_mpnn_are_permutation_equivariant_and_the_mlp_is_not() -> None:
    torch.manual_seed(0)
    x, _ = core.sets_world(8, 6, 2, _gen())
    deepsets = core.DeepSets(2, 8, 2)
    inv = core.permutations(3, 6, 0, graph=False, node_level=False)
    rows = core.permutations(3, 6, 0, graph=False, node_level=True)
    assert equivariance_error(deepsets, x, inv)["max"] < 1e-5
    assert equivariance_error(deepsets.phi, x, rows)["max"] < 1e-5
    assert equivariance_error(core.MLP(12, 8, 2), x, inv)["max"] > 0.05
    g, _ = core.graphs_world(8, 7, (0.3, 0.6), _gen())
    g[:, :, 7] = torch.randn(8, 7)  # node features that tell the nodes apart
    mpnn = core.MPNN(1, 8, 2, 1)
    ginv = core.permutations(3, 7, 1, graph=True, node_level=False)
    gnodes = core.permutations(3, 7, 1, graph=True, node_level=True)
    assert equivariance_error(mpnn, g, ginv)["max"] < 1e-5
    assert equivariance_error(mpnn.nodes, g, gnodes)["max"] < 1e-5
    # relabelling the nodes but not the adjacency is not a symmetry: the error must show it
    rows_only = core.permutations(3, 7, 1, graph=False, node_level=True)
    assert equivariance_error(mpnn.nodes, g, rows_only)["max"] > 1e-3  # round-off: 1e-7


def test_a_graph_permutation_moves_adjacency_rows_and_columns() -> None:
    (el,) = core.permutations(1, 3, 0, graph=True, node_level=False)
    a = torch.tensor([[[0.0, 1, 0, 5], [1, 0, 1, 6], [0, 1, 0, 7]]])
    moved = el.on_input(a)
    p = moved[0, :, 3].long() - 5  # the feature column says where each node came from
    torch.testing.assert_close(moved[0, :, :3], a[0, :3, :3][p][:, p])


def test_strided_cnn_is_exact_only_for_multiples_of_its_stride() -> None:
    torch.manual_seed(0)
    x = torch.randn(6, 40)
    strided = core.CNN1d([4, 4], [2, 2], 5, 3)
    plain = core.CNN1d([4, 4], [1, 1], 5, 3)
    assert equivariance_error(strided, x, core.shifts([4, 8], 4, invariant=True))["max"] < 1e-5
    assert (
        equivariance_error(strided.features, x, core.shifts([4, 8], 4, invariant=False))["max"]
        < 1e-5
    )
    assert equivariance_error(strided, x, core.shifts([1, 2, 3], 4, invariant=True))["max"] > 1e-2
    assert equivariance_error(plain, x, core.shifts([1, 3], 1, invariant=True))["max"] < 1e-5
    assert (
        equivariance_error(plain.features, x, core.shifts([1, 3], 1, invariant=False))["max"] < 1e-5
    )
    with pytest.raises(ValueError, match="multiples"):
        core.shifts([2], 4, invariant=False)
    with pytest.raises(ValueError, match="one stride per width"):
        core.CNN1d([4], [1, 2], 3, 2)


def test_rotation_helpers() -> None:
    x = torch.arange(8.0).reshape(2, 1, 2, 2)
    allr = core.rotate_all(x)
    assert allr.shape == (6, 1, 2, 2)
    torch.testing.assert_close(allr[2:4], torch.rot90(x, 2, dims=(-2, -1)))
    aug = core.random_rot90(x, _gen())
    for i in range(2):
        assert any(torch.equal(aug[i], torch.rot90(x[i], k, (-2, -1))) for k in range(4))
    assert core.r2(torch.tensor([[1.0], [2.0]]), torch.tensor([[1.0], [2.0]])) == 1.0


@pytest.mark.parametrize(
    ("section", "change", "field"),
    [
        ("data", {"digits_sizes": [50, 300]}, "digits_sizes"),
        ("data", {"digits_sizes": [300, 100]}, "digits_sizes"),
        ("data", {"graph_p": [0.6, 0.2]}, "graph_p"),
        ("model", {"kernel": 4}, "kernel"),
        ("model", {"strides": [1, 1, 1]}, "strides"),
        ("model", {"strides": [2]}, "strides"),
        ("eval", {"shifts": [4, 8]}, "shifts"),
    ],
)
def test_config_errors_name_the_field(section: str, change: dict, field: str) -> None:
    params = tiny_params(["gdl"])
    params["gdl"]["mini"]["model"].update(cnn1d_widths=[4, 4, 4], strides=[2, 2, 1])
    params["gdl"]["mini"]["eval"].update(shifts=[1, 4])
    params["gdl"]["mini"][section].update(change)
    with pytest.raises(ParamsError, match=field):
        study_config(GdlConfig, params, "gdl", "mini")


def _metrics(
    eq: float,
    base: float,
    g_rot: list[float],
    c_up: list[float],
    c_rot: list[float],
    ds: list[float],
    mlp: list[float],
    other: float,
) -> Metrics:
    n = len(g_rot)
    values = {
        "digits_n100/gcnn/acc_rot": [v - 0.2 for v in g_rot],
        "digits_n100/cnn/acc_rot": [v - 0.2 for v in c_rot],
        "digits_full/gcnn/acc_up": g_rot,
        "digits_full/gcnn/acc_rot": g_rot,
        "digits_full/cnn/acc_up": c_up,
        "digits_full/cnn/acc_rot": c_rot,
        "digits_full/cnn_aug/acc_rot": c_up,
        "sets/deepsets/mse_perm": ds,
        "sets/mlp/mse_perm": mlp,
        "mnist1d/strided/e_eq_multiple": [1e-7] * n,
        "mnist1d/strided/e_eq_map": [1e-7] * n,
        "mnist1d/strided/e_eq_other": [other] * n,
        "digits_full/gcnn/e_eq64": [1e-16] * n,
        "points/egnn/e_eq64": [1e-16] * n,
    }
    for name in (
        "digits_n100/gcnn/e_eq",
        "digits_full/gcnn/e_eq_map",
        "mnist1d/cnn/e_eq",
        "mnist1d/cnn/e_eq_map",
        "sets/deepsets/e_eq",
        "sets/deepsets/e_eq_map",
        "graphs/mpnn/e_eq",
        "graphs/mpnn/e_eq_map",
        "points/egnn/e_eq",
        "points/egnn/e_eq_map",
    ):
        values[name] = [eq] * n
    for name in ("digits_n100/cnn/e_eq", "sets/mlp/e_eq", "points/mlp/e_eq", "graphs/mlp/e_eq"):
        values[name] = [base] * n
    return Metrics(values)


def test_claims_hold_fail_and_are_inconclusive() -> None:
    checks = {c.id: c.check for c in STUDY.claims}
    good = _metrics(
        1e-7,
        0.5,
        [0.95, 0.96, 0.97],
        [0.97, 0.98, 0.96],
        [0.4, 0.5, 0.45],
        [0.1, 0.2, 0.15],
        [0.9, 1.0, 1.2],
        0.1,
    )
    bad = _metrics(
        1e-3,
        0.01,
        [0.50, 0.51, 0.52],
        [0.50, 0.52, 0.51],
        [0.5, 0.52, 0.5],
        [0.9, 1.0, 1.2],
        [0.1, 0.2, 0.15],
        1e-3,
    )
    unsure = _metrics(
        1e-7,
        0.5,
        [0.95, 0.96, 0.97],
        [0.70, 0.98, 0.60],
        [0.55, 0.5, 0.45],
        [0.1, 1.2, 0.15],
        [0.9, 0.2, 1.2],
        0.1,
    )
    for cid in ("exact_equivariance", "rotation_transfer", "sample_efficiency", "strided_failure"):
        assert checks[cid](good).verdict == "holds", cid
        assert checks[cid](bad).verdict == "does not hold", cid
    for cid in ("rotation_transfer", "sample_efficiency"):
        assert checks[cid](unsure).verdict == "inconclusive", cid
    # one baseline that happens to be nearly invariant fails (a) on its own
    one = _metrics(
        1e-7,
        0.5,
        [0.95, 0.96, 0.97],
        [0.97, 0.98, 0.96],
        [0.4, 0.5, 0.45],
        [0.1, 0.2, 0.15],
        [0.9, 1.0, 1.2],
        0.1,
    )
    values = {k: list(one[k].values) for k in one}
    values["graphs/mlp/e_eq"] = [0.05] * 3
    assert checks["exact_equivariance"](Metrics(values)).verdict == "does not hold"
    assert math.isclose(good["sets/mlp/mse_perm"].values[0], 0.9)


def _amat(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """An MNIST-rot table: each row the image's pixels column by column, then the label."""
    rows = np.concatenate([images.transpose(0, 2, 1).reshape(len(images), -1), labels[:, None]], 1)
    np.savetxt(path, rows, fmt="%.6g")


def test_mnist_rot_loads_a_pinned_archive_in_the_same_format(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.random((5, 28, 28)).round(3).astype(np.float32)
    labels = np.array([0, 3, 9, 1, 2])
    src = tmp_path / "src"
    src.mkdir()
    _amat(src / full.TRAIN, images[:3], labels[:3])
    _amat(src / full.TEST, images[3:], labels[3:])
    archive = tmp_path / full.ARCHIVE
    with zipfile.ZipFile(archive, "w") as z:
        for name in (full.TRAIN, full.TEST):
            z.write(src / name, name)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    x_tr, y_tr, x_te, y_te = full.mnist_rot(tmp_path / "dl", archive.as_uri(), sha, lambda _m: None)
    assert x_tr.shape == (3, 1, 28, 28) and x_te.shape == (2, 1, 28, 28)
    np.testing.assert_allclose(x_tr[:, 0], images[:3], atol=1e-6)  # transposed back
    assert y_tr.tolist() == [0, 3, 9] and y_te.tolist() == [1, 2]
    bad = tmp_path / "bad.amat"
    np.savetxt(bad, np.ones((2, 10)))
    with pytest.raises(ValueError, match="785"):
        full.load_amat(bad)


def test_the_full_profile_needs_the_archive_pin() -> None:
    params = tiny_params(["gdl"])
    cfg = study_config(GdlConfig, params, "gdl", "mini")
    assert cfg.data.unpinned() == {}
    cfg.data.digits_source = "mnist_rot"
    assert set(cfg.data.unpinned()) == {"mnist_rot_sha256"}
    params["gdl"]["mini"]["data"]["download_dir"] = "../outside"
    with pytest.raises(ParamsError, match="download_dir"):
        study_config(GdlConfig, params, "gdl", "mini")


SDF_MOLS = [
    # name, atoms (symbol, x, y, z), bonds (1-based a, b, order)
    ("gdb_1", [("C", -0.0127, 1.0858, 0.008), ("H", 0.0022, -0.006, 0.002)], [(1, 2, 1)]),
    (
        "gdb_2",
        [("N", 0.0, 0.0, 0.0), ("C", 1.2, 0.0, 0.0), ("O", 0.0, 1.3, -0.5)],
        [(1, 2, 3), (1, 3, 2)],
    ),
]


def _sdf(mols: list) -> str:
    """A V2000 SD file in gdb9.sdf's fixed columns."""
    out = []
    for name, atoms, bonds in mols:
        out += [name, "     RDKit          3D", ""]
        out.append(f"{len(atoms):3d}{len(bonds):3d}  0  0  0  0  0  0  0  0999 V2000")
        for sym, x, y, z in atoms:
            out.append(f"{x:10.4f}{y:10.4f}{z:10.4f} {sym:<3} 0  0  0  0  0  0  0  0  0  0  0  0")
        out += [f"{a:3d}{b:3d}{k:3d}  0" for a, b, k in bonds]
        out += ["M  END", "$$$$"]
    return "\n".join(out) + "\n"


def _qm9_zip(path: Path, sdf: str, csv_rows: str | None = None) -> Path:
    header = "mol_id," + ",".join(QM9_TARGETS) + "\n"
    rows = csv_rows or "".join(
        f"gdb_{i},{','.join(str(i * 100 + j) for j in range(len(QM9_TARGETS)))}\n" for i in (2, 1)
    )
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(full.QM9_SDF, sdf)
        z.writestr(full.QM9_CSV, header + rows)
    return path


def test_qm9_reads_atoms_bonds_and_targets_by_mol_id(tmp_path: Path) -> None:
    archive = _qm9_zip(tmp_path / full.QM9_ARCHIVE, _sdf(SDF_MOLS))
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    folder = full._archive(tmp_path, full.QM9_ARCHIVE, archive.as_uri(), sha, lambda _m: None)
    g = full.read_qm9(folder, ["mu", "gap"])
    assert g.num_nodes.tolist() == [2, 3] and g.num_edges.tolist() == [1, 2]
    assert g.node_feat[:, 0].tolist() == [6, 1, 7, 6, 8]
    assert g.edges.tolist() == [[0, 1], [0, 1], [0, 2]] and g.edge_feat[:, 0].tolist() == [1, 3, 2]
    assert g.pos is not None
    np.testing.assert_allclose(g.pos[0], [-0.0127, 1.0858, 0.008], atol=1e-6)
    mu, gap = QM9_TARGETS.index("mu"), QM9_TARGETS.index("gap")
    np.testing.assert_allclose(g.y, [[100 + mu, 100 + gap], [200 + mu, 200 + gap]])  # by mol_id
    assert set(g.tensors()) == {
        "num_nodes",
        "num_edges",
        "edges",
        "node_feat",
        "edge_feat",
        "y",
        "pos",
    }


@pytest.mark.parametrize(
    ("sdf", "match"),
    [
        (_sdf(SDF_MOLS).replace(" O  ", " Cl "), "line 16: element 'Cl'"),
        (_sdf(SDF_MOLS).replace("  1  3  2  0", "  1  4  2  0"), "line 18: bond 1-4"),
        (_sdf(SDF_MOLS).replace("V2000", "V3000", 1), "line 4: want a V2000"),
        (_sdf(SDF_MOLS).rsplit("$$$$", 1)[0], "without its closing"),
    ],
)
def test_qm9_sdf_errors_name_the_line(tmp_path: Path, sdf: str, match: str) -> None:
    (tmp_path / full.QM9_SDF).write_text(sdf)
    with pytest.raises(ValueError, match=match):
        full.read_sdf(tmp_path / full.QM9_SDF)


def test_qm9_needs_a_target_row_per_molecule(tmp_path: Path) -> None:
    folder = tmp_path / "q"
    folder.mkdir()
    (folder / full.QM9_SDF).write_text(_sdf(SDF_MOLS))
    (folder / full.QM9_CSV).write_text("mol_id," + ",".join(QM9_TARGETS) + "\ngdb_1" + ",1" * 19)
    with pytest.raises(ValueError, match="'gdb_2' has no row"):
        full.read_qm9(folder, ["mu"])
    (folder / full.QM9_CSV).write_text("mol_id,mu\ngdb_1,x\n")
    with pytest.raises(ValueError, match="line 2: want numbers"):
        full.read_qm9(folder, ["mu"])


def _gz(text: str) -> bytes:
    return gzip.compress(text.encode())


def _hiv_zip(path: Path, replace: dict[str, str] | None = None, member: str = "") -> Path:
    """OGB's hiv.zip layout: two graphs (3 and 2 nodes), edges once per bond, local ids."""
    files = {
        "raw/edge.csv.gz": "0,1\n1,2\n0,1\n",
        "raw/node-feat.csv.gz": "5,0,4,5,3,0,2,0,0\n6,0,4,5,2,0,2,0,0\n7,0,3,5,0,0,1,0,0\n"
        "5,0,4,5,3,0,2,0,0\n7,0,1,5,0,0,1,0,0\n",
        "raw/edge-feat.csv.gz": "0,0,0\n1,0,1\n0,0,0\n",
        "raw/graph-label.csv.gz": "0\n1\n",
        "raw/num-node-list.csv.gz": "3\n2\n",
        "raw/num-edge-list.csv.gz": "2\n1\n",
        "split/scaffold/train.csv.gz": "1\n",
        "split/scaffold/valid.csv.gz": "0\n",
        "split/scaffold/test.csv.gz": "",
    } | (replace or {})
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(f"hiv/{name}", _gz(text))
        if member:
            z.writestr(member, b"x")
    return path


def test_molhiv_reads_graphs_labels_and_the_scaffold_split(tmp_path: Path) -> None:
    archive = _hiv_zip(tmp_path / full.MOLHIV_ARCHIVE)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    folder = full._archive(tmp_path, full.MOLHIV_ARCHIVE, archive.as_uri(), sha, lambda _m: None)
    g, split = full.read_molhiv(folder)
    assert g.num_nodes.tolist() == [3, 2] and g.num_edges.tolist() == [2, 1]
    assert g.node_feat.shape == (5, 9) and g.edge_feat.shape == (3, 3) and g.pos is None
    assert g.y[:, 0].tolist() == [0.0, 1.0] and g.edges.tolist() == [[0, 1], [1, 2], [0, 1]]
    assert split["train"].tolist() == [1] and split["valid"].tolist() == [0]
    assert split["test"].tolist() == []


@pytest.mark.parametrize(
    ("replace", "match"),
    [
        ({"raw/edge.csv.gz": "0,1\n1,x\n0,1\n"}, r"edge\.csv\.gz line 2: want integers"),
        ({"raw/edge.csv.gz": "0,1\n1,2\n0,2\n"}, r"edge\.csv\.gz line 3: node id outside"),
        ({"raw/node-feat.csv.gz": "1,2\n3\n"}, r"node-feat\.csv\.gz line 2: want 2 values"),
        ({"raw/num-edge-list.csv.gz": "2\n2\n"}, "rows for 4 edges"),
        ({"split/scaffold/test.csv.gz": "1\n"}, "overlap"),
        ({"raw/graph-label.csv.gz": "0\n2\n"}, "0 or 1"),
    ],
)
def test_molhiv_errors(tmp_path: Path, replace: dict[str, str], match: str) -> None:
    _hiv_zip(tmp_path / "h.zip", replace)
    full.safe_extract(tmp_path / "h.zip", tmp_path / "h")
    with pytest.raises(ValueError, match=match):
        full.read_molhiv(tmp_path / "h")


def test_molecule_archives_refuse_escaping_members(tmp_path: Path) -> None:
    archive = _hiv_zip(tmp_path / full.MOLHIV_ARCHIVE, member="hiv/../../escape.csv.gz")
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    with pytest.raises(DownloadError, match="unsafe path"):
        full._archive(tmp_path / "dl", full.MOLHIV_ARCHIVE, archive.as_uri(), sha, lambda _m: None)
    assert not (tmp_path / "escape.csv.gz").exists() and not (tmp_path / "dl" / "hiv").exists()


def test_the_full_profile_lists_the_molecule_pins() -> None:
    cfg = study_config(GdlConfig, tiny_params(["gdl"]), "gdl", "full")
    assert cfg.data.molecules is not None
    assert set(cfg.data.molecules.unpinned()) == {"qm9_sha256", "molhiv_sha256"}
    assert study_config(GdlConfig, tiny_params(["gdl"]), "gdl", "mini").data.molecules is None
    params = tiny_params(["gdl"])
    params["gdl"]["full"]["data"]["molecules"]["qm9_split"] = [10, 10]
    with pytest.raises(ParamsError, match="qm9_split"):
        study_config(GdlConfig, params, "gdl", "full")


class _Ctx:
    """What save_molecules uses of a step context: config, lab root, save, seeded."""

    def __init__(self, cfg: GdlConfig, root: Path) -> None:
        self.cfg, self.root, self.saved = cfg, root, {}

    def progress(self, _msg: str) -> None:
        pass

    def save(self, name: str, tensors: dict) -> None:
        self.saved[name] = tensors

    def seeded(self) -> list[int]:
        return self.cfg.seeds


def test_the_full_data_step_saves_the_molecules_and_each_seeds_qm9_split(tmp_path: Path) -> None:
    cfg = study_config(GdlConfig, tiny_params(["gdl"]), "gdl", "full")
    dl = tmp_path / cfg.data.download_dir
    dl.mkdir(parents=True)
    qm9 = _qm9_zip(dl / full.QM9_ARCHIVE, _sdf(SDF_MOLS))
    hiv = _hiv_zip(dl / full.MOLHIV_ARCHIVE)
    m = cfg.data.molecules
    assert m is not None
    m.qm9_sha256 = hashlib.sha256(qm9.read_bytes()).hexdigest()
    m.molhiv_sha256 = hashlib.sha256(hiv.read_bytes()).hexdigest()
    m.qm9_split = [1, 1, 0]
    ctx = _Ctx(cfg, tmp_path)
    full.save_molecules(ctx)  # type: ignore[arg-type]
    assert ctx.saved["molecules/qm9"]["y"].shape == (2, len(m.qm9_targets))
    assert ctx.saved["molecules/molhiv"]["idx_train"].tolist() == [1]
    for seed in cfg.seeds:
        split = ctx.saved[f"seed{seed}/qm9_split"]
        assert sorted([*split["idx_train"].tolist(), *split["idx_val"].tolist()]) == [0, 1]
    m.qm9_split = [2, 1, 0]
    with pytest.raises(ValueError, match="exceeds the 2 molecules"):
        full.save_molecules(ctx)  # type: ignore[arg-type]


# ---------------------------------------------------------------- molecule arms (full profile)


def _atoms(gen: torch.Generator, counts: list[int], pad: int = 0) -> torch.Tensor:
    """Padded ``[Z, x, y, z]`` molecules of ``counts`` atoms (``pad`` extra padding rows)."""
    width = max(counts) + pad
    out = torch.zeros(len(counts), width, 4)
    z = torch.tensor(list(full.ELEMENTS.values()), dtype=torch.float32)
    for i, n in enumerate(counts):
        out[i, :n, 0] = z[torch.randint(len(z), (n,), generator=gen)]
        out[i, :n, 1:] = torch.randn(n, 3, generator=gen)
    return out


def test_the_egnn_regressor_is_e3_permutation_and_padding_invariant() -> None:
    from subspacelab.modules.equivariant import e3
    from subspacelab.studies.gdl import molecules

    torch.manual_seed(0)
    atoms = _atoms(_gen(), [5, 3, 7])
    egnn = molecules.EGNNRegressor(16, 3, 2).eval()
    g = [molecules._on_atoms(e) for e in e3(4, 0, output="invariant")]
    assert equivariance_error(egnn, atoms, g)["max"] < 1e-5
    base = molecules.MLP(7 * 4, 16, 2)
    assert equivariance_error(base, atoms, g)["max"] > 0.05  # the baseline has no E(3) prior
    with torch.no_grad():
        want = egnn(atoms)
        perm = torch.randperm(7, generator=_gen(1))  # shuffles atoms and padding rows alike
        torch.testing.assert_close(egnn(atoms[:, perm]), want, atol=1e-5, rtol=1e-5)
        padded = torch.cat([atoms, torch.zeros(3, 4, 4)], dim=1)
        torch.testing.assert_close(egnn(padded), want, atol=1e-5, rtol=1e-5)
        alone = egnn(atoms[1:2, :3])  # the 3-atom molecule unpadded, batched alone
        torch.testing.assert_close(alone, want[1:2], atol=1e-5, rtol=1e-5)
        # the equivariant coordinates move with the molecule; padding rows stay put
        rot = molecules._on_atoms(e3(1, 3, output="invariant")[0])
        _, x, mask = egnn.propagate(atoms)
        _, x_moved, _ = egnn.propagate(rot.on_input(atoms))
        moved = rot.on_input(torch.cat([atoms[..., :1], x], dim=-1))[..., 1:]
        torch.testing.assert_close(
            x_moved * mask[..., None], moved * mask[..., None], atol=1e-4, rtol=1e-4
        )


def test_the_egnn_layer_with_a_full_mask_is_the_unmasked_layer() -> None:
    from subspacelab.modules.equivariant import EGNNLayer

    torch.manual_seed(0)
    layer = EGNNLayer(8)
    h, x = torch.randn(2, 5, 8), torch.randn(2, 5, 3)
    with torch.no_grad():
        for a, b in zip(layer(h, x), layer(h, x, torch.ones(2, 5)), strict=True):
            torch.testing.assert_close(a, b)


def _hiv_tensors() -> dict[str, torch.Tensor]:
    """Six small OGB-style graphs (chains), labels 0/1 alternating, a 2/2/2 split."""
    counts = [3, 2, 4, 3, 2, 5]
    gen = _gen(2)
    nodes = torch.randint(0, 4, (sum(counts), 9), generator=gen)
    edges = torch.cat([torch.stack([torch.arange(n - 1), torch.arange(1, n)], 1) for n in counts])
    return {
        "num_nodes": torch.tensor(counts),
        "num_edges": torch.tensor([n - 1 for n in counts]),
        "edges": edges,
        "node_feat": nodes,
        "edge_feat": torch.randint(0, 3, (len(edges), 3), generator=gen),
        "y": torch.tensor([[0.0], [1.0], [0.0], [1.0], [0.0], [1.0]]),
        "idx_train": torch.tensor([0, 1]),
        "idx_valid": torch.tensor([2, 3]),
        "idx_test": torch.tensor([4, 5]),
    }


def test_molhiv_padding_and_the_gin_is_permutation_and_padding_invariant() -> None:
    from subspacelab.studies.gdl import molecules

    hiv = _hiv_tensors()
    nodes, edges, bonds = molecules.molhiv_graphs(hiv)
    assert nodes.shape == (6, 5, 9) and edges.shape == (6, 4, 2) and bonds.shape == (6, 4, 3)
    assert nodes.dtype == torch.int16 and (nodes[1, 2:] == -1).all()
    assert edges[0].tolist() == [[0, 1], [1, 2], [-1, -1], [-1, -1]]
    torch.manual_seed(0)
    gin = molecules.GIN(molecules.vocab(hiv["node_feat"]), [3, 3, 3], 8, 2, 0.5).eval()
    with torch.no_grad():
        want = gin(nodes, edges, bonds)
        perm = torch.tensor([4, 2, 0, 3, 1])  # relabel the atoms of every graph
        inv = torch.argsort(perm)
        moved = edges.long().clone()
        moved[edges >= 0] = inv[edges.long()[edges >= 0]]
        got = gin(nodes[:, perm], moved.to(torch.int16), bonds)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        padded = [torch.cat([t, -torch.ones_like(t[:, :2])], 1) for t in (nodes, edges, bonds)]
        torch.testing.assert_close(gin(*padded), want, atol=1e-5, rtol=1e-5)
        alone = gin(nodes[1:2, :2], edges[1:2, :1], bonds[1:2, :1])
        torch.testing.assert_close(alone, want[1:2], atol=1e-5, rtol=1e-5)
    big = dict(hiv, node_feat=hiv["node_feat"] + 40000)
    with pytest.raises(ValueError, match="node features values beyond int16"):
        molecules.molhiv_graphs(big)


class _FitCtx(_Ctx):
    """A step context for the molecule fit and report: saves in memory, trains on the CPU."""

    def __init__(self, cfg: GdlConfig, root: Path) -> None:
        from subspacelab.nets.training import LocalEnv

        super().__init__(cfg, root)
        env = LocalEnv()
        self.lab, self.device, self.out = env.lab, env.device, root
        self.models: dict[str, dict[str, torch.Tensor]] = {}

    def load(self, name: str, step: str | None = None) -> dict:
        return self.saved[name]

    def save_model(self, name: str, module: torch.nn.Module) -> None:
        self.models[name] = {k: v.clone() for k, v in module.state_dict().items()}

    def load_model(self, module: torch.nn.Module, name: str, step: str | None = None):
        module.load_state_dict(self.models[name])
        return module


def _molecule_cfg(params: dict | None = None) -> GdlConfig:
    params = params or tiny_params(["gdl"])
    mf = params["gdl"]["full"]["molecule_fit"]
    mf["qm9"].update(groups=["mu+gap", "alpha"], layers=2, width=8, epochs=1, batch=2, mlp_width=8)
    mf["molhiv"].update(layers=2, width=8, epochs=1, batch=1, mlp_width=8)
    cfg = study_config(GdlConfig, params, "gdl", "full")
    cfg.seeds = [0, 1]
    return cfg


def test_the_full_fit_and_report_train_and_score_the_molecule_arms(tmp_path: Path) -> None:
    from subspacelab.studies.gdl import molecules

    cfg = _molecule_cfg()
    assert cfg.data.molecules is not None and cfg.molecule_fit is not None
    targets = cfg.data.molecules.qm9_targets
    atoms = _atoms(_gen(), [3, 5, 4, 2, 6, 3, 4])
    counts = (atoms[..., 0] > 0).sum(1)
    flat = atoms[atoms[..., 0] > 0]
    y = torch.randn(7, len(targets), generator=_gen(3)) * 10 + 100
    ctx = _FitCtx(cfg, tmp_path)
    ctx.saved["molecules/qm9"] = {
        "num_nodes": counts,
        "node_feat": flat[:, :1].long(),
        "pos": flat[:, 1:],
        "y": y,
    }
    ctx.saved["molecules/molhiv"] = _hiv_tensors()
    for seed in cfg.seeds:
        order = torch.randperm(7, generator=_gen(seed))
        ctx.saved[f"seed{seed}/qm9_split"] = {
            "idx_train": order[:4],  # 4 molecules, batch 2: 2 steps
            "idx_val": order[4:5],
            "idx_test": order[5:],
        }
    torch.testing.assert_close(molecules.qm9_atoms(ctx.saved["molecules/qm9"]), atoms)
    molecules.fit_molecules(ctx)  # type: ignore[arg-type]
    assert set(ctx.models) == {
        f"seed{s}/{w}" for s in (0, 1) for w in (
            "qm9/mu+gap/egnn", "qm9/mu+gap/mlp", "qm9/alpha/egnn", "qm9/alpha/mlp",
            "molhiv/gin", "molhiv/mlp",
        )
    }  # fmt: skip
    model = ctx.models["seed0/qm9/mu+gap/egnn"]
    train = ctx.saved["seed0/qm9_split"]["idx_train"]
    cols = [targets.index("mu"), targets.index("gap")]
    torch.testing.assert_close(model["mean"], y[train][:, cols].mean(0))  # the targets' units
    history = json.loads((tmp_path / "molecule_history.json").read_text())
    assert all(len(v) == 1 for v in history.values()) and len(history) == 12
    metrics, tables = molecules.molecule_report(ctx)  # type: ignore[arg-type]
    for arm in ("egnn", "mlp"):
        for t in ("mu", "gap", "alpha"):
            assert len(metrics[f"qm9/{arm}/mae_{t}"]) == 2
            assert all(v > 0 for v in metrics[f"qm9/{arm}/mae_{t}"])
    assert max(metrics["qm9/egnn/e_eq_mu+gap"]) < 1e-5 < min(metrics["qm9/mlp/e_eq_mu+gap"])
    for arm in ("gin", "mlp"):
        assert all(0 <= v <= 1 for v in metrics[f"molhiv/{arm}/roc_auc"])
    # an MAE in the CSV's units: the saved model's predictions against the raw targets
    m = molecules.qm9_model(cfg.molecule_fit, "mlp", atoms.shape[1], 1)
    m.load_state_dict(ctx.models["seed1/qm9/alpha/mlp"])
    test = ctx.saved["seed1/qm9_split"]["idx_test"]
    with torch.no_grad():
        want = (m.eval()(atoms[test]) - y[test][:, [targets.index("alpha")]]).abs().mean()
    assert metrics["qm9/mlp/mae_alpha"][1] == pytest.approx(float(want), rel=1e-5)
    qm9_table = next(v for k, v in tables.items() if k.startswith("QM9"))
    assert "| gap | Ha |" in qm9_table and "| alpha | bohr³ |" in qm9_table
    assert "| GIN |" in next(v for k, v in tables.items() if "molhiv" in k)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"qm9": {"groups": ["mu+nope"]}}, "molecule_fit.qm9.groups"),
        ({"qm9": {"groups": ["mu", "mu+gap"]}}, "molecule_fit.qm9.groups"),
        ({"qm9": {"schedule": "linear"}}, "schedule"),
        ({"molhiv": {"dropout": 1.0}}, "dropout"),
        ({"molhiv": {"layers": 0}}, "layers"),
    ],
)
def test_molecule_fit_config_errors_name_the_field(change: dict, match: str) -> None:
    params = tiny_params(["gdl"])
    for part, values in change.items():
        params["gdl"]["full"]["molecule_fit"][part].update(values)
    with pytest.raises(ParamsError, match=match):
        study_config(GdlConfig, params, "gdl", "full")


def test_molecule_fit_needs_the_molecules_and_is_null_in_mini() -> None:
    params = tiny_params(["gdl"])
    assert study_config(GdlConfig, params, "gdl", "mini").molecule_fit is None
    params["gdl"]["full"]["data"]["molecules"] = None
    with pytest.raises(ParamsError, match="molecule_fit"):
        study_config(GdlConfig, params, "gdl", "full")
