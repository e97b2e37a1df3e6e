"""shapesplat's full profile (arXiv 2408.10906, spec §7): ModelNet-Splats / ShapeSplat 3DGS
``.ply`` files and ModelNet's uniform point clouds, read by the same chain as the miniature.

* ``read_ply`` — a vertex element of scalar properties from an ASCII or binary (little/big
  endian) PLY, as 3DGS writes them (x, y, z, nx, ny, nz, f_dc_0..2, f_rest_*, opacity,
  scale_0..2, rot_0..3); decoded by :func:`subspacelab.shapes.splats.decode_3dgs` (sigmoid
  opacity, exp scales, unit quaternions with w >= 0, SH DC -> RGB).
* ``data_full`` — ``splats_dir/<class>/<train|test>/<object>.ply`` (an optional integer vertex
  property ``label`` or ``part`` gives part labels, else every splat is part 0 of its class)
  and ``uniform_dir/<class>/<split>/<object>.txt`` (``x,y,z[,nx,ny,nz]`` lines); each object
  centred and scaled into the unit ball (splat scales with it), cut to ``components`` splats by
  FPS and ``components`` random uniform points (ModelNet's clouds carry no part labels: the
  uniform arm's segmentation score means nothing in full). With ``hf_repo`` set, the
  dataset's zips are first fetched at the pinned ``hf_revision`` (huggingface_hub, the
  ``full`` extra; the datasets are gated: log in and accept their terms first) and extracted
  into ``splats_dir``.

Licences: ShapeSplat inherits ShapeNet's terms (non-commercial research), ModelNet-Splats
ModelNet's (academic use); the official code repository carries no licence.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from subspacelab.api import StepContext, StepOutput, write_json
from subspacelab.shapes import pointmae, splats
from subspacelab.studies.shapesplat import core
from subspacelab.studies.shapesplat.config import ShapesplatConfig

if TYPE_CHECKING:
    from collections.abc import Sequence

PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
FORMATS = {"ascii": "", "binary_little_endian": "<", "binary_big_endian": ">"}
SPLITS = ("train", "test")


def read_ply(path: Path) -> dict[str, np.ndarray]:
    """The first element's (``vertex``) scalar properties of a PLY file, by name."""
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise ValueError(f"{path.name}: not a PLY file")
        fmt, elements = None, []
        while True:
            line = f.readline()
            if not line:
                raise ValueError(f"{path.name}: no end_header")
            words = line.decode("ascii", "replace").split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "end_header":
                break
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                elements.append((words[1], int(words[2]), []))
            elif words[0] == "property" and elements:
                if words[1] == "list" or words[1] not in PLY_TYPES:
                    raise ValueError(f"{path.name}: unsupported property {' '.join(words[1:])}")
                elements[-1][2].append((words[2], PLY_TYPES[words[1]]))
        if fmt not in FORMATS:
            raise ValueError(f"{path.name}: unknown PLY format {fmt!r}")
        if not elements or elements[0][0] != "vertex" or not elements[0][2]:
            raise ValueError(f"{path.name}: the first element must be 'vertex' with properties")
        _, count, props = elements[0]
        if fmt == "ascii":
            rows = np.loadtxt(f, dtype=np.float64, max_rows=count, ndmin=2)
            if rows.shape != (count, len(props)):
                raise ValueError(f"{path.name}: expected {count} rows of {len(props)} values")
            return {name: rows[:, j].astype(t) for j, (name, t) in enumerate(props)}
        dtype = np.dtype([(name, FORMATS[fmt] + t) for name, t in props])
        data = f.read(count * dtype.itemsize)
        if len(data) < count * dtype.itemsize:
            raise ValueError(f"{path.name}: truncated ({len(data)} of {count * dtype.itemsize} B)")
        arr = np.frombuffer(data, dtype=dtype, count=count)
        return {name: arr[name].astype(arr[name].dtype.newbyteorder("=")) for name, _ in props}


def write_ply(path: Path, fields: dict[str, np.ndarray]) -> None:
    """A binary little-endian PLY of one ``vertex`` element (float32 or int32 properties), as
    3DGS writes its splats."""
    names = list(fields)
    n = len(fields[names[0]])
    kinds = {k: ("int" if np.issubdtype(fields[k].dtype, np.integer) else "float") for k in names}
    dtype = np.dtype([(k, "<i4" if kinds[k] == "int" else "<f4") for k in names])
    arr = np.empty(n, dtype)
    for k in names:
        arr[k] = fields[k]
    head = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    head += [f"property {kinds[k]} {k}" for k in names] + ["end_header", ""]
    path.write_bytes("\n".join(head).encode("ascii") + arr.tobytes())


def read_points_txt(path: Path) -> np.ndarray:
    """(P, 3) xyz of a ModelNet-style text cloud (``x,y,z[,nx,ny,nz]`` per line)."""
    rows = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    if rows.shape[1] < 3 or len(rows) < 1 or not np.isfinite(rows).all():
        raise ValueError(f"{path.name}: expected finite 'x,y,z[,...]' rows, got {rows.shape}")
    return rows[:, :3]


