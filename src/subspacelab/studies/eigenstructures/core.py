"""Probe functions, the nested-truncation loss and its closed-form optimum (Velich et al., CVPR
2026, arXiv:2512.01103).

A network maps each point to k numbers; their QR factor Q (Euclidean QᵀQ = I) is the learned
basis, w = Q[:, 0]² the learned mass. Probes f = S^T u (u ~ U(−1, 1)ⁿ, S the row-normalised
Gaussian-kernel smoother of a kNN graph with self loops) are whitened, g = M^{1/2} f, and the loss
is the mean over truncations m = 1..k and probes of ‖g − Q_m Q_mᵀ g‖², divided by √k. With the
mass held fixed its minimiser is the top-k eigenbasis of the whitened probe covariance
(:func:`closed_form_loss`). :class:`PointMLPStack` holds one network per seed, evaluated in one
batched call (summed losses, independent parameters).
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from subspacelab.worlds.manifolds import knn_graph


def knn_distances(points: np.ndarray, k: int) -> sp.csr_matrix:
    """Distances on the symmetric kNN graph (i ~ j if either is among the other's k nearest)."""
    from sklearn.neighbors import NearestNeighbors

    n = points.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"need 1 <= k < n = {n}, got k={k}")
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    d = sp.csr_matrix(
        (dist[:, 1:].ravel(), (np.repeat(np.arange(n), k), idx[:, 1:].ravel())), shape=(n, n)
    )
    return d.maximum(d.T).tocsr()


def smoother(dist: sp.csr_matrix, sigma: float) -> sp.csr_matrix:
    """S = D⁻¹(W + I): Gaussian weights exp(−d²/2σ²) on the kNN graph's edges, self loops."""
    w = dist.copy()
    w.data = np.exp(-(w.data**2) / (2 * sigma**2))
    w = w + sp.identity(dist.shape[0], format="csr")
    deg = np.asarray(w.sum(axis=1)).ravel()
    return (sp.diags(1.0 / deg) @ w).tocsr()


def probes(
    op: sp.csr_matrix,
    n_probes: int,
    iters: int,
    rng: np.random.Generator,
    device: torch.device | str = "cpu",
) -> Tensor:
    """(n, n_probes) float32 probes S^iters u, u ~ U(−1, 1)ⁿ (torch sparse products on
    ``device``; u drawn from ``rng`` on the host, so every device sees the same probes), scaled
    to unit root-mean-square: the loss's minimiser does not depend on the probes' scale, and
    O(1) values keep Adam's ε negligible."""
    with warnings.catch_warnings():  # torch: "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        s = torch.sparse_csr_tensor(
            torch.from_numpy(op.indptr.astype(np.int64)),
            torch.from_numpy(op.indices.astype(np.int64)),
            torch.from_numpy(op.data.astype(np.float32)),
            size=op.shape,
            check_invariants=False,
        ).to(device)
    u = rng.uniform(-1.0, 1.0, (op.shape[0], n_probes)).astype(np.float32)
    f = torch.from_numpy(u).to(device)
    for _ in range(iters):
        f = s @ f
    return f / f.pow(2).mean().sqrt()


def truncation_errors(q: Tensor, f: Tensor, detach_mass: bool = False) -> Tensor:
    """(k,) mean over probes of ‖g − Q_m Q_mᵀ g‖², m = 1..k, with g = M^{1/2} f and the mass
    M = n·diag(Q[:, 0]²) (the paper's w = Q[:, 0]², scaled to mean 1). ``q`` (n, k) has
    orthonormal columns. ``detach_mass``: the mass is a constant of each step (no gradient flows
    through the whitening), the control arm; the paper's code lets it flow.

    Computed without forming g (n × probes): ‖g‖² = n Σᵢ wᵢ² fᵢ² and Q_mᵀ g = (√n w ⊙ Q_m)ᵀ f,
    the same values in a sixth of the time (one (k, n) × (n, probes) product, no n × probes
    temporaries in the backward pass)."""
    n = q.shape[0]
    w = q[:, :1].abs()
    if detach_mass:
        w = w.detach()
    total = n * (w.squeeze(1).square() * f.square().mean(1)).sum()
    coef = (math.sqrt(n) * w * q).T @ f
    return total - coef.square().mean(1).cumsum(0)


def nested_loss(q: Tensor, f: Tensor, detach_mass: bool = False) -> Tensor:
    """The paper's loss: mean truncation error over m = 1..k, divided by √k."""
    return truncation_errors(q, f, detach_mass).mean() / math.sqrt(q.shape[1])


