"""DGCNN-lite training throughput (scans/s) as the scan grows: our EdgeConv against DGCNN's
per-edge form.

Ours (``subspacelab.shapes.edgeconv.EdgeConv``): two per-point linear maps, one gather and a
max over neighbours, the BN statistics of the B·N·k edges from per-point sums (one sparse
product). Peer: the reference EdgeConv of DGCNN (arXiv:1801.07829): the (B, N, k, 2C) edge
features [x_i, x_j − x_i], a linear map, BN over every edge, LeakyReLU, max. Both compute the
same function (tests/shapes/test_edgeconv.py); the same net, batches and graph, 1 thread, each
pass timed ``REPEATS`` times and the fastest kept. The ratio is what to read.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmarks.common import in_subprocess, machine

BATCH, K, STEPS, REPEATS = 8, 16, 3, 2
SIZES = (1024, 2048)


def _reference_forward(conv: Any, x: Tensor, graph: Any) -> Tensor:
    """DGCNN's per-edge EdgeConv."""
    b, n, c = x.shape
    xi = x.unsqueeze(2).expand(-1, -1, graph.k, -1)
    xj = x.reshape(b * n, c)[graph.flat].reshape(b, n, graph.k, c)
    e = conv.theta(torch.cat([xi, xj - xi], -1))
    e = conv.bn(e.reshape(-1, e.shape[-1])).reshape(b, n, graph.k, -1)
    return F.leaky_relu(e, conv.slope).amax(2)


def measure(points: int, layout: str) -> dict[str, Any]:
    """Forward + backward + Adam scans/s of the mini's DGCNN-lite at ``points`` per scan."""
    from subspacelab.shapes.edgeconv import EdgeConv, EdgeSegNet, knn

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = EdgeSegNet(
        3, 5, k=K, widths=(64, 64, 64), global_dim=128, head_dim=128, embed_dim=64, dynamic=False
    )
    if layout == "peer":
        for conv in net.convs:
            assert isinstance(conv, EdgeConv)
            conv.forward = _reference_forward.__get__(conv)  # type: ignore[method-assign]
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(BATCH, points, 3)
    idx = knn(x, K)
    y = torch.randint(0, 5, (BATCH, points))

    def step() -> None:
        logits, _ = net(x, idx)
        opt.zero_grad()
        F.cross_entropy(logits.reshape(-1, 5), y.reshape(-1)).backward()
        opt.step()

    step()
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        for _ in range(STEPS):
            step()
        best = min(best, time.perf_counter() - t0)
    return {"scans_per_s": BATCH * STEPS / best}


def section() -> list[str]:
    """The Markdown section for RESULTS.md."""
    lines = [
        f"## DGCNN-lite EdgeConv: training scans/s, batch {BATCH}, k = {K}, widths 64×3, 1 thread",
        "",
        f"Measured on {machine()}. Ours: per-point maps, one gather + max, analytic edge "
        "statistics; peer: DGCNN's per-edge EdgeConv (same outputs). Fastest of "
        f"{REPEATS} passes of {STEPS} steps. Peak MiB: the process's maximum RSS.",
        "",
        "| points per scan | scans/s ours | peer | ratio | peak MiB ours | peer |",
        "|---|---|---|---|---|---|",
    ]
    for n in SIZES:
        ours = in_subprocess("benchmarks.edgeconv", "measure", points=n, layout="ours")
        peer = in_subprocess("benchmarks.edgeconv", "measure", points=n, layout="peer")
        lines.append(
            f"| {n:,} | {ours['scans_per_s']:.1f} | {peer['scans_per_s']:.1f} | "
            f"{ours['scans_per_s'] / peer['scans_per_s']:.2f} | "
            f"{ours['peak_rss_mib']:.0f} | {peer['peak_rss_mib']:.0f} |"
        )
    return lines
