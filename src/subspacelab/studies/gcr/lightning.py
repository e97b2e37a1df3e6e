"""Lightning wrapper for GCR training (Wang, Li & Zhang, ICCV 2023, arXiv:2308.01547).

Manual optimisation with two optimisers: plain SGD (momentum, weight decay) for the trunk and
any vector head, and :class:`subspacelab.geometry.RiemannianSGD` for the class subspaces of a GCR
head (momentum on the Euclidean gradient, geodesic step, periodic QR; no weight decay). Both
follow the same per-epoch cosine schedule, the subspaces at ``lr · lr_factor``. Lightning's
automatic optimisation drives only one optimiser per step, hence the manual loop.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.optim.lr_scheduler import LambdaLR

from subspacelab.geometry import RiemannianSGD
from subspacelab.studies.gcr.core import (
    Classifier,
    GrassmannHead,
    cosine_schedule,
    euclidean_parameters,
    subspace_parameters,
)


class GCRModule(L.LightningModule):
    """Cross-entropy training of an injected :class:`Classifier` (any trunk, any head)."""

    def __init__(
        self,
        net: Classifier,
        *,
        lr: float,
        momentum: float,
        weight_decay: float,
        lr_factor: float,
        reorth_every: int,
        epochs: int,
    ) -> None:
        super().__init__()
        self.net = net
        self.automatic_optimization = False
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.lr_factor, self.reorth_every, self.epochs = lr_factor, reorth_every, epochs

    def forward(self, x: Tensor) -> Tensor:
        """Logits."""
        return self.net(x)

    def configure_optimizers(self) -> tuple[list[torch.optim.Optimizer], list[LambdaLR]]:
        """SGD for Euclidean parameters; Riemannian SGD for class subspaces; cosine schedules."""
        optimizers: list[torch.optim.Optimizer] = [
            torch.optim.SGD(
                euclidean_parameters(self.net),
                lr=self.lr,
                momentum=self.momentum,
                weight_decay=self.weight_decay,
            )
        ]
        subspaces = subspace_parameters(self.net)
        if subspaces:
            head = self.net.head
            assert isinstance(head, GrassmannHead)
            optimizers.append(
                RiemannianSGD(
                    subspaces,
                    lr=self.lr * self.lr_factor,
                    momentum=self.momentum,
                    reorth_every=self.reorth_every,
                    num_classes=head.num_classes,
                    k=head.k,
                )
            )
        schedules = [LambdaLR(opt, self._schedule) for opt in optimizers]
        return optimizers, schedules

    def _schedule(self, epoch: int) -> float:
        return cosine_schedule(epoch, self.epochs)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """One step of every optimiser on the cross-entropy loss."""
        x, y = batch
        optimizers = _as_list(self.optimizers())
        for opt in optimizers:
            opt.zero_grad()
        logits = self.net(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        self.manual_backward(loss)
        for opt in optimizers:
            opt.step()
        acc = (logits.argmax(dim=1) == y).float().mean()
        self.log("train_loss", loss.detach(), on_step=False, on_epoch=True, batch_size=len(y))
        self.log("train_acc", acc, on_step=False, on_epoch=True, batch_size=len(y))
        return loss.detach()

    def on_train_epoch_end(self) -> None:
        """Advance the per-epoch cosine schedules."""
        for schedule in _as_list(self.lr_schedulers()):
            schedule.step()


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]
