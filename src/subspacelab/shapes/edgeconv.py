"""A DGCNN-lite segmentation network: EdgeConv layers over batched k-nearest-neighbour graphs.

EdgeConv (Wang et al., "Dynamic Graph CNN for Learning on Point Clouds", arXiv:1801.07829)
maps each edge (i, j) of a point's k-NN graph to h(x_i, x_j − x_i) = LeakyReLU(BN(Θ[x_i,
x_j − x_i])) and max-pools over the k edges. Θ[x_i, x_j − x_i] = (A − B) x_i + B x_j for Θ =
[A | B], so each layer applies two per-point linear maps and gathers: the same output as the
per-edge 1×1 convolution of the reference code, at a k-th of its multiply-adds. The segmentation
net (pointcloud_clustering's backbone, arXiv:2307.14605, spec §6) stacks three such layers,
a global max-pooled descriptor, a per-point head with class logits and an L2-normalised
projection (the embedding the cluster-contrast loss works on).
"""

from __future__ import annotations

import warnings
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def knn(x: Tensor, k: int, chunk: int = 1024) -> Tensor:
    """The ``k`` nearest neighbours (itself included) of every point, (B, N, k) indices into
    each cloud; ``x`` is (B, N, C). Distances are computed ``chunk`` query rows at a time so
    that memory stays O(B · chunk · N)."""
    if x.dim() != 3:
        raise ValueError(f"knn wants (batch, points, channels), got shape {tuple(x.shape)}")
    if not 1 <= k <= x.shape[1]:
        raise ValueError(f"k must be in [1, {x.shape[1]}], got {k}")
    sq = (x * x).sum(-1)
    out = []
    for start in range(0, x.shape[1], chunk):
        q = x[:, start : start + chunk]
        d = sq[:, start : start + chunk, None] - 2 * q @ x.transpose(1, 2) + sq[:, None, :]
        out.append(d.topk(k, dim=-1, largest=False).indices)
    return torch.cat(out, 1)


def _bn(bn: nn.BatchNorm1d, x: Tensor) -> Tensor:
    """Batch norm over every leading axis of a channels-last tensor."""
    return bn(x.reshape(-1, x.shape[-1])).reshape(x.shape)


class Graph:
    """A batched k-NN graph ``idx`` (B, N, k) with what EdgeConv's statistics need: flat row
    indices, the (B·N × B·N) adjacency as a sparse CSR matrix and each point's in-degree."""

    def __init__(self, idx: Tensor) -> None:
        b, n, k = idx.shape
        self.idx, self.k = idx, k
        self.flat = (idx + torch.arange(b, device=idx.device).view(b, 1, 1) * n).reshape(-1)
        # neighbour-major order: gathered rows come as (k, B·N, C), reduced over the outer axis
        self.by_neighbour = self.flat.view(b * n, k).T.reshape(-1)
        rows = torch.arange(0, b * n * k + 1, k, device=idx.device)
        ones = torch.ones(b * n * k, device=idx.device)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            self.adj = torch.sparse_csr_tensor(
                rows, self.flat, ones, (b * n, b * n), check_invariants=False
            )
        self.indegree = torch.bincount(self.flat, minlength=b * n).to(ones.dtype)


