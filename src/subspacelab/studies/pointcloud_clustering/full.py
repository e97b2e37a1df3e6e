"""pointcloud_clustering's full profile (arXiv 2307.14605, spec §7): SemanticKITTI.

Inputs are the user's two archives, placed by hand under ``data.kitti.root`` (KITTI's
registration gates the scans) and checked against their SHA-256 pins:

* ``data_odometry_velodyne.zip`` — ``dataset/sequences/<seq>/velodyne/<frame>.bin``: float32
  records (x, y, z, remission);
* ``data_odometry_labels.zip`` — ``dataset/sequences/<seq>/labels/<frame>.label``: one uint32
  per point, the semantic label in the lower 16 bits (the upper 16 are the instance id).

Raw labels go through ``learning_map`` of SemanticKITTI's ``semantic-kitti.yaml`` (embedded
below, or read from the user's copy with :func:`read_learning_map`) to the 19 evaluated
classes; "unlabeled" and "outlier" become the ignore label 255. The car class keeps a sub-type
the raw labels carry: parked (10) vs moving (252), so the sub-type NMI is measured on real
scans too. Val is sequence 08 (the test split scores only on CodaLab).

Licence: SemanticKITTI and KITTI odometry are CC BY-NC-SA 3.0 (non-commercial use only).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np

from subspacelab.api import StepContext, StepOutput, write_json
from subspacelab.studies.pointcloud_clustering.config import PointcloudClusteringConfig
from subspacelab.studies.pointcloud_clustering.core import IGNORE, split_tensors

# learning_map of semantic-kitti.yaml (semantic-kitti-api): raw label -> 0 (ignored) or 1..19
LEARNING_MAP = {
    0: 0, 1: 0, 10: 1, 11: 2, 13: 5, 15: 3, 16: 5, 18: 4, 20: 5, 30: 6, 31: 7, 32: 8, 40: 9,
    44: 10, 48: 11, 49: 12, 50: 13, 51: 14, 52: 0, 60: 9, 70: 15, 71: 16, 72: 17, 80: 18,
    81: 19, 99: 0, 252: 1, 253: 7, 254: 6, 255: 8, 256: 5, 257: 5, 258: 4, 259: 5,
}  # fmt: skip
CLASSES = (
    "car", "bicycle", "motorcycle", "truck", "other-vehicle", "person", "bicyclist",
    "motorcyclist", "road", "parking", "sidewalk", "other-ground", "building", "fence",
    "vegetation", "trunk", "terrain", "pole", "traffic-sign",
)  # fmt: skip
CAR_SUBTYPES = {10: 0, 252: 1}  # parked, moving
_MEMBER = re.compile(r"(?:.*/)?sequences/(\d{2})/(velodyne|labels)/(\d{6})\.(bin|label)")


def read_learning_map(path: Path) -> dict[int, int]:
    """``learning_map`` of a semantic-kitti.yaml file."""
    import yaml

    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    if not isinstance(doc, dict) or not isinstance(doc.get("learning_map"), dict):
        raise ValueError(f"{path}: no learning_map mapping")
    return {int(k): int(v) for k, v in doc["learning_map"].items()}


def lookup(mapping: dict[int, int]) -> np.ndarray:
    """A table over raw labels 0..65535: the class index 0..18, or ``IGNORE``."""
    lut = np.full(1 << 16, IGNORE, dtype=np.int64)
    for raw, cls in mapping.items():
        if cls > 0:
            lut[raw] = cls - 1
    return lut


def read_scan(data: bytes) -> np.ndarray:
    """A velodyne ``.bin``: (N, 4) float32 x, y, z, remission."""
    if len(data) % 16:
        raise ValueError(f"a velodyne scan is float32 x4 records; got {len(data)} bytes")
    return np.frombuffer(data, dtype="<f4").reshape(-1, 4)


def read_label(data: bytes) -> np.ndarray:
    """A ``.label`` file's semantic labels: the lower 16 bits of each uint32."""
    if len(data) % 4:
        raise ValueError(f"a label file is uint32 records; got {len(data)} bytes")
    return (np.frombuffer(data, dtype="<u4") & 0xFFFF).astype(np.int64)


def frames(archive: zipfile.ZipFile, kind: str) -> dict[tuple[str, str], str]:
    """``{(sequence, frame): member}`` of the archive's ``velodyne`` or ``labels`` files."""
    out = {}
    for name in archive.namelist():
        m = _MEMBER.fullmatch(name)
        if m and m.group(2) == kind:
            out[(m.group(1), m.group(3))] = name
    return out


def load_split(
    velodyne: Path,
    labels: Path,
    sequences: list[str],
    stride: int,
    n_points: int,
    lut: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every ``stride``-th labelled scan of ``sequences``, each subsampled to ``n_points``:
    points (S, N, 3) (remission dropped), classes (S, N), car sub-types (S, N; −1 elsewhere)."""
    pts, cls, sub = [], [], []
    with zipfile.ZipFile(velodyne) as zv, zipfile.ZipFile(labels) as zl:
        scans, labs = frames(zv, "velodyne"), frames(zl, "labels")
        for seq in sequences:
            keys = sorted(k for k in scans if k[0] == seq and k in labs)
            if not keys:
                raise ValueError(f"sequence {seq}: no scan with labels in {velodyne.name}")
            for key in keys[::stride]:
                scan, raw = read_scan(zv.read(scans[key])), read_label(zl.read(labs[key]))
                if len(scan) != len(raw):
                    raise ValueError(f"{seq}/{key[1]}: {len(scan)} points, {len(raw)} labels")
                take = rng.choice(len(scan), n_points, replace=len(scan) < n_points)
                pts.append(scan[take, :3])
                cls.append(lut[raw[take]])
                sub.append(np.vectorize(lambda r: CAR_SUBTYPES.get(int(r), -1))(raw[take]))
    return (
        np.stack(pts).astype(np.float32),
        np.stack(cls).astype(np.int64),
        np.stack(sub).astype(np.int64),
    )


def data_full(ctx: StepContext[PointcloudClusteringConfig]) -> StepOutput:
    """Spec §7: the archives checked against their pins, train and val (08) scans read from
    them, graphs built; one dataset for every seed (the seeds vary the training)."""
    from subspacelab.data.download import Resource, verify

    d = ctx.cfg.data
    k = d.kitti
    assert k is not None  # the full profile's check
    root = ctx.root / k.root
    site = "https://www.semantic-kitti.org/dataset.html#download"
    velodyne = verify(root / k.velodyne_zip, Resource(site, k.velodyne_zip, k.velodyne_sha256))
    labels = verify(root / k.labels_zip, Resource(site, k.labels_zip, k.labels_sha256))
    lut = lookup(LEARNING_MAP)
    rng = np.random.default_rng(0)
    for split, seqs in (("train", k.train_sequences), ("test", k.val_sequences)):
        ctx.progress(f"reading SemanticKITTI {split}: sequences {', '.join(seqs)}")
        raw = load_split(velodyne, labels, seqs, k.stride, d.n_points, lut, rng)
        ctx.save(f"kitti/{split}", split_tensors(*raw, d.knn))
    write_json(
        ctx.out / "manifest.json",
        {
            "classes": list(CLASSES),
            "subtyped": {"car": ["parked", "moving"]},
            "files": {str(s): "kitti" for s in ctx.cfg.seeds},
        },
    )
    return StepOutput()
