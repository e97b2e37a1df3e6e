"""Curvature probes (Sagun et al., arXiv:1706.04454): Lanczos against the full Hessian, a
Hessian-vector product's cost against a gradient's, and the closed-form MLP Hessian and
Gauss-Newton matrix (``mlp_hessian``, what the hessian study uses) against autograd's.

Networks are the hessian miniature's tanh MLPs ``10 → W → W → 5`` in float64 on 200 Gaussian-
blob examples, one thread. For each width: the exact Hessian (``torch.func.hessian``) and its
``eigvalsh`` versus the top-5 eigenvalues by Lanczos (``eigsh`` over HVPs), with the largest
relative error of those five; then the median time of one full-batch gradient and of one HVP.
Times are CPU seconds of this (single-threaded) process, so other load on the machine does not
inflate them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from subspacelab.probes import hessian as hs
from subspacelab.studies.hessian.core import blobs, mlp

WIDTHS_EXACT = (8, 16, 32, 48)
WIDTHS_CLOSED = (16, 32, 48)
N_STUDY = 500  # the hessian miniature's N
WIDTHS_COST = (16, 64, 256)
TOP_K, N, REPEATS = 5, 200, 20


def _median_time(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return statistics.median(times)


def lanczos_vs_exact(width: int) -> dict[str, float]:
    """Times and the top-k relative error of Lanczos vs the exact spectrum at one width."""
    x, y = blobs(N, 10, 5, 3.0, 5.0, 0)
    fn, theta = hs.flat_model(mlp(10, width, 5, 0))
    t = time.process_time()
    exact = torch.linalg.eigvalsh(hs.exact_hessian(fn, theta, x, y, "ce")).flip(0)[:TOP_K]
    t_exact = time.process_time() - t
    t = time.process_time()
    approx = torch.from_numpy(
        hs.lanczos_top(hs.hvp_fn(fn, theta, x, y, "ce"), theta.numel(), TOP_K).copy()
    )
    t_lanczos = time.process_time() - t
    err = float(((approx - exact).abs() / exact.abs()).max())
    return {"P": theta.numel(), "exact_s": t_exact, "lanczos_s": t_lanczos, "rel_err": err}


def hvp_vs_grad(width: int) -> dict[str, float]:
    """Median seconds of one full-batch gradient and one HVP at one width."""
    x, y = blobs(N, 10, 5, 3.0, 5.0, 0)
    fn, theta = hs.flat_model(mlp(10, width, 5, 0))
    grad = torch.func.grad(hs.full_loss(fn, x, y, "ce"))
    hvp = hs.hvp_fn(fn, theta, x, y, "ce")
    v = torch.randn_like(theta)
    return {
        "P": theta.numel(),
        "grad_s": _median_time(lambda: grad(theta)),
        "hvp_s": _median_time(lambda: hvp(v)),
    }


def closed_form_vs_autograd(width: int) -> dict[str, float]:
    """Seconds of H and G by autograd (``exact_hessian`` + ``gauss_newton``) and in closed form
    (``mlp_hessian``) at the study's N, and the largest entry difference."""
    x, y = blobs(N_STUDY, 10, 5, 3.0, 5.0, 0)
    net = mlp(10, width, 5, 0)
    fn, theta = hs.flat_model(net)
    t = time.process_time()
    h, g = hs.exact_hessian(fn, theta, x, y, "ce"), hs.gauss_newton(fn, theta, x, "ce")
    t_auto = time.process_time() - t
    t = time.process_time()
    h2, g2 = hs.mlp_hessian(net, x, y, "ce")
    t_closed = time.process_time() - t
    diff = max(float((h - h2).abs().max()), float((g - g2).abs().max()))
    return {"P": theta.numel(), "auto_s": t_auto, "closed_s": t_closed, "diff": diff}


def section() -> list[str]:
    """Markdown lines for benchmarks/RESULTS.md."""
    torch.set_num_threads(1)
    lines = [
        f"## Hessian probes: Lanczos top-{TOP_K} vs the full Hessian (tanh MLP, N={N}, "
        "float64, 1 thread, CPU seconds)",
        "",
        "| W | P | exact H + eigvalsh (s) | Lanczos top-5 (s) | max rel. error |",
        "|---|---|---|---|---|",
    ]
    for w in WIDTHS_EXACT:
        r = lanczos_vs_exact(w)
        lines.append(
            f"| {w} | {r['P']:,} | {r['exact_s']:.2f} | {r['lanczos_s']:.2f} | {r['rel_err']:.1e} |"
        )
    lines += ["", "| W | P | gradient (ms) | HVP (ms) | HVP / gradient |", "|---|---|---|---|---|"]
    for w in WIDTHS_COST:
        r = hvp_vs_grad(w)
        lines.append(
            f"| {w} | {r['P']:,} | {1e3 * r['grad_s']:.2f} | {1e3 * r['hvp_s']:.2f} | "
            f"{r['hvp_s'] / r['grad_s']:.1f} |"
        )
    lines += [
        "",
        f"Closed-form H and G of the tanh MLP vs autograd (CE, N={N_STUDY}, the hessian "
        "study's cells):",
        "",
        "| W | P | autograd H + G (s) | closed form (s) | × faster | max abs. difference |",
        "|---|---|---|---|---|---|",
    ]
    for w in WIDTHS_CLOSED:
        r = closed_form_vs_autograd(w)
        lines.append(
            f"| {w} | {r['P']:,} | {r['auto_s']:.2f} | {r['closed_s']:.2f} | "
            f"{r['auto_s'] / r['closed_s']:.1f} | {r['diff']:.1e} |"
        )
    return [*lines, ""]
