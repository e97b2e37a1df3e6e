"""OptFS training through Lightning: the search by continuation and the retrain, each for many
independent members in one run on the same batches (Lyu et al., WWW 2023, arXiv:2301.10909).

Members share the batches of a seed but not their parameters; Adam is per-parameter, so the
summed loss trains each member exactly as a run of its own would. The retrain is a
:func:`~subspacelab.api.train_joint` run (one member per model). The search is one
:class:`~subspacelab.api.LossModule` over all members, since each member has two optimiser
groups there (weights at ``lr`` with L2, gates at ``gate_lr`` without) and a joint member has one.
Only training code imports this module (it loads Lightning for its callbacks).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from subspacelab.api import LossModule, Member, TrainEnv, fit, tensor_loader, train_joint
from subspacelab.recsys.metrics import auc
from subspacelab.studies.optfs.core import GatedDeepFM, tau_at


def _groups(members: Sequence[GatedDeepFM], lr: float, l2: float, gate_lr: float) -> list[dict]:
    weights = [p for m in members for n, p in m.named_parameters() if n != "m"]
    gates = [m.m for m in members if m.m.numel()]
    groups = [{"params": weights, "lr": lr, "weight_decay": l2}]
    if gates:
        groups.append({"params": gates, "lr": gate_lr, "weight_decay": 0.0})
    return groups


class _Continuation(Callback):
    """Sets τ at each epoch's start and snapshots the weights after ``rewind_epoch`` epochs."""

    def __init__(self, members: Sequence[GatedDeepFM], epochs: int, tau_final: float, rewind: int):
        self.members, self.epochs, self.tau_final, self.rewind = members, epochs, tau_final, rewind
        self.snapshots: list[dict[str, Tensor]] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """τ for this epoch; the rewind point when it is reached."""
        epoch = trainer.current_epoch
        if epoch == self.rewind:
            self.snapshots = [copy.deepcopy(m.state_dict()) for m in self.members]
        for m in self.members:
            m.tau = tau_at(epoch, self.epochs, self.tau_final)


def search(
    env: TrainEnv,
    members: Sequence[GatedDeepFM],
    lambdas: Sequence[float],
    ids: Tensor,
    y: Tensor,
    *,
    epochs: int,
    tau_final: float,
    rewind: int,
    lr: float,
    l2: float,
    gate_lr: float,
    batch: int,
    seed: int,
) -> list[dict[str, Tensor]]:
    """The search stage (BCE + λ Σ σ(τ m)) for every member; returns the rewind snapshots."""
    nets = nn.ModuleList(members)

    def loss(_: nn.Module, b: tuple[Tensor, ...]) -> Tensor:
        (idx,) = b
        total = torch.zeros(())
        for m, lam in zip(members, lambdas, strict=True):
            bce = nn.functional.binary_cross_entropy_with_logits(m(ids[idx]), y[idx])
            total = total + bce + (lam * m.l0_surrogate() if m.m.numel() else 0.0)
        return total

    cont = _Continuation(members, epochs, tau_final, rewind)
    module = LossModule(nets, loss, lr=lr, param_groups=_groups(members, lr, l2, gate_lr))
    loader = tensor_loader(torch.arange(len(y)), batch_size=batch, seed=seed)
    fit(env, module, loader, epochs=epochs, label=f"search seed {seed}", callbacks=[cont])
    return cont.snapshots


class _EpochAUC(Callback):
    """Validation and test AUC of every member after each epoch."""

    def __init__(
        self,
        members: Sequence[nn.Module],
        val: tuple[Tensor, np.ndarray],
        test: tuple[Tensor, np.ndarray],
    ) -> None:
        self.members, self.val, self.test = members, val, test
        self.history: list[list[tuple[float, float]]] = [[] for _ in members]

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Score the members on validation and test rows."""
        with torch.no_grad():
            for m, hist in zip(self.members, self.history, strict=True):
                hist.append(
                    (
                        auc(self.val[1], m(self.val[0]).numpy()),
                        auc(self.test[1], m(self.test[0]).numpy()),
                    )
                )


def retrain(
    env: TrainEnv,
    members: Sequence[GatedDeepFM],
    ids: Tensor,
    y: Tensor,
    val: tuple[Tensor, np.ndarray],
    test: tuple[Tensor, np.ndarray],
    *,
    epochs: int,
    lr: float,
    l2: float,
    batch: int,
    seed: int,
) -> list[dict[str, float]]:
    """Train every member with its gates fixed; early stopping on validation AUC, i.e. each
    member's test AUC is read at its best validation epoch."""

    def member(m: GatedDeepFM) -> Member:
        def loss(idx: Tensor) -> Tensor:
            return nn.functional.binary_cross_entropy_with_logits(m(ids[idx]), y[idx])

        return Member(m, loss, lr=lr, weight_decay=l2)  # fixed gates get no gradient: unchanged

    scores = _EpochAUC(members, val, test)
    train_joint(
        env,
        [member(m) for m in members],
        epochs=epochs,
        loader=tensor_loader(torch.arange(len(y)), batch_size=batch, seed=seed),
        label=f"retrain seed {seed}",
        callbacks=[scores],
    )
    out = []
    for hist in scores.history:
        best = int(np.argmax([v for v, _ in hist]))
        out.append({"val_auc": hist[best][0], "test_auc": hist[best][1], "epoch": best + 1.0})
    return out
