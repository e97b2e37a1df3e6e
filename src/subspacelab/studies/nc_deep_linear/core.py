"""Core of ``nc_deep_linear`` (Dang et al., arXiv:2301.00437): the deep-linear unconstrained
features model, its solver, and an MLP with M bias-free linear layers. Pure and IO-free."""

from __future__ import annotations

from collections.abc import Sequence
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
    """``(1/2N)‖W_M⋯W_1 H − Y‖² + (λ_W/2)Σ‖W_m‖² + (λ_H/2)‖H‖²`` (Dang et al.'s problem).

    The product is taken from the classifier side (K rows) before it meets H, so every matrix
    product has K rows instead of d. Leading axes batch independent problems (seeds): the
    result is the sum of their losses.
    """
    out = weights[-1]
    for w in reversed(weights[:-1]):
        out = out @ w
    n = h.shape[-1]
    fit = 0.5 * (out @ h - y1h).square().sum() / n
    reg = 0.5 * lam_w * sum(w.square().sum() for w in weights) + 0.5 * lam_h * h.square().sum()
    return fit + reg


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


def regularised_mse(
    net: DeepLinearMLP, x: Tensor, y: Tensor, lam_w: float, lam_h: float, n_total: int
) -> Tensor:
    """The network version of Dang et al.'s objective on a batch of an ``n_total``-sample set:
    ``(1/2b)Σ‖f(x_i) − onehot(y_i)‖² + (λ_W/2)Σ_m‖W_m‖² + (λ_H/2)(N/b)Σ_i‖h_i‖²``, with ``h``
    the features entering the linear head (the official ``--sep_decay``: decay on the head's
    weights and on its input features, none on the ReLU trunk). On the full batch
    (``b = N``) it is the UFM loss of :func:`ufm_loss` with H the trunk's features."""
    feats = net.features(x)
    out = net.linear[-1](feats[-1])
    b = x.shape[0]
    target = nn.functional.one_hot(y, out.shape[1]).to(out.dtype)
    fit = 0.5 * (out - target).square().sum() / b
    reg_w = 0.5 * lam_w * sum(lin.weight.square().sum() for lin in net.linear)
    return fit + reg_w + 0.5 * lam_h * feats[0].square().sum() * n_total / b


def gradient_norm(net: DeepLinearMLP, x: Tensor, y: Tensor, lam_w: float, lam_h: float) -> float:
    """‖∇θ‖₂ of the full-batch :func:`regularised_mse` (the distance from a stationary
    point)."""
    params = [p for p in net.parameters() if p.requires_grad]
    with torch.enable_grad():
        grads = torch.autograd.grad(regularised_mse(net, x, y, lam_w, lam_h, len(y)), params)
    return float(torch.sqrt(sum(g.square().sum() for g in grads)))


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
        _, y1h = one_hot_targets(list(counts))
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
        return ufm_loss(self.params[0], list(self.params[1:]), self.y1h, self.lam, self.lam)

    def gradients(self) -> None:
        """Recompute every seed's gradient at the current point (for :meth:`solution`)."""
        self.zero_grad()
        with torch.enable_grad():
            self().backward()

    def solution(self, seed: int) -> UFMSolution:
        """H, the layers and the gradient norm (from the last backward pass, e.g.
        :meth:`gradients`) of one seed."""
        i = self.seeds.index(seed)
        grads = [p.grad[i] for p in self.params if p.grad is not None]
        norm = float(torch.sqrt(sum(gr.square().sum() for gr in grads))) if grads else 0.0
        h, *ws = (p[i].detach().clone() for p in self.params)
        return UFMSolution(h, ws, norm)
