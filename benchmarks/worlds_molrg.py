"""The molrg_diffusion sample-complexity sweep's cost as the intrinsic dimension d grows.

One seed's sweep for one d (Wang et al., arXiv:2409.02426, §6 plan): K = 2 components in
R^n, N_k ∈ {d−1, d, d+1, 2d, 3d}, 4 restarts x 2 parametrisations of the low-rank DAE trained
together, 32 noise draws per point per step, and the K-subspaces baseline on the same worlds.
Per d it reports the milliseconds of one training step (forward, backward, Adam, retraction)

* with the study's noise in K·d dimensions (``core.reduced_loss``: Uᵀε drawn as L h), and
* with the textbook noise ε ∈ R^n and x̂ formed in R^n (the same loss, equally batched),

their ratio, and the seconds of the K-subspaces baseline (spectral start + 20 restarts) over the
sweep's worlds. Steps are interleaved between the two losses and the median of the repeats is
kept, so both see the same machine load; times are CPU times (user + sys) of the measuring
process, steadier than wall time on a shared machine. ``python -m benchmarks.worlds_molrg`` writes
``benchmarks/results/worlds_molrg.md``.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

from benchmarks.common import machine
from subspacelab.studies.molrg_diffusion import core
from subspacelab.worlds import lowrank

DIMS, K, AMBIENT, RESTARTS, DRAWS, STEPS, REPEATS, THREADS = (2, 4, 8, 16), 2, 48, 4, 32, 10, 3, 1
LO, HI = 0.05, 2.0
OUT = Path(__file__).with_name("results") / "worlds_molrg.md"


def _sweep(d: int, n: int) -> tuple[list[lowrank.MoLRG], core.GroupDAEs]:
    sizes = [d - 1, d, d + 1, 2 * d, 3 * d]
    worlds = [lowrank.molrg(n, [d] * K, [nk] * K, seed=[0, d, nk]) for nk in sizes]
    x = torch.zeros(len(worlds), K * max(sizes), n)
    for i, w in enumerate(worlds):
        x[i, : len(w.x)] = torch.from_numpy(w.x).float()
    init = torch.randn(len(worlds), RESTARTS, K, n, d, generator=torch.Generator().manual_seed(d))
    counts = torch.tensor([len(w.x) for w in worlds])
    return worlds, core.GroupDAEs(x, counts, init)


def _full_losses(g: core.GroupDAEs, gen: torch.Generator) -> Tensor:
    """The same per-model losses (arms, W, R) with ε ∈ R^n and x̂ formed in R^n, batched."""
    u = g.bases()  # (arms, W, R, K, n, d)
    w, nmax, n = g.x.shape
    eps = torch.randn(w, nmax, DRAWS, n, generator=gen)
    sigma = torch.empty(w, nmax, DRAWS).uniform_(math.log(LO), math.log(HI), generator=gen).exp()
    x_t = g.x[:, :, None] + sigma[..., None] * eps  # (W, N, D, n)
    coords = torch.einsum("wpdn,awrknj->awrpdkj", x_t, u)
    var = (1.0 + sigma.square())[None, :, None]
    logits = coords.square().sum(-1) / (2.0 * sigma.square()[None, :, None] * var).unsqueeze(-1)
    c = torch.softmax(logits, dim=-1) / var.unsqueeze(-1)
    x_hat = torch.einsum("awrpdk,awrpdkj,awrknj->awrpdn", c, coords, u)
    err = (x_hat - g.x[None, :, None, :, None]).square().sum(-1).mean(-1)  # (arms, W, R, N)
    return (err * g.weight[None, :, None]).sum(-1)


def _step_ms(
    g: core.GroupDAEs, full: bool, opt: torch.optim.Optimizer, gen: torch.Generator
) -> float:
    t0 = time.process_time()
    for _ in range(STEPS):
        opt.zero_grad()
        loss = _full_losses(g, gen).sum() if full else g.losses(gen, DRAWS, LO, HI).sum()
        loss.backward()
        opt.step()
        g.retract()
    return (time.process_time() - t0) / STEPS * 1e3


def measure(d: int, n: int = AMBIENT) -> dict[str, float]:
    """ms per training step (reduced and R^n noise) and K-subspaces seconds for one d."""
    torch.set_num_threads(THREADS)
    worlds, g = _sweep(d, n)
    opt = torch.optim.Adam(g.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(0)
    _step_ms(g, False, opt, gen), _step_ms(g, True, opt, gen)  # warm-up
    reduced, full = [], []
    for _ in range(REPEATS):
        reduced.append(_step_ms(g, False, opt, gen))
        full.append(_step_ms(g, True, opt, gen))
    lowrank.k_subspaces(worlds[-1].x, K, d, seed=0, restarts=0)  # warm-up (imports)
    t0 = time.process_time()
    for w in worlds:
        lowrank.k_subspaces(w.x, K, d, seed=0, restarts=20)
    ks = time.process_time() - t0
    return {
        "reduced_ms": statistics.median(reduced),
        "full_ms": statistics.median(full),
        "ks_seconds": ks,
        "points": float(sum(len(w.x) for w in worlds)),
    }


def section() -> list[str]:
    """The benchmark's Markdown section."""
    lines = [
        f"## molrg_diffusion sweep cost vs d (K = {K}, n = {AMBIENT}, {THREADS} thread)",
        "",
        f"One seed's sweep per d: N_k ∈ {{d−1, d, d+1, 2d, 3d}}, {RESTARTS} restarts x 2 "
        f"parametrisations, {DRAWS} draws per point per step; median of {REPEATS} x {STEPS} "
        "interleaved steps; CPU time of the measuring process (the machine is shared). The "
        "800-step column extrapolates the study's schedule.",
        "",
        "| d | points | CPU ms / step, noise in K·d dims | CPU ms / step, noise in R^n | × | "
        "800 steps (CPU s) | K-subspaces (CPU s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in DIMS:
        r = measure(d)
        lines.append(
            f"| {d} | {r['points']:.0f} | {r['reduced_ms']:.1f} | {r['full_ms']:.1f} | "
            f"{r['full_ms'] / r['reduced_ms']:.1f} | {r['reduced_ms'] * 0.8:.1f} | "
            f"{r['ks_seconds']:.2f} |"
        )
    return lines


def main() -> None:
    """Measure and write the section to benchmarks/results/worlds_molrg.md."""
    lines = [
        *section(),
        "",
        f"_Measured on {machine()}; command: `python -m benchmarks.worlds_molrg`._",
        "",
    ]
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text("\n".join(lines))
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