class EdgeConv(nn.Module):
    """One EdgeConv layer: max over neighbours of LeakyReLU(BN(Θ[x_i, x_j − x_i])).

    With e_ij = a_i + b_j (a = (A − B) x, b = B x), BN is an affine map per channel and
    LeakyReLU is increasing, so the max over j is the map of a_i + max_j b_j (min_j where the
    channel's BN scale is negative). The batch statistics over all B·N·k edges follow from a,
    b, the in-degrees and the neighbour sums A·b (one sparse product), so no per-edge tensor is
    built beyond one gather; outputs and running statistics equal the per-edge reference's
    (``tests/shapes/test_edgeconv.py``).
    """

    def __init__(self, c_in: int, c_out: int, slope: float = 0.2) -> None:
        super().__init__()
        self.theta = nn.Linear(2 * c_in, c_out, bias=False)  # [A | B], as the reference's conv
        self.bn = nn.BatchNorm1d(c_out)
        self.slope = slope
        self.c_in = c_in

    def _stats(self, a: Tensor, b: Tensor, graph: Graph) -> tuple[Tensor, Tensor]:
        """Mean and (biased) variance of a_i + b_j over every edge; updates running stats."""
        bn, k = self.bn, graph.k
        af, bf = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
        count = af.shape[0] * k
        deg = graph.indegree[:, None]
        mean = (k * af.sum(0) + (deg * bf).sum(0)) / count
        sums = torch.sparse.mm(graph.adj, bf)  # Σ_j b_j per point
        second = (k * (af * af).sum(0) + 2 * (af * sums).sum(0) + (deg * bf * bf).sum(0)) / count
        var = (second - mean * mean).clamp(min=0.0)
        assert bn.running_mean is not None and bn.running_var is not None
        with torch.no_grad():
            m = bn.momentum if bn.momentum is not None else 0.1
            bn.running_mean.mul_(1 - m).add_(m * mean)
            bn.running_var.mul_(1 - m).add_(m * var * count / max(count - 1, 1))
            if bn.num_batches_tracked is not None:
                bn.num_batches_tracked.add_(1)
        return mean, var

    def forward(self, x: Tensor, graph: Graph) -> Tensor:
        """``x`` (B, N, C_in) on ``graph`` -> (B, N, C_out)."""
        w = self.theta.weight
        a = x @ (w[:, : self.c_in] - w[:, self.c_in :]).T  # (A − B) x_i
        b = x @ w[:, self.c_in :].T  # B x_j
        bn = self.bn
        if self.training:
            mean, var = self._stats(a, b, graph)
        else:
            assert bn.running_mean is not None and bn.running_var is not None
            mean, var = bn.running_mean, bn.running_var
        scale = bn.weight / torch.sqrt(var + bn.eps)
        shift = bn.bias - mean * scale
        sign = torch.where(scale >= 0, 1.0, -1.0).detach()  # max where BN keeps order, else min
        flat = (b * sign).reshape(-1, b.shape[-1])
        ext = flat[graph.by_neighbour].view(graph.k, -1, b.shape[-1]).max(0).values
        return F.leaky_relu((a + sign * ext.view(b.shape)) * scale + shift, self.slope)


class EdgeSegNet(nn.Module):
    """DGCNN-lite for per-point segmentation.

    ``widths`` EdgeConv layers; the first uses the given graph (k-NN in xyz); with ``dynamic``
    each later layer rebuilds the k-NN graph in its input feature space (DGCNN), otherwise all
    reuse the xyz graph. Their concatenated outputs go through a linear layer to ``global_dim``
    and a max over points (the scene descriptor), which is appended to every point's features;
    a linear head to ``head_dim`` features, then the class logits and a projection (linear,
    BN, ReLU, linear) to an L2-normalised ``embed_dim`` embedding.
    """

    def __init__(
        self,
        in_dim: int,
        n_classes: int,
        *,
        k: int,
        widths: tuple[int, ...],
        global_dim: int,
        head_dim: int,
        embed_dim: int,
        dynamic: bool,
    ) -> None:
        super().__init__()
        if not widths:
            raise ValueError("EdgeSegNet needs at least one EdgeConv width")
        self.k, self.dynamic = k, dynamic
        dims = (in_dim, *widths)
        self.convs = nn.ModuleList(EdgeConv(a, b) for a, b in pairwise(dims))
        cat = sum(widths)
        self.glob = nn.Linear(cat, global_dim, bias=False)
        self.glob_bn = nn.BatchNorm1d(global_dim)
        self.head = nn.Linear(cat + global_dim, head_dim, bias=False)
        self.head_bn = nn.BatchNorm1d(head_dim)
        self.classifier = nn.Linear(head_dim, n_classes)
        self.proj1 = nn.Linear(head_dim, head_dim, bias=False)
        self.proj_bn = nn.BatchNorm1d(head_dim)
        self.proj2 = nn.Linear(head_dim, embed_dim)

    def forward(self, x: Tensor, idx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``x`` (B, N, in_dim), optional xyz graph ``idx`` (B, N, k) -> logits (B, N,
        classes) and unit-norm embeddings (B, N, embed_dim)."""
        graph = Graph(knn(x[..., :3], self.k) if idx is None else idx)
        feats, h = [], x
        for layer, conv in enumerate(self.convs):
            if self.dynamic and layer > 0:
                graph = Graph(knn(h.detach(), self.k))
            h = conv(h, graph)
            feats.append(h)
        cat = torch.cat(feats, -1)
        g = F.leaky_relu(_bn(self.glob_bn, self.glob(cat)), 0.2).amax(1, keepdim=True)
        per_point = torch.cat([cat, g.expand(-1, cat.shape[1], -1)], -1)
        f = F.leaky_relu(_bn(self.head_bn, self.head(per_point)), 0.2)
        z = self.proj2(F.relu(_bn(self.proj_bn, self.proj1(f))))
        return self.classifier(f), F.normalize(z, dim=-1)
