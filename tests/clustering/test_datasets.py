"""Loaders of the clustering group: the full-profile ones on small files written in the real
formats, and the seeded load_digits subset of the miniatures."""

from __future__ import annotations

import collections
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
import yaml

from subspacelab import registry
from subspacelab.clustering.datasets import (
    digits_subset,
    load_mat_images,
    load_planetoid,
    load_scene,
)
from subspacelab.config import profile_section
from subspacelab.data.cifar import CIFAR_RESOURCES
from subspacelab.data.download import DownloadError, Resource
from tests.helpers import REPO

_PY2_MODULES = {
    b"scipy.sparse._csr": b"scipy.sparse.csr",
    b"numpy._core.multiarray": b"numpy.core.multiarray",
}


def _write_planetoid(root: Path, name: str, python2: bool = False) -> None:
    """A 6-node graph: 2 train (x), 4 in allx, 2 test nodes listed out of order (ids 5, 4).

    ``python2``: protocol-2 pickles naming the module paths of the Python 2 / old SciPy and NumPy
    that wrote the published files (``scipy.sparse.csr``, ``numpy.core.multiarray``).
    """
    feats = np.eye(6, 3)
    labels = np.eye(2)[[0, 0, 1, 1, 0, 1]]
    parts = {
        "x": sp.csr_matrix(feats[:2]),
        "y": labels[:2],
        "allx": sp.csr_matrix(feats[:4]),
        "ally": labels[:4],
        "tx": sp.csr_matrix(feats[[5, 4]]),  # rows in test.index order
        "ty": labels[[5, 4]],
        "graph": collections.defaultdict(
            list, {0: [1], 1: [0, 2], 2: [1], 3: [4], 4: [3, 5], 5: [4]}
        ),
    }
    for part, obj in parts.items():
        data = pickle.dumps(obj, protocol=2 if python2 else 4)
        if python2:
            for new, old in _PY2_MODULES.items():
                data = data.replace(b"c" + new + b"\n", b"c" + old + b"\n")
        (root / f"ind.{name}.{part}").write_bytes(data)
    (root / f"ind.{name}.test.index").write_text("5\n4\n")


@pytest.mark.parametrize("python2", [False, True])
def test_load_planetoid_reorders_test_nodes(tmp_path: Path, python2: bool) -> None:
    _write_planetoid(tmp_path, "cora", python2)
    if python2:  # the rewrite really produced the old module paths
        assert b"cscipy.sparse.csr\n" in (tmp_path / "ind.cora.x").read_bytes()
    g = load_planetoid(tmp_path, "cora")
    assert g.labels.tolist() == [0, 0, 1, 1, 0, 1]
    np.testing.assert_allclose(g.features.toarray(), np.eye(6, 3))
    assert g.adjacency.nnz == 8 and (g.adjacency != g.adjacency.T).nnz == 0


def test_load_planetoid_refuses_foreign_globals(tmp_path: Path) -> None:
    _write_planetoid(tmp_path, "cora")
    with (tmp_path / "ind.cora.x").open("wb") as fh:
        pickle.dump(Path("/etc"), fh)
    with pytest.raises(pickle.UnpicklingError):
        load_planetoid(tmp_path, "cora")


def test_load_mat_images(tmp_path: Path) -> None:
    imgs = np.arange(2 * 16, dtype=np.float64).reshape(2, 4, 4)
    fea = imgs.transpose(0, 2, 1).reshape(2, 16)  # MATLAB column-major
    scipy.io.savemat(tmp_path / "COIL20.mat", {"fea": fea, "gnd": np.array([[3], [7]])})
    x, y = load_mat_images(tmp_path / "COIL20.mat", 4)
    assert x.shape == (2, 1, 4, 4) and y.tolist() == [0, 1]
    np.testing.assert_allclose(x[:, 0], imgs / imgs.max())
    with pytest.raises(ValueError, match="columns"):
        load_mat_images(tmp_path / "COIL20.mat", 5)
    scipy.io.savemat(tmp_path / "bad.mat", {"X": fea})
    with pytest.raises(ValueError, match="fea"):
        load_mat_images(tmp_path / "bad.mat", 4)


def test_load_scene_npz_and_errors(tmp_path: Path) -> None:
    bands = np.random.default_rng(0).random((5, 6, 4)).astype(np.float32)
    units = np.arange(30).reshape(5, 6) % 3
    np.savez(tmp_path / "scene.npz", bands=bands, units=units)
    b, u = load_scene(tmp_path / "scene.npz")
    np.testing.assert_array_equal(b, bands)
    np.testing.assert_array_equal(u, units)
    np.savez(tmp_path / "bad.npz", bands=bands, units=units[:4])
    with pytest.raises(ValueError, match="do not match"):
        load_scene(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match=r"npz or \.tif"):
        load_scene(tmp_path / "scene.png")
    with pytest.raises(ValueError, match="units_path"):
        load_scene(tmp_path / "scene.tif")


def _full(slug: str) -> dict:
    """A study's full-profile ``data`` section as the lab reads it (inheriting from ``mini``)."""
    schema = registry.get_study(slug).config
    section = yaml.safe_load((REPO / "params.yaml").read_text())[slug]
    return profile_section(section, slug, "full", schema)["data"]


def test_full_profiles_pin_or_refuse_their_downloads() -> None:
    lihf = _full("lihf_dsc")
    for fname in lihf["mat_files"].values():  # COIL20 / ORL: SHA-256 of the DSC-Net blobs
        pin = lihf["mat_sha256"][fname]
        assert len(pin) == 64 and int(pin, 16) >= 0, fname
    for name in _full("mlc")["datasets"]:  # CIFAR: the publisher's md5
        assert CIFAR_RESOURCES[name].md5, name
    geo = _full("geo_sae")  # no verifiable Sentinel-2 export: the empty pin refuses
    with pytest.raises(DownloadError, match="must be pinned"):
        Resource(f"{geo['scene_url']}/{geo['scene_file']}", geo["scene_file"], geo["scene_sha256"])


def test_digits_subset_is_class_balanced_seeded_and_scaled() -> None:
    images, labels = digits_subset(3, seed=0)
    assert images.shape == (30, 1, 8, 8) and images.dtype == np.float32
    assert labels.dtype == np.int64 and np.bincount(labels).tolist() == [3] * 10
    assert images.min() >= 0.0 and images.max() <= 1.0
    again, _ = digits_subset(3, seed=0)
    other, _ = digits_subset(3, seed=1)
    np.testing.assert_array_equal(images, again)
    assert not np.array_equal(images, other)
