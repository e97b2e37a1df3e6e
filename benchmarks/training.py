"""What Lightning costs the lab's small models: nets.training against a plain torch loop.

Every study trains through :mod:`subspacelab.nets.training` (Lightning). On a laptop CPU the
miniatures' models are tiny, so the per-step bookkeeping of the Trainer, not the maths, can set
the run time. This measures it: the same model, data, optimiser and number of Adam steps, run

* as a plain loop (index a batch, forward, backward, step),
* through ``fit(LossModule, tensor_loader)`` (mini-batches) or ``full_batch_loader`` (full
  batch), and
* for eight independent tiny models, as eight ``fit`` calls against one
  :func:`~subspacelab.nets.joint.train_joint` run on the sum of their losses (the lab's one joint
  trainer; intrinsic_dim, Li et al., arXiv 1804.08838, sweeps this way).

Runs are interleaved and the median of the repeats is reported, so each arm sees the same load.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from subspacelab.nets.joint import Member, train_joint
from subspacelab.nets.training import LocalEnv, LossModule, fit, full_batch_loader, tensor_loader

N, DIM, CLASSES, STEPS, REPEATS, MODELS = 2048, 40, 10, 256, 5, 8


def _mlp(width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(DIM, width), nn.ReLU(), nn.Linear(width, CLASSES))


def _data() -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(N, DIM, generator=gen), torch.randint(0, CLASSES, (N,), generator=gen)


def _ce(net: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
    return F.cross_entropy(net(batch[0]), batch[1])


def _plain(width: int, batch: int, models: int = 1) -> None:
    x, y = _data()
    gen = torch.Generator().manual_seed(0)
    for _ in range(models):
        net = _mlp(width)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        for _ in range(STEPS):
            idx = torch.randint(0, N, (batch,), generator=gen)
            loss = _ce(net, (x[idx], y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()


def _lightning(width: int, batch: int, models: int = 1) -> None:
    x, y = _data()
    for _ in range(models):
        module = LossModule(_mlp(width), _ce, lr=1e-3)
        if batch >= N:
            fit(LocalEnv(), module, full_batch_loader(x, y, steps=STEPS), epochs=1)
        else:
            per_epoch = N // batch
            loader = tensor_loader(x, y, batch_size=batch, seed=0, drop_last=True)
            fit(LocalEnv(), module, loader, epochs=STEPS // per_epoch)


def _joint(width: int, batch: int, models: int) -> None:
    x, y = _data()
    nets = [_mlp(width) for _ in range(models)]
    members = [Member(n, lambda a, b, n=n: F.cross_entropy(n(a), b), lr=1e-3) for n in nets]
    loader: DataLoader[tuple[Tensor, ...]] = full_batch_loader(x[:batch], y[:batch], steps=STEPS)
    train_joint(LocalEnv(), members, epochs=1, loader=loader)


def _median_ms(arms: dict[str, Callable[[], None]], steps: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(REPEATS):
        for name, run in arms.items():
            t0 = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - t0) * 1e3 / steps)
    return {name: statistics.median(v) for name, v in times.items()}


def section() -> list[str]:
    """Markdown for benchmarks/RESULTS.md: ms per optimiser step and the ratio to plain torch."""
    torch.set_num_threads(1)
    lines = [
        f"## Training through Lightning vs a plain torch loop, 1 thread, {STEPS} Adam steps",
        "",
        f"MLP {DIM}-width-{CLASSES} on {N:,} random rows; median of {REPEATS} interleaved runs, "
        "including the Trainer's start-up.",
        "",
        "| case | plain loop (ms/step) | nets.training (ms/step) | × plain |",
        "|---|---|---|---|",
    ]
    for width, batch in ((32, 128), (512, 128), (32, N), (512, N)):
        ms = _median_ms(
            {
                "plain": lambda w=width, b=batch: _plain(w, b),
                "lightning": lambda w=width, b=batch: _lightning(w, b),
            },
            STEPS,
        )
        label = f"width {width}, {'full batch' if batch >= N else f'batch {batch}'}"
        lines.append(
            f"| {label} | {ms['plain']:.2f} | {ms['lightning']:.2f} | "
            f"{ms['lightning'] / ms['plain']:.1f} |"
        )
    ms = _median_ms(
        {
            "plain": lambda: _plain(32, 128, MODELS),
            "lightning": lambda: _lightning(32, 128, MODELS),
            "joint": lambda: _joint(32, 128, MODELS),
        },
        STEPS * MODELS,
    )
    lines += [
        "",
        f"{MODELS} independent width-32 models, batch 128 (ms per model-step):",
        "",
        "| arm | ms / model-step | × plain |",
        "|---|---|---|",
        f"| plain loops, one model at a time | {ms['plain']:.2f} | 1.0 |",
        f"| {MODELS} separate fit calls | {ms['lightning']:.2f} | "
        f"{ms['lightning'] / ms['plain']:.1f} |",
        f"| one train_joint run | {ms['joint']:.2f} | {ms['joint'] / ms['plain']:.1f} |",
    ]
    return lines
