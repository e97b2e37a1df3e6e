"""diffumatch's full profile (arXiv 2507.23715, spec §7) and the data step's shared IO.

Inputs:

* the prior's shapes — DFAUST registrations (``registrations_m.hdf5`` / ``registrations_f.hdf5``
  from dfaust.is.tue.mpg.de, after accepting MPI's **non-commercial research licence**; the
  user downloads it and sets ``data.dfaust_path``): one dataset ``<subject>_<sequence>`` of
  shape (6890, 3, frames) per sequence and ``faces`` (13776, 3), SMPL's shared connectivity, so
  the ground truth between any two frames is the identity;
* the test shapes — the Hugging Face dataset ``daidedou/matching_data`` at a pinned commit
  (``data.hf_revision``), folder ``data.test_dataset`` (e.g. ``FAUST_r``, ``SCAPE_r``,
  ``SMAL_r``): ``shapes/*.off`` or ``*.ply`` meshes and ``corres/*.vts`` (1-based indices of
  each shape's vertices corresponding to the template's) or ``*.map`` files.

FAUST and DFAUST (SMPL-based) are under MPI licences for non-commercial research only; SCAPE,
SHREC'19, TOSCA, SMAL and DT4D carry their own terms. The readers below are tested on tiny
files the tests write. Heavy imports (h5py, huggingface_hub) stay inside functions.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from subspacelab.api import StepContext, StepOutput
from subspacelab.studies.diffumatch import core

if TYPE_CHECKING:
    from subspacelab.studies.diffumatch.config import DiffumatchConfig

MESH_SUFFIXES = (".off", ".ply")


def read_off(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (v, 3) and triangles (f, 3) of an ASCII OFF file (polygons fan-triangulated;
    ``#`` comments skipped)."""
    tokens = [
        line.split("#", 1)[0].split() for line in path.read_text(encoding="ascii").splitlines()
    ]
    lines = [t for t in tokens if t]
    if not lines or not lines[0][0].upper().endswith("OFF"):
        raise ValueError(f"{path}: not an OFF file (no OFF header)")
    head = lines[0][1:] if len(lines[0]) > 1 else lines[1]
    body = lines[1:] if len(lines[0]) > 1 else lines[2:]
    n_v, n_f = int(head[0]), int(head[1])
    if len(body) < n_v + n_f:
        raise ValueError(f"{path}: header promises {n_v} vertices and {n_f} faces, file is short")
    verts = np.array([[float(x) for x in row[:3]] for row in body[:n_v]])
    faces = _triangulate(
        [[int(x) for x in row[1 : 1 + int(row[0])]] for row in body[n_v : n_v + n_f]]
    )
    return verts, _checked_faces(path, faces, n_v)


def _triangulate(polys: list[list[int]]) -> np.ndarray:
    tris = [(p[0], p[i], p[i + 1]) for p in polys for i in range(1, len(p) - 1)]
    return np.asarray(tris, np.int64).reshape(-1, 3)


def _checked_faces(path: Path, faces: np.ndarray, n_v: int) -> np.ndarray:
    if faces.size and (faces.min() < 0 or faces.max() >= n_v):
        raise ValueError(f"{path}: a face indexes a vertex outside [0, {n_v})")
    return faces


_PLY_TYPES = {
    "char": "b", "int8": "b", "uchar": "B", "uint8": "B", "short": "h", "int16": "h",
    "ushort": "H", "uint16": "H", "int": "i", "int32": "i", "uint": "I", "uint32": "I",
    "float": "f", "float32": "f", "double": "d", "float64": "d",
}  # fmt: skip


