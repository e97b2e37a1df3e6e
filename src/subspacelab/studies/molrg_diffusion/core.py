"""The low-rank parametrised DAE of Wang et al. (arXiv:2409.02426) and the study's grid.

The DAE is the MoLRG posterior mean with learnable bases (VE forward, s_t = 1, γ_t = σ):

    x̂(x_t, σ) = Σ_k w_k · U_k U_kᵀ x_t / (1 + σ²),
    w = softmax_k(‖U_kᵀ x_t‖² / (2σ²(1 + σ²))),

trained on E_σ E_ε ‖x̂(x_0 + σε, σ) − x_0‖² over the N training points (λ_σ = 1, σ log-uniform).
Two parametrisations, as the spec's prototype found (§6):

* ``qr`` — U_k = QR(A_k) inside the forward pass, Adam on A (the one that worked);
* ``retraction`` — Adam on U directly, then U_k ← QR(U_k) after every step (the one that failed).

Many worlds, restarts and both arms train as one module on the sum of their losses (independent
parameters: each model's Adam updates are those it would get alone).

Noise in K·d dimensions (exact)
-------------------------------
x̂ depends on x_t only through z = Uᵀx_t = b + σ Uᵀε with U = [U_1 … U_K] (n × Kd) and
b = Uᵀx_0, and x̂ = U v with v_k = c_k z_k, c_k = w_k/(1 + σ²), so

    ‖x̂ − x_0‖² = vᵀ G v − 2 vᵀ b + ‖x_0‖²,  G = UᵀU.

Uᵀε ~ N(0, G), which is the law of L h with G = L Lᵀ and h ~ N(0, I_{Kd}). Drawing h instead of
ε gives the same loss for every U (so the same expected loss and gradient: a reparametrisation),
at a cost per draw that does not grow with n. ``tests/studies/test_molrg_diffusion.py`` checks
that the reduced loss equals the n-dimensional one (with :func:`worlds.lowrank.posterior_mean`)
draw for draw, taking h = L⁻¹Uᵀε.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from subspacelab.geometry.bases import orthonormalize

ARMS = ("qr", "retraction")
_CELL_KEY = re.compile(r"K(\d+)_n(\d+)_d(\d+)_N(\d+)")
JITTER = 1e-5  # added to G before its Cholesky factor: two collapsed components stay finite


@dataclass(frozen=True)
class Cell:
    """One world of the grid: K components of dimension d in R^n, N points per component."""

    k: int
    n: int
    d: int
    nk: int

    @property
    def group(self) -> str:
        """The tensor shape shared by the cells trained in one batch."""
        return f"K{self.k}_n{self.n}_d{self.d}"

    @property
    def batch(self) -> str:
        """The cells trained as one tensor: a group's N_k < 2d cells apart from its larger ones
        (less zero-padding of the smaller worlds' points)."""
        return f"{self.group}_{'few' if self.nk < 2 * self.d else 'many'}"

    @property
    def key(self) -> str:
        """The cell's name in files and metrics."""
        return f"{self.group}_N{self.nk}"

    @classmethod
    def from_key(cls, key: str) -> Cell:
        """The cell a :attr:`key` names (``K2_n48_d4_N8``); a ValueError for anything else."""
        hit = _CELL_KEY.fullmatch(key)
        if not hit:
            raise ValueError(f"{key!r} is not a cell key K<k>_n<n>_d<d>_N<nk>")
        return cls(*(int(g) for g in hit.groups()))


def grid(
    ambient: list[int],
    components: list[int],
    dims: list[int],
    n_offsets: list[int],
    n_multiples: list[int],
) -> list[Cell]:
    """Every cell: K x n x d x N_k with N_k ∈ {d + offset} ∪ {multiple · d} (sorted, unique)."""
    cells = []
    for k in components:
        for n in ambient:
            for d in dims:
                sizes = sorted({d + o for o in n_offsets} | {m * d for m in n_multiples})
                cells += [Cell(k, n, d, nk) for nk in sizes if nk >= 1]
    return cells


def reduced_loss(
    x0_sq: Tensor, b: Tensor, gram: Tensor, chol: Tensor, h: Tensor, sigma: Tensor, k: int
) -> Tensor:
    """‖x̂ − x_0‖² per point and draw from the K·d-dimensional statistics (module docstring).

    For models with batch dims (...), P points and D draws: x0_sq (..., P) = ‖x_0‖²; b
    (..., P, Kd) = Uᵀx_0; gram and chol (..., Kd, Kd) = G = UᵀU and its Cholesky factor;
    h (..., P, D, Kd) standard normal and sigma (..., P, D) (all broadcast: noise can be shared
    by several models). Returns (..., P, D).
    """
    p, draws = sigma.shape[-2:]
    noise = (h.flatten(-3, -2) @ chol.transpose(-2, -1)).unflatten(-2, (p, draws))  # L h
    z = b.unsqueeze(-2) + sigma.unsqueeze(-1) * noise
    zk = z.unflatten(-1, (k, z.shape[-1] // k))
    var = 1.0 + sigma.square()
    if k == 1:
        c = (1.0 / var).unsqueeze(-1)
    else:
        logits = zk.square().sum(-1) / (2.0 * sigma.square() * var).unsqueeze(-1)
        c = torch.softmax(logits, dim=-1) / var.unsqueeze(-1)
    v = (c.unsqueeze(-1) * zk).flatten(-2)
    quad = ((v.flatten(-3, -2) @ gram).unflatten(-2, (p, draws)) * v).sum(-1)
    return quad - 2.0 * (v * b.unsqueeze(-2)).sum(-1) + x0_sq.unsqueeze(-1)


class GroupDAEs(nn.Module):
    """All DAEs of one group (K, n, d): worlds x restarts x arms.

    ``x`` (W, N_max, n) holds each world's points (zero-padded), ``counts`` (W,) how many are
    real. Model (arm, w, r) sees only world w's points. ``init`` (W, R, K, n, d) are the random
    starting bases, orthonormalised and shared by both arms (the ``qr`` arm starts from
    A = QR(init), the ``retraction`` arm from U = QR(init): one start, one scale).
    """

    def __init__(self, x: Tensor, counts: Tensor, init: Tensor) -> None:
        super().__init__()
        w, r, k, n, d = init.shape
        if x.shape[0] != w or x.shape[2] != n or counts.shape != (w,):
            raise ValueError(
                f"x {tuple(x.shape)} / counts {tuple(counts.shape)} vs init {tuple(init.shape)}"
            )
        self.k, self.d, self.restarts = k, d, r
        start = orthonormalize(init)
        self.a = nn.Parameter(start.clone())
        self.u = nn.Parameter(start.clone())
        self.register_buffer("x", x)
        mask = torch.arange(x.shape[1]).unsqueeze(0) < counts.unsqueeze(1)  # (W, N_max)
        self.register_buffer("weight", mask.to(x.dtype) / counts.unsqueeze(1).to(x.dtype))
        self.register_buffer("x0_sq", x.square().sum(-1))

    def bases(self) -> Tensor:
        """(arms, W, R, K, n, d): U for every model, orthonormal per component."""
        return torch.stack([orthonormalize(self.a), self.u])

    @torch.no_grad()
    def retract(self) -> None:
        """The ``retraction`` arm's step: U_k ← QR(U_k)."""
        self.u.copy_(orthonormalize(self.u))

    def losses(self, gen: torch.Generator, draws: int, lo: float, hi: float) -> Tensor:
        """(arms, W, R): each model's Monte-Carlo denoising loss (mean over its points and
        ``draws`` noises per point; padded points weigh 0)."""
        u = self.bases()
        arms, w, r, k, n, d = u.shape
        kd, nmax = k * d, self.x.shape[1]
        cat = u.permute(0, 1, 2, 4, 3, 5).reshape(arms, w, r, n, kd)  # [U_1 … U_K]
        gram = cat.transpose(-2, -1) @ cat
        eye = torch.eye(kd, dtype=gram.dtype, device=gram.device)
        chol = torch.linalg.cholesky(gram + JITTER * eye)
        b = torch.einsum("wpn,awrnj->awrpj", self.x, cat)  # (arms, W, R, N_max, Kd)
        # one draw of noise per world, shared by its restarts and both arms
        h = torch.randn(w, nmax, draws, kd, generator=gen, device=b.device, dtype=b.dtype)
        sigma = torch.empty(w, nmax, draws, device=b.device, dtype=b.dtype)
        sigma = sigma.uniform_(math.log(lo), math.log(hi), generator=gen).exp()
        per = reduced_loss(
            self.x0_sq[:, None], b, gram, chol, h[:, None], sigma[:, None], k
        )  # (arms, W, R, N_max, D)
        return (per.mean(-1) * self.weight[:, None]).sum(-1)


class MoLRGDAEs(nn.Module):
    """Every group's DAEs in one module; ``forward`` returns the sum of all models' losses."""

    def __init__(
        self, groups: dict[str, GroupDAEs], draws: int, lo: float, hi: float, seed: int
    ) -> None:
        super().__init__()
        self.groups = nn.ModuleDict(groups)
        self.draws, self.lo, self.hi, self.seed = draws, lo, hi, seed
        self._gen: torch.Generator | None = None

    def _generator(self, device: torch.device) -> torch.Generator:
        if self._gen is None or self._gen.device != device:
            self._gen = torch.Generator(device=device).manual_seed(self.seed)
        return self._gen

    def forward(self) -> Tensor:
        """Σ over every model of its denoising loss on a fresh draw of noise."""
        first = next(iter(self.groups.values()))
        gen = self._generator(first.x.device)
        return sum(  # type: ignore[return-value]
            g.losses(gen, self.draws, self.lo, self.hi).sum() for g in self.groups.values()
        )

    def retract(self) -> None:
        """The retraction arm's QR step, in every group (``after_step``)."""
        for g in self.groups.values():
            g.retract()  # type: ignore[operator]

    @torch.no_grad()
    def selection_losses(self, draws: int, seed: int) -> dict[str, Tensor]:
        """Each model's loss on one fixed draw of ``draws`` noises per point, (arms, W, R)
        per batch of cells."""
        first = next(iter(self.groups.values()))
        gen = torch.Generator(device=first.x.device).manual_seed(seed)
        return {
            name: g.losses(gen, draws, self.lo, self.hi).cpu()  # type: ignore[operator]
            for name, g in self.groups.items()
        }


def select(bases: np.ndarray, losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per (arm, world): the restart with the lowest loss. bases (arms, W, R, K, n, d), losses
    (arms, W, R) -> (chosen bases (arms, W, K, n, d), chosen restart index (arms, W))."""
    idx = losses.argmin(axis=2)
    arms, w = idx.shape
    return bases[np.arange(arms)[:, None], np.arange(w)[None, :], idx], idx
