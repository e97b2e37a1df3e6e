"""Sparse autoencoders: the TopK SAE with its AuxK loss (Gao et al., "Scaling and evaluating
sparse autoencoders", arXiv:2406.04093) and the TopK variational SAE with fixed or learned
variance (Baker & Li, "Analysis of Variational Sparse Autoencoders", arXiv:2509.22994).

One module, :class:`StackedSAE`, holds ``M`` independent SAEs of one shape (input ``d``,
dictionary ``n``, ``k`` active latents) as stacked weights, so that several arms and seeds train
in one run with batched matmuls. Every member computes, on its own rows ``x`` (shape ``(M, B,
d)``)::

    x̃ = x − b_dec;  μ = ReLU(x̃ W_enc + b_enc);  log σ² = clamp(x̃ W_var + b_var, −6, 2)
    z = μ + σ·ε (learned variance, training only) else μ;  f = TopK(|z|) keeping the sign
    x̂ = f W_dec + b_dec       (rows of W_dec are the dictionary atoms, kept unit-norm)

and its loss ``‖x − x̂‖² + c_KL·w·KL + α_aux·AuxK`` (sums over features, means over rows) where
KL is ½‖μ‖² with fixed variance (the reference code does not sample there, so it is an L2
penalty on the pre-TopK code), ½Σ(μ² + σ² − 1 − log σ²) with learned variance, and 0 for the
plain TopK SAE. AuxK reconstructs the (detached) residual from the ``k_aux`` largest pre-TopK
activations among the *dead* latents (no activation for ``dead_window`` rows), normalised by the
residual's variance. The decoder only ever reads the ``k`` selected atoms of each row (a gather
instead of a dense ``(B, n) × (n, d)`` product); its gradient has the component along each atom
removed and the atoms are renormalised after each optimiser step (:meth:`StackedSAE.project`).
Adam is per element and the members share no weight, so a member ends where its own run would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from subspacelab.api import TrainEnv

VARIANCES = ("none", "fixed", "learned")
LOGVAR_INIT, LOGVAR_MIN, LOGVAR_MAX = -2.0, -6.0, 2.0


@dataclass(frozen=True)
class SAEArm:
    """One SAE's loss: ``variance`` "none" (TopK SAE), "fixed" or "learned" (vSAE), the KL
    weight ``c_kl`` (0 for "none") and the AuxK weight ``aux_alpha``."""

    variance: str
    c_kl: float
    aux_alpha: float

    def __post_init__(self) -> None:
        if self.variance not in VARIANCES:
            raise ValueError(f"variance must be one of {VARIANCES}, got {self.variance!r}")
        if self.c_kl < 0 or self.aux_alpha < 0:
            raise ValueError(f"c_kl and aux_alpha must be >= 0, got {self.c_kl}, {self.aux_alpha}")
        if self.variance == "none" and self.c_kl != 0:
            raise ValueError("a TopK SAE (variance 'none') has no KL term: c_kl must be 0")


@dataclass
class Codes:
    """A forward pass of every member: pre-TopK means ``mu`` and log-variances ``logvar``
    (``None`` without learned variance), the selected latents ``idx``/``vals`` (M, B, k) and the
    reconstruction ``x_hat`` (M, B, d)."""

    mu: Tensor
    logvar: Tensor | None
    idx: Tensor
    vals: Tensor
    x_hat: Tensor


def _gather_decode(w_dec: Tensor, idx: Tensor, vals: Tensor) -> Tensor:
    """Σ_j vals[m, b, j] · w_dec[m, idx[m, b, j]]: the decoder on k atoms per row, (M, B, d)
    (one ``embedding_bag`` over the stacked atoms; its gradient touches the chosen atoms only)."""
    m, n, d = w_dec.shape
    offsets = (torch.arange(m, device=idx.device) * n)[:, None, None]
    out = nn.functional.embedding_bag(
        (idx + offsets).flatten(0, 1),
        w_dec.reshape(m * n, d),
        per_sample_weights=vals.flatten(0, 1),
        mode="sum",
    )
    return out.view(m, -1, d)


class StackedSAE(nn.Module):
    """``len(arms)`` independent SAEs of one shape (module docstring); member ``m`` is
    initialised from ``seeds[m]``: unit-norm random atoms, the encoder their transpose, zero
    encoder bias, ``b_dec`` = ``b_dec_init[m]`` (a geometric median of its data, or 0), and with
    learned variance ``nn.Linear``'s default init for ``W_var`` and −2 for ``b_var``.

    ``dead_window`` (rows) and ``k_aux`` set the AuxK loss; ``kl_warmup`` is the number of
    training steps over which the KL weight ramps linearly from 0 to 1 (0: no ramp). Every
    ``trace_every`` training steps (0: never) :attr:`trace` gets a row: the step, each member's
    reconstruction error ‖x − x̂‖² and its fraction of dead latents.
    """

    def __init__(
        self,
        d: int,
        n: int,
        k: int,
        arms: Sequence[SAEArm],
        seeds: Sequence[int],
        *,
        k_aux: int,
        dead_window: int,
        kl_warmup: int = 0,
        b_dec_init: Tensor | None = None,
        trace_every: int = 0,
    ) -> None:
        super().__init__()
        if not arms or len(arms) != len(seeds):
            raise ValueError(f"need one seed per arm, got {len(arms)} arms, {len(seeds)} seeds")
        if not 1 <= k <= n or not 1 <= k_aux <= n or d < 1:
            raise ValueError(f"need 1 <= k, k_aux <= n and d >= 1; got d={d} n={n} k={k} {k_aux=}")
        if dead_window < 1 or kl_warmup < 0:
            raise ValueError(
                f"dead_window must be >= 1, kl_warmup >= 0: {dead_window}, {kl_warmup}"
            )
        learned = {a.variance == "learned" for a in arms}
        if len(learned) != 1:
            raise ValueError("a stack holds learned-variance members only, or none of them")
        self.learned = learned.pop()
        self.arms = tuple(arms)
        self.d, self.n, self.k, self.k_aux = d, n, k, k_aux
        self.dead_window, self.kl_warmup = dead_window, kl_warmup
        self.trace_every = trace_every
        self.trace: list[tuple[int, list[float], list[float]]] = []
        atoms, w_var, b_var = [], [], []
        for seed in seeds:
            gen = torch.Generator().manual_seed(seed)
            atoms.append(nn.functional.normalize(torch.randn(n, d, generator=gen), dim=1))
            if self.learned:
                bound = d**-0.5
                w_var.append((torch.rand(d, n, generator=gen) * 2 - 1) * bound)
                b_var.append(torch.full((n,), LOGVAR_INIT))
        w_dec = torch.stack(atoms)
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec.transpose(1, 2).clone())
        self.b_enc = nn.Parameter(torch.zeros(len(arms), n))
        init = torch.zeros(len(arms), d) if b_dec_init is None else b_dec_init.float().clone()
        if init.shape != (len(arms), d):
            raise ValueError(f"b_dec_init must be ({len(arms)}, {d}), got {tuple(init.shape)}")
        self.b_dec = nn.Parameter(init)
        if self.learned:
            self.W_var = nn.Parameter(torch.stack(w_var))
            self.b_var = nn.Parameter(torch.stack(b_var))
        self.register_buffer("c_kl", torch.tensor([a.c_kl for a in arms]))
        self.register_buffer("aux_alpha", torch.tensor([a.aux_alpha for a in arms]))
        self.register_buffer("fixed_kl", torch.tensor([a.variance == "fixed" for a in arms]))
        self.register_buffer("since_fired", torch.zeros(len(arms), n, dtype=torch.long))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.W_dec.register_hook(self._drop_parallel)

    @property
    def members(self) -> int:
        """How many SAEs the stack holds."""
        return len(self.arms)

    def _drop_parallel(self, grad: Tensor) -> Tensor:
        """The decoder gradient without its component along each (unit) atom."""
        w = self.W_dec.detach()
        return grad - (grad * w).sum(-1, keepdim=True) * w

    @torch.no_grad()
    def project(self) -> None:
        """Renormalise every atom to unit norm (after each optimiser step)."""
        self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp(min=1e-12))

    def forward(self, x: Tensor, sample: bool = False) -> Codes:
        """Encode and decode ``x`` (M, B, d); ``sample`` draws z = μ + σε (learned variance)."""
        if x.dim() != 3 or x.shape[0] != self.members or x.shape[2] != self.d:
            raise ValueError(f"x must be ({self.members}, rows, {self.d}), got {tuple(x.shape)}")
        # (x − b_dec) W + b = x W + (b − b_dec W): b_dec's gradient then costs a (1, d) product
        shift = self.b_dec[:, None]
        mu = torch.relu(torch.baddbmm(self.b_enc[:, None] - shift @ self.W_enc, x, self.W_enc))
        logvar = None
        z = mu
        if self.learned:
            b_var = self.b_var[:, None] - shift @ self.W_var
            logvar = torch.baddbmm(b_var, x, self.W_var).clamp(LOGVAR_MIN, LOGVAR_MAX)
            if sample:
                z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        idx = (z.abs() if self.learned else z).topk(self.k, dim=-1).indices  # μ >= 0 otherwise
        vals = z.gather(-1, idx)
        x_hat = _gather_decode(self.W_dec, idx, vals) + self.b_dec[:, None]
        return Codes(mu, logvar, idx, vals, x_hat)

    def losses(self, x: Tensor) -> Tensor:
        """Each member's training loss on its rows ``x`` (M, B, d), shape (M,); counts the step
        (KL ramp) and the rows since each latent last fired (AuxK's dead latents)."""
        c = self(x, sample=True)
        mse = (x - c.x_hat).pow(2).sum(-1).mean(-1)
        if self.learned:
            assert c.logvar is not None
            kl = 0.5 * (c.mu.pow(2) + c.logvar.exp() - 1 - c.logvar).sum(-1).mean(-1)
        else:
            kl = torch.where(self.fixed_kl, 0.5 * c.mu.pow(2).sum(-1).mean(-1), 0.0)
        ramp = 1.0 if self.kl_warmup == 0 else min(1.0, (int(self.steps) + 1) / self.kl_warmup)
        with torch.no_grad():
            fired = fired_latents(c.idx, c.vals, self.n)
            self.since_fired.copy_(torch.where(fired, 0, self.since_fired + x.shape[1]))
            self.steps += 1
            if self.trace_every and int(self.steps) % self.trace_every == 0:
                dead_now = (self.since_fired >= self.dead_window).float().mean(-1)
                self.trace.append((int(self.steps), mse.tolist(), dead_now.tolist()))
        total = mse + self.c_kl * ramp * kl
        dead = (self.since_fired >= self.dead_window) & (self.aux_alpha > 0)[:, None]
        on = dead.any(-1).nonzero().flatten()  # AuxK only where it counts (one sync per step)
        if len(on):
            aux = self.auxk(x[on] - c.x_hat[on].detach(), c.mu[on], dead[on], self.W_dec[on])
            total = total.index_add(0, on, self.aux_alpha[on] * aux)
        return total

    def auxk(self, residual: Tensor, mu: Tensor, dead: Tensor, w_dec: Tensor) -> Tensor:
        """AuxK (Gao et al. 2024) of the members whose rows are given: ‖e − ê‖² / ‖e − ē‖², ê
        decoded (no bias) by ``w_dec`` from the ``k_aux`` largest activations among the ``dead``
        latents; 0 where none is dead."""
        masked = torch.where(dead[:, None], mu, -torch.inf)
        top = masked.topk(self.k_aux, dim=-1)
        vals = torch.where(torch.isfinite(top.values), top.values, 0.0)
        e_hat = _gather_decode(w_dec, top.indices, vals)
        num = (residual - e_hat).pow(2).sum(-1).mean(-1)
        den = (residual - residual.mean(1, keepdim=True)).pow(2).sum(-1).mean(-1)
        return torch.where(dead.any(-1), num / den.clamp(min=1e-12), 0.0)


@torch.no_grad()
def geometric_median(x: Tensor, iters: int = 100, tol: float = 1e-6) -> Tensor:
    """The geometric median of the rows of ``x`` (Weiszfeld's iterations from the mean)."""
    y = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - y).norm(dim=1).clamp(min=1e-8)
        nxt = (w[:, None] * x).sum(0) / w.sum()
        if (nxt - y).norm() <= tol * max(1.0, float(y.norm())):
            return nxt
        y = nxt
    return y


