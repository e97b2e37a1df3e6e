"""MLC maths (Ding et al., ICCV 2023, arXiv:2301.01805): trunk with subspace and cluster heads,
the total-coding-rate warm-up, the doubly stochastic membership Γ = n·Sinkhorn_η(|CCᵀ|) (iterated
to a tolerance, toolkit :func:`~subspacelab.clustering.sinkhorn`) and the MLC objective
−R(Z) + R_c(Z, Γ) + (γ/2)‖Γ‖²_F (toolkit :func:`~subspacelab.clustering.mlc_loss`). Both stages
train through Lightning (:mod:`subspacelab.nets.training`): SGD with momentum, the cluster head in
its own parameter group (learning rate and weight decay of its own), one seeded batch per step
(the whole data when ``batch`` ≥ n)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from subspacelab.clustering import MLCSchedule, coding_rate, mlc_loss, sinkhorn

if TYPE_CHECKING:
    from subspacelab.api import Batch, TrainEnv


class MLCNet(nn.Module):
    """MLP trunk (Linear-BN-ReLU blocks), then two linear heads: subspace z and cluster c, both
    L2-normalised."""

    def __init__(self, in_dim: int, hidden: list[int], z_dim: int, backbone: str = "mlp") -> None:
        super().__init__()
        if backbone == "resnet18":  # full profile: images in, torchvision imported lazily
            from torchvision.models import resnet18

            net = resnet18(weights=None)
            net.fc = nn.Identity()
            self.trunk: nn.Module = net
            prev = 512
        else:
            layers: list[nn.Module] = []
            prev = in_dim
            for width in hidden:
                layers += [nn.Linear(prev, width), nn.BatchNorm1d(width), nn.ReLU()]
                prev = width
            self.trunk = nn.Sequential(*layers)
        self.subspace = nn.Linear(prev, z_dim)
        self.cluster = nn.Linear(prev, z_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(z, c), unit rows."""
        h = self.trunk(x)
        return F.normalize(self.subspace(h), dim=1), F.normalize(self.cluster(h), dim=1)


def membership(c: Tensor, eta: float, iters: int, tol: float, max_iters: int) -> Tensor:
    """Γ = n·Sinkhorn_η(|CCᵀ|): rows summing to 1 and columns to 1 ± ``tol`` (``iters``
    differentiated updates after convergence; see :func:`~subspacelab.clustering.sinkhorn`)."""
    return c.shape[0] * sinkhorn((c @ c.T).abs(), eta, iters, tol, max_iters)


def augment(x: Tensor, shift: int, noise: float, side: int | None, gen: torch.Generator) -> Tensor:
    """Random shifts of up to ``shift`` pixels (flat images of ``side``×``side``, or NCHW
    images; no shift for vectors, ``side`` None) and Gaussian noise of std ``noise``."""
    out = x
    if (side is not None or x.ndim == 4) and shift > 0:
        imgs = x if x.ndim == 4 else x.reshape(-1, side, side)
        dx, dy = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=gen))
        out = torch.roll(imgs, shifts=(dx, dy), dims=(-2, -1)).reshape(x.shape)
    return out + noise * torch.randn(x.shape, generator=gen)


def _batch(n: int, size: int, gen: torch.Generator) -> Tensor:
    """This step's sample indices: a seeded random subset of ``size``, or all n in order."""
    return torch.randperm(n, generator=gen)[:size] if size < n else torch.arange(n)


def _fit_steps(
    env: TrainEnv,
    model: MLCNet,
    loss: Callable[[nn.Module, Batch], Tensor],
    groups: list[dict[str, Any]],
    s: MLCSchedule,
    steps: int,
    x: Tensor,
    label: str,
) -> None:
    """``steps`` SGD steps (momentum, per-group lr/weight decay) of ``loss`` in one Lightning
    run; each step's batch is the whole of ``x`` and ``loss`` draws its own batch."""
    if steps == 0:
        return
    from subspacelab.api import LossModule, fit, full_batch_loader

    module = LossModule(
        model,
        loss,
        lr=s.lr,
        weight_decay=s.wd,
        optimizer="sgd",
        momentum=s.momentum,
        param_groups=groups,
    )
    model.train()  # Lightning keeps the modules' mode: BN must train here
    fit(env, module, full_batch_loader(x, steps=steps), epochs=1, label=label)


def warmup(
    env: TrainEnv, model: MLCNet, x: Tensor, side: int | None, s: MLCSchedule, seed: int
) -> dict[str, float]:
    """TCR warm-up: maximise R(Z) of two augmented views plus their cosine agreement
    (NMCE/EMP-SSL style), SGD on the trunk and subspace head. Returns the last TCR."""
    gen = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    last: dict[str, float] = {}

    def loss(net: nn.Module, batch: Batch) -> Tensor:
        idx = _batch(n, s.batch, gen)
        z1, _ = net(augment(batch[0][idx], s.shift, s.noise, side, gen))
        z2, _ = net(augment(batch[0][idx], s.shift, s.noise, side, gen))
        tcr = 0.5 * (coding_rate(z1, s.eps2) + coding_rate(z2, s.eps2))
        last["warmup_tcr"] = float(tcr.detach())
        return -tcr + s.inv_weight * (1.0 - (z1 * z2).sum(dim=1)).mean()

    groups = [{"params": [*model.trunk.parameters(), *model.subspace.parameters()]}]
    _fit_steps(env, model, loss, groups, s, s.warmup_steps, x, "mlc warm-up")
    return last


def copy_subspace_to_cluster(model: MLCNet) -> None:
    """One-shot init: the cluster head starts as the subspace head, so Γ starts from ZᵀZ."""
    with torch.no_grad():
        model.cluster.weight.copy_(model.subspace.weight)
        model.cluster.bias.copy_(model.subspace.bias)


def fit_mlc(
    env: TrainEnv, model: MLCNet, x: Tensor, side: int | None, s: MLCSchedule, seed: int
) -> dict[str, float]:
    """The MLC stage: joint SGD of trunk + subspace head and (own lr and weight decay) the
    cluster head. Returns the terms of the last step's objective."""
    gen = torch.Generator().manual_seed(seed + 1)
    n = x.shape[0]
    terms: dict[str, float] = {}

    def loss(net: nn.Module, batch: Batch) -> Tensor:
        idx = _batch(n, s.batch, gen)
        z, c = net(augment(batch[0][idx], s.shift, s.noise, side, gen))
        gamma = membership(c, s.eta, s.sinkhorn_iters, s.sinkhorn_tol, s.sinkhorn_max_iters)
        value, step_terms = mlc_loss(z, gamma, s.eps2, s.gamma)
        terms.update(step_terms)
        return value

    groups = [
        {"params": [*model.trunk.parameters(), *model.subspace.parameters()]},
        {"params": [*model.cluster.parameters()], "lr": s.lr_cluster, "weight_decay": s.wd_cluster},
    ]
    _fit_steps(env, model, loss, groups, s, s.steps, x, "mlc")
    return terms


@torch.no_grad()
def embed(model: MLCNet, x: Tensor) -> tuple[Tensor, Tensor]:
    """(z, c) of all samples in eval mode, no augmentation."""
    model.eval()
    return model(x)


def numerical_rank(z: np.ndarray, rel: float) -> int:
    """Number of singular values above ``rel`` times the largest."""
    s = np.linalg.svd(z, compute_uv=False)
    return int((s > rel * s[0]).sum())
