"""Training to a matched loss in the ``hessian`` study (Sagun et al., arXiv:1706.04454).

The spec compares spectra at a matched training loss, so every network trains with Adam until
its full-batch loss reaches the target. :func:`to_target` makes one such network a member of
the lab's joint trainer (:func:`~subspacelab.nets.joint.train_joint`, fed
``full_batch_loader(steps=max_steps + 1)``; the last step only reads the final loss): it trains
on its own full batch and stops as soon as its loss, read at the start of a step, is at or
below its target (the loss after the previous update, as a per-epoch check of one full batch
reads it) or after ``max_steps`` updates; a stopped member gets no gradient, so Adam leaves it
untouched. :class:`MiniBatchToTarget` is the same rule for one mini-batch run, checked after
every epoch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from subspacelab.api import LossModule, Member
from subspacelab.probes import hessian as hs


def to_target(
    net: nn.Module, x: Tensor, y: Tensor, loss: str, target: float, lr: float, max_steps: int
) -> Member:
    """``net`` trained full-batch on ``(x, y)`` with Adam at ``lr`` until its ``loss`` is at
    or below ``target`` (from the first update on) or after ``max_steps`` updates."""

    def stop(value: float, step: int) -> bool:
        return (step > 0 and value <= target) or step >= max_steps

    return Member(
        net,
        lambda xb, yb: hs.loss_of_outputs(net(xb), yb, loss),
        lr=lr,
        data=(x, y),
        stop=stop,
    )


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