def topk_sparse(z: Tensor, k: int) -> Tensor:
    """``z`` with all but the ``k`` largest-|·| entries of each row zeroed (signs kept)."""
    idx = z.abs().topk(k, dim=-1).indices
    return torch.zeros_like(z).scatter(-1, idx, z.gather(-1, idx))


def kl_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) summed over the last dimension: ½Σ(μ² + σ² − 1 − log σ²)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)


def fvu(x: Tensor, x_hat: Tensor) -> float:
    """Fraction of variance unexplained: ‖x − x̂‖² / ‖x − x̄‖² over all rows."""
    return float((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def normalised_mse(x: Tensor, x_hat: Tensor) -> float:
    """Mean squared error relative to the mean squared norm of the rows: ‖x − x̂‖² / ‖x‖²."""
    return float((x - x_hat).pow(2).sum() / x.pow(2).sum())


def fired_latents(idx: Tensor, vals: Tensor, n: int) -> Tensor:
    """Which of ``n`` latents are active (non-zero) in any row: ``idx``/``vals`` (..., rows, k)
    of TopK selections -> bool (..., n)."""
    out = torch.zeros((*idx.shape[:-2], n), dtype=torch.long, device=idx.device)
    return out.scatter_add_(-1, idx.flatten(-2), (vals != 0).long().flatten(-2)) > 0


def dead_fraction(activations: Tensor) -> float:
    """Fraction of latents (columns of a (rows, n) activation matrix) never non-zero."""
    return float((activations != 0).sum(0).eq(0).float().mean())


def mean_abs_cos(atoms: Tensor, alive: Tensor | None = None) -> float:
    """Feature independence: the mean |cos| between distinct (alive) atoms, rows of ``atoms``."""
    a = atoms if alive is None else atoms[alive]
    if a.shape[0] < 2:
        raise ValueError("mean |cos| needs at least two atoms")
    u = nn.functional.normalize(a, dim=1)
    g = (u @ u.T).abs()
    m = a.shape[0]
    return float((g.sum() - g.diagonal().sum()) / (m * (m - 1)))


def max_cos_recovery(truth: Tensor, atoms: Tensor) -> float:
    """Ground-truth recovery: the mean over true directions (rows of ``truth``) of their largest
    cosine with an atom (rows of ``atoms``)."""
    t = nn.functional.normalize(truth, dim=1)
    u = nn.functional.normalize(atoms, dim=1)
    return float((t @ u.T).max(dim=1).values.mean())


@dataclass
class Evaluation:
    """Per member: FVU, normalised MSE, mean L0, dead fraction, and the alive mask (M, n)."""

    fvu: list[float]
    nmse: list[float]
    l0: list[float]
    dead: list[float]
    alive: Tensor


@torch.no_grad()
def evaluate(stack: StackedSAE, batches: Sequence[Tensor]) -> Evaluation:
    """Every member on the same eval rows of its own (``batches``: (M, B, d) each; no
    sampling: z = μ). A latent is dead when no row of all the batches activates it."""
    stack.eval()
    sq_err = torch.zeros(stack.members, dtype=torch.float64)
    sq_x = torch.zeros_like(sq_err)
    s, s2 = torch.zeros(stack.members, stack.d, dtype=torch.float64), torch.zeros_like(sq_err)
    l0 = torch.zeros_like(sq_err)
    alive = torch.zeros(stack.members, stack.n, dtype=torch.bool)
    rows = 0
    for x in batches:
        c = stack(x)
        sq_err += (x - c.x_hat).double().pow(2).sum((1, 2))
        sq_x += x.double().pow(2).sum((1, 2))
        s += x.double().sum(1)
        s2 += x.double().pow(2).sum((1, 2))
        l0 += (c.vals != 0).double().sum((1, 2))
        alive |= fired_latents(c.idx, c.vals, stack.n)
        rows += x.shape[1]
    var = s2 - s.pow(2).sum(1) / rows
    return Evaluation(
        fvu=(sq_err / var).tolist(),
        nmse=(sq_err / sq_x).tolist(),
        l0=(l0 / rows).tolist(),
        dead=(1 - alive.double().mean(1)).tolist(),
        alive=alive,
    )


def train_stacks(
    env: TrainEnv,
    stacks: Sequence[StackedSAE],
    sources: Sequence[Tensor],
    loader: DataLoader[Any],
    *,
    lr: float,
    label: str = "saes",
    params: dict[str, Any] | None = None,
) -> list[list[float]]:
    """Train every stack in one Lightning run (``train_joint`` of :mod:`subspacelab.api`, one
    member per stack, Adam at ``lr``). Each step the loader yields one batch ``(S, B, d)`` of
    ``S`` streams; member ``m`` of stack ``i`` trains on stream ``sources[i][m]``. Returns each
    stack's mean loss (summed over its members) per epoch."""
    from subspacelab.api import Member, train_joint

    if len(sources) != len(stacks):
        raise ValueError(f"need one source index per stack, got {len(sources)} for {len(stacks)}")
    for s, src in zip(stacks, sources, strict=True):
        if src.shape != (s.members,):
            raise ValueError(f"a stack of {s.members} needs {s.members} sources, got {src.shape}")

    def member(stack: StackedSAE, src: Tensor) -> Member:
        def loss(x: Tensor) -> Tensor:
            return stack.losses(x[src]).sum()

        return Member(stack, loss, lr=lr, on_step=stack.project)

    members = [member(s, src) for s, src in zip(stacks, sources, strict=True)]
    result = train_joint(env, members, epochs=1, loader=loader, label=label, params=params)
    return result.history
