"""eigenstructures' full profile (Velich et al., CVPR 2026, arXiv:2512.01103, spec §7): ShapeNet.

Input: ShapeNetCore.v2's zip (``ShapeNetCore.v2.zip`` from shapenet.org, after accepting its
terms of use, non-commercial research only; the user downloads it and pins its SHA-256 in
``shapenet.archive``). Its members ``ShapeNetCore.v2/<synset>/<model id>/models/
model_normalized.obj`` are read straight from the zip (no extraction); seed i takes the i-th
model id (sorted) of ``shapenet.synset``.

Each mesh becomes a :class:`~subspacelab.worlds.manifolds.ManifoldSample` like the synthetic
worlds: rescaled to the unit sphere's area 4π (so a profile's probe widths, tuned to the point
spacing of n points on the sphere, carry over), ``n_points`` drawn uniformly by area (density 1 on
the normalised area), and the oracle eigenbasis of the samples' kNN graph Laplacian
(:func:`subspacelab.shapes.laplacian.knn_laplacian`; ShapeNet meshes are polygon soups, so the
mesh's own cotangent Laplacian is no oracle), scaled to mean square 1.
"""

from __future__ import annotations

import math
import re
import zipfile
from pathlib import Path

import numpy as np

from subspacelab.shapes.blobs import mesh_area
from subspacelab.shapes.laplacian import eigenbasis, knn_laplacian
from subspacelab.studies.eigenstructures.config import ShapeNetConfig
from subspacelab.worlds import manifolds as mf

MEMBER = re.compile(r"(?:[^/]+/)?(\d{8})/([0-9a-f]+)/models/model_normalized\.obj")
MAX_MEMBER_BYTES = 512 * 2**20  # a model_normalized.obj is at most tens of MB


def read_obj(text: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (v, 3) and triangles (f, 3) of a Wavefront OBJ text: ``v x y z`` lines and ``f``
    lines of ``i``, ``i/t``, ``i//n`` or ``i/t/n`` corners (1-based, or negative: relative to
    the vertices so far), polygons fan-triangulated; other lines ignored. Errors name ``where``,
    the line and the column (the field's position, 1-based)."""
    verts: list[list[float]] = []
    tris: list[tuple[int, int, int]] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields or fields[0] not in ("v", "f"):
            continue
        if fields[0] == "v":
            if len(fields) < 4:
                raise ValueError(f"{where}: line {line_no}: a vertex needs x, y, z")
            try:
                verts.append([float(x) for x in fields[1:4]])
            except ValueError:
                col = next(i for i, x in enumerate(fields[1:4], 2) if not _is_float(x))
                raise ValueError(f"{where}: line {line_no}, column {col}: not a number") from None
            continue
        corners = []
        for col, corner in enumerate(fields[1:], start=2):
            try:
                i = int(corner.split("/", 1)[0])
            except ValueError:
                raise ValueError(
                    f"{where}: line {line_no}, column {col}: {corner!r} is not a vertex index"
                ) from None
            i = i - 1 if i > 0 else len(verts) + i
            if not 0 <= i < len(verts):
                raise ValueError(
                    f"{where}: line {line_no}, column {col}: vertex {corner} is not defined"
                )
            corners.append(i)
        if len(corners) < 3:
            raise ValueError(f"{where}: line {line_no}: a face needs at least 3 vertices")
        tris += [(corners[0], corners[j], corners[j + 1]) for j in range(1, len(corners) - 1)]
    if not tris:
        raise ValueError(f"{where}: no faces")
    return np.asarray(verts, float), np.asarray(tris, np.int64)


def _is_float(x: str) -> bool:
    try:
        float(x)
    except ValueError:
        return False
    return True


def sample_surface(
    verts: np.ndarray, faces: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` points uniform by area on the triangles (a triangle drawn by area, then uniform
    barycentric coordinates)."""
    a, b, c = (verts[faces[:, i]] for i in range(3))
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    if not area.sum() > 0:
        raise ValueError("the mesh has zero area")
    tri = rng.choice(len(faces), size=n, p=area / area.sum())
    u, v = rng.uniform(size=(2, n))
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    return a[tri] + u[:, None] * (b[tri] - a[tri]) + v[:, None] * (c[tri] - a[tri])


def mesh_sample(
    verts: np.ndarray, faces: np.ndarray, n: int, knn: int, m: int, seed: int
) -> mf.ManifoldSample:
    """The mesh centred and rescaled to area 4π, ``n`` points uniform by area (density 1), and
    the ``m`` smallest eigenpairs of the samples' kNN graph Laplacian (functions of mean
    square 1)."""
    total = mesh_area(verts, faces)
    if not total > 0:
        raise ValueError("the mesh has zero area")
    scaled = (verts - verts.mean(axis=0)) * math.sqrt(4 * math.pi / total)
    points = sample_surface(scaled, faces, n, np.random.default_rng(seed))
    vals, vecs = eigenbasis(*knn_laplacian(points, knn), m)
    return mf.ManifoldSample(points, np.ones(n), vecs * math.sqrt(n), vals)


def shapenet_models(archive: zipfile.ZipFile, synset: str) -> list[str]:
    """The members holding ``synset``'s meshes, sorted by model id."""
    found = {}
    for name in archive.namelist():
        hit = MEMBER.fullmatch(name)
        if hit and hit.group(1) == synset:
            found[hit.group(2)] = name
    return [found[k] for k in sorted(found)]


def shapenet_worlds(
    root: Path, cfg: ShapeNetConfig, n_seeds: int, n_points: int, data_seed: int
) -> list[mf.ManifoldSample]:
    """One sample per seed (seed i: the i-th model of the synset, points drawn from
    ``data_seed + i``), from the verified archive under the lab root ``root``."""
    path = cfg.archive.path(root)
    with zipfile.ZipFile(path) as zf:
        members = shapenet_models(zf, cfg.synset)
        if len(members) < n_seeds:
            raise ValueError(
                f"{path}: synset {cfg.synset} has {len(members)} model(s), {n_seeds} seed(s) "
                "need one each"
            )
        out = []
        for i, name in enumerate(members[:n_seeds]):
            if zf.getinfo(name).file_size > MAX_MEMBER_BYTES:
                raise ValueError(f"{path}:{name}: larger than {MAX_MEMBER_BYTES} bytes")
            text = zf.read(name).decode("utf-8", errors="replace")
            verts, faces = read_obj(text, f"{path}:{name}")
            out.append(
                mesh_sample(verts, faces, n_points, cfg.oracle_knn, cfg.functions, data_seed + i)
            )
    return out
