"""Mini-batch training shared by the merging and adapter studies, through Lightning."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from subspacelab.nets.training import LossModule, TrainEnv, fit, tensor_loader


def train_loop(
    env: TrainEnv,
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
    label: str = "train",
) -> list[float]:
    """Adam on the model's trainable parameters over seeded mini-batches of ``(x, y)`` (one
    Lightning run); returns the mean loss per epoch. ``loss_fn(xb, yb)`` computes the loss of a
    batch; ``augment(xb, gen)`` transforms each batch with its own seeded generator;
    ``on_step`` runs after every optimiser step (a monitor)."""
    gen = torch.Generator().manual_seed(seed + 1)

    def loss(net: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        xb, yb = batch
        return loss_fn(xb if augment is None else augment(xb, gen), yb)

    module = LossModule(
        model,
        loss,
        lr=lr,
        weight_decay=weight_decay,
        after_step=None if on_step is None else lambda net: on_step(),
    )
    model.train()
    history = fit(
        env,
        module,
        tensor_loader(x, y, batch_size=batch_size, seed=seed),
        epochs=epochs,
        label=label,
        every=max(1, epochs // 5),
    )
    return [row["loss"] for row in history]


@torch.no_grad()
def predict(model: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = 1024) -> Tensor:
    """Outputs of ``model`` on ``x`` in batches (no grad)."""
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def accuracy(logits: Tensor, y: Tensor) -> float:
    """Top-1 accuracy."""
    return float((logits.argmax(dim=1) == y).double().mean())
