"""Loaders of the clustering group: Planetoid graphs, .mat image sets and scenes (full profile),
and the load_digits subset of the miniatures.

* Planetoid (Yang, Cohen & Salakhutdinov, ICML 2016): ``ind.<name>.{x,tx,allx,y,ty,ally,graph}``
  are Python pickles of SciPy CSR matrices, numpy arrays and a dict of adjacency lists, plus the
  text file ``ind.<name>.test.index``. They are read with a restricted unpickler that resolves
  only the classes those files contain, so a tampered file cannot run code.
* COIL20 / ORL as distributed with the DSC-Net code: MATLAB files with ``fea`` (n×pixels) and
  ``gnd`` (labels), read by :func:`scipy.io.loadmat`.
* A multispectral scene: ``bands`` (H×W×B) and ``units`` (H×W integer ground truth) in an
  ``.npz`` export (the documented format), or a GeoTIFF pair read with ``tifffile`` when it is
  installed (it is an optional dependency).
* load_digits (scikit-learn's bundled 8×8 digits, no download): a seeded class-balanced subset
  (:func:`digits_subset`), the mini input of lihf_dsc and clustering_compare.
"""

from __future__ import annotations

import codecs
import collections
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import scipy.sparse as sp

from subspacelab.clustering.synthetic import AttributedGraph

PLANETOID_PARTS = ("x", "y", "tx", "ty", "allx", "ally", "graph")

_RECONSTRUCT = np.zeros(1).__reduce__()[0]


def _allowed_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "defaultdict"): collections.defaultdict,
        ("builtins", "list"): list,
        ("__builtin__", "list"): list,  # the original Python 2 pickles
        ("_codecs", "encode"): codecs.encode,  # bytes in protocol-2 pickles written by Python 3
        ("__builtin__", "bytes"): bytes,  # (empty bytes there)
    }
    for module in ("scipy.sparse.csr", "scipy.sparse._csr"):
        allowed[(module, "csr_matrix")] = sp.csr_matrix
    for module in ("scipy.sparse.lil", "scipy.sparse._lil"):
        allowed[(module, "lil_matrix")] = sp.lil_matrix
    return allowed


class _PlanetoidUnpickler(pickle.Unpickler):
    """Unpickles containers, numpy arrays and SciPy CSR/LIL matrices; refuses anything else."""

    _ALLOWED = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        """Resolve only the allowed globals."""
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"refusing global {module}.{name} in a Planetoid file")


def _read_part(path: Path) -> Any:
    with path.open("rb") as fh:
        return _PlanetoidUnpickler(fh, encoding="latin1").load()


def load_planetoid(directory: Path, name: str) -> AttributedGraph:
    """Cora / Citeseer / PubMed from the Planetoid files in ``directory``, all nodes labelled.

    Test nodes are put back in graph order from ``ind.<name>.test.index``; Citeseer's isolated
    test ids with no features get zero features and label 0 (as in Kipf & Welling's loader).
    """
    parts = {p: _read_part(directory / f"ind.{name}.{p}") for p in PLANETOID_PARTS}
    index_file = directory / f"ind.{name}.test.index"
    test_idx = np.array([int(v) for v in index_file.read_text().split()], dtype=np.int64)
    lo, hi = int(test_idx.min()), int(test_idx.max())
    tx = sp.csr_matrix(parts["tx"])
    ty = np.asarray(parts["ty"])
    full_tx = sp.lil_matrix((hi - lo + 1, tx.shape[1]))
    full_ty = np.zeros((hi - lo + 1, ty.shape[1]))
    order = np.sort(test_idx)
    full_tx[order - lo, :] = tx
    full_ty[order - lo, :] = ty
    tx, ty = sp.csr_matrix(full_tx), full_ty
    feats = sp.vstack([sp.csr_matrix(parts["allx"]), tx]).tolil()
    labels = np.vstack([np.asarray(parts["ally"]), ty])
    feats[test_idx, :] = feats[order, :]
    labels[test_idx, :] = labels[order, :]
    n = feats.shape[0]
    rows, cols = [], []
    for src, dsts in dict(parts["graph"]).items():
        for dst in dsts:
            if src != dst and src < n and dst < n:
                rows.append(src)
                cols.append(dst)
    adj = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)).tocsr()
    adj = ((adj + adj.T) > 0).astype(np.float64).tocsr()
    return AttributedGraph(adj, sp.csr_matrix(feats), labels.argmax(axis=1).astype(np.int64))


def digits_subset(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` load_digits images per class, drawn with ``seed``, as (n, 1, 8, 8) in
    [0, 1] (float32) and labels 0..9 (int64)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    idx = np.concatenate(
        [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in range(10)]
    )
    return (x[idx] / 16.0).reshape(-1, 1, 8, 8).astype(np.float32), y[idx].astype(np.int64)


def load_mat_images(path: Path, side: int) -> tuple[np.ndarray, np.ndarray]:
    """COIL20/ORL-style .mat: ``fea`` (n × side²) and ``gnd`` (n) -> images (n, 1, side, side)
    scaled to [0, 1] and labels 0..K−1. MATLAB stores images column-major, hence the transpose."""
    mat = scipy.io.loadmat(path)
    if "fea" not in mat or "gnd" not in mat:
        raise ValueError(f"{path}: expected variables 'fea' and 'gnd', found {sorted(mat)}")
    fea = np.asarray(mat["fea"], dtype=np.float64)
    if fea.shape[1] != side * side:
        raise ValueError(f"{path}: fea has {fea.shape[1]} columns, expected {side}x{side}")
    fea = fea / max(float(fea.max()), 1e-12)
    images = fea.reshape(-1, side, side).transpose(0, 2, 1)[:, None].astype(np.float32)
    _, labels = np.unique(np.asarray(mat["gnd"]).ravel(), return_inverse=True)
    return images, labels.astype(np.int64)


def load_scene(path: Path, units_path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A multispectral scene and its rock-unit raster: (bands H×W×B float32, units H×W int64).

    ``.npz``: arrays ``bands`` and ``units``. ``.tif``/``.tiff``: the band stack at ``path`` and
    the unit raster at ``units_path``, read with the optional ``tifffile`` package.
    """
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            bands, units = np.asarray(data["bands"]), np.asarray(data["units"])
    elif path.suffix in (".tif", ".tiff"):
        if units_path is None:
            raise ValueError("a GeoTIFF scene needs units_path (the rock-unit raster)")
        import tifffile  # optional dependency, only for the full profile

        bands, units = tifffile.imread(path), tifffile.imread(units_path)
        if bands.ndim == 3 and bands.shape[0] < bands.shape[-1]:
            bands = np.moveaxis(bands, 0, -1)  # band-first GeoTIFF -> H×W×B
    else:
        raise ValueError(f"{path}: scene must be .npz or .tif, got {path.suffix!r}")
    if bands.ndim != 3 or units.shape != bands.shape[:2]:
        raise ValueError(f"{path}: bands {bands.shape} and units {units.shape} do not match")
    return bands.astype(np.float32), units.astype(np.int64)
