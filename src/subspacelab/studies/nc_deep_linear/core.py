"""Core of ``nc_deep_linear`` (Dang et al., arXiv:2301.00437): the deep-linear unconstrained
features model, its solver, and an MLP with M bias-free linear layers. Pure and IO-free."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from subspacelab.probes import collapse as nc


def one_hot_targets(counts: list[int]) -> tuple[Tensor, Tensor]:
    """Labels sorted by class (``counts[k]`` of class k) and the one-hot Y of shape (K, N)."""
    y = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    return y, nn.functional.one_hot(y, len(counts)).T.double()


@dataclass(frozen=True)
class UFMSolution:
    """Free features H (d, N), layers W_1..W_M (W_M is (K, d)) and the final gradient norm."""

    h: Tensor
    weights: list[Tensor]
    grad_norm: float


def ufm_loss(h: Tensor, weights: list[Tensor], y1h: Tensor, lam_w: float, lam_h: float) -> Tensor:
    """``(1/2N)‖W_M⋯W_1 H − Y‖² + (λ_W/2)Σ‖W_m‖² + (λ_H/2)‖H‖²`` (Dang et al.'s problem)."""
    out = h
    for w in weights:
        out = w @ out
    n = h.shape[1]
    fit = 0.5 * (out - y1h).square().sum() / n
    reg = 0.5 * lam_w * sum(w.square().sum() for w in weights) + 0.5 * lam_h * h.square().sum()
    return fit + reg


def solve_ufm(
    counts: list[int],
    dim: int,
    depth: int,
    lam_w: float,
    lam_h: float,
    *,
    iters: int,
    lr: float,
    momentum: float,
    init_std: float,
    seed: int,
) -> UFMSolution:
    """Full-batch SGD with momentum from N(0, init_std²) in float64 (the official setting)."""
    g = torch.Generator().manual_seed(seed)
    _, y1h = one_hot_targets(counts)
    k, n = y1h.shape
    shapes = [(dim, n)] + [(dim, dim)] * (depth - 1) + [(k, dim)]
    params = [
        (torch.randn(*s, generator=g, dtype=torch.float64) * init_std).requires_grad_()
        for s in shapes
    ]
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    for _ in range(iters):
        opt.zero_grad()
        ufm_loss(params[0], params[1:], y1h, lam_w, lam_h).backward()
        opt.step()
    opt.zero_grad()
    ufm_loss(params[0], params[1:], y1h, lam_w, lam_h).backward()
    grad_norm = float(torch.sqrt(sum(p.grad.square().sum() for p in params)))
    return UFMSolution(params[0].detach(), [p.detach() for p in params[1:]], grad_norm)


def product(weights: list[Tensor]) -> Tensor:
    """``W_M⋯W_1``."""
    out = weights[0]
    for w in weights[1:]:
        out = w @ out
    return out


def geometry_distances(
    h: Tensor, weights: list[Tensor], y: Tensor, geo: nc.DeepLinearGeometry
) -> dict[str, float]:
    """NC2_W, NC2_H, NC3 against the closed form and against the balanced (equal-norm
    orthogonal) geometry; NC1 of the features entering every layer."""
    k = len(geo.x)
    w = product(weights)
    means = nc.class_means(h.T, y, k).T  # (d, K), uncentred
    grams = {"nc2_w": w @ w.T, "nc2_h": means.T @ means, "nc3": w @ means}
    preds = {"nc2_w": geo.ww_diag, "nc2_h": geo.hh_diag, "nc3": geo.wh_diag}
    out: dict[str, float] = {}
    eye = torch.eye(k, dtype=torch.float64)
    for name, gram in grams.items():
        out[name] = nc.normalized_distance(gram, torch.diag(torch.from_numpy(preds[name])))
        out[f"{name}_balanced"] = nc.normalized_distance(gram, eye)
    feats = h
    nc1s = []
    for wm in weights:
        nc1s.append(nc.nc1(feats.T, y, k))
        feats = wm @ feats
    out["nc1_max"] = max(nc1s)
    return out


class DeepLinearMLP(nn.Module):
    """``layers`` bias-free ReLU layers of width ``hidden``, then ``depth`` bias-free linear
    layers (the last maps to the K classes)."""

    def __init__(self, d_in: int, hidden: int, layers: int, depth: int, classes: int) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        width = d_in
        for _ in range(layers):
            mods += [nn.Linear(width, hidden, bias=False), nn.ReLU()]
            width = hidden
        self.trunk = nn.Sequential(*mods)
        self.linear = nn.ModuleList(
            [nn.Linear(hidden, hidden, bias=False) for _ in range(depth - 1)]
            + [nn.Linear(hidden, classes, bias=False)]
        )

    def features(self, x: Tensor) -> list[Tensor]:
        """Inputs of every linear layer: the trunk output, then each linear layer's output."""
        out = [self.trunk(x)]
        for lin in self.linear[:-1]:
            out.append(lin(out[-1]))
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Outputs of shape (n, K)."""
        return self.linear[-1](self.features(x)[-1])


def train_mse(
    net: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    lr: float,
    wd: float,
    epochs: int,
    batch: int,
    seed: int,
) -> float:
    """Adam on MSE to one-hot targets with weight decay; returns the final train error."""
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=wd)
    target = nn.functional.one_hot(y, int(y.max()) + 1).to(x.dtype)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(batch):
            opt.zero_grad()
            (0.5 * (net(x[idx]) - target[idx]).square().sum(dim=1).mean()).backward()
            opt.step()
    with torch.no_grad():
        return float((net(x).argmax(1) != y).double().mean())


def subsample(y: np.ndarray, counts: list[int], seed: int) -> np.ndarray:
    """Indices with ``counts[k]`` examples of class k (sorted by class)."""
    rng = np.random.default_rng(seed)
    out = []
    for k, c in enumerate(counts):
        pool = np.flatnonzero(y == k)
        if pool.size < c:
            raise ValueError(f"class {k}: {pool.size} examples, {c} requested")
        out.append(np.sort(rng.choice(pool, c, replace=False)))
    return np.concatenate(out)
