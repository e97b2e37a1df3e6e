"""Lightning modules of ``nc_deep_linear`` (Dang et al., arXiv:2301.00437): independent problems
trained together.

Both steps of the study train several independent models with identical optimiser settings: the
deep-linear UFM for every depth, λ and seed (the seeds of one problem batched along a leading
axis), and the MLP for every number of linear layers. :class:`JointUFM` and
:class:`JointRegularisedMSE` minimise the *sum* of their losses with one optimiser, which equals
training each alone (the JointTraining argument of ``studies/intrinsic_dim/lightning.py``): no
parameter is shared, so ∂(Σ_k L_k)/∂θ_k = ∂L_k/∂θ_k, and SGD-momentum and Adam update every
element from its own gradient and state only. ``tests/studies/test_nc_deep_linear.py`` checks
the equivalence. :class:`FullBatchLBFGS` then takes each network alone to a stationary point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from subspacelab.studies.nc_deep_linear import core


class UFMProblem(nn.Module):
    """One deep-linear UFM for each of several seeds, batched: free features H (d, N) and
    layers W_1..W_M per seed, stacked along a leading seed axis. Seed ``s`` draws its own from
    N(0, ``init_std``²) in float64 (H first, then W_1..W_M), as alone. The loss is the sum of
    the seeds' losses, so each seed's gradient is its own (no shared parameter)."""

    def __init__(
        self,
        counts: Sequence[int],
        dim: int,
        depth: int,
        lam: float,
        init_std: float,
        seeds: Sequence[int],
    ) -> None:
        super().__init__()
        if not seeds:
            raise ValueError("UFMProblem needs at least one seed")
        _, y1h = core.one_hot_targets(list(counts))
        k, n = y1h.shape
        shapes = [(dim, n)] + [(dim, dim)] * (depth - 1) + [(k, dim)]
        per_seed = []
        for seed in seeds:
            g = torch.Generator().manual_seed(seed)
            per_seed.append(
                [torch.randn(*s, generator=g, dtype=torch.float64) * init_std for s in shapes]
            )
        self.params = nn.ParameterList(
            [nn.Parameter(torch.stack(ts)) for ts in zip(*per_seed, strict=True)]
        )
        self.register_buffer("y1h", y1h)
        self.lam = lam
        self.seeds = list(seeds)

    def forward(self) -> Tensor:
        """The sum over seeds of each seed's loss (λ_W = λ_H = ``lam``)."""
        return core.ufm_loss(self.params[0], list(self.params[1:]), self.y1h, self.lam, self.lam)

    def solution(self, seed: int) -> core.UFMSolution:
        """H, the layers and the gradient norm (from the last backward pass) of one seed."""
        i = self.seeds.index(seed)
        grads = [p.grad[i] for p in self.params if p.grad is not None]
        norm = float(torch.sqrt(sum(gr.square().sum() for gr in grads))) if grads else 0.0
        h, *ws = (p[i].detach().clone() for p in self.params)
        return core.UFMSolution(h, ws, norm)


class JointUFM(L.LightningModule):
    """Full-batch SGD with momentum on several independent UFM problems at once (the batch is
    ignored: feed :func:`~subspacelab.nets.training.full_batch_loader` with no tensors)."""

    def __init__(self, problems: Mapping[str, UFMProblem], *, lr: float, momentum: float) -> None:
        super().__init__()
        if not problems:
            raise ValueError("JointUFM needs at least one problem")
        self.problems = nn.ModuleDict(dict(problems))
        self.lr, self.momentum = lr, momentum

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """The sum of every problem's loss (logged as their mean)."""
        total = torch.stack([p() for p in self.problems.values()]).sum()
        self.log(
            "loss",
            total.detach() / len(self.problems),
            on_step=False,
            on_epoch=True,
            batch_size=1,
        )
        return total

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """SGD with momentum on every problem's parameters."""
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=self.momentum)

    def final_gradients(self) -> None:
        """Recompute every problem's gradient at the final point (for its gradient norm)."""
        self.zero_grad()
        with torch.enable_grad():
            torch.stack([p() for p in self.problems.values()]).sum().backward()


class JointRegularisedMSE(L.LightningModule):
    """Several independent networks trained on the same mini-batches ``(x, y)`` by Adam, each
    on :func:`~subspacelab.studies.nc_deep_linear.core.regularised_mse` (MSE to one-hot, weight
    decay on the linear head, feature decay on its input: the official ``--sep_decay``)."""

    def __init__(
        self,
        nets: Mapping[str, core.DeepLinearMLP],
        *,
        lr: float,
        lam_w: float,
        lam_h: float,
        n_total: int,
    ) -> None:
        super().__init__()
        if not nets:
            raise ValueError("JointRegularisedMSE needs at least one network")
        self.nets = nn.ModuleDict(dict(nets))
        self.lr, self.lam_w, self.lam_h, self.n_total = lr, lam_w, lam_h, n_total

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        """The sum of every network's objective on this batch (logged as their mean)."""
        x, y = batch
        total = torch.stack(
            [
                core.regularised_mse(net, x, y, self.lam_w, self.lam_h, self.n_total)
                for net in self.nets.values()
            ]
        ).sum()
        self.log(
            "loss", total.detach() / len(self.nets), on_step=False, on_epoch=True, batch_size=len(y)
        )
        return total

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam on every network's parameters (the decays are in the objective)."""
        return torch.optim.Adam(self.parameters(), lr=self.lr)


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
