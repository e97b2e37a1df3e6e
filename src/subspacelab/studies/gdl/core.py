"""The blueprint's instances and their worlds for gdl (Bronstein et al., arXiv:2104.13478).

Pure, IO-free: the synthetic data of the miniature (sets with sum/max statistics, Erdős–Rényi
graphs with triangle counts, helix/ring/plane point clouds), the non-C4 models (translation
CNNs on 1-D signals, DeepSets, a message-passing GNN, plain CNN and MLP baselines) and the
group actions each setting is probed with. The p4 G-CNN and the EGNN are the toolkit's
(:mod:`subspacelab.modules.equivariant`).
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from subspacelab.modules.equivariance import Action, Element, identity

# ---------------------------------------------------------------- worlds


def sets_world(n: int, size: int, dim: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` sets of ``size`` Gaussian elements in R^dim, rows sorted by their first coordinate
    (a canonical order); targets: the mean squared norm and the max of the first coordinate."""
    x = torch.randn(n, size, dim, generator=gen)
    x = torch.take_along_dim(x, x[:, :, :1].argsort(dim=1), dim=1)
    y = torch.stack([x.pow(2).sum(-1).mean(1), x[:, :, 0].amax(1)], dim=1)
    return x, y


def permute_rows(x: Tensor, gen: torch.Generator) -> Tensor:
    """Each sample's rows (set elements) in a random order of its own."""
    perm = torch.stack([torch.randperm(x.shape[1], generator=gen) for _ in range(len(x))])
    return torch.take_along_dim(x, perm[:, :, None], dim=1)


