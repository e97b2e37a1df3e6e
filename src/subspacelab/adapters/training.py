"""A small, deterministic mini-batch training loop shared by the merging and adapter studies."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def train_loop(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    weight_decay: float = 0.0,
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    on_step: Callable[[], None] | None = None,
) -> list[float]:
    """Adam on the model's trainable parameters; shuffles with a seeded generator; returns the
    mean loss per epoch. ``loss_fn(xb, yb)`` computes the loss of a batch; ``on_step`` runs
    after every optimiser step (a monitor)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    history = []
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            xb = x[idx] if augment is None else augment(x[idx], gen)
            loss = loss_fn(xb, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if on_step is not None:
                on_step()
            total += float(loss.detach()) * len(idx)
        history.append(total / len(x))
    model.eval()
    return history


@torch.no_grad()
def predict(model: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = 1024) -> Tensor:
    """Outputs of ``model`` on ``x`` in batches (no grad)."""
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def accuracy(logits: Tensor, y: Tensor) -> float:
    """Top-1 accuracy."""
    return float((logits.argmax(dim=1) == y).double().mean())
