"""plato's full profile (arXiv 2503.05283, spec §7): Objaverse-LVIS shapes with Cap3D captions
and a sentence-transformers text model at a pinned hub revision.

Inputs, each downloaded against its SHA-256 (``subspacelab.data.download``):

* captions — Cap3D's CSV, one ``uid,caption`` row per object, no header;
* point clouds — a zip of ``<uid>.pt`` (Cap3D's ``Cap3D_pcs_pt``: a float tensor (6, P) of
  xyz + rgb, loaded with ``weights_only``) or ``<uid>.npy`` ((P, ≥3)) members;
* labels — Objaverse's ``lvis-annotations.json.gz``: ``{category: [uid, ...]}``.

The geometric attributes the miniature knows by construction are measured on each cloud here:
``scale`` is its bounding-box diagonal before normalisation (near-constant if the source is
already normalised) and ``theta`` the angle of its principal horizontal axis. Heavy imports stay
inside the functions.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from subspacelab.api import StepContext, StepOutput, write_json
from subspacelab.studies.plato import core
from subspacelab.studies.plato.config import PlatoConfig


def read_captions(path: Path) -> dict[str, str]:
    """``{uid: caption}`` from a Cap3D-style CSV (``uid,caption`` rows, no header)."""
    out: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.reader(f)):
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise ValueError(f"{path}: row {i + 1} is not 'uid,caption': {row!r}")
            out[row[0].strip()] = row[1].strip()
    return out


def read_labels(path: Path) -> dict[str, str]:
    """``{uid: category}`` from an LVIS annotation file (gzipped JSON ``{category: [uids]}``)."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        doc = json.load(f)
    if not isinstance(doc, dict) or not all(isinstance(v, list) for v in doc.values()):
        raise ValueError(f"{path}: expected a JSON object of category -> list of uids")
    return {uid: cat for cat, uids in doc.items() for uid in uids}


def _xyz(raw: np.ndarray, name: str) -> np.ndarray:
    """(P, 3) coordinates from a (6, P)/(3, P) channel-first or (P, ≥3) point array."""
    a = np.asarray(raw, dtype=np.float64)
    if a.ndim == 2 and a.shape[0] in (3, 6) and a.shape[1] > a.shape[0]:
        a = a.T
    if a.ndim != 2 or a.shape[1] < 3 or len(a) < 1 or not np.isfinite(a[:, :3]).all():
        raise ValueError(f"{name}: expected a finite (points, >=3) array, got {a.shape}")
    return a[:, :3]


def read_point_zip(
    path: Path, uids: set[str], n_points: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """``{uid: (n_points, 3)}`` for the wanted ``uids`` found in the zip: a random subset of
    each cloud's points (with replacement only if it has fewer), its raw xyz."""
    import torch

    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as z:
        for info in sorted(z.infolist(), key=lambda i: i.filename):
            member = PurePosixPath(info.filename)
            if info.is_dir() or member.stem not in uids or member.suffix not in (".pt", ".npy"):
                continue
            data = z.read(info)
            if member.suffix == ".pt":
                raw = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu").numpy()
            else:
                raw = np.load(io.BytesIO(data), allow_pickle=False)
            xyz = _xyz(raw, f"{path}:{info.filename}")
            pick = rng.choice(len(xyz), n_points, replace=len(xyz) < n_points)
            out[member.stem] = xyz[pick]
    return out


def geometry(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """A cloud centred and scaled into the unit ball, its bounding-box diagonal before that
    (the size attribute) and the angle of its principal horizontal (xy) axis (the pose)."""
    centred = points - points.mean(axis=0)
    diagonal = float(np.linalg.norm(points.max(axis=0) - points.min(axis=0)))
    radius = float(np.linalg.norm(centred, axis=1).max())
    xy = centred[:, :2]
    _, vec = np.linalg.eigh(xy.T @ xy)
    theta = float(np.arctan2(vec[1, -1], vec[0, -1]) % np.pi)
    return centred / (radius if radius > 0 else 1.0), diagonal, theta


def assemble(
    clouds: dict[str, np.ndarray],
    captions: dict[str, str],
    labels: dict[str, str],
    n_shapes: int,
    rng: np.random.Generator,
) -> core.Shapes:
    """``n_shapes`` objects having a cloud, a caption and an LVIS category, in random order, as
    the miniature's :class:`~subspacelab.studies.plato.core.Shapes` (size and aspect ids 0:
    the captions are free text)."""
    uids = sorted(set(clouds) & set(captions) & set(labels))
    if len(uids) < n_shapes:
        raise ValueError(
            f"only {len(uids)} objects have a point cloud, a caption and a category; "
            f"data.n_shapes asks for {n_shapes}"
        )
    chosen = [uids[i] for i in rng.permutation(len(uids))[:n_shapes]]
    categories = sorted({labels[u] for u in chosen})
    geo = [geometry(clouds[u]) for u in chosen]
    zeros = np.zeros(n_shapes, dtype=np.int64)
    return core.Shapes(
        points=np.stack([g[0] for g in geo]).astype(np.float32),
        label=np.array([categories.index(labels[u]) for u in chosen]),
        size=zeros,
        aspect=zeros,
        scale=np.array([g[1] for g in geo]),
        theta=np.array([g[2] for g in geo]),
        captions=[captions[u] for u in chosen],
    )


def encode_texts(model: str, revision: str, texts: list[str], batch: int) -> np.ndarray:
    """Unit-norm sentence embeddings from a sentence-transformers hub model at ``revision``."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(model, revision=revision, device="cpu")
    emb = st.encode(texts, batch_size=batch, normalize_embeddings=True)
    return np.asarray(emb, dtype=np.float32)


def data_full(ctx: StepContext[PlatoConfig]) -> StepOutput:
    """The full profile's data step: fetch the pinned files, then per seed ``n_shapes`` objects
    saved as the miniature saves its procedural shapes."""
    from subspacelab.data.download import Resource, fetch

    d = ctx.cfg.data
    cache = Path(d.cache_dir)
    files = {
        name: fetch(Resource(url, PurePosixPath(url).name, sha256=sha), cache, ctx.progress)
        for name, url, sha in (
            ("points", d.points_url, d.points_sha256),
            ("captions", d.captions_url, d.captions_sha256),
            ("labels", d.labels_url, d.labels_sha256),
        )
    }
    captions, labels = read_captions(files["captions"]), read_labels(files["labels"])
    wanted = set(captions) & set(labels)
    texts: dict[str, list[str]] = {}
    for seed in ctx.seeded():
        rng = np.random.default_rng(seed)
        clouds = read_point_zip(files["points"], wanted, d.n_points, rng)
        shapes = assemble(clouds, captions, labels, d.n_shapes, rng)
        ctx.save(
            f"seed{seed}",
            {"points": shapes.points} | {k: getattr(shapes, k) for k in core.LABELS},
        )
        texts[f"seed{seed}"] = shapes.captions
    write_json(ctx.out / "captions.json", texts)
    return StepOutput(metrics={"shapes": float(d.n_shapes)})