def graphs_world(
    n: int, nodes: int, p_range: tuple[float, float], gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """``n`` Erdős–Rényi graphs on ``nodes`` nodes, edge probability uniform in ``p_range``,
    packed ``[A | 1]`` as ``(n, nodes, nodes + 1)`` (adjacency, a constant node feature);
    target: the triangle count trace(A³)/6, scaled by C(nodes, 3)·p̄³ to order one."""
    lo, hi = p_range
    if not 0.0 <= lo <= hi <= 1.0 or hi == 0.0:
        raise ValueError(f"edge probabilities need 0 <= low <= high <= 1, high > 0; got {p_range}")
    p = lo + (hi - lo) * torch.rand(n, 1, 1, generator=gen)
    upper = (torch.rand(n, nodes, nodes, generator=gen) < p).float().triu(1)
    a = upper + upper.transpose(1, 2)
    triangles = torch.diagonal(a @ a @ a, dim1=1, dim2=2).sum(-1) / 6
    scale = math.comb(nodes, 3) * ((lo + hi) / 2) ** 3
    return torch.cat([a, torch.ones(n, nodes, 1)], dim=-1), (triangles / scale)[:, None]


SHAPES = ("helix", "ring", "plane")


def clouds_world(n: int, points: int, noise: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` point clouds ``(points, 3)`` of the three shape classes (helix, ring, plane) in a
    canonical pose (axis along z, centred), random radius/pitch, Gaussian noise; labels 0..2."""
    y = torch.randint(0, len(SHAPES), (n,), generator=gen)
    t = torch.rand(n, points, generator=gen)
    radius = 0.7 + 0.6 * torch.rand(n, 1, generator=gen)
    angle = 4 * math.pi * t
    helix = torch.stack(
        [radius * angle.cos(), radius * angle.sin(), 2.0 * (t - 0.5) * radius], dim=-1
    )
    ring = torch.stack([radius * angle.cos(), radius * angle.sin(), torch.zeros_like(t)], -1)
    uv = 2 * torch.rand(n, points, 2, generator=gen) - 1
    plane = torch.cat([radius[:, :, None] * uv, torch.zeros(n, points, 1)], dim=-1)
    x = torch.stack([helix, ring, plane], dim=1)[torch.arange(n), y]
    x = x + noise * torch.randn(x.shape, generator=gen)
    return x - x.mean(1, keepdim=True), y


def tile(n_total: int, idx: Tensor) -> Tensor:
    """``idx`` repeated to length ``n_total`` (every training size then takes the same number
    of optimiser steps per epoch)."""
    return idx.repeat(math.ceil(n_total / len(idx)))[:n_total]


# ---------------------------------------------------------------- models


class CNN2d(nn.Module):
    """The plain CNN of the C4 setting: 'same' convs (ReLU), global mean pool, linear head."""

    def __init__(self, c_in: int, widths: list[int], kernel: int, n_classes: int) -> None:
        super().__init__()
        chans = [c_in, *widths]
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, kernel, padding=kernel // 2) for a, b in itertools.pairwise(chans)
        )
        self.head = nn.Linear(widths[-1], n_classes)

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = torch.relu(conv(x))
        return self.head(x.mean(dim=(-2, -1)))


class CNN1d(nn.Module):
    """A translation CNN on 1-D signals ``(B, L)``: circular-padded convs with the given
    strides (ReLU), global mean pool, linear head. Stride 1 throughout is exactly
    shift-equivariant; a total stride s only for shifts that are multiples of s."""

    def __init__(self, widths: list[int], strides: list[int], kernel: int, n_classes: int):
        super().__init__()
        if len(widths) != len(strides):
            raise ValueError(f"one stride per width: {len(widths)} widths, {len(strides)} strides")
        chans = [1, *widths]
        self.convs = nn.ModuleList(
            nn.Conv1d(a, b, kernel, stride=s, padding=kernel // 2, padding_mode="circular")
            for (a, b), s in zip(itertools.pairwise(chans), strides, strict=True)
        )
        self.head = nn.Linear(widths[-1], n_classes)

    def features(self, x: Tensor) -> Tensor:
        """The last feature map ``(B, C, L / total stride)``."""
        h = x[:, None, :]
        for conv in self.convs:
            h = torch.relu(conv(h))
        return h

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).mean(-1))


class MLP(nn.Module):
    """The non-equivariant baseline: flatten, two hidden ReLU layers, linear head."""

    def __init__(self, d_in: int, width: int, d_out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(d_in, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, d_out),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SetLayer(nn.Module):
    """The S_n-equivariant layer Y = σ(X W₁ + 1 1ᵀ X W₂ / n) on ``(B, n, d)``."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.own = nn.Linear(d_in, d_out)
        self.pool = nn.Linear(d_in, d_out, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.own(x) + self.pool(x.mean(1, keepdim=True)))


class DeepSets(nn.Module):
    """f(X) = ρ(Σ_i φ(x_i)) with φ two equivariant set layers and ρ an MLP (Zaheer et al.)."""

    def __init__(self, dim: int, width: int, d_out: int) -> None:
        super().__init__()
        self.phi = nn.Sequential(SetLayer(dim, width), SetLayer(width, width))
        self.rho = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, d_out))

    def forward(self, x: Tensor) -> Tensor:
        return self.rho(self.phi(x).sum(1) / x.shape[1])


class MPNN(nn.Module):
    """Message passing on dense graphs ``[A | X]`` ``(B, n, n + f)``: h_i' = h_i + φ(h_i,
    Σ_j A_ij ψ(h_i, h_j)), sum readout, linear head (Gilmer et al.; the book's §5.3)."""

    def __init__(self, features: int, width: int, layers: int, d_out: int) -> None:
        super().__init__()
        self.embed = nn.Linear(features, width)
        self.psi = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * width, width), nn.ReLU()) for _ in range(layers)
        )
        self.phi = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * width, width), nn.ReLU()) for _ in range(layers)
        )
        self.head = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, d_out))

    def nodes(self, g: Tensor) -> Tensor:
        """Node embeddings ``(B, n, width)`` (permutation-equivariant)."""
        n = g.shape[1]
        a, h = g[:, :, :n], self.embed(g[:, :, n:])
        for psi, phi in zip(self.psi, self.phi, strict=True):
            hi = h[:, :, None, :].expand(-1, -1, n, -1)
            hj = h[:, None, :, :].expand(-1, n, -1, -1)
            msg = (a[..., None] * psi(torch.cat([hi, hj], -1))).sum(2) / n
            h = h + phi(torch.cat([h, msg], -1))
        return h

    def forward(self, g: Tensor) -> Tensor:
        return self.head(self.nodes(g).sum(1) / g.shape[1])


# ---------------------------------------------------------------- group actions


def shifts(amounts: list[int], stride: int, *, invariant: bool) -> list[Element]:
    """Circular shifts of 1-D signals by each amount; on outputs trivially (``invariant``) or
    by amount / ``stride`` on feature maps (only defined for multiples of the stride)."""
    if not invariant and any(t % stride for t in amounts):
        raise ValueError(f"a feature map at stride {stride} shifts only by multiples of it")

    def on_out(t: int) -> Action:
        return identity if invariant else (lambda f: f.roll(t // stride, dims=-1))

    return [Element(f"shift{t}", lambda x, t=t: x.roll(t, dims=-1), on_out(t)) for t in amounts]


def permutations(count: int, n: int, seed: int, *, graph: bool, node_level: bool) -> list[Element]:
    """``count`` random permutations of ``n`` rows: of set elements (``(B, n, d)``), or of graph
    nodes (``[A | X]`` → ``[P A Pᵀ | P X]``); outputs invariant, or permuted (``node_level``)."""
    gen = torch.Generator().manual_seed(seed)
    elements = []
    for i in range(count):
        p = torch.randperm(n, generator=gen)

        def act(x: Tensor, p: Tensor = p) -> Tensor:
            x = x[:, p]
            return torch.cat([x[:, :, :n][:, :, p], x[:, :, n:]], dim=-1) if graph else x

        def rows(x: Tensor, p: Tensor = p) -> Tensor:
            return x[:, p]

        elements.append(Element(f"perm{i}", act, rows if node_level else identity))
    return elements


def rotate_all(x: Tensor) -> Tensor:
    """Images ``(B, C, H, W)`` at the three non-trivial rotations, stacked ``(3B, C, H, W)``."""
    return torch.cat([torch.rot90(x, k, dims=(-2, -1)) for k in (1, 2, 3)])


def random_rot90(x: Tensor, gen: torch.Generator) -> Tensor:
    """Each image rotated by its own random multiple of 90° (the augmentation baseline)."""
    k = torch.randint(0, 4, (len(x),), generator=gen)
    out = x.clone()
    for r in range(1, 4):
        out[k == r] = torch.rot90(x[k == r], r, dims=(-2, -1))
    return out


def r2(pred: Tensor, y: Tensor) -> float:
    """Coefficient of determination, averaged over the target columns."""
    resid = (pred - y).pow(2).sum(0)
    total = (y - y.mean(0)).pow(2).sum(0)
    return float((1 - resid / total).mean())
