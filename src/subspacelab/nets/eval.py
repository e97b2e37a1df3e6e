"""Evaluation helpers every study shares (no Lightning import: report steps use them)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


@torch.no_grad()
def predict(model: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = 1024) -> Tensor:
    """Outputs of ``model`` on ``x`` in batches of ``batch_size`` rows (no grad)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def accuracy(logits: Tensor, y: Tensor) -> float:
    """Top-1 accuracy of ``logits`` (n, classes) against labels ``y`` (n,)."""
    return float((logits.argmax(dim=1) == y).double().mean())
