"""Lightning modules of ``nc_deep_linear`` (Dang et al., arXiv:2301.00437): independent problems
trained together.

Both steps of the study train several independent models with identical optimiser settings: the
deep-linear UFM for every depth, λ and seed, and the MLP for every number of linear layers.
Each module below minimises the *sum* of their losses with one optimiser, which equals training
each alone (the JointTraining argument of ``studies/intrinsic_dim/lightning.py``): no parameter
is shared, so ∂(Σ_k L_k)/∂θ_k = ∂L_k/∂θ_k, and SGD-momentum and Adam (with weight decay) update
every element from its own gradient and state only. ``tests/studies/test_nc_deep_linear.py``
checks the equivalence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from subspacelab.studies.nc_deep_linear import core


class UFMProblem(nn.Module):
    """One deep-linear UFM: free features H (d, N) and layers W_1..W_M, drawn from
    N(0, ``init_std``²) in float64 by ``seed`` (H first, then W_1..W_M)."""

    def __init__(
        self, counts: Sequence[int], dim: int, depth: int, lam: float, init_std: float, seed: int
    ) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        _, y1h = core.one_hot_targets(list(counts))
        k, n = y1h.shape
        shapes = [(dim, n)] + [(dim, dim)] * (depth - 1) + [(k, dim)]
        self.params = nn.ParameterList(
            [
                nn.Parameter(torch.randn(*s, generator=g, dtype=torch.float64) * init_std)
                for s in shapes
            ]
        )
        self.register_buffer("y1h", y1h)
        self.lam = lam

    def forward(self) -> Tensor:
        """The problem's loss (λ_W = λ_H = ``lam``)."""
        return core.ufm_loss(self.params[0], list(self.params[1:]), self.y1h, self.lam, self.lam)

    def solution(self) -> core.UFMSolution:
        """H, the layers and the current gradient norm (from the last backward pass)."""
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = float(torch.sqrt(sum(gr.square().sum() for gr in grads))) if grads else 0.0
        h, *ws = (p.detach().clone() for p in self.params)
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


def mse_onehot(out: Tensor, y: Tensor) -> Tensor:
    """``½‖f − onehot(y)‖²`` averaged over the batch."""
    target = nn.functional.one_hot(y, out.shape[1]).to(out.dtype)
    return 0.5 * (out - target).square().sum(dim=1).mean()


class JointMSE(L.LightningModule):
    """Several independent networks trained on the same mini-batches ``(x, y)`` by Adam with
    weight decay, each on MSE to one-hot targets."""

    def __init__(self, nets: Mapping[str, nn.Module], *, lr: float, weight_decay: float) -> None:
        super().__init__()
        if not nets:
            raise ValueError("JointMSE needs at least one network")
        self.nets = nn.ModuleDict(dict(nets))
        self.lr, self.weight_decay = lr, weight_decay

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        """The sum of every network's loss on this batch (logged as their mean)."""
        x, y = batch
        total = torch.stack([mse_onehot(net(x), y) for net in self.nets.values()]).sum()
        self.log(
            "loss", total.detach() / len(self.nets), on_step=False, on_epoch=True, batch_size=len(y)
        )
        return total

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam with weight decay on every network's parameters."""
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
