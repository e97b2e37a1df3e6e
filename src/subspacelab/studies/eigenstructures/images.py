"""eigenstructures' image manifolds (Velich et al., CVPR 2026, arXiv:2512.01103, spec §3, §7):
the test images of CIFAR-100 or STL-10 as a world of the full profile.

Input: the dataset's public archive, downloaded by the user and pinned by SHA-256 in
``images.archive`` (``cifar-100-python.tar.gz``, whose MD5 cs.toronto.edu publishes, or
``stl10_binary.tar.gz``); only the test split's members are extracted, through
:func:`~subspacelab.data.download.safe_extract`, into a temporary folder beside the archive.

Features (spec §3, "raw or CLIP"): each image's pixels flattened and standardised per image (the
mean removed; the scale drops out below), or the rows of ``images.features_file``, a
SHA-256-pinned ``.npy`` (N, d) of features computed elsewhere (e.g. CLIP), one row per test
image in the archive's order. Seed i draws ``n_points`` of the N test images with
``data_seed + i``.

Cosine kNN: the rows are normalised to unit length; on the unit sphere ‖u − v‖² = 2 − 2 cos(u, v),
so the study's Euclidean kNN (the probes', the oracle's, the eigenmaps baseline's) ranks
neighbours exactly as cosine similarity does, and an isometry or a common scale changes no rank.
Two such maps follow. When d > n the rows are written in the sample's principal coordinates (n
numbers per image, all distances kept; STL-10's 27,648 pixels become n). Then the sample is
scaled so that the mean distance to the ``knn``-th neighbour is that of ``data.n_points`` uniform
points on the unit sphere, the spacing the profile's probe widths are set for (as the ShapeNet
world is rescaled to area 4π).

Oracle: there is no analytic truth for real images; the ``functions`` smallest eigenpairs of the
samples' ``knn``-NN graph Laplacian (:func:`subspacelab.shapes.laplacian.knn_laplacian`), scaled
to mean square 1, with a uniform density (the sampling density of images is unknown).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from subspacelab.api import DownloadError
from subspacelab.data.cifar import CIFAR_RESOURCES, load_cifar_split
from subspacelab.data.download import safe_extract
from subspacelab.data.stl10 import STL10_MD5, STL10_URL, load_stl10, stl10_members
from subspacelab.shapes.laplacian import eigenbasis, knn_laplacian
from subspacelab.studies.eigenstructures.config import ImagesConfig
from subspacelab.worlds import manifolds as mf

# Per source: the test split's archive members, where the archive is published, its MD5.
SOURCES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "cifar100": (
        ("cifar-100-python/test",),
        CIFAR_RESOURCES["cifar100"].url,
        CIFAR_RESOURCES["cifar100"].md5 or "",
    ),
    "stl10": (stl10_members("test"), STL10_URL, STL10_MD5),
}


@dataclass(frozen=True)
class ImagePool:
    """Every test image of the source as a row of ``rows`` (N, d): its pixels (``pixels``, in
    the reader's channel, row, column order) or the user's features."""

    rows: np.ndarray
    pixels: bool


def read_test_images(archive: Path, source: str) -> np.ndarray:
    """The test images (N, d) of a verified archive of ``source``, flattened, in its order."""
    members, _, _ = SOURCES[source]
    with tempfile.TemporaryDirectory(dir=archive.parent, prefix=".extract-") as tmp:
        out = Path(tmp) / source
        safe_extract(archive, out, keep=lambda name: PurePosixPath(name).as_posix() in members)
        if source == "cifar100":
            images, _ = load_cifar_split(out, "cifar100", "test")
        else:
            images, _ = load_stl10(out, "test")
    return images.reshape(len(images), -1)


def load_pool(root: Path, cfg: ImagesConfig) -> ImagePool:
    """The verified inputs under the lab root ``root``, checked before any compute: the
    archive's and the features file's SHA-256, the file's shape (2-D, one row per test image)
    and values (finite), and that the split holds ``n_points`` images."""
    _, url, md5 = SOURCES[cfg.source]
    where = Path(root) / cfg.archive.dir / cfg.archive.file
    if not where.is_file():
        raise DownloadError(
            f"{where}: missing; download {url} (published MD5 {md5}), place it there and pin "
            "its SHA-256 in images.archive"
        )
    archive = cfg.archive.path(root)
    feats_path = None if cfg.features_file is None else cfg.features_file.path(root)
    feats = None if feats_path is None else _features(feats_path)
    test_images = read_test_images(archive, cfg.source)
    if feats is not None and feats.shape[0] != len(test_images):
        raise ValueError(
            f"{feats_path}: {feats.shape[0]} feature rows for the {len(test_images)} test images "
            f"of {cfg.archive.file}; one row per test image, in the archive's order"
        )
    if cfg.n_points > len(test_images):
        raise ValueError(
            f"images.n_points = {cfg.n_points}, but the {cfg.source} test split of "
            f"{cfg.archive.file} has {len(test_images)} images"
        )
    if feats is None:
        return ImagePool(test_images, pixels=True)
    return ImagePool(feats, pixels=False)


def _features(path: Path) -> np.ndarray:
    """A features file's array: numeric, 2-D, finite (no pickles are loaded)."""
    try:
        feats = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{path}: not a numeric .npy array ({exc})") from None
    if feats.ndim != 2 or feats.shape[1] < 1 or not np.issubdtype(feats.dtype, np.number):
        raise ValueError(
            f"{path}: features must be a numeric (images, dims) array, got {feats.dtype} "
            f"{feats.shape}"
        )
    if not np.all(np.isfinite(feats)):
        raise ValueError(f"{path}: {int(np.sum(~np.isfinite(feats)))} non-finite value(s)")
    return feats


def unit_rows(rows: np.ndarray, pixels: bool, index: np.ndarray) -> np.ndarray:
    """The rows (float64) centred per image when they are pixels, then of unit length: the
    cosine-kNN embedding. ``index``: the rows' test-split indices, for the error."""
    x = rows.astype(np.float64)
    if pixels:
        x -= x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1)
    bad = np.flatnonzero(~(norm > 0))
    if bad.size:
        what = "constant pixels" if pixels else "an all-zero feature row"
        raise ValueError(f"test image {int(index[bad[0]])}: {what}, no direction for cosine kNN")
    return x / norm[:, None]


