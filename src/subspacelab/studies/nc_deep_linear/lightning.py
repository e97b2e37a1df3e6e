"""Training code of ``nc_deep_linear`` (Dang et al., arXiv:2301.00437): independent problems
trained together, then each network polished alone.

Both steps of the study train several independent models with identical optimiser settings: the
deep-linear UFM for every depth, λ and seed (the seeds of one problem batched along a leading
axis, :class:`~subspacelab.studies.nc_deep_linear.core.UFMProblem`), and the MLP for every
number of linear layers. :func:`solve_ufm` (full-batch SGD with momentum, each problem computing
its own loss) and :func:`train_regularised_mse` (Adam on shared mini-batches) run them as
members of the lab's joint trainer (:func:`~subspacelab.nets.joint.train_joint`), which equals
training each alone (``tests/nets/test_joint.py``).

:class:`FullBatchLBFGS` then takes each network alone to a stationary point. It stays a module
of its own: L-BFGS's line search and curvature pairs are over all the parameters it holds, so
networks summed into one objective would be coupled, and the joint trainer (Adam or SGD, per
element) cannot express it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import lightning as L
import torch
from torch import Tensor

from subspacelab.api import Member, TrainEnv, full_batch_loader, train_joint
from subspacelab.studies.nc_deep_linear import core


def solve_ufm(
    env: TrainEnv,
    problems: Sequence[core.UFMProblem],
    *,
    lr: float,
    momentum: float,
    iters: int,
    label: str = "ufm",
) -> None:
    """``iters`` full-batch steps of SGD with momentum on every problem, jointly; each
    problem's gradient at its final point is then recomputed (for its gradient norm)."""
    members = [Member(p, p, lr=lr) for p in problems]
    train_joint(
        env,
        members,
        epochs=1,
        loader=full_batch_loader(steps=iters),
        optimizer="sgd",
        momentum=momentum,
        label=label,
    )
    for p in problems:
        p.gradients()


def train_regularised_mse(
    env: TrainEnv,
    nets: Mapping[str, core.DeepLinearMLP],
    loader: torch.utils.data.DataLoader[tuple[Tensor, ...]],
    *,
    lr: float,
    epochs: int,
    lam_w: float,
    lam_h: float,
    n_total: int,
    label: str = "train",
) -> None:
    """Adam on the same mini-batches ``(x, y)`` for every network, each on
    :func:`~subspacelab.studies.nc_deep_linear.core.regularised_mse` (MSE to one-hot, weight
    decay on the linear head, feature decay on its input: the official ``--sep_decay``)."""

    def member(net: core.DeepLinearMLP) -> Member:
        return Member(
            net,
            lambda x, y: core.regularised_mse(net, x, y, lam_w, lam_h, n_total),
            lr=lr,
        )

    train_joint(env, [member(n) for n in nets.values()], epochs=epochs, loader=loader, label=label)


class FullBatchLBFGS(L.LightningModule):
    """Drives one network to a stationary point of its full-batch objective: L-BFGS with a
    strong-Wolfe line search, ``max_iter`` iterations in one Lightning step, stopping early
    once every gradient entry is below ``tol`` (feed it ``full_batch_loader(x, y, steps=1)``).

    One network per run: L-BFGS's line search and curvature pairs would couple networks that
    were summed into one objective."""

    def __init__(
        self,
        net: core.DeepLinearMLP,
        *,
        lam_w: float,
        lam_h: float,
        max_iter: int,
        tol: float,
    ) -> None:
        super().__init__()
        self.net = net
        self.lam_w, self.lam_h, self.max_iter, self.tol = lam_w, lam_h, max_iter, tol

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        """The full-batch objective (Lightning re-evaluates it in the L-BFGS closure)."""
        x, y = batch
        return core.regularised_mse(self.net, x, y, self.lam_w, self.lam_h, len(y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """L-BFGS over the network."""
        return torch.optim.LBFGS(
            self.net.parameters(),
            lr=1.0,
            max_iter=self.max_iter,
            history_size=20,
            tolerance_grad=self.tol,
            tolerance_change=0.0,
            line_search_fn="strong_wolfe",
        )
