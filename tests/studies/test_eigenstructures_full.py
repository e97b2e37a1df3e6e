"""eigenstructures' full profile: the OBJ reader, area sampling, the mesh oracle and the ShapeNet
zip loader on tiny files written here (known answers and the error paths)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import yaml

from subspacelab.api import DownloadError, ParamsError
from subspacelab.config import study_config, unpinned
from subspacelab.shapes.clouds import icosphere
from subspacelab.studies.eigenstructures import full
from subspacelab.studies.eigenstructures.config import EigenstructuresConfig
from subspacelab.studies.eigenstructures.study import STUDY
from subspacelab.worlds import manifolds as mf
from tests.helpers import REPO, tiny_params

SLUG = "eigenstructures"


def _obj(verts: np.ndarray, faces: np.ndarray) -> str:
    lines = ["# tiny mesh", "o shape"]
    lines += [f"v {x:.9f} {y:.9f} {z:.9f}" for x, y, z in verts]
    lines += ["vn 0 0 1"] + [f"f {a + 1}/1/1 {b + 1}//1 {c + 1}" for a, b, c in faces]
    return "\n".join(lines) + "\n"


def test_read_obj_triangulates_polygons_and_resolves_relative_indices() -> None:
    text = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0  # corner\nvt 0 0\nf 1/1 2/1 3/1 4/1\nf -4 -2 -1\n"
    verts, faces = full.read_obj(text, "sq.obj")
    assert verts.shape == (4, 3)
    np.testing.assert_array_equal(faces, [[0, 1, 2], [0, 2, 3], [0, 2, 3]])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("v 0 0 x\n", "sq.obj: line 1, column 4: not a number"),
        ("v 0 0\n", "sq.obj: line 1: a vertex needs x, y, z"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 7\n", "line 4, column 4: vertex 7 is not defined"),
        ("v 0 0 0\nv 1 0 0\nf 1 a 2\n", "line 3, column 3: 'a' is not a vertex index"),
        ("v 0 0 0\nv 1 0 0\nf 1 2\n", "line 3: a face needs at least 3 vertices"),
        ("v 0 0 0\n", "sq.obj: no faces"),
    ],
)
def test_read_obj_names_the_bad_line_and_column(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        full.read_obj(text, "sq.obj")


def test_surface_samples_follow_the_triangle_areas() -> None:
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [3, 0, 0], [6, 0, 0], [3, 2, 0]], float)
    faces = np.array([[0, 1, 2], [3, 4, 5]])  # areas 0.5 and 3
    pts = full.sample_surface(verts, faces, 20000, np.random.default_rng(0))
    share = np.mean(pts[:, 0] >= 3)
    assert share == pytest.approx(3 / 3.5, abs=0.01)
    small = pts[pts[:, 0] < 3]
    assert np.all(small[:, 0] + small[:, 1] <= 1 + 1e-12) and np.all(small >= -1e-12)
    with pytest.raises(ValueError, match="zero area"):
        full.sample_surface(verts, np.array([[0, 1, 1]]), 5, np.random.default_rng(0))


def test_mesh_sample_of_a_sphere_recovers_the_linear_harmonics() -> None:
    verts, faces = icosphere(3)
    w = full.mesh_sample(3.0 * verts + 5.0, faces, 600, knn=10, m=4, seed=0)
    radius = np.linalg.norm(w.points, axis=1)
    assert radius.mean() == pytest.approx(1.0, abs=0.02)  # rescaled to area 4π, centred
    assert np.all(w.density == 1.0) and w.functions.shape == (600, 4)
    np.testing.assert_allclose(np.mean(w.functions**2, axis=0), 1.0, rtol=1e-8)
    assert abs(w.eigenvalues[0]) < 1e-8 and np.all(np.diff(w.eigenvalues) >= 0)
    # eigenfunctions 1..3 of the sphere: span(x, y, z)
    assert mf.energy_captured(w.functions[:, 1:4], w.points) > 0.95


def _zip(path: Path, meshes: dict[str, str]) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in meshes.items():
            zf.writestr(name, text)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _shapenet_cfg(tmp_path: Path, sha: str) -> Any:
    params = tiny_params([SLUG])
    params[SLUG]["full"]["shapenet"].update(
        archive={"dir": "dl", "file": "ShapeNetCore.v2.zip", "sha256": sha}, functions=4
    )
    params[SLUG]["full"]["data"].update(manifolds=["sphere", "shapenet"], n_points=150)
    return study_config(EigenstructuresConfig, params, SLUG, "full")


def test_full_data_step_reads_one_mesh_per_seed_from_the_zip(tmp_path: Path) -> None:
    verts, faces = icosphere(2)
    stretched = verts * np.array([2.0, 1.0, 1.0])
    (tmp_path / "dl").mkdir()
    sha = _zip(
        tmp_path / "dl" / "ShapeNetCore.v2.zip",
        {
            "ShapeNetCore.v2/02691156/bb/models/model_normalized.obj": _obj(stretched, faces),
            "ShapeNetCore.v2/02691156/aa/models/model_normalized.obj": _obj(verts, faces),
            "ShapeNetCore.v2/03001627/cc/models/model_normalized.obj": "not read",
            "ShapeNetCore.v2/02691156/aa/models/model_normalized.mtl": "not read",
        },
    )
    cfg = _shapenet_cfg(tmp_path, sha)
    saved: dict[str, dict[str, Any]] = {}
    ctx = SimpleNamespace(
        cfg=cfg,
        root=tmp_path,
        seeds=[0, 1],
        progress=lambda msg: None,
        save=lambda name, tensors, **kw: saved.__setitem__(name, tensors),
    )
    STUDY.step("data").implementation("full")(ctx)  # type: ignore[arg-type]
    assert set(saved) == {"sphere", "shapenet"}
    got = saved["shapenet"]
    assert got["points"].shape == (2, 150, 3) and got["functions"].shape == (2, 150, 4)
    # seed 0: model "aa" (the sphere), seed 1: "bb" (stretched along x)
    spread = got["points"].std(axis=1)
    assert spread[0, 0] == pytest.approx(spread[0, 1], rel=0.2)
    assert spread[1, 0] > 1.5 * spread[1, 1]

    ctx.seeds = [0, 1, 2]
    with pytest.raises(ValueError, match="synset 02691156 has 2 model"):
        STUDY.step("data").implementation("full")(ctx)  # type: ignore[arg-type]
    ctx.cfg = _shapenet_cfg(tmp_path, "0" * 64)
    with pytest.raises(DownloadError):
        STUDY.step("data").implementation("full")(ctx)  # type: ignore[arg-type]


def test_a_bad_obj_member_is_named(tmp_path: Path) -> None:
    (tmp_path / "dl").mkdir()
    member = "ShapeNetCore.v2/02691156/aa/models/model_normalized.obj"
    sha = _zip(tmp_path / "dl" / "ShapeNetCore.v2.zip", {member: "v 0 0 0\nf 1 2 3\n"})
    cfg = _shapenet_cfg(tmp_path, sha)
    assert cfg.shapenet is not None
    with pytest.raises(ValueError, match=f"{member}: line 2, column 3: vertex 2 is not defined"):
        full.shapenet_worlds(tmp_path, cfg.shapenet, 1, 50, 0)


def test_full_profile_lists_the_unpinned_archive_and_needs_its_section() -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    cfg = study_config(EigenstructuresConfig, params, SLUG, "full")
    assert "shapenet" in cfg.data.manifolds
    assert [p.split(":")[0] for p in unpinned(cfg, f"{SLUG}.full")] == [
        f"{SLUG}.full.shapenet.archive.sha256",
        f"{SLUG}.full.images.archive.sha256",
    ]
    mini = study_config(EigenstructuresConfig, params, SLUG, "mini")
    assert mini.shapenet is None and unpinned(mini, f"{SLUG}.mini") == []
    params[SLUG]["mini"]["data"]["manifolds"] = ["sphere", "shapenet"]
    with pytest.raises(ParamsError, match="shapenet"):
        study_config(EigenstructuresConfig, params, SLUG, "mini")
    params[SLUG]["mini"]["data"]["manifolds"] = ["sphere"]
    params[SLUG]["full"]["shapenet"]["synset"] = "airplane"
    with pytest.raises(ParamsError, match="8-digit"):
        study_config(EigenstructuresConfig, params, SLUG, "full")