def sphere_knn_distance(n: int, k: int) -> float:
    """The mean distance to the k-th nearest of n uniform points on the unit sphere: a cap of
    chord radius r has area πr², so n r² / 4 is Gamma(k) distributed (Poisson limit), and
    E r = 2 Γ(k + ½) / (Γ(k) √n)."""
    return 2 * math.exp(math.lgamma(k + 0.5) - math.lgamma(k)) / math.sqrt(n)


def image_sample(unit: np.ndarray, knn: int, m: int, spacing: float) -> mf.ManifoldSample:
    """One world from unit rows (n, d): principal coordinates when d > n, scaled so that the
    mean distance to the ``knn``-th neighbour is ``spacing``; the oracle: the ``m`` smallest
    eigenpairs of the samples' ``knn``-NN graph Laplacian (functions of mean square 1),
    density 1."""
    from sklearn.neighbors import NearestNeighbors

    n, d = unit.shape
    if d > n:  # principal coordinates: the Gram matrix's eigenvectors times √eigenvalue
        vals, vecs = np.linalg.eigh(unit @ unit.T)
        unit = vecs[:, ::-1] * np.sqrt(np.clip(vals[::-1], 0.0, None))
    dist, _ = NearestNeighbors(n_neighbors=knn + 1).fit(unit).kneighbors(unit)
    mean_kth = float(dist[:, knn].mean())
    if not mean_kth > 0:
        raise ValueError(f"every image has {knn} identical neighbours: no scale for the probes")
    points = unit * (spacing / mean_kth)
    vals, vecs = eigenbasis(*knn_laplacian(points, knn), m)
    return mf.ManifoldSample(points.astype(np.float32), np.ones(n), vecs * math.sqrt(n), vals)


def image_worlds(
    pool: ImagePool, cfg: ImagesConfig, n_seeds: int, data_seed: int, reference_n: int
) -> list[mf.ManifoldSample]:
    """One sample per seed: ``n_points`` test images drawn without replacement with
    ``data_seed + i``, scaled to the kNN spacing of ``reference_n`` points on the unit sphere."""
    total = len(pool.rows)
    spacing = sphere_knn_distance(reference_n, cfg.knn)
    out = []
    for i in range(n_seeds):
        index = np.sort(np.random.default_rng(data_seed + i).choice(total, cfg.n_points, False))
        unit = unit_rows(pool.rows[index], pool.pixels, index)
        out.append(image_sample(unit, cfg.knn, cfg.functions, spacing))
    return out