def _unit_ball(xyz: np.ndarray) -> tuple[np.ndarray, float]:
    c = xyz - xyz.mean(0)
    r = float(np.linalg.norm(c, axis=1).max()) or 1.0
    return c / r, r


def load_splat_object(path: Path, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One object's (k, 14) splat features (unit ball, scales scaled alike) by FPS on the
    centroids, and their part labels (``label`` / ``part`` vertex property, else 0)."""
    fields = read_ply(path)
    sp = splats.decode_3dgs(fields)
    if len(sp.xyz) < k:
        raise ValueError(f"{path.name}: {len(sp.xyz)} Gaussians, fewer than components ({k})")
    xyz, r = _unit_ball(sp.xyz)
    sp.xyz, sp.scale = xyz, sp.scale / r
    feats = sp.features()
    idx = pointmae.fps(torch.from_numpy(xyz)[None], k)[0].numpy()
    parts = next((fields[n] for n in ("label", "part") if n in fields), np.zeros(len(xyz)))
    return feats[idx], np.asarray(parts, np.int64)[idx]


def _objects(root: Path, split: str, suffix: str) -> list[tuple[str, Path]]:
    out = sorted(
        (p.parent.parent.name, p) for p in root.glob(f"*/{split}/*{suffix}") if p.is_file()
    )
    if not out:
        raise ValueError(f"{root}: no <class>/{split}/*{suffix} files")
    return out


def fetch_hub(repo: str, revision: str, dest: Path) -> None:
    """The HF dataset ``repo`` at ``revision``: its zips extracted into ``dest``."""
    from huggingface_hub import snapshot_download

    from subspacelab.data.download import safe_extract

    local = Path(snapshot_download(repo, repo_type="dataset", revision=revision))
    for archive in sorted(local.rglob("*.zip")):
        safe_extract(archive, dest / archive.stem)


def write_data(
    ctx: StepContext[ShapesplatConfig],
    sets: dict[str, core.SplatSet],
    test_surface: np.ndarray,
    classes: Sequence[str],
    class_parts: list[list[int]],
) -> StepOutput:
    """Save both splits, the per-seed distribution test and the class/part layout (the same
    outputs in both profiles)."""
    for split, s in sets.items():
        ctx.save(
            split,
            {
                "features": s.features.astype(np.float32),
                "parts": s.parts,
                "uniform": s.uniform.astype(np.float32),
                "uniform_parts": s.uniform_parts,
                "labels": s.labels,
            },
        )
    dist = {
        f"seed{seed}": core.distribution_check(
            sets["test"].features[..., :3], test_surface, np.random.default_rng(seed)
        )
        for seed in ctx.seeded()
    }
    n_parts = max(max(p) for p in class_parts) + 1
    meta = {"classes": list(classes), "class_parts": class_parts, "n_parts": n_parts}
    write_json(ctx.out / "meta.json", meta)
    write_json(ctx.out / "distribution.json", dist)
    return StepOutput(metrics={"objects": float(sum(len(s.labels) for s in sets.values()))})


def data_full(ctx: StepContext[ShapesplatConfig]) -> StepOutput:
    """The full profile's data step (see the module docstring)."""
    d = ctx.cfg.data
    splat_root, uniform_root = Path(d.splats_dir), Path(d.uniform_dir)
    if d.hf_repo:
        fetch_hub(d.hf_repo, d.hf_revision, splat_root)
    rng = np.random.default_rng(d.data_seed)
    classes = sorted({c for c, _ in _objects(splat_root, "train", ".ply")})
    sets, surface = {}, {}
    parts_seen: dict[int, set[int]] = {i: set() for i in range(len(classes))}
    for split in SPLITS:
        feats, parts, uni, labels, surf = [], [], [], [], []
        for cls, path in _objects(splat_root, split, ".ply"):
            f, p = load_splat_object(path, d.components)
            pts, _ = _unit_ball(read_points_txt(uniform_root / cls / split / f"{path.stem}.txt"))
            if len(pts) < d.components:
                raise ValueError(f"{path.stem}.txt: fewer points than components")
            label = classes.index(cls)
            parts_seen[label] |= set(p.tolist())
            feats.append(f)
            parts.append(p)
            uni.append(pts[rng.choice(len(pts), d.components, replace=False)])
            surf.append(
                pts[rng.choice(len(pts), d.surface_points, replace=len(pts) < d.surface_points)]
            )
            labels.append(label)
        ctx.progress(f"{split}: {len(labels)} objects of {len(classes)} classes")
        sets[split] = core.SplatSet(
            np.asarray(feats), np.asarray(parts), np.asarray(uni),
            np.zeros((len(uni), d.components), np.int64), np.asarray(labels),
        )  # fmt: skip
        surface[split] = np.asarray(surf)
    class_parts = [sorted(parts_seen[i] | {0}) for i in range(len(classes))]
    return write_data(ctx, sets, surface["test"], classes, class_parts)
