"""The eigenstructures learned solver against scipy's sparse eigensolver on the same graph
Laplacian: time and eigenvalue error as n grows. ``python -m benchmarks.worlds_eigen``.

Velich et al. (CVPR 2026, arXiv:2512.01103) learn a spectral basis by reconstructing heat-smoothed
probe functions. Here both solvers see one operator: the symmetric normalised Laplacian
L = I − D^{-1/2} W D^{-1/2} of the binary kNN graph (k = 10) of n uniform points on the sphere.

* scipy: ``eigsh(L, k=16, sigma=-1e-3)`` (shift-invert Lanczos); its eigenvalues are the
  reference.
* learned: the study's per-point MLP (3 → 128 → 128 → 16, QR) trained with Adam on the nested
  truncation loss over probes f = S^T u of the lazy smoother S = (I + D^{-1/2} W D^{-1/2}) / 2
  (which shares L's eigenvectors), uniform mass (L is symmetric in the Euclidean inner
  product). T = n / 25 smoothing steps keep the heat time fixed as the spacing shrinks (the kNN
  graph's low eigenvalues scale as 1/n). Eigenvalues by Rayleigh–Ritz on the learned span (eig of
  QᵀLQ). Its time includes probe generation.

Errors: max |λ̂ − λ| / max λ over the 9 smallest (l ≤ 2 on the sphere) and over all 16; the
energy of eigsh's first 9 eigenvectors inside the learned span. Each size runs in a fresh
subprocess, one torch thread.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.common import in_subprocess, machine

SIZES = (500, 1_000, 2_000)
K, KNN, STEPS, PROBES, REGEN, LR = 16, 10, 1_000, 500, 50, 1e-3


def _laplacian(n: int) -> tuple[np.ndarray, object, object]:
    import scipy.sparse as sp

    from subspacelab.worlds import manifolds as mf

    points = mf.sphere(n, 0.0, 0, seed=0).points
    w = mf.knn_graph(points, KNN, None)
    lap = mf.graph_laplacian(w, "symmetric")
    lazy = ((sp.identity(n) + (sp.identity(n) - lap)) / 2).tocsr()
    return points, lap, lazy


def scipy_solver(n: int) -> dict[str, object]:
    """Time eigsh's 16 smallest eigenpairs of L (shift-invert)."""
    from scipy.sparse.linalg import eigsh

    _, lap, _ = _laplacian(n)
    t0, c0 = time.perf_counter(), time.process_time()
    vals, _ = eigsh(lap, k=K, sigma=-1e-3, which="LM")
    return {
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        "eigenvalues": np.sort(vals).tolist(),
    }


def learned_solver(n: int) -> dict[str, object]:
    """Train the probe-reconstruction network on L's lazy smoother; Rayleigh–Ritz eigenvalues."""
    import torch
    from scipy.sparse.linalg import eigsh

    from subspacelab.studies.eigenstructures import core
    from subspacelab.worlds import manifolds as mf

    torch.set_num_threads(1)
    points, lap, lazy = _laplacian(n)
    iters = max(1, n // 25)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    net = core.PointMLPStack([3, 128, 128, K], [0])
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    x = torch.from_numpy(points.astype(np.float32))[None]
    t0, c0 = time.perf_counter(), time.process_time()
    for step in range(STEPS):
        if step % REGEN == 0:
            f = core.probes(lazy, PROBES, iters, rng)
        q = core.orthonormal(net(x))[0]
        g = f  # uniform mass: the operator is symmetric in the Euclidean inner product
        loss = ((g * g).sum(0)[None] - ((q.T @ g) ** 2).cumsum(0)).mean() / np.sqrt(K)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        q = core.orthonormal(net(x))[0].double().numpy()
    ritz = np.linalg.eigvalsh(q.T @ (lap @ q))
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    ref_vals, ref_vecs = eigsh(lap, k=K, sigma=-1e-3, which="LM")
    order = np.argsort(ref_vals)
    ref_vals, ref_vecs = ref_vals[order], ref_vecs[:, order]
    return {
        "seconds": secs,
        "cpu_seconds": cpu,
        "smoothing_steps": iters,
        "err_9": mf.eigenvalue_error(ritz[:9], ref_vals[:9]),
        "err_16": mf.eigenvalue_error(ritz, ref_vals),
        "energy_9": mf.energy_captured(q, ref_vecs[:, :9]),
    }


def section() -> list[str]:
    """The benchmark's RESULTS.md section."""
    lines = [
        "## Worlds: learned eigensolver (eigenstructures) vs scipy eigsh, sphere kNN Laplacian",
        "",
        f"Machine: {machine()}. L = I − D^-1/2 W D^-1/2, binary kNN graph (k = {KNN}) of n "
        f"uniform sphere points; {K} smallest eigenpairs. Learned: MLP 3-128-128-{K} + QR, "
        f"{STEPS} Adam steps (lr {LR}), {PROBES} probes regenerated every {REGEN} steps, n/25 "
        "lazy-smoother steps per probe; time includes probe generation. Error: max |λ̂ − λ| / "
        "max λ against eigsh; energy: eigsh's first 9 eigenvectors inside the learned span.",
        "",
        "| n | eigsh wall (s) | eigsh CPU (s) | learned wall (s) | learned CPU (s) | CPU × eigsh "
        "| smoothing steps | error λ1..9 | error λ1..16 | energy l ≤ 2 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in SIZES:
        ref = in_subprocess("benchmarks.worlds_eigen", "scipy_solver", n=n)
        ours = in_subprocess("benchmarks.worlds_eigen", "learned_solver", n=n)
        lines.append(
            f"| {n:,} | {ref['seconds']:.3f} | {ref['cpu_seconds']:.3f} | {ours['seconds']:.1f} | "
            f"{ours['cpu_seconds']:.1f} | {ours['cpu_seconds'] / ref['cpu_seconds']:.0f} | "
            f"{ours['smoothing_steps']} | "
            f"{ours['err_9']:.3f} | {ours['err_16']:.3f} | {ours['energy_9']:.3f} |"
        )
    lines += [
        "",
        "_CPU time (user + sys of the measuring process) is the steadier figure on this shared "
        "box. Command: `python -m benchmarks.worlds_eigen`._",
    ]
    return lines


if __name__ == "__main__":
    print("\n".join(section()))
