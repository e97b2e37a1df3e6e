"""The flora miniature's fit step (FLoRA, arXiv:2405.14739): 60 arms evaluated at once.

flora's fit trains 3 seeds x 4 tasks x 5 arms (full FT, LoRA and FLoRA at two budgets) of a
32-64-64-64 CNN on 16x16 digits, batch 20, in one Lightning run. One training step's forward and
backward over all 60 nets, measured three ways, interleaved (median of the repeats):

* each net alone (its own modules, one after the other);
* one grouped conv per layer over every net's ``W + ΔW`` (ΔW formed per net);
* ``flora.core.StackedArms`` (``adapters.stacked``): runs of one arm, frozen bases without
  weight gradients, FLoRA through its factors — with and without the adapters' 1 % input
  dropout (official example.py), which makes LoRA go through its factors too.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ARMS = [("full", 0), ("flora", 4), ("lora", 1), ("flora", 10), ("lora", 3)]  # ranks at 2 %, 5 %
PER_ARM, BATCH, REPEATS = 12, 20, 5


def _nets(dropout: float) -> list[nn.Module]:
    from subspacelab.studies.flora import core

    torch.manual_seed(0)
    base = core.SmallCNN([32, 64, 64, 64], [2, 1, 2, 1], 10)
    nets = []
    for kind, rank in ARMS:
        for _ in range(PER_ARM):
            net = copy.deepcopy(base)
            if kind != "full":
                core.adapt(net, kind, rank, 2, 4.0, dropout)
            nets.append(net.train())
    return nets


def _effective_weights(nets: list[nn.Module], xs: list[Tensor], ys: list[Tensor]) -> Tensor:
    from subspacelab.adapters import FLoRA, LoRA

    per_net = [
        [
            (m.base.weight + m.delta(), m.base.bias)
            if isinstance(m, LoRA | FLoRA)
            else (m.weight, m.bias)
            for m in net.features
            if isinstance(m, nn.Conv2d | LoRA | FLoRA)
        ]
        for net in nets
    ]
    h = torch.cat(xs, dim=1)
    for j, s in enumerate((2, 1, 2, 1)):
        w = torch.cat([layers[j][0] for layers in per_net])
        b = torch.cat([layers[j][1] for layers in per_net])
        h = F.relu(F.conv2d(h, w, b, s, 1, groups=len(nets)))
    feats = h.mean(dim=(2, 3)).reshape(len(h), len(nets), -1)
    logits = torch.einsum("bkc,koc->kbo", feats, torch.stack([n.head.weight for n in nets]))
    logits = logits + torch.stack([n.head.bias for n in nets])[:, None]
    return F.cross_entropy(logits.flatten(0, 1), torch.stack(ys).flatten())


def step_ms() -> dict[str, float]:
    """Median ms of one forward + backward over the 60 nets, per way (single thread)."""
    from subspacelab.studies.flora.core import StackedArms

    torch.set_num_threads(1)
    nets, dropped = _nets(0.0), _nets(0.01)
    gen = torch.Generator().manual_seed(0)
    xs = [torch.rand(BATCH, 1, 16, 16, generator=gen) for _ in nets]
    ys = [torch.randint(0, 10, (BATCH,), generator=gen) for _ in nets]
    stacked, stacked_drop = StackedArms(nets), StackedArms(dropped)
    ways: dict[str, tuple[list[nn.Module], Callable[[], Tensor]]] = {
        "each net alone": (
            nets,
            lambda: sum(F.cross_entropy(n(x), y) for n, x, y in zip(nets, xs, ys, strict=True)),  # type: ignore[return-value]
        ),
        "one grouped conv per layer, W + ΔW per net": (
            nets,
            lambda: _effective_weights(nets, xs, ys),
        ),
        "StackedArms": (nets, lambda: stacked(xs, ys).sum()),
        "StackedArms, adapter dropout 0.01": (dropped, lambda: stacked_drop(xs, ys).sum()),
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(REPEATS + 1):
        for name, (owner, loss) in ways.items():
            params = [p for n in owner for p in n.parameters() if p.requires_grad]
            t0 = time.process_time()
            torch.autograd.grad(loss(), params)
            times[name].append(1000 * (time.process_time() - t0))
    return {name: statistics.median(t[1:]) for name, t in times.items()}  # first: warm-up


def section() -> list[str]:
    """Markdown: ms per training step of the 60 arms, and the ratio to each net alone."""
    from benchmarks.common import in_subprocess

    ms = in_subprocess("benchmarks.adapters", "step_ms")
    ms.pop("peak_rss_mib", None)
    alone = ms["each net alone"]
    lines = [
        f"## flora's fit step: {len(ARMS) * PER_ARM} arms at once, 1 thread",
        "",
        "Full FT, LoRA (ranks 1, 3) and FLoRA (core ranks 4, 10), 12 nets each, 32-64-64-64 CNN, "
        f"batch {BATCH} of 16×16; forward + backward, median of {REPEATS} interleaved runs.",
        "",
        "| way | ms / step | × each net alone |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {v:.0f} | {v / alone:.2f} |" for name, v in ms.items()]
    return lines
