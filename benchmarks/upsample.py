"""The neighbourhood-attention upsampler of diveup (subspacelab.modules.upsample, arXiv
2603.13571): ours against the textbook CPU emulation of NATTEN's dilated window.

Ours gathers each token's window once on the low-resolution grid and lets the s×s output pixels
of a token share it. Peer: what NAF computes with ``na2d(dilation=s)`` written without NATTEN —
keys and values nearest-resized to the output grid, every output pixel gathering its own
dilated, border-shifted window there. Both compute the same outputs (the max difference is in
the table). NATTEN itself has no CPU build to compare with. Forward only, 1 thread, fastest of
REPEATS interleaved passes, each in its own subprocess; the ratio is what to read.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import in_subprocess, machine

CASES = ((8, 64, 8), (8, 128, 16), (1, 224, 16))  # (batch, output side, token grid side)
CHANNELS, KERNEL, REPEATS = 64, 5, 3


def _peer(up: Any, image: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """NATTEN's dilated neighbourhood attention emulated on the output grid."""
    from subspacelab.modules.upsample import rope_2d, window_index

    b, c, h, w = feats.shape
    size = (image.shape[-2], image.shape[-1])
    s, n = size[0] // h, up.heads
    q = up.encoder(image, size)
    k = F.adaptive_avg_pool2d(q, (h, w))
    q = rope_2d(q, n, up.rope_base, up.rope_rescale)
    k = rope_2d(k, n, up.rope_base, up.rope_rescale)
    k_hr = F.interpolate(k, size=size, mode="nearest")
    v_hr = F.interpolate(feats, size=size, mode="nearest")
    # the dilated window of output pixel p on axis n: token window of p // s, same residue
    tok = window_index(h, KERNEL)  # (h, k)
    pos = torch.arange(size[0])
    idx = tok[pos // s] * s + (pos % s)[:, None]  # (H, k)
    kw = k_hr[:, :, idx[:, None, :, None], idx[None, :, None, :]]  # (b, d, H, W, k, k)
    vw = v_hr[:, :, idx[:, None, :, None], idx[None, :, None, :]]
    d = q.shape[1] // n
    qh = q.view(b, n, d, *size)
    logits = torch.einsum("bndyx,bndyxij->bnyxij", qh, kw.view(b, n, d, *size, KERNEL, KERNEL))
    att = (logits / math.sqrt(d)).flatten(-2).softmax(-1).view_as(logits)
    out = torch.einsum("bnyxij,bncyxij->bncyx", att, vw.view(b, n, c // n, *size, KERNEL, KERNEL))
    return out.reshape(b, c, *size)


def measure(batch: int, side: int, grid: int) -> dict[str, Any]:
    """Seconds per forward for ours and the peer, and their max output difference."""
    from subspacelab.modules.upsample import NeighbourhoodUpsampler

    torch.set_num_threads(1)
    torch.manual_seed(0)
    up = NeighbourhoodUpsampler(64, KERNEL, 4, 2, 100.0, 2.0).eval()
    image, feats = torch.rand(batch, 3, side, side), torch.randn(batch, CHANNELS, grid, grid)
    fns = {"ours": lambda: up(image, feats), "peer": lambda: _peer(up, image, feats)}
    best = {name: math.inf for name in fns}
    with torch.no_grad():
        diff = float((fns["ours"]() - fns["peer"]()).abs().max())
        for _ in range(REPEATS):
            for name, fn in fns.items():
                t = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t)
    return {"seconds": best, "max_diff": diff}


def section() -> list[str]:
    """Markdown: ms per forward and the peer/ours ratio, per case."""
    lines = [
        "## Neighbourhood-attention upsampler (diveup): token-shared windows vs per-pixel "
        "NATTEN emulation",
        "",
        f"Forward, no gradient, 1 thread, fastest of {REPEATS} interleaved passes; {CHANNELS} "
        f"value channels, guidance dim 64, kernel {KERNEL} tokens; ratio = peer / ours.",
        "",
        "| batch | output | tokens | ours (ms) | peer (ms) | peer / ours | max \\|diff\\| |",
        "|---|---|---|---|---|---|---|",
    ]
    for batch, side, grid in CASES:
        r = in_subprocess("benchmarks.upsample", "measure", batch=batch, side=side, grid=grid)
        s = r["seconds"]
        lines.append(
            f"| {batch} | {side}² | {grid}² | {s['ours'] * 1e3:.1f} | {s['peer'] * 1e3:.1f} "
            f"| {s['peer'] / s['ours']:.2f} | {r['max_diff']:.1e} |"
        )
    return lines


if __name__ == "__main__":
    print("\n".join(section()))
    print(f"\n_Measured on {machine()}._")
