"""The full profile of hiponet (arXiv 2502.07746, spec §7): the paper's cohorts read in the
official repository's layout (``utils/read_data.py`` of KrishnaswamyLab/HiPoNet).

Provenance and terms — read before use:

* **Code**: KrishnaswamyLab/HiPoNet is under the **Yale Non-Commercial License** (research use
  only). Nothing of it is vendored here; the readers below follow its file layout only.
* **Data**: the cohorts are clinical single-cell and spatial data that the authors' lab
  (Krishnaswamy lab, Yale) distributes on request; they are not downloadable and no checksum is
  published, so every file is pinned by the user (``data.cohort.checksums``; ``python -m
  subspacelab check`` lists the missing pins and the data stage refuses to start without them).
  Use is bound by the data providers' terms and the patients' consent (research use, no
  re-identification, no redistribution):

  - ``melanoma`` — multiplexed ion-beam imaging (MIBI) of melanoma patients, label = response
    to immunotherapy: ``pc.pkl`` (a pickled list of cells × markers arrays) and ``labels.npy``;
  - ``pdo`` — patient-derived organoids (mass cytometry), label = treatment:
    ``pc_pdo_treatment.pkl`` and ``labels_pdo_treatment.npy`` (clouds of ≤ 200 cells dropped);
  - ``covid`` — COVID-19 patients' cytometry: ``filtered_point_clouds_final.pickle`` (a dict
    patient -> DataFrame of cells × markers; the first 100 cells, as the official reader) and
    ``filtered_point_cloud_labels_final.pickle`` (a dict patient -> label);
  - ``st`` — spatial transcriptomics: ``{spatial_cords,gene_expr,labels,indices}_<dataset>_
    <label>.pt`` (lists of tensors; the cells ``indices[i]`` of each sample); the spatial view
    enters as extra markers (coordinates appended to the genes);
  - ``custom`` — ``point_clouds.pkl``: a dict with ``clouds`` (arrays) and ``labels``.

Pickles are read by a restricted unpickler that builds only NumPy arrays, pandas frames (and
their pyarrow columns) and plain containers (any other global is refused); ``.pt`` files by
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from subspacelab.api import DownloadError, sha256_file

_NUMPY = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "float32"),
    ("numpy", "float64"),
    ("numpy", "int64"),
    ("numpy", "str_"),
    ("numpy.dtypes", "Float32DType"),
    ("numpy.dtypes", "Float64DType"),
    ("numpy.dtypes", "Int64DType"),
    ("numpy.dtypes", "ObjectDType"),
}
_BUILTINS = {"list", "dict", "tuple", "set", "frozenset", "slice", "range", "complex", "bytearray"}
# pandas rebuilds frames through these functions; every other pandas global must be a class
# (string columns of pandas >= 3 are pyarrow arrays, rebuilt from their buffers)
_PANDAS_FUNCTIONS = {
    "_new_Index",
    "_unpickle_block",
    "new_block",
    "_new_PeriodIndex",
    "_restore_array",
    "type_for_alias",
    "py_buffer",
}


class _SafeUnpickler(pickle.Unpickler):
    """Builds arrays, frames and containers only: no arbitrary callable of the pickle runs."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY or (module == "builtins" and name in _BUILTINS):
            return super().find_class(module, name)
        if module in ("pandas", "pyarrow.lib") or module.startswith("pandas."):
            obj = super().find_class(module, name)
            if isinstance(obj, type) or name in _PANDAS_FUNCTIONS:
                return obj
        raise pickle.UnpicklingError(f"refused to load {module}.{name} from a data pickle")


def read_pickle(path: Path) -> Any:
    """A data pickle through the restricted unpickler."""
    return _SafeUnpickler(io.BytesIO(path.read_bytes())).load()


