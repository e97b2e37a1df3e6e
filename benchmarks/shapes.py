"""The 3D toolkit of issue 18: Laplacian eigenbasis time as the cloud grows, and point-cloud
encoder throughput against the machine's matmul rate.

Eigenbasis: the 20 smallest eigenpairs of the k-NN heat-kernel Laplacian (k = 10) of a torus
cloud of 1k to 100k points. Ours: :func:`subspacelab.shapes.laplacian.eigenbasis` (the symmetric
reduction M^-1/2 L M^-1/2, one SuperLU factor in symmetric mode under a minimum-degree ordering,
shift-invert Lanczos). Peer: scipy's ``eigsh(L, k, M=M, sigma=σ)``, the call every geometry
codebase writes (it factorises L − σM with SuperLU's default column ordering). Same σ, same k,
1 BLAS thread, each size in its own subprocess; the ratio is what to read.

Encoder: :class:`subspacelab.shapes.pointnet.PointNet` (widths 64-128-1024, the classic
classification encoder) on batches of 32 clouds of 1,024 points, eval mode, no gradient,
1 thread. Its rate in GFLOP/s (2 × points × Σ c_in c_out multiply-adds) is set against a float32
matmul of the largest layer's shape timed in the same process: the fraction of that floor is
what to read.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from benchmarks.common import in_subprocess, machine

SIZES = (1_000, 3_000, 10_000, 30_000, 100_000)
K_EIG, K_NN, SIGMA = 20, 10, -1e-8
WIDTHS, BATCH, POINTS, REPEATS = (64, 128, 1024), 32, 1024, 5


def eigen(n: int) -> dict[str, Any]:
    """Seconds of ours and of scipy's generalised shift-invert call on one cloud of ``n`` points."""
    from scipy.sparse.linalg import eigsh
    from threadpoolctl import threadpool_limits

    from subspacelab.shapes import clouds, laplacian

    lap, mass = laplacian.knn_laplacian(clouds.torus(n, np.random.default_rng(0)), K_NN)
    with threadpool_limits(1):
        t0 = time.perf_counter()
        ours, _ = laplacian.eigenbasis(lap, mass, K_EIG, SIGMA)
        t1 = time.perf_counter()
        peer = eigsh(lap.tocsc(), k=K_EIG, M=mass.tocsc(), sigma=SIGMA, which="LM")[0]
        t2 = time.perf_counter()
    peer = np.sort(peer)
    rel = np.abs(ours - peer) / np.maximum(np.abs(peer), 1e-6)
    return {"ours_s": t1 - t0, "peer_s": t2 - t1, "max_rel_diff": float(rel[1:].max())}


def encoder() -> dict[str, Any]:
    """PointNet forward rate and the float32 matmul floor of its widest layer, fastest pass."""
    from subspacelab.shapes.pointnet import PointNet

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = PointNet(list(WIDTHS)).eval()
    x = torch.randn(BATCH, POINTS, 3)
    a = torch.randn(BATCH * POINTS, WIDTHS[-2])
    w = torch.randn(WIDTHS[-2], WIDTHS[-1])
    flops = 2 * BATCH * POINTS * sum(i * o for i, o in zip((3, *WIDTHS[:-1]), WIDTHS, strict=True))
    mm_flops = 2 * a.shape[0] * a.shape[1] * w.shape[1]
    best_net = best_mm = float("inf")
    with torch.no_grad():
        net(x)
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            net(x)
            t1 = time.perf_counter()
            a @ w
            t2 = time.perf_counter()
            best_net, best_mm = min(best_net, t1 - t0), min(best_mm, t2 - t1)
    return {
        "points_per_s": BATCH * POINTS / best_net,
        "gflops": flops / best_net / 1e9,
        "floor_gflops": mm_flops / best_mm / 1e9,
    }


def section() -> list[str]:
    """The Markdown section of RESULTS.md."""
    lines = [
        f"## 3D toolkit: Laplacian eigenbasis ({K_EIG} pairs, k-NN graph k = {K_NN}) "
        "and PointNet throughput",
        "",
        "| points | ours (s) | scipy eigsh(M=, sigma=) (s) | peer / ours "
        "| max rel. eigenvalue diff |",
        "|---|---|---|---|---|",
    ]
    for n in SIZES:
        r = in_subprocess("benchmarks.shapes", "eigen", n=n)
        lines.append(
            f"| {n:,} | {r['ours_s']:.2f} | {r['peer_s']:.2f} | {r['peer_s'] / r['ours_s']:.2f} "
            f"| {r['max_rel_diff']:.1e} |"
        )
    e = in_subprocess("benchmarks.shapes", "encoder")
    lines += [
        "",
        f"PointNet {'-'.join(map(str, WIDTHS))}, {BATCH} clouds × {POINTS:,} points, 1 thread: "
        f"{e['points_per_s']:,.0f} points/s, {e['gflops']:.1f} GFLOP/s against a float32 "
        f"matmul floor of {e['floor_gflops']:.1f} GFLOP/s ({e['gflops'] / e['floor_gflops']:.0%} "
        "of it; BatchNorm, ReLU and the max pool are the rest).",
    ]
    return lines


if __name__ == "__main__":
    print("\n".join([*section(), "", f"_Measured on {machine()}._"]))