def read_ply(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (v, 3) and triangles (f, 3) of a PLY file, ASCII or binary little-endian; the
    vertex element's x, y, z and the face element's vertex_indices (or vertex_index) list."""
    raw = path.read_bytes()
    end = raw.find(b"end_header\n")
    if not raw.startswith(b"ply") or end < 0:
        raise ValueError(f"{path}: not a PLY file (no ply/end_header)")
    header = raw[:end].decode("ascii").splitlines()
    fmt = next((h.split()[1] for h in header if h.startswith("format")), "")
    if fmt not in ("ascii", "binary_little_endian"):
        raise ValueError(f"{path}: format {fmt!r} unsupported (ascii or binary_little_endian)")
    elements: list[tuple[str, int, list[tuple[str, ...]]]] = []
    for h in header:
        parts = h.split()
        if parts[0] == "element":
            elements.append((parts[1], int(parts[2]), []))
        elif parts[0] == "property" and elements:
            elements[-1][2].append(tuple(parts[1:]))
    data = raw[end + len(b"end_header\n") :]
    values = _ply_ascii(data, elements) if fmt == "ascii" else _ply_binary(data, elements)
    if "vertex" not in values or "face" not in values:
        raise ValueError(f"{path}: needs vertex and face elements")
    vnames = [p[-1] for p in next(e for e in elements if e[0] == "vertex")[2]]
    if not {"x", "y", "z"} <= set(vnames):
        raise ValueError(f"{path}: vertex element lacks x, y, z")
    verts = np.array([[row[vnames.index(a)] for a in "xyz"] for row in values["vertex"]], float)
    faces = _triangulate([list(map(int, row[0])) for row in values["face"]])
    return verts, _checked_faces(path, faces, len(verts))


def _ply_ascii(data: bytes, elements: list) -> dict[str, list[list]]:
    tokens = data.decode("ascii").split()
    pos, out = 0, {}
    for name, count, props in elements:
        rows = []
        for _ in range(count):
            row = []
            for prop in props:
                if prop[0] == "list":
                    n = int(tokens[pos])
                    row.append([float(t) for t in tokens[pos + 1 : pos + 1 + n]])
                    pos += 1 + n
                else:
                    row.append(float(tokens[pos]))
                    pos += 1
            rows.append(row)
        out[name] = rows
    return out


def _ply_binary(data: bytes, elements: list) -> dict[str, list[list]]:
    pos, out = 0, {}
    for name, count, props in elements:
        rows = []
        for _ in range(count):
            row = []
            for prop in props:
                if prop[0] == "list":
                    cnt_fmt, item_fmt = "<" + _PLY_TYPES[prop[1]], _PLY_TYPES[prop[2]]
                    (n,) = struct.unpack_from(cnt_fmt, data, pos)
                    pos += struct.calcsize(cnt_fmt)
                    row.append(list(struct.unpack_from(f"<{n}{item_fmt}", data, pos)))
                    pos += struct.calcsize(f"<{n}{item_fmt}")
                else:
                    f = "<" + _PLY_TYPES[prop[0]]
                    row.append(struct.unpack_from(f, data, pos)[0])
                    pos += struct.calcsize(f)
            rows.append(row)
        out[name] = rows
    return out


def read_mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An .off or .ply mesh."""
    if path.suffix.lower() == ".off":
        return read_off(path)
    if path.suffix.lower() == ".ply":
        return read_ply(path)
    raise ValueError(f"{path}: unsupported mesh format (allowed: {', '.join(MESH_SUFFIXES)})")


def read_correspondence(path: Path, one_based: bool) -> np.ndarray:
    """Vertex indices, one per line (.vts: 1-based, as the FAUST_r/SCAPE_r/SMAL_r releases
    write them; .map: as ``one_based`` says), returned 0-based."""
    text = path.read_text(encoding="ascii").split()
    try:
        idx = np.array([int(float(t)) for t in text], np.int64)
    except ValueError as err:
        raise ValueError(f"{path}: not a list of vertex indices") from err
    idx = idx - 1 if one_based else idx
    if idx.size == 0 or idx.min() < 0:
        raise ValueError(f"{path}: empty, or an index below {1 if one_based else 0}")
    return idx


def read_dfaust(path: Path, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random frames (n, 6890, 3) of a DFAUST registrations HDF5 file and its faces."""
    import h5py

    with h5py.File(path, "r") as f:
        if "faces" not in f:
            raise ValueError(f"{path}: no 'faces' dataset (is it a DFAUST registrations file?)")
        faces = np.asarray(f["faces"], np.int64)
        seqs = sorted(k for k in f if k != "faces")
        if not seqs:
            raise ValueError(f"{path}: no sequences")
        frames = []
        for _ in range(n):
            seq = f[seqs[int(rng.integers(len(seqs)))]]
            frames.append(np.asarray(seq[:, :, int(rng.integers(seq.shape[2]))], float))
    return np.stack(frames), faces


def matching_pairs(root: Path, n_pairs: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The first ``2 n_pairs`` shapes of a matching_data folder (sorted names; pair i is shapes
    2i, 2i+1) with their correspondences to the template."""
    shapes = sorted(p for p in (root / "shapes").iterdir() if p.suffix.lower() in MESH_SUFFIXES)
    if len(shapes) < 2 * n_pairs:
        raise ValueError(f"{root}: {len(shapes)} shapes, {2 * n_pairs} needed")
    out = []
    for p in shapes[: 2 * n_pairs]:
        vts, mp = root / "corres" / f"{p.stem}.vts", root / "corres" / f"{p.stem}.map"
        if vts.exists():
            corr = read_correspondence(vts, one_based=True)
        elif mp.exists():
            corr = read_correspondence(mp, one_based=False)
        else:
            raise ValueError(f"{root}: no corres/{p.stem}.vts or .map")
        verts, faces = read_mesh(p)
        if corr.max() >= len(verts):
            raise ValueError(f"{p}: a correspondence indexes past its {len(verts)} vertices")
        out.append((core.unit_area(verts, faces), faces, corr))
    return out


def save_shapes(
    ctx: StepContext[DiffumatchConfig],
    shapes: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    basis: int,
) -> None:
    """Each test shape's spectra, faces and landmark indices (shape 2i is X and 2i + 1 is Y of
    pair i; corr[j] of X corresponds to corr[j] of Y)."""
    for i, (verts, faces, corr) in enumerate(shapes):
        s = core.spectra(verts, faces, basis)
        ctx.save(
            f"shape{i}",
            {
                "verts": s.verts, "evals": s.evals, "phi": s.phi, "mass": s.mass,
                "faces": torch.from_numpy(faces), "corr": torch.from_numpy(corr),
            },
        )  # fmt: skip


def data_full(ctx: StepContext[DiffumatchConfig]) -> StepOutput:
    """The full data step: DFAUST frames -> |C| for the prior; matching_data test pairs."""
    from huggingface_hub import snapshot_download

    d = ctx.cfg.data
    if not d.dfaust_path or not Path(d.dfaust_path).is_file():
        raise ValueError(
            f"data.dfaust_path: {d.dfaust_path!r} is not a file; download DFAUST's registrations "
            "(non-commercial licence, dfaust.is.tue.mpg.de) and point to it"
        )
    rng = np.random.default_rng(d.world_seed)
    frames, faces = read_dfaust(Path(d.dfaust_path), d.n_train, rng)
    bases = [core.spectra(core.unit_area(v, faces), faces, d.k) for v in frames]
    ctx.save("prior_maps", {"abs_c": core.prior_maps(bases, d.n_prior_maps, rng)})
    root = snapshot_download(
        repo_id=d.hf_repo, repo_type="dataset", revision=d.hf_revision,
        allow_patterns=[f"{d.test_dataset}/*"], cache_dir=d.cache_dir,
    )  # fmt: skip
    save_shapes(ctx, matching_pairs(Path(root) / d.test_dataset, d.n_pairs), d.basis)
    return StepOutput(metrics={"data/prior_maps": float(d.n_prior_maps)})