def cohort_files(name: str, st_dataset: str, st_label: str) -> list[str]:
    """The files of cohort ``name`` in its root folder."""
    if name == "melanoma":
        return ["pc.pkl", "labels.npy"]
    if name == "pdo":
        return ["pc_pdo_treatment.pkl", "labels_pdo_treatment.npy"]
    if name == "covid":
        return ["filtered_point_clouds_final.pickle", "filtered_point_cloud_labels_final.pickle"]
    if name == "st":
        return [
            f"{k}_{st_dataset}_{st_label}.pt"
            for k in ("spatial_cords", "gene_expr", "labels", "indices")
        ]
    if name == "custom":
        return ["point_clouds.pkl"]
    raise ValueError(f"unknown cohort {name!r}; allowed: melanoma, pdo, covid, st, custom")


def verify(root: Path, checksums: Mapping[str, str], files: list[str]) -> None:
    """Every file present and matching its ``sha256:<hex>`` pin, checked before any reading."""
    for name in files:
        path = root / name
        if not path.is_file():
            raise DownloadError(f"{path}: missing (the cohort's files come from the authors' lab)")
        algo, _, digest = checksums.get(name, "").partition(":")
        if algo != "sha256" or not digest:
            raise DownloadError(f"{name}: no sha256 pinned in data.cohort.checksums")
        if sha256_file(path) != digest:
            raise DownloadError(f"{path}: sha256 differs from its pin")


def _encode(labels: Any) -> np.ndarray:
    """Labels of any type -> 0..C-1 in sorted order of the distinct values (LabelEncoder)."""
    _, codes = np.unique(np.asarray(labels), return_inverse=True)
    return codes.astype(np.int64)


def _arrays(clouds: Any) -> list[np.ndarray]:
    out = []
    for c in clouds:
        a = np.asarray(getattr(c, "values", c), dtype=np.float32)
        if a.ndim != 2:
            raise ValueError(f"a point cloud must be cells × markers, got shape {a.shape}")
        out.append(a)
    if len({a.shape[1] for a in out}) != 1:
        raise ValueError("the clouds' marker counts differ")
    return out


def load_cohort(
    name: str, root: Path, st_dataset: str = "", st_label: str = ""
) -> tuple[list[np.ndarray], np.ndarray]:
    """Clouds (cells × markers, float32) and labels 0..C-1 of cohort ``name`` under ``root``."""
    files = [root / f for f in cohort_files(name, st_dataset, st_label)]
    if name in ("melanoma", "pdo"):
        clouds = _arrays(read_pickle(files[0]))
        labels = _encode(np.load(files[1], allow_pickle=False))
        if name == "pdo":  # the official reader keeps clouds of more than 200 cells
            keep = [i for i, c in enumerate(clouds) if len(c) > 200]
            clouds, labels = [clouds[i] for i in keep], _encode(labels[keep])
    elif name == "covid":
        frames, by_patient = read_pickle(files[0]), read_pickle(files[1])
        if set(frames) != set(by_patient):
            raise ValueError("covid: the clouds' and the labels' patients differ")
        ids = list(frames)
        clouds = [c[:100] for c in _arrays(frames[i] for i in ids)]
        labels = _encode([by_patient[i] for i in ids])
    elif name == "st":
        import torch

        coords, genes, y, idx = (torch.load(f, weights_only=True) for f in files)
        clouds = _arrays(
            torch.cat([g[i], c[i]], 1).float().numpy()
            for g, c, i in zip(genes, coords, idx, strict=True)
        )
        labels = _encode(torch.as_tensor(y).numpy())
    else:
        payload = read_pickle(files[0])
        if not isinstance(payload, dict) or not {"clouds", "labels"} <= set(payload):
            raise ValueError("custom: the pickle must be a dict with 'clouds' and 'labels'")
        clouds, labels = _arrays(payload["clouds"]), _encode(payload["labels"])
    if len(clouds) != len(labels) or not clouds:
        raise ValueError(f"{name}: {len(clouds)} clouds for {len(labels)} labels")
    return clouds, labels


def subsample(clouds: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """Each cloud cut to ``n`` cells, drawn without replacement (with, for smaller clouds):
    a fixed cell count per cloud (spec §9), stacked (clouds, n, markers)."""
    out = [c[rng.choice(len(c), n, replace=len(c) < n)] for c in clouds]
    return np.stack(out).astype(np.float32)
