"""Equivariant layers of the geometric-deep-learning blueprint (Bronstein, Bruna, Cohen,
Veličković, "Geometric Deep Learning: Grids, Groups, Graphs, Geodesics, and Gauges",
arXiv:2104.13478).

* **Groups** — the p4 group convolution of Cohen & Welling (2016) on square grids: a lifting
  convolution Z² → p4 (one copy of each filter per rotation r ∈ C4) and a group convolution
  p4 → p4, both one ``conv2d`` with a filter bank built from rotated (and, for p4 → p4,
  cyclically shifted) filters; group pooling over the rotation axis. A p4 feature map has shape
  ``(B, C, 4, H, W)``; the rotation by k·90° acts on it as ``rot90`` of the spatial axes with a
  cyclic shift of the rotation axis by k (:func:`p4_rot90`). Zero padding is exact for C4 on a
  square grid (the padded border is itself rotation-symmetric).
* **E(n) on point clouds** — the EGNN layer of Satorras, Hoogeboom & Welling (2021) on a
  fully connected cloud: m_ij = φ_e(h_i, h_j, ‖x_i − x_j‖²), x_i' = x_i + C Σ_j (x_i − x_j)
  φ_x(m_ij), h_i' = φ_h(h_i, Σ_j m_ij), with C = 1/(N − 1); :class:`EGNNClassifier` reads an
  E(3)- and permutation-invariant class score from coordinates alone.
* **Group actions** for :func:`subspacelab.modules.equivariance.equivariance_error`:
  :func:`c4_p4` (images → p4 maps or invariant outputs) and :func:`e3` (random rotations,
  reflections and translations of point clouds).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from subspacelab.modules.equivariance import Action, Element, identity, rot90


def p4_rot90(k: int) -> Action:
    """Rotation by k·90° of a p4 map ``(B, C, 4, H, W)``: spatial rot90 and the rotation axis
    shifted cyclically by k."""
    return lambda t: torch.rot90(t, k, dims=(-2, -1)).roll(k, dims=-3)


def c4_p4(output: str) -> list[Element]:
    """C4's three non-trivial rotations acting on images, and on outputs as ``output`` says:
    ``"p4"`` (p4 maps), ``"grid"`` (plain maps, after group pooling) or ``"invariant"``."""
    acts = {"p4": p4_rot90, "grid": rot90, "invariant": lambda _k: identity}
    if output not in acts:
        raise ValueError(f"unknown output action {output!r}; allowed: {', '.join(acts)}")
    return [Element(f"rot{90 * k}", rot90(k), acts[output](k)) for k in (1, 2, 3)]


def _check_kernel(kernel: int) -> None:
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel must be odd and >= 1 (a centred filter), got {kernel}")


class LiftingConv(nn.Module):
    """Z² → p4: ``out[:, :, r] = conv(x, rot90(w, r))`` for r = 0..3 ('same' zero padding)."""

    def __init__(self, c_in: int, c_out: int, kernel: int) -> None:
        super().__init__()
        _check_kernel(kernel)
        self.weight = nn.Parameter(torch.empty(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def filters(self) -> Tensor:
        """The filter bank ``(c_out·4, c_in, k, k)``, output channel ``o·4 + r``."""
        w = torch.stack([torch.rot90(self.weight, r, dims=(-2, -1)) for r in range(4)], dim=1)
        return w.flatten(0, 1)

    def forward(self, x: Tensor) -> Tensor:
        k = self.weight.shape[-1]
        y = F.conv2d(x, self.filters(), padding=k // 2)
        y = y.unflatten(1, (self.weight.shape[0], 4))
        return y + self.bias[None, :, None, None, None]


class GroupConv(nn.Module):
    """p4 → p4: ``out[:, o, r] = Σ_{c,s} conv(in[:, c, s], rot90(w[o, c, (s − r) mod 4], r))``
    (the p4 correlation of Cohen & Welling, 2016), one ``conv2d`` on the stacked rotations."""

    def __init__(self, c_in: int, c_out: int, kernel: int) -> None:
        super().__init__()
        _check_kernel(kernel)
        self.weight = nn.Parameter(torch.empty(c_out, c_in, 4, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out))
        nn.init.kaiming_uniform_(self.weight.flatten(1, 2), a=5**0.5)

    def filters(self) -> Tensor:
        """The filter bank ``(c_out·4, c_in·4, k, k)``: output ``o·4 + r``, input ``c·4 + s``."""
        banks = [
            torch.rot90(self.weight.roll(r, dims=2), r, dims=(-2, -1)) for r in range(4)
        ]  # roll by r: index s holds w[(s - r) mod 4]
        return torch.stack(banks, dim=1).flatten(0, 1).flatten(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5 or x.shape[2] != 4:
            raise ValueError(f"GroupConv takes p4 maps (B, C, 4, H, W), got {tuple(x.shape)}")
        k = self.weight.shape[-1]
        y = F.conv2d(x.flatten(1, 2), self.filters(), padding=k // 2)
        y = y.unflatten(1, (self.weight.shape[0], 4))
        return y + self.bias[None, :, None, None, None]


def group_pool(x: Tensor, mode: str = "max") -> Tensor:
    """Pool a p4 map over its full rotation orbit: ``(B, C, 4, H, W) → (B, C, H, W)``, a
    C4-equivariant plain map (partial pooling would leave residual error, spec §9)."""
    if mode == "max":
        return x.amax(dim=2)
    if mode == "mean":
        return x.mean(dim=2)
    raise ValueError(f"unknown group pooling {mode!r}; allowed: max, mean")


class P4CNN(nn.Module):
    """The C4-invariant blueprint on images: lifting conv, p4 group convs (ReLU between),
    group max-pooling, global spatial mean (the invariant pooling A) and a linear head."""

    def __init__(self, c_in: int, widths: list[int], kernel: int, n_classes: int) -> None:
        super().__init__()
        if not widths:
            raise ValueError("P4CNN needs at least one width")
        self.lift = LiftingConv(c_in, widths[0], kernel)
        self.convs = nn.ModuleList(GroupConv(a, b, kernel) for a, b in itertools.pairwise(widths))
        self.head = nn.Linear(widths[-1], n_classes)

    def features(self, x: Tensor) -> Tensor:
        """The last p4 map (C4-equivariant: rotate the input, rotate and shift the map)."""
        h = torch.relu(self.lift(x))
        for conv in self.convs:
            h = torch.relu(conv(h))
        return h

    def forward(self, x: Tensor) -> Tensor:
        return self.head(group_pool(self.features(x)).mean(dim=(-2, -1)))


def _mlp(d_in: int, width: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, width), nn.SiLU(), nn.Linear(width, d_out))


class EGNNLayer(nn.Module):
    """One E(n)-equivariant layer (Satorras et al., 2021) on a fully connected point cloud:
    ``(h, x) → (h', x')`` with ``h`` ``(B, N, d)`` invariant and ``x`` ``(B, N, n)``
    equivariant features. With a node ``mask`` ``(B, N)`` (1 = atom, 0 = padding) clouds of
    different sizes share one padded batch: messages and coordinate weights from or to padding
    are zeroed and C = 1/(nᵢ − 1) counts each cloud's own points."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.phi_e = nn.Sequential(_mlp(2 * width + 1, width, width), nn.SiLU())
        self.phi_x = _mlp(width, width, 1)
        self.phi_h = _mlp(2 * width, width, width)

    def forward(self, h: Tensor, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        n = x.shape[1]
        if n < 2:
            raise ValueError("an EGNN layer needs at least two points")
        diff = x[:, :, None, :] - x[:, None, :, :]  # x_i - x_j, (B, N, N, n)
        sq = diff.pow(2).sum(-1, keepdim=True)
        hi = h[:, :, None, :].expand(-1, -1, n, -1)
        hj = h[:, None, :, :].expand(-1, n, -1, -1)
        m = self.phi_e(torch.cat([hi, hj, sq], dim=-1))  # m_ij
        off = 1.0 - torch.eye(n, dtype=x.dtype, device=x.device)[None, :, :, None]  # j != i
        if mask is None:
            m = m * off
            x = x + (diff * self.phi_x(m)).sum(2) / (n - 1)
        else:
            pair = off * mask[:, :, None, None] * mask[:, None, :, None]
            m = m * pair
            count = (mask.sum(1) - 1).clamp(min=1)[:, None, None]
            x = x + (diff * self.phi_x(m) * pair).sum(2) / count
        h = h + self.phi_h(torch.cat([h, m.sum(2)], dim=-1))
        return h, x


class EGNNClassifier(nn.Module):
    """E(3)- and permutation-invariant classifier of point clouds ``(B, N, 3)``: constant node
    features (a learned vector), EGNN layers, mean over nodes, a linear head."""

    def __init__(self, width: int, layers: int, n_classes: int) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError("EGNNClassifier needs at least one layer")
        self.h0 = nn.Parameter(torch.randn(width) * 0.1)
        self.layers = nn.ModuleList(EGNNLayer(width) for _ in range(layers))
        self.head = nn.Linear(width, n_classes)

    def propagate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Invariant node features and equivariant coordinates after the last layer."""
        h = self.h0.to(x.dtype).expand(x.shape[0], x.shape[1], -1)
        for layer in self.layers:
            h, x = layer(h, x)
        return h, x

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.propagate(x)[0].mean(dim=1))


def random_orthogonal(dim: int, gen: torch.Generator, dtype: torch.dtype = torch.float64) -> Tensor:
    """A Haar-random element of O(dim) (QR of a Gaussian matrix with the signs fixed): about
    half are reflections."""
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).to(dtype)


def e3_action(rotation: Tensor, shift: Tensor) -> Action:
    """``x ↦ x Rᵀ + t`` on point clouds ``(..., N, 3)`` (in the points' dtype)."""
    return lambda x: x @ rotation.to(x.dtype).T + shift.to(x.dtype)


def e3(count: int, seed: int, *, output: str) -> list[Element]:
    """``count`` random E(3) elements (orthogonal R, Gaussian t) acting on point clouds, and on
    outputs as ``output`` says: ``"invariant"`` (scores) or ``"points"`` (coordinates)."""
    if output not in ("invariant", "points"):
        raise ValueError(f"unknown output action {output!r}; allowed: invariant, points")
    gen = torch.Generator().manual_seed(seed)
    elements = []
    for i in range(count):
        rotation = random_orthogonal(3, gen)
        act = e3_action(rotation, torch.randn(3, generator=gen, dtype=torch.float64))
        elements.append(Element(f"e3_{i}", act, identity if output == "invariant" else act))
    return elements
