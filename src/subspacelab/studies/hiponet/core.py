"""HiPoNet (Viswanath et al., arXiv 2502.07746) and the spec's baselines, as ``nn.Module``s on
batches of point clouds (b, n, d); the wavelet maths is :mod:`subspacelab.shapes.wavelets`.

* :class:`HiPoNet` — V learned views α_v (init U(0, 1)), Gaussian affinities thresholded, the
  lazy walk, mean-pooled per (cloud, view) features — scattering (the paper's wavelets) or
  diffusions only (the released K = 1 path) — concatenated over views, BatchNorm + MLP. With
  ``learn_alpha=False`` the views are fixed at α = 1 (the ablation of claim (c)); with
  ``knn > 0`` the graph is each point's k nearest neighbours (the "single kNN-graph GWT").
* :class:`GCN` (kNN graph, symmetric normalisation), :class:`DeepSets` (mean pool) and
  :class:`PointNetClassifier` (:mod:`subspacelab.shapes.pointnet`, max pool) on all markers.
* :func:`simplicial_embedding` — K = 2 features of one cloud at fixed views (the spot check).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from subspacelab.shapes import wavelets as wv
from subspacelab.shapes.pointnet import PointNet

FEATURES = ("scattering", "diffusion")


def mlp_head(width: int, hidden: int, layers: int, classes: int) -> nn.Sequential:
    """BatchNorm of the pooled features, then ``layers`` linear layers (ReLU between)."""
    mods: list[nn.Module] = [nn.BatchNorm1d(width)]
    sizes = [width] + [hidden] * (layers - 1) + [classes]
    for k, (a, b) in enumerate(itertools.pairwise(sizes)):
        mods.append(nn.Linear(a, b))
        if k < layers - 1:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


class HiPoNet(nn.Module):
    """K = 1 HiPoNet of the module docstring: clouds (b, n, dim) -> logits (b, classes)."""

    def __init__(
        self,
        dim: int,
        views: int,
        sigma: float,
        threshold: float,
        scales: int,
        hidden: int,
        layers: int,
        classes: int,
        features: str,
        learn_alpha: bool = True,
        knn: int = 0,
    ) -> None:
        super().__init__()
        if features not in FEATURES:
            raise ValueError(f"unknown features {features!r}; allowed: {', '.join(FEATURES)}")
        if learn_alpha:
            self.alpha = nn.Parameter(torch.rand(views, dim))
        else:
            self.register_buffer("alpha", torch.ones(views, dim))
        self.sigma, self.threshold, self.scales = sigma, threshold, scales
        self.features, self.knn = features, knn
        blocks = wv.scattering_width(scales) if features == "scattering" else scales
        self.head = mlp_head(views * blocks * dim, hidden, layers, classes)

    def affinity(self, xb: Tensor) -> Tensor:
        """The graph of each (cloud, view): Gaussian-thresholded or kNN."""
        if self.knn:
            return wv.knn_affinity(xb, self.knn, self.sigma)
        return wv.gaussian_affinity(xb, self.sigma, self.threshold)

    def embed(self, x: Tensor) -> Tensor:
        """Mean-pooled features per (cloud, view), views concatenated: (b, V·F)."""
        xb = wv.reweight(x, self.alpha)
        t = wv.diffusion_operator(self.affinity(xb))
        if self.features == "scattering":
            f = wv.scattering(t, xb, self.scales)
        else:
            f = wv.diffusion_features(t, xb, self.scales)
        return f.mean(-2).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of the pooled multi-view features."""
        return self.head(self.embed(x))


def knn_adjacency(x: Tensor, k: int) -> Tensor:
    """Symmetric normalised D^-1/2 (A + I) D^-1/2 of the symmetrised kNN graph of x (b, n, d)."""
    a = (wv.knn_affinity(x, k, 1.0) > 0).to(x.dtype)  # includes the self-loop
    deg = a.sum(-1).rsqrt()
    return deg.unsqueeze(-1) * a * deg.unsqueeze(-2)


class GCN(nn.Module):
    """Two graph-convolution layers on the kNN graph, mean pool, linear classifier."""

    def __init__(self, dim: int, hidden: int, k: int, classes: int) -> None:
        super().__init__()
        self.k = k
        self.lin1, self.lin2 = nn.Linear(dim, hidden), nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (b, classes)."""
        a = knn_adjacency(x, self.k)
        h = torch.relu(a @ self.lin1(x))
        h = torch.relu(a @ self.lin2(h))
        return self.out(h.mean(-2))


class DeepSets(nn.Module):
    """φ (per-point MLP), mean pool, ρ (MLP): Zaheer et al., arXiv:1703.06114."""

    def __init__(self, dim: int, widths: list[int], classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for a, b in zip([dim, *widths[:-1]], widths, strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.phi = nn.Sequential(*layers)
        self.rho = nn.Sequential(
            nn.Linear(widths[-1], widths[-1]), nn.ReLU(), nn.Linear(widths[-1], classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Logits (b, classes)."""
        return self.rho(self.phi(x).mean(-2))


class PointNetClassifier(nn.Module):
    """The lab's PointNet encoder on all markers and a two-layer classifier."""

    def __init__(self, dim: int, widths: list[int], classes: int) -> None:
        super().__init__()
        self.encoder = PointNet(widths, in_dim=dim)
        self.head = nn.Sequential(
            nn.Linear(widths[-1], widths[-1] // 2), nn.ReLU(), nn.Linear(widths[-1] // 2, classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Logits (b, classes)."""
        return self.head(self.encoder(x))


@torch.no_grad()
def simplicial_embedding(
    x: Tensor, alpha: Tensor, sigma: float, threshold: float, scales: int, max_triangles: int
) -> tuple[Tensor, int, int]:
    """K = 2 features of one cloud x (n, d) at fixed views α (V, d): per view the mean over
    nodes, edges and triangles of :func:`~subspacelab.shapes.wavelets.simplicial_scattering`
    on raw block weights, concatenated (V·F,); with the edge and triangle counts (view sums)."""
    feats, n_edges, n_tris = [], 0, 0
    for xb in wv.reweight(x, alpha):
        w = wv.gaussian_affinity(xb, sigma, threshold)
        cx = wv.simplicial_complex(w, threshold, max_triangles)
        feats.append(wv.simplicial_scattering(xb, w, cx, scales).mean(0))
        n_edges += len(cx.edges)
        n_tris += len(cx.triangles)
    return torch.cat(feats), n_edges, n_tris


def alpha_mass(alpha: Tensor, markers: int) -> Tensor:
    """Per view, the share of Σ_d |α_v,d| on the first ``markers`` features (V,)."""
    a = alpha.abs()
    return a[:, :markers].sum(-1) / a.sum(-1)


def edge_density(x: Tensor, alpha: Tensor, sigma: float, threshold: float) -> float:
    """Share of off-diagonal pairs of clouds x (b, n, d) that pass the threshold (views α)."""
    w = wv.gaussian_affinity(wv.reweight(x, alpha), sigma, threshold)
    n = x.shape[-2]
    return float(((w > 0).sum() - w.shape[0] * w.shape[1] * n) / (w.numel() - w.numel() / n))