def closed_form_loss(weights: np.ndarray, f: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    """The lower bound of :func:`nested_loss` with the mass ``weights`` fixed, and its basis:
    the top-k eigenvectors of the whitened probe covariance W^{1/2} (F Fᵀ / P) W^{1/2}."""
    g = np.sqrt(weights)[:, None] * f.astype(np.float64)
    cov = g @ g.T / g.shape[1]
    vals, vecs = np.linalg.eigh(cov)
    top = vals[::-1][:k]
    errs = np.trace(cov) - np.cumsum(top)
    return float(errs.mean() / math.sqrt(k)), vecs[:, ::-1][:, :k].copy()


def orthonormal(raw: Tensor) -> Tensor:
    """Q of the reduced QR of ``raw`` (…, n, k), computed in float64 (the spec's fix for unstable
    columns of a nearly rank-deficient output) and returned in ``raw``'s dtype."""
    q, _ = torch.linalg.qr(raw.double())
    return q.to(raw.dtype)


class PointMLPStack(nn.Module):
    """S per-point MLPs in → hidden… → k with GELU, one per seed, evaluated together on (S, n, in)
    inputs; network s is initialised from its own generator (nn.Linear's uniform ±1/√fan_in)."""

    def __init__(self, widths: list[int], seeds: list[int]) -> None:
        super().__init__()
        if len(widths) < 2:
            raise ValueError(f"need at least input and output widths, got {widths}")
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(widths):
            bound = 1 / math.sqrt(fan_in)
            ws, bs = [], []
            for seed in seeds:
                gen = torch.Generator().manual_seed(seed * 1000 + len(self.weights))
                ws.append((torch.rand(fan_in, fan_out, generator=gen) * 2 - 1) * bound)
                bs.append((torch.rand(fan_out, generator=gen) * 2 - 1) * bound)
            self.weights.append(nn.Parameter(torch.stack(ws)))
            self.biases.append(nn.Parameter(torch.stack(bs)[:, None, :]))

    def forward(self, x: Tensor) -> Tensor:
        """(S, n, k) raw outputs."""
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            if i < len(self.weights) - 1:
                x = nn.functional.gelu(x)
        return x


class PointTransformerStack(nn.Module):
    """The paper's point network (spec §3–4, the full profile), one per seed: a per-point MLP
    in → hidden… (LayerNorm and GELU between layers), a Transformer encoder over all points of
    the sample (global self-attention, d = hidden[-1], ``heads`` heads, feed-forward ``ffn``,
    no dropout, PyTorch's post-norm layer), and a linear head to k. Network s is initialised
    under torch's generator seeded from s (PyTorch's own initialisation of each layer)."""

    def __init__(
        self, widths: list[int], seeds: list[int], layers: int, heads: int, ffn: int
    ) -> None:
        super().__init__()
        if len(widths) < 3:
            raise ValueError(f"need input, at least one hidden and output widths, got {widths}")
        d = widths[-2]
        if d % heads:
            raise ValueError(f"the model width {d} is not divisible by {heads} heads")
        self.nets = nn.ModuleList()
        for seed in seeds:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed * 1000 + 17)
                mlp: list[nn.Module] = []
                for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths[:-1])):
                    mlp.append(nn.Linear(fan_in, fan_out))
                    if i < len(widths) - 3:
                        mlp += [nn.LayerNorm(fan_out), nn.GELU()]
                layer = nn.TransformerEncoderLayer(
                    d, heads, dim_feedforward=ffn, dropout=0.0, batch_first=True
                )
                encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
                self.nets.append(nn.Sequential(*mlp, encoder, nn.Linear(d, widths[-1])))

    def forward(self, x: Tensor) -> Tensor:
        """(S, n, in) -> (S, n, k): network s sees sample s as one sequence of n points."""
        return torch.cat([net(x[i : i + 1]) for i, net in enumerate(self.nets)])


def eigenvalue_estimates(errors: np.ndarray) -> np.ndarray:
    """λ̂_m = 1 / (truncation error at m): the paper's eigenvalues, up to a monotone map."""
    errors = np.asarray(errors, dtype=float)
    if np.any(errors <= 0):
        raise ValueError("a truncation error is not positive: no eigenvalue estimate")
    return 1.0 / errors


def laplacian_eigenmaps(points: np.ndarray, k_nn: int, k: int) -> np.ndarray:
    """The baseline: the k smallest generalised eigenvectors of (D − W) v = λ D v on the binary
    symmetric kNN graph (Belkin & Niyogi 2003), columns by ascending eigenvalue."""
    import scipy.linalg

    from subspacelab.worlds.manifolds import graph_laplacian

    w = knn_graph(points, k_nn, None)
    lap = graph_laplacian(w, "combinatorial").toarray()
    deg = np.diag(np.asarray(w.sum(axis=1)).ravel())
    _, vecs = scipy.linalg.eigh(lap, deg, subset_by_index=[0, k - 1])
    return vecs
