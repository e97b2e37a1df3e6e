"""Streaming float64 PCA (geometry.StreamingMoments) against scikit-learn and the matmul floor.

The floor is this CPU's own float32 X^T X on the same data: a covariance cannot be cheaper than
one pass of that product. Each method runs in a fresh process so its peak memory is its own.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

N, D, THREADS = 200_000, 384, 2


def _data(n: int, d: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(d, d)).astype(np.float32)
    scales = np.geomspace(10.0, 0.01, d).astype(np.float32)
    return (rng.normal(size=(n, d)).astype(np.float32) * scales) @ basis


def baseline(n: int = N, d: int = D) -> dict[str, Any]:
    """Memory of the data alone (subtracted from the others)."""
    x = _data(n, d)
    return {"bytes": int(x.nbytes)}


def floor(n: int = N, d: int = D, repeats: int = 3) -> dict[str, Any]:
    """Best-of float32 X^T X on THREADS threads: the hardware limit for a covariance pass."""
    torch.set_num_threads(THREADS)
    x = torch.from_numpy(_data(n, d))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        x.T @ x
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {"seconds": best, "gflops": 2 * n * d * d / best / 1e9}


def streaming(n: int = N, d: int = D, batch: int = 8192) -> dict[str, Any]:
    """geometry.StreamingMoments in float64 batches, then eigh and the 0.99 rank."""
    from subspacelab.geometry import StreamingMoments, pca_from_moments

    torch.set_num_threads(THREADS)
    x = torch.from_numpy(_data(n, d))
    t0 = time.perf_counter()
    moments = StreamingMoments()
    for start in range(0, n, batch):
        moments.update(x[start : start + batch])
    result = pca_from_moments(moments, threshold=0.99)
    seconds = time.perf_counter() - t0
    ratio = result.eigenvalues / result.eigenvalues.sum()
    return {"seconds": seconds, "k": int(result.k), "evr": ratio[:10].tolist()}


def sklearn_pca(n: int = N, d: int = D, solver: str = "full") -> dict[str, Any]:
    """scikit-learn's PCA with the given svd_solver."""
    from sklearn.decomposition import PCA
    from threadpoolctl import threadpool_limits

    x = _data(n, d)
    with threadpool_limits(THREADS):
        t0 = time.perf_counter()
        pca = PCA(svd_solver=solver).fit(x)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "evr": pca.explained_variance_ratio_[:10].tolist()}
