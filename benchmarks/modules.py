"""CPU latency of the attention/gating modules of issue 14, as ratios against a plain 3×3 conv.

Modules (eval mode, no gradient, 1 thread): ULSAM (``studies/ulsam/core.py``, g = 4), SE
(``subspacelab.modules.gates.SqueezeExcitation``, r = 16), CBAM's spatial attention (7×7) and
hydra's class-pair gate as a feature filter (10 classes, embedding 32, MLP hidden 128, the
gate broadcast over the map). Peer: a plain 3×3 conv of the same width (C→C, padding 1, bias),
the layer such modules are added to or replace. The map is the cluttered-digits backbone's at
ULSAM's insertion point (128 × 5 × 5; ``ulsam``'s mini params) and a larger early-layer map
(32 × 20 × 20). Every module is timed in one subprocess, interleaved with the conv, the fastest
of ``REPEATS`` passes counting (a shared, noisy machine): the ratio is what to read.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor, nn

from benchmarks.common import in_subprocess, machine

SHAPES = ((128, 5, 5), (32, 20, 20))
BATCHES = (1, 64)
REPEATS = 5
CALLS = {1: 400, 64: 40}  # calls per pass
MODULES = ("conv3x3", "ulsam_g4", "se_r16", "cbam_spatial_k7", "hydra_gate")


def _modules(channels: int) -> dict[str, nn.Module]:
    from subspacelab.modules.gates import (
        ClassPairGate,
        FeatureFilter,
        SpatialAttention,
        SqueezeExcitation,
    )
    from subspacelab.studies.ulsam.core import ULSAM

    return {
        "conv3x3": nn.Conv2d(channels, channels, 3, padding=1),
        "ulsam_g4": ULSAM(channels, 4),
        "se_r16": SqueezeExcitation(channels, 16),
        "cbam_spatial_k7": SpatialAttention(7),
        "hydra_gate": FeatureFilter(ClassPairGate(10, channels, 32, 128)),
    }


def measure(channels: int, height: int, width: int, batch: int) -> dict[str, Any]:
    """Seconds per call of every module on one (batch, C, H, W) map, fastest pass."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    mods = {k: m.eval() for k, m in _modules(channels).items()}
    x = torch.randn(batch, channels, height, width)
    y = torch.randint(0, 10, (batch,))

    def call(name: str) -> Tensor:
        return mods[name](x, y) if name == "hydra_gate" else mods[name](x)

    n = CALLS[batch]
    best = dict.fromkeys(mods, float("inf"))
    with torch.no_grad():
        for name in mods:
            call(name)  # warm-up
        for _ in range(REPEATS):
            for name in mods:  # interleaved: drift of the machine hits every module alike
                t0 = time.perf_counter()
                for _ in range(n):
                    call(name)
                best[name] = min(best[name], (time.perf_counter() - t0) / n)
    params = {k: sum(p.numel() for p in m.parameters()) for k, m in mods.items()}
    return {"seconds": best, "params": params}


def section() -> list[str]:
    """Markdown: µs per call and the ratio to the 3×3 conv, per map shape and batch."""
    lines = [
        "## Attention/gating modules: CPU latency vs a 3×3 conv (issue 14)",
        "",
        "Eval mode, no gradient, 1 thread, fastest of "
        f"{REPEATS} interleaved passes; ratio = module / plain 3×3 conv (C→C) in the same run.",
        "",
        "| map (C×H×W) | batch | module | params | µs per call | × conv3x3 |",
        "|---|---|---|---|---|---|",
    ]
    for c, h, w in SHAPES:
        for b in BATCHES:
            r = in_subprocess(
                "benchmarks.modules", "measure", channels=c, height=h, width=w, batch=b
            )
            conv = r["seconds"]["conv3x3"]
            for name in MODULES:
                s = r["seconds"][name]
                lines.append(
                    f"| {c}×{h}×{w} | {b} | {name} | {r['params'][name]} | {s * 1e6:.1f} "
                    f"| {s / conv:.2f} |"
                )
    return lines


if __name__ == "__main__":
    print("\n".join(section()))
    print(f"\n_Measured on {machine()}._")
