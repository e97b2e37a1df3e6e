"""Multi-view graph and simplicial wavelets of HiPoNet (Viswanath et al., arXiv:2502.07746).

Dense and batched over any leading dims (clouds, views): a cloud is ``x`` (..., n, d).

* :func:`reweight` — the V learned views X̄_v = X ⊙ α_v;
* :func:`gaussian_affinity` — W_ij = exp(−‖x̄_i − x̄_j‖² / σ), zeroed below ``threshold`` (the
  diagonal, W_ii = 1, always stays: no node is isolated); :func:`knn_affinity` keeps the
  Gaussian weights of each point's k nearest neighbours instead;
* :func:`diffusion_operator` — the lazy random walk T = ½(I + D⁻¹W), rows summing to 1 (the
  released code column-normalises, P = W D⁻¹, and diffuses along Pᵀ: the same operator);
* :func:`diffusions` — U_t = T^t X̄ at the dyadic scales t = 1, 2, …, 2^{J−1};
  :func:`scattering` — the geometric-scattering features of the released ``GWT.py``: zeroth
  order U_{2^{J−1}}, first order |U_{2^{j−1}} − U_{2^j}|, second order |T^{2^{j'}} U_j −
  T^{2^{j'−1}} U_j| for j < j' (the diffusions diffused again); :func:`diffusion_features` —
  the K = 1 path of the released code (the diffusions only, concatenated);
* K = 2: :func:`simplicial_complex` (edges and triangles, the 3-cliques, of the thresholded
  graph, capped) and :func:`simplicial_scattering` — scattering on the block graph of nodes,
  edges and triangles: edge features are the mean of their endpoints', triangle features the
  mean of their vertices'; nodes are joined by W, edges sharing one node by w_e + w_e',
  triangles sharing an edge by 1 (raw, un-normalised weights, as in the released code); the
  blocks are not linked to each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Operator = Callable[[Tensor], Tensor]


def reweight(x: Tensor, alpha: Tensor) -> Tensor:
    """Views X̄_v = X ⊙ α_v: clouds (b, n, d) and weights (V, d) -> (b, V, n, d)."""
    if x.shape[-1] != alpha.shape[-1]:
        raise ValueError(f"alpha has {alpha.shape[-1]} weights for {x.shape[-1]} features")
    return x.unsqueeze(-3) * alpha.unsqueeze(-2)


def sq_dists(x: Tensor) -> Tensor:
    """Squared Euclidean distances (..., n, n) between the rows of x (..., n, d)."""
    sq = (x * x).sum(-1)
    d = sq.unsqueeze(-1) + sq.unsqueeze(-2) - 2 * x @ x.transpose(-1, -2)
    return d.clamp_min(0.0)


def _check_scale(sigma: float, threshold: float) -> None:
    if sigma <= 0 or not 0 <= threshold <= 1:
        raise ValueError(f"need sigma > 0 and 0 <= threshold <= 1, got {sigma}, {threshold}")


def gaussian_affinity(x: Tensor, sigma: float, threshold: float) -> Tensor:
    """exp(−‖x̄_i − x̄_j‖²/σ) with entries below ``threshold`` set to 0 (the diagonal is 1)."""
    _check_scale(sigma, threshold)
    off = 1.0 - torch.eye(x.shape[-2], dtype=x.dtype, device=x.device)
    w = torch.exp(-sq_dists(x) * off / sigma)  # the diagonal exactly 1
    return w * (w >= threshold)


def knn_affinity(x: Tensor, k: int, sigma: float) -> Tensor:
    """Gaussian weights exp(−d²/σ) on each point's ``k`` nearest neighbours, symmetrised
    (an edge if either end picks it), with the diagonal 1."""
    n = x.shape[-2]
    if not 1 <= k < n or sigma <= 0:
        raise ValueError(f"need 1 <= k < n ({n}) and sigma > 0, got k={k}, sigma={sigma}")
    d = sq_dists(x)
    eye = torch.eye(n, dtype=torch.bool, device=x.device)
    nearest = d.masked_fill(eye, float("inf")).topk(k, dim=-1, largest=False).indices
    pick = torch.zeros_like(d, dtype=torch.bool).scatter_(-1, nearest, True)
    keep = pick | pick.transpose(-1, -2) | eye
    return torch.where(keep, torch.exp(-d / sigma), torch.zeros_like(d))


def diffusion_operator(w: Tensor) -> Tensor:
    """The lazy walk ½(I + D⁻¹W) of affinities w (..., n, n) with a positive diagonal."""
    deg = w.sum(-1, keepdim=True)
    if bool((deg <= 0).any()):
        raise ValueError("an isolated node (zero degree): keep the self-affinity W_ii > 0")
    eye = torch.eye(w.shape[-1], dtype=w.dtype, device=w.device)
    return 0.5 * (eye + w / deg)


def _as_operator(t: Tensor | Operator) -> Operator:
    if isinstance(t, Tensor):
        return lambda v: t @ v
    return t


def diffusions(t: Tensor | Operator, x: Tensor, scales: int) -> list[Tensor]:
    """[T x, T² x, T⁴ x, …, T^{2^{scales−1}} x] by repeated application (the released code's
    ``diffuse``); ``t`` a matrix (..., n, n) or a linear map on (..., n, c)."""
    if scales < 1:
        raise ValueError(f"scales (J) must be >= 1, got {scales}")
    apply = _as_operator(t)
    out, cur = [], x
    for step in range(1, 2 ** (scales - 1) + 1):
        cur = apply(cur)
        if step & (step - 1) == 0:
            out.append(cur)
    return out


def diffusion_features(t: Tensor | Operator, x: Tensor, scales: int) -> Tensor:
    """The K = 1 features of the released code: the diffusions concatenated, (..., n, J·d)."""
    return torch.cat(diffusions(t, x, scales), -1)


def scattering_width(scales: int) -> int:
    """Feature blocks of :func:`scattering`: 1 + (J−1) + J(J−1)/2 (each ``d`` wide)."""
    return 1 + (scales - 1) + scales * (scales - 1) // 2


def scattering(t: Tensor | Operator, x: Tensor, scales: int) -> Tensor:
    """Zeroth, first and second-order scattering (..., n, scattering_width(J)·d).

    The released code diffuses the diffusions again (T^{2^{j'}} U_j with U_j = T^{2^j} x);
    since T^a (T^b x) = T^{a+b} x, every feature is some |T^a x − T^b x|, and the powers
    T^k x, k ≤ 2^{J−1} + 2^{J−2}, are computed once (J = 3: 6 products instead of 16).
    """
    if scales < 1:
        raise ValueError(f"scales (J) must be >= 1, got {scales}")
    apply = _as_operator(t)
    top = 2 ** (scales - 1) + (2 ** (scales - 2) if scales > 1 else 0)
    powers = [x]
    for _ in range(top):
        powers.append(apply(powers[-1]))
    first = [torch.abs(powers[2 ** (j - 1)] - powers[2**j]) for j in range(1, scales)]
    second = [
        torch.abs(powers[2**jp + 2**j] - powers[2 ** (jp - 1) + 2**j])
        for j in range(scales)
        for jp in range(j + 1, scales)
    ]
    return torch.cat([powers[2 ** (scales - 1)], *first, *second], -1)


@dataclass(frozen=True)
class Complex:
    """A 2-complex on n nodes: ``edges`` (E, 2) with i < j, ``triangles`` (T, 3) with
    i < j < k, each triangle's edge ids ``tri_edges`` (T, 3), and ``w`` (E,) edge weights."""

    n: int
    edges: Tensor
    triangles: Tensor
    tri_edges: Tensor
    w: Tensor


def simplicial_complex(w: Tensor, threshold: float, max_triangles: int) -> Complex:
    """Edges i < j with w_ij >= ``threshold`` and the triangles (3-cliques) among them, in
    lexicographic order, the first ``max_triangles`` kept (the released code caps at 1,000)."""
    if w.dim() != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"one square affinity matrix expected, got shape {tuple(w.shape)}")
    if max_triangles < 0:
        raise ValueError(f"max_triangles must be >= 0, got {max_triangles}")
    n = w.shape[0]
    adj = (w >= threshold).triu(1)
    edges = adj.nonzero()
    eid = torch.full((n, n), -1, dtype=torch.long, device=w.device)
    eid[edges[:, 0], edges[:, 1]] = torch.arange(len(edges), device=w.device)
    # a triangle i<j<k: (i,j) and (j,k) edges and (i,k) an edge
    tri = (adj.unsqueeze(2) & adj.unsqueeze(0) & adj.unsqueeze(1)).nonzero()  # [i, j, k]
    tri = tri[:max_triangles]
    tri_edges = torch.stack(
        [eid[tri[:, 0], tri[:, 1]], eid[tri[:, 1], tri[:, 2]], eid[tri[:, 0], tri[:, 2]]], 1
    )
    return Complex(n, edges, tri, tri_edges, w[edges[:, 0], edges[:, 1]])


def _incidence(rows: int, members: Tensor, dtype: torch.dtype) -> Tensor:
    """0/1 matrix (rows, len(members)): column c has ones at the ids in ``members[c]``."""
    inc = torch.zeros(rows, len(members), dtype=dtype, device=members.device)
    cols = torch.arange(len(members), device=members.device).repeat_interleave(members.shape[1])
    inc[members.reshape(-1), cols] = 1.0
    return inc


def simplicial_scattering(x: Tensor, w: Tensor, cx: Complex, scales: int) -> Tensor:
    """Scattering features (n + E + T, scattering_width(J)·d) of the nodes, edges and triangles
    of ``cx`` (nodes: features x (n, d), affinities w (n, n), thresholded, raw)."""
    b = _incidence(cx.n, cx.edges, x.dtype)  # node-edge (n, E)
    c = _incidence(len(cx.edges), cx.tri_edges, x.dtype)  # edge-triangle (E, T)
    e_w = cx.w.unsqueeze(-1)

    def nbr_edges(v: Tensor) -> Tensor:  # Σ over edges sharing exactly one node
        return b.T @ (b @ v) - 2 * v

    def edge_op(v: Tensor) -> Tensor:  # Σ_{e'~e} (w_e + w_e') v_e'
        return e_w * nbr_edges(v) + nbr_edges(e_w * v)

    def tri_op(v: Tensor) -> Tensor:  # Σ over triangles sharing an edge, weight 1
        return c.T @ (c @ v) - 3 * v

    x_edges = x[cx.edges].mean(1)
    x_tris = x[cx.triangles].mean(1)
    return torch.cat(
        [
            scattering(w, x, scales),
            scattering(edge_op, x_edges, scales),
            scattering(tri_op, x_tris, scales),
        ],
        0,
    )
