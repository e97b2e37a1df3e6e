"""Sparse-autoencoder training throughput (SAE steps/s) of the vsae study's shapes.

Ours: :class:`subspacelab.representation.sae.StackedSAE` holding every SAE (arms × seeds) as
stacked weights, trained through the api (``train_stacks`` -> ``train_joint``, one Lightning
run; the decoder reads only the k chosen atoms). Peer: the textbook PyTorch loop, one SAE at a
time (``nn.Linear`` encoder and decoder, dense TopK code, Adam, the same unit-norm decoder
constraint, AuxK and KL terms), as dictionary_learning's trainers write it. Same shapes, same
number of optimiser steps per SAE, 1 thread, each in its own subprocess; the ratio is what to
read.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor, nn

from benchmarks.common import in_subprocess, machine

D, N, K, K_AUX, BATCH, STEPS, SEEDS = 64, 512, 16, 32, 512, 60, 2
ARMS = (("topk_auxk", 0.0, 1 / 32), ("vsae", 1.0, 0.0), ("vsae_auxk", 1.0, 1 / 32))
DEAD_WINDOW = 4 * BATCH  # small, so that AuxK runs in the timed steps


def _data() -> Tensor:
    g = torch.Generator().manual_seed(0)
    atoms = nn.functional.normalize(torch.randn(N, D, generator=g), dim=1)
    coef = (torch.rand(STEPS, BATCH, N, generator=g) < 0.02) * torch.rand(
        STEPS, BATCH, N, generator=g
    )
    return coef @ atoms


def ours() -> dict[str, Any]:
    """Every SAE in one stacked model through the api."""
    from torch.utils.data import DataLoader

    from subspacelab.nets.training import LocalEnv
    from subspacelab.representation import sae

    torch.set_num_threads(1)
    data = _data()
    arms = [sae.SAEArm("none" if c == 0 else "fixed", c, a) for _, c, a in ARMS] * SEEDS
    stack = sae.StackedSAE(
        D, N, K, arms, list(range(len(arms))), k_aux=K_AUX, dead_window=DEAD_WINDOW
    )
    loader = DataLoader([(b[None],) for b in data], batch_size=None)
    src = torch.zeros(len(arms), dtype=torch.long)
    t0 = time.perf_counter()
    sae.train_stacks(LocalEnv(), [stack], [src], loader, lr=5e-4)
    seconds = time.perf_counter() - t0
    return {"sae_steps_per_s": len(arms) * STEPS / seconds, "saes": len(arms)}


class _PlainTopK(nn.Module):
    """A TopK SAE as the reference trainers write it (dense code, nn.Linear layers)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(D, N)
        self.decoder = nn.Linear(N, D, bias=False)
        self.b_dec = nn.Parameter(torch.zeros(D))
        with torch.no_grad():
            self.decoder.weight.copy_(nn.functional.normalize(self.decoder.weight, dim=0))
            self.encoder.weight.copy_(self.decoder.weight.T)
            self.encoder.bias.zero_()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        pre = torch.relu(self.encoder(x - self.b_dec))
        top = pre.topk(K, dim=-1)
        f = torch.zeros_like(pre).scatter(-1, top.indices, top.values)
        return self.decoder(f) + self.b_dec, f, pre


def peer() -> dict[str, Any]:
    """The same SAEs trained one after another by a plain loop."""
    torch.set_num_threads(1)
    data = _data()
    t0 = time.perf_counter()
    count = 0
    for seed in range(SEEDS):
        for _, c_kl, alpha in ARMS:
            torch.manual_seed(seed)
            model = _PlainTopK()
            opt = torch.optim.Adam(model.parameters(), lr=5e-4)
            since = torch.zeros(N, dtype=torch.long)
            for x in data:
                x_hat, f, pre = model(x)
                loss = (x - x_hat).pow(2).sum(-1).mean() + c_kl * 0.5 * pre.pow(2).sum(-1).mean()
                since = torch.where((f != 0).any(0), 0, since + len(x))
                dead = since >= DEAD_WINDOW
                if alpha and bool(dead.any()):
                    e = (x - x_hat).detach()
                    aux = torch.where(dead, pre, -torch.inf).topk(K_AUX, dim=-1)
                    vals = torch.where(torch.isfinite(aux.values), aux.values, 0.0)
                    e_hat = model.decoder(torch.zeros_like(pre).scatter(-1, aux.indices, vals))
                    den = (e - e.mean(0)).pow(2).sum(-1).mean()
                    loss = loss + alpha * (e - e_hat).pow(2).sum(-1).mean() / den
                opt.zero_grad()
                loss.backward()
                w = model.decoder.weight
                with torch.no_grad():
                    assert w.grad is not None
                    w.grad -= (w.grad * w).sum(0, keepdim=True) * w
                opt.step()
                with torch.no_grad():
                    w.div_(w.norm(dim=0, keepdim=True))
            count += 1
    seconds = time.perf_counter() - t0
    return {"sae_steps_per_s": count * STEPS / seconds, "saes": count}


def section() -> list[str]:
    """The Markdown section for RESULTS.md."""
    a = in_subprocess("benchmarks.sae", "ours")
    b = in_subprocess("benchmarks.sae", "peer")
    return [
        f"## Sparse autoencoders: {a['saes']} SAEs (TopK + AuxK, vSAE, vSAE + AuxK × {SEEDS} "
        f"seeds), d = {D}, dictionary {N}, k = {K}, batch {BATCH}, {STEPS} steps each, 1 thread",
        "",
        f"Measured on {machine()}. Ours: one stacked model of all SAEs through "
        "`train_stacks`/`train_joint` (Lightning; the decoder gathers the k chosen atoms). "
        "Peer: a plain PyTorch loop training the same SAEs one by one (dense code, nn.Linear). "
        "SAE steps/s = SAEs × steps / wall seconds, Lightning's start included for ours.",
        "",
        "| path | SAE steps/s | ratio |",
        "|---|---|---|",
        f"| ours (stacked, api) | {a['sae_steps_per_s']:.1f} | "
        f"{a['sae_steps_per_s'] / b['sae_steps_per_s']:.2f} |",
        f"| plain PyTorch loop, one by one | {b['sae_steps_per_s']:.1f} | 1.00 |",
    ]
