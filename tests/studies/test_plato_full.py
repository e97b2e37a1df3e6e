"""plato's full-profile loaders (arXiv 2503.05283) on tiny files written here in the formats of
Cap3D (captions CSV, ``<uid>.pt`` point clouds in a zip) and Objaverse-LVIS (gzipped JSON)."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from subspacelab.studies.plato import full


def _files(tmp_path: Path) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(0)
    captions = tmp_path / "captions.csv"
    captions.write_text('a,"A red chair, wooden"\nb,a blue mug\nc,a lamp\nd,no cloud\n')
    labels = tmp_path / "lvis.json.gz"
    with gzip.open(labels, "wt") as f:
        json.dump({"chair": ["a"], "mug": ["b", "c"], "table": ["e"]}, f)
    clouds = tmp_path / "pcs.zip"
    with zipfile.ZipFile(clouds, "w") as z:
        for uid in ("a", "b"):  # Cap3D: (6, P) xyz + rgb tensors
            buf = io.BytesIO()
            torch.save(torch.from_numpy(rng.standard_normal((6, 40)).astype(np.float32)), buf)
            z.writestr(f"Cap3D_pcs_pt/{uid}.pt", buf.getvalue())
        buf = io.BytesIO()
        np.save(buf, rng.standard_normal((10, 3)))  # fewer points than asked
        z.writestr("c.npy", buf.getvalue())
        z.writestr("notes.txt", "ignored")
    return captions, labels, clouds


def test_loaders_read_the_published_formats(tmp_path: Path) -> None:
    captions, labels, clouds = _files(tmp_path)
    caps = full.read_captions(captions)
    assert caps["a"] == "A red chair, wooden" and len(caps) == 4
    lab = full.read_labels(labels)
    assert lab == {"a": "chair", "b": "mug", "c": "mug", "e": "table"}
    pcs = full.read_point_zip(clouds, {"a", "b", "c", "z"}, 16, np.random.default_rng(1))
    assert sorted(pcs) == ["a", "b", "c"]
    assert all(p.shape == (16, 3) for p in pcs.values())
    shapes = full.assemble(pcs, caps, lab, 3, np.random.default_rng(2))
    assert shapes.points.shape == (3, 16, 3)
    assert sorted(shapes.captions) == ["A red chair, wooden", "a blue mug", "a lamp"]
    np.testing.assert_allclose(np.linalg.norm(shapes.points, axis=2).max(axis=1), 1.0, rtol=1e-6)
    assert set(shapes.label) == {0, 1}  # chair, mug
    with pytest.raises(ValueError, match="n_shapes asks for 4"):
        full.assemble(pcs, caps, lab, 4, np.random.default_rng(2))


def test_bad_files_are_refused_with_their_name(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,ok\nonly-a-uid\n")
    with pytest.raises(ValueError, match="row 2"):
        full.read_captions(bad)
    notdict = tmp_path / "l.json.gz"
    with gzip.open(notdict, "wt") as f:
        json.dump(["a"], f)
    with pytest.raises(ValueError, match="category"):
        full.read_labels(notdict)
    clouds = tmp_path / "p.zip"
    with zipfile.ZipFile(clouds, "w") as z:
        buf = io.BytesIO()
        np.save(buf, np.zeros((5, 2)))
        z.writestr("x.npy", buf.getvalue())
    with pytest.raises(ValueError, match=r"x\.npy"):
        full.read_point_zip(clouds, {"x"}, 4, np.random.default_rng(0))


def test_geometry_measures_size_and_pose() -> None:
    rng = np.random.default_rng(3)
    pts = rng.uniform(-1, 1, (500, 3)) * np.array([3.0, 1.0, 0.5])
    angle = 0.4
    c, s = np.cos(angle), np.sin(angle)
    rot = pts @ np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]]) + 5.0
    unit, diagonal, theta = full.geometry(rot)
    assert theta == pytest.approx(angle, abs=0.05)
    assert np.linalg.norm(unit, axis=1).max() == pytest.approx(1.0)
    assert diagonal > 6.0
