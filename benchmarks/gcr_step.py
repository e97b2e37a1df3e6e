"""A GCR training step against the softmax head's, on the same backbone (arXiv 2308.01547).

Both steps run the 1-D CNN trunk of the gcr miniature on a batch of 128 MNIST-1D-shaped signals:
forward, cross-entropy, backward and the optimiser updates (SGD for the trunk; SGD for the
softmax head, geometry.RiemannianSGD with a geodesic step and QR for the GCR head). Steps are
interleaved and the median over repeats is reported, so both see the same machine load.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from subspacelab.geometry import RiemannianSGD
from subspacelab.studies.gcr.core import (
    Classifier,
    ConvTrunk,
    GrassmannHead,
    LinearHead,
    euclidean_parameters,
    subspace_parameters,
)

BATCH, LENGTH, CLASSES, K, REPEATS = 128, 40, 5, 8, 200


def _model(head: str) -> tuple[Classifier, list[torch.optim.Optimizer]]:
    torch.manual_seed(0)
    trunk = ConvTrunk([32, 64, 64], kernel_size=5, stride=2)
    module: nn.Module = (
        LinearHead(trunk.feature_dim, CLASSES)
        if head == "softmax"
        else GrassmannHead(trunk.feature_dim, CLASSES, K, gamma=25.0)
    )
    model = Classifier(trunk, module)
    opts: list[torch.optim.Optimizer] = [
        torch.optim.SGD(euclidean_parameters(model), lr=0.1, momentum=0.9, weight_decay=1e-4)
    ]
    if subspace_parameters(model):
        opts.append(RiemannianSGD(subspace_parameters(model), lr=0.1, num_classes=CLASSES, k=K))
    return model, opts


def _step(
    model: Classifier, opts: list[torch.optim.Optimizer], x: torch.Tensor, y: torch.Tensor
) -> float:
    t0 = time.perf_counter()
    loss = nn.functional.cross_entropy(model(x), y)
    for opt in opts:
        opt.zero_grad()
    loss.backward()
    for opt in opts:
        opt.step()
    return time.perf_counter() - t0


def section() -> list[str]:
    """Markdown lines for RESULTS.md."""
    torch.set_num_threads(1)
    x, y = torch.randn(BATCH, LENGTH), torch.randint(0, CLASSES, (BATCH,))
    models = {name: _model(name) for name in ("softmax", "gcr")}
    times: dict[str, list[float]] = {name: [] for name in models}
    for i in range(REPEATS + 20):
        for name, (model, opts) in models.items():
            t = _step(model, opts, x, y)
            if i >= 20:  # warm-up
                times[name].append(t)
    med = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
    return [
        f"## GCR training step vs softmax head, batch {BATCH}, 1 thread",
        "",
        f"gcr miniature trunk (1-D CNN 32-64-64, d = 64), {CLASSES} classes, GCR k = {K}; "
        f"median of {REPEATS} interleaved steps.",
        "",
        "| head | ms / step | × softmax |",
        "|---|---|---|",
        *(f"| {n} | {m:.2f} | {m / med['softmax']:.2f} |" for n, m in med.items()),
    ]
