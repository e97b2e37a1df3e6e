"""Lightning modules of the ``hessian`` study (Sagun et al., arXiv:1706.04454): training to a
matched loss.

The spec compares spectra at a matched training loss, so every network trains with Adam until
its full-batch loss reaches the target. :class:`MatchedLossTraining` trains many independent
full-batch cells (each its own network, data and loss) in one Lightning run on the sum of the
losses of the cells still running, which equals training each alone (the JointTraining argument
of ``studies/intrinsic_dim/lightning.py``: no shared parameters, Adam per element). A cell stops
as soon as its full-batch loss, read at the start of a step, is at or below its target (the
loss after the previous update, as a per-epoch check of one full batch reads it) or after
``max_steps`` updates; a stopped cell gets no gradient, so Adam leaves it untouched.
:class:`MiniBatchToTarget` is the same rule for one mini-batch run, checked after every epoch.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from subspacelab.nets.training import LossModule
from subspacelab.probes import hessian as hs

# A step that only reads the final losses of stopped cells returns None on purpose.
warnings.filterwarnings("ignore", ".*`training_step` returned `None`.*")


@dataclass
class Cell:
    """One full-batch training problem: a network, its data, its loss and target loss."""

    net: nn.Module
    x: Tensor
    y: Tensor
    loss: str
    target: float


class MatchedLossTraining(L.LightningModule):
    """Full-batch Adam on several independent cells at once, each until its target loss.

    Feed it :func:`~subspacelab.nets.training.full_batch_loader` with no tensors and
    ``steps=max_steps + 1`` (the last step only reads the final loss). ``final`` holds each
    cell's final full-batch loss and ``steps`` its number of updates.
    """

    def __init__(self, cells: Sequence[Cell], *, lr: float, max_steps: int) -> None:
        super().__init__()
        if not cells:
            raise ValueError("MatchedLossTraining needs at least one cell")
        self.cells = list(cells)
        self.nets = nn.ModuleList([c.net for c in cells])
        for i, c in enumerate(cells):  # buffers, so that the data follows the module's device
            self.register_buffer(f"x{i}", c.x)
            self.register_buffer(f"y{i}", c.y)
        self.lr, self.max_steps = lr, max_steps
        self.final: list[float | None] = [None] * len(cells)
        self.steps = [0] * len(cells)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        """The summed loss of the running cells; stops cells that reached their target."""
        losses = []
        for i, cell in enumerate(self.cells):
            if self.final[i] is not None:
                continue
            x, y = getattr(self, f"x{i}"), getattr(self, f"y{i}")
            loss = hs.loss_of_outputs(cell.net(x), y, cell.loss)
            if (
                batch_idx > 0 and float(loss.detach()) <= cell.target
            ) or batch_idx >= self.max_steps:
                self.final[i], self.steps[i] = float(loss.detach()), batch_idx
                continue
            losses.append(loss)
        if not losses:
            self.trainer.should_stop = True
            return None
        total = torch.stack(losses).sum()
        self.log("loss", total.detach() / len(losses), on_step=False, on_epoch=True, batch_size=1)
        return total

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam over every cell's parameters."""
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class MiniBatchToTarget(LossModule):
    """Mini-batch Adam on ``net`` that stops once its full-batch loss on ``(x, y)`` is at or
    below ``target``, checked after every epoch; ``final`` is the last full-batch loss read."""

    def __init__(
        self, net: nn.Module, x: Tensor, y: Tensor, loss: str, target: float, *, lr: float
    ) -> None:
        super().__init__(net, lambda n, b: hs.loss_of_outputs(n(b[0]), b[1], loss), lr=lr)
        self.register_buffer("x", x)
        self.register_buffer("y", y)
        self.loss_name, self.target = loss, target
        self.final = float("nan")

    def on_train_epoch_end(self) -> None:
        """Read the full-batch loss; request a stop at the target."""
        with torch.no_grad():
            self.final = float(hs.loss_of_outputs(self.net(self.x), self.y, self.loss_name))
        if self.final <= self.target:
            self.trainer.should_stop = True
