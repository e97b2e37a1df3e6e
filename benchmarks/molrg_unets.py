"""molrg_diffusion full profile: G tiny U-Nets trained one by one vs stacked.

The full profile trains one EDM-preconditioned U-Net per MoLRG world (Wang et al. 2024,
arXiv:2409.02426, spec §7), some two thousand tiny models of 4000 full-batch Adam steps each.
Per Adam step of G models (forward, backward, update) this measures

* **looped**: G :class:`~subspacelab.studies.molrg_diffusion.full.MoLRGUNet` s, the sum of their
  losses and one Adam with a parameter group per model (what ``train_joint`` does with one
  member per model), each model drawing its own σ and noise;
* **stacked**: one :class:`~subspacelab.studies.molrg_diffusion.full.StackedUNets` over the same
  G models (grouped convolutions, one Adam over the stacked tensors).

Worlds are (3, 4, 4) images (n = 48) with 4 to 24 points each, as the grid's small cells; steps
are interleaved between the two arms and the median of the repeats is kept. On a CPU the times
are CPU times (user + sys) of the measuring process, steadier than wall time on a shared
machine; on CUDA they are wall times between synchronisations.
``python -m benchmarks.molrg_unets [--device cpu|cuda|auto] [--width W ...] [--models G ...]``
writes ``benchmarks/results/molrg_unets.md`` (CPU) or ``molrg_unets_cuda.md`` (CUDA).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.common import machine
from subspacelab.studies.molrg_diffusion.full import MoLRGUNet, StackedUNets

MODELS, WIDTHS, LEVELS, AMBIENT, RESOLUTION = (1, 8, 64), (8,), 2, 48, 4
STEPS, REPEATS, THREADS, LR, SIGMAS = 5, 3, 1, 1e-3, (0.002, 80.0)
RESULTS = Path(__file__).with_name("results")


def _models(g: int, width: int, device: torch.device) -> list[MoLRGUNet]:
    gen = torch.Generator().manual_seed(g)
    torch.manual_seed(0)
    counts = [4 + 5 * i % 21 for i in range(g)]  # 4 to 24 points
    return [
        MoLRGUNet(torch.randn(c, AMBIENT, generator=gen), RESOLUTION, width, LEVELS, SIGMAS).to(
            device
        )
        for c in counts
    ]


def _looped_loss(models: list[MoLRGUNet]) -> torch.Tensor:
    """The sum of the models' losses, each on its own σ and noise (the per-model draws)."""
    lo, hi = models[0].log_sigma
    losses = []
    for m in models:
        sigma = torch.exp(lo + (hi - lo) * torch.rand(len(m.x), device=m.x.device))
        losses.append(m.loss(sigma, torch.randn_like(m.x)))
    return torch.stack(losses).sum()


def _timer(device: torch.device) -> Callable[[], float]:
    if device.type == "cuda":

        def wall() -> float:
            torch.cuda.synchronize(device)
            return time.perf_counter()

        return wall
    return time.process_time


def _step_ms(
    loss: Callable[[], torch.Tensor], opt: torch.optim.Optimizer, clock: Callable[[], float]
) -> float:
    t0 = clock()
    for _ in range(STEPS):
        opt.zero_grad()
        loss().backward()
        opt.step()
    return (clock() - t0) / STEPS * 1e3


def measure(g: int, width: int, device: torch.device) -> dict[str, float]:
    """ms per Adam step of ``g`` models, looped and stacked (medians of interleaved repeats)."""
    models = _models(g, width, device)
    stack = StackedUNets(models).to(device)
    looped_opt = torch.optim.Adam([{"params": list(m.parameters())} for m in models], lr=LR)
    stacked_opt = torch.optim.Adam(stack.parameters(), lr=LR)
    arms = {
        "looped": (lambda: _looped_loss(models), looped_opt),
        "stacked": (lambda: stack.losses().sum(), stacked_opt),
    }
    clock = _timer(device)
    for loss, opt in arms.values():  # warm-up
        _step_ms(loss, opt, clock)
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(REPEATS):
        for name, (loss, opt) in arms.items():
            times[name].append(_step_ms(loss, opt, clock))
    return {name: statistics.median(v) for name, v in times.items()}


def section(
    device: str = "cpu", widths: tuple[int, ...] = WIDTHS, models: tuple[int, ...] = MODELS
) -> list[str]:
    """The benchmark's Markdown section on ``device`` (cpu or cuda): a table per U-Net width."""
    dev = torch.device(device)
    if dev.type == "cpu":
        torch.set_num_threads(THREADS)
    where = f"CPU, {THREADS} thread" if dev.type == "cpu" else torch.cuda.get_device_name(dev)
    clock = "CPU ms" if dev.type == "cpu" else "ms"
    lines = [
        f"## molrg_diffusion U-Nets: G models looped vs stacked ({where})",
        "",
        f"U-Nets of {LEVELS} levels on (3, {RESOLUTION}, {RESOLUTION}) worlds of 4 to 24 points; "
        f"one full-batch Adam step of all G models; median of {REPEATS} x {STEPS} interleaved "
        "steps after a warm-up. Looped: one Adam group per model, each model's loss on its own "
        "draws (train_joint with a member per model); stacked: one StackedUNets (grouped "
        "convolutions, one Adam over the stacked tensors).",
    ]
    for width in widths:
        lines += [
            "",
            f"| width {width}: G | looped {clock} / step | stacked {clock} / step | "
            "looped steps/s | stacked steps/s | × |",
            "|---|---|---|---|---|---|",
        ]
        for g in models:
            r = measure(g, width, dev)
            lines.append(
                f"| {g} | {r['looped']:.1f} | {r['stacked']:.1f} | {1e3 / r['looped']:.2f} | "
                f"{1e3 / r['stacked']:.2f} | {r['looped'] / r['stacked']:.1f} |"
            )
    return lines


def main(argv: list[str]) -> None:
    """Measure and write the section to benchmarks/results/molrg_unets[_cuda].md."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.molrg_unets")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    parser.add_argument("--width", type=int, nargs="+", default=list(WIDTHS))
    parser.add_argument("--models", type=int, nargs="+", default=list(MODELS))
    args = parser.parse_args(argv)
    if min(args.width) < 1 or min(args.models) < 1:
        parser.error("--width and --models must be positive")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    lines = section(device, tuple(args.width), tuple(args.models))
    command = " ".join(["python -m benchmarks.molrg_unets", *argv])
    lines += ["", f"_Measured on {machine()}; command: `{command}`._", ""]
    out = RESULTS / ("molrg_unets.md" if device == "cpu" else "molrg_unets_cuda.md")
    RESULTS.mkdir(exist_ok=True)
    out.write_text("\n".join(lines))
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
