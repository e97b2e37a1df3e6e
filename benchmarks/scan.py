"""The selective scan (S6) of mhs_vm's toolkit against mambapy's parallel scan: tokens/s,
forward and forward+backward, on the same shapes.

Ours: ``subspacelab.modules.scan.selective_scan`` (a two-level chunked scan, √L steps within
chunks then L/T carries, with a hand-written adjoint). Peer: mambapy 1.2.0's
``MambaBlock.selective_scan`` (its Blelloch ``pscan``, in-place up- and down-sweeps, its own
backward). Both compute Ā = exp(ΔA), B̄x = ΔBx, the scan, C·h + Dx from the same (batch, L, d)
inputs with N = 16. Each is timed in its own subprocess, 1 thread, the fastest of a few passes.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from benchmarks.common import in_subprocess, machine

BATCH, LENGTH, STATE = 8, 256, 16
WIDTHS = (32, 64, 128)
REPEATS = 3


def _inputs(d: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, LENGTH, d, generator=g)
    delta = torch.nn.functional.softplus(torch.randn(BATCH, LENGTH, d, generator=g) - 2)
    a = -torch.arange(1, STATE + 1, dtype=torch.float32).repeat(d, 1)
    b = torch.randn(BATCH, LENGTH, STATE, generator=g)
    c = torch.randn(BATCH, LENGTH, STATE, generator=g)
    return x, delta, a, b, c, torch.ones(d)


def measure(d: int, impl: str) -> dict[str, Any]:
    """Forward and forward+backward tokens/s of one implementation at width ``d``."""
    torch.set_num_threads(1)
    x, delta, a, b, c, dd = _inputs(d)
    if impl == "ours":
        from subspacelab.modules.scan import selective_scan

        def run(x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
            return selective_scan(
                x.transpose(1, 2),
                delta.transpose(1, 2),
                a,
                b.transpose(1, 2),
                c.transpose(1, 2),
                dd,
            ).transpose(1, 2)
    else:
        from mambapy.mamba import MambaBlock, MambaConfig

        block = MambaBlock(MambaConfig(d_model=d, n_layers=1, d_state=STATE, expand_factor=1))

        def run(x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
            return block.selective_scan(x, delta, a, b, c, dd)

    fwd = train = float("inf")
    with torch.no_grad():
        run(x, delta)
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            run(x, delta)
            fwd = min(fwd, time.perf_counter() - t0)
    xg, dg = x.clone().requires_grad_(), delta.clone().requires_grad_()
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        run(xg, dg).square().mean().backward()
        train = min(train, time.perf_counter() - t0)
    n = BATCH * LENGTH
    return {"fwd_tokens_per_s": n / fwd, "train_tokens_per_s": n / train}


def section() -> list[str]:
    """The Markdown section for RESULTS.md."""
    lines = [
        f"## Selective scan (S6): batch {BATCH}, L = {LENGTH}, N = {STATE}, 1 thread",
        "",
        f"Measured on {machine()}. Ours: `subspacelab.modules.scan.selective_scan` (two-level "
        "chunked scan, hand-written adjoint); peer: mambapy 1.2.0's `MambaBlock.selective_scan` "
        f"(Blelloch pscan). Same inputs; each pass timed {REPEATS} times, the fastest kept; "
        "tokens/s = batch·L / seconds.",
        "",
        "| d | fwd tokens/s ours | peer | ratio | fwd+bwd tokens/s ours | peer | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in WIDTHS:
        ours = in_subprocess("benchmarks.scan", "measure", d=d, impl="ours")
        peer = in_subprocess("benchmarks.scan", "measure", d=d, impl="mambapy")
        lines.append(
            f"| {d} | {ours['fwd_tokens_per_s']:,.0f} | {peer['fwd_tokens_per_s']:,.0f} | "
            f"{ours['fwd_tokens_per_s'] / peer['fwd_tokens_per_s']:.2f} | "
            f"{ours['train_tokens_per_s']:,.0f} | {peer['train_tokens_per_s']:,.0f} | "
            f"{ours['train_tokens_per_s'] / peer['train_tokens_per_s']:.2f} |"
        )
    return lines
