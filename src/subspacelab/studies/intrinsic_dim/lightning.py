"""Lightning wrapper: many independent runs of Li et al. (ICLR 2018, arXiv:1804.08838) at once.

A sweep trains a baseline and one subspace model per ``d`` with identical hyperparameters. On a
CPU the per-step overhead of tiny models dominates, so :class:`JointTraining` holds several
models and minimises the *sum* of their losses with one Adam optimiser. This is exactly
equivalent to training each model on its own:

* the models share no parameters, so ∂(Σ_k L_k)/∂θ_k = ∂L_k/∂θ_k bit for bit;
* Adam's moments, bias corrections and weight decay are per parameter element and the learning
  rate schedule depends only on the step, so each model's update sequence is the one it would get
  alone;
* nothing couples the models (no gradient clipping, no shared normalisation).

``tests/studies/test_intrinsic_dim.py`` checks the equivalence on a tiny case.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

TASKS = ("classify", "toy")
SCHEDULES = ("constant", "cosine")


class JointTraining(L.LightningModule):
    """Train several independent models (injected) on the sum of their losses.

    ``task="classify"``: each model maps the batch's inputs to logits, loss = cross-entropy with
    the batch's labels. ``task="toy"``: each model is called without inputs and returns its loss
    (the toy problem of §2); the batch is ignored.
    """

    def __init__(
        self,
        nets: Mapping[str, nn.Module],
        *,
        task: str,
        lr: float,
        weight_decay: float,
        schedule: str,
    ) -> None:
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")
        if not nets:
            raise ValueError("JointTraining needs at least one model")
        self.nets = nn.ModuleDict(dict(nets))
        self.task = task
        self.lr, self.weight_decay = lr, weight_decay
        self.schedule = schedule
        self._total = 1  # optimiser steps of the whole run, known once attached to a Trainer

    def _loss(self, net: nn.Module, batch: Any) -> Tensor:
        if self.task == "toy":
            return net()
        x, y = batch
        return F.cross_entropy(net(x), y)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """The sum of every model's loss on this batch (logged as their mean)."""
        total = torch.stack([self._loss(net, batch) for net in self.nets.values()]).sum()
        self.log(
            "loss", total.detach() / len(self.nets), on_step=False, on_epoch=True, batch_size=1
        )
        return total

    def configure_optimizers(self) -> dict[str, Any]:
        """Adam on every trainable parameter, with a per-step constant or cosine schedule."""
        if self.schedule == "cosine":
            self._total = max(1, int(self.trainer.estimated_stepping_batches))
        opt = torch.optim.Adam(
            [p for p in self.parameters() if p.requires_grad],
            lr=self.lr,
            weight_decay=self.weight_decay,
        )
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": LambdaLR(opt, self._factor), "interval": "step"},
        }

    def _factor(self, step: int) -> float:
        """Learning-rate factor at ``step``: 1, or a cosine decay to 0 over the whole run."""
        if self.schedule == "constant":
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * min(step, self._total) / self._total))
