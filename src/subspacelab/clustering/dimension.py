"""Label-free intrinsic-dimension estimate: TwoNN (Facco, d'Errico, Rodriguez & Laio, Sci. Rep.
2017, arXiv:1803.06992).

LIHF-DSC's post-processing keeps the top-k coefficients per row with k the subspace-dimension
prior (arXiv:2504.18179); where a dataset documents no prior, the lab takes it from the data.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def two_nn_dimension(x: np.ndarray) -> float:
    """Maximum-likelihood TwoNN estimate d = N / Σ_i log(r₂(i)/r₁(i)) from each point's first
    and second nearest-neighbour distances (points with a duplicate, r₁ = 0, are left out).

    Needs no parameter; noise in extra ambient directions raises the estimate.
    """
    pts = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if pts.shape[0] < 3:
        raise ValueError(f"TwoNN needs at least 3 points, got {pts.shape[0]}")
    dist, _ = cKDTree(pts).query(pts, k=3)
    r1, r2 = dist[:, 1], dist[:, 2]
    keep = r1 > 0
    logs = np.log(r2[keep] / r1[keep])
    if not keep.any() or logs.sum() <= 0:
        raise ValueError("TwoNN: every point has a duplicate or equidistant neighbours")
    return float(keep.sum() / logs.sum())


def dimension_prior(images: np.ndarray, configured: int, known: int | None) -> tuple[int, str]:
    """The post-processing's top-k (LIHF-DSC, arXiv:2504.18179): ``configured`` when set (> 0),
    else the dataset's known subspace dimension, else the rounded TwoNN estimate of the data
    (label-free); and where it came from."""
    if configured > 0:
        return configured, "configured prior"
    if known is not None:
        return known, "generator's subspace dimension"
    return max(1, round(two_nn_dimension(images.reshape(len(images), -1)))), "TwoNN estimate"
