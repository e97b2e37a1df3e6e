"""The maths of koopman_ib (Cheng et al., arXiv:2510.13025): losses, nets, rollouts.

Many Koopman autoencoders are trained at once (variants x seeds): every function here works on
a leading model axis M, and nothing couples two models (each has its own nets, its own Koopman
matrix, its own loss; the joint loss is their sum, see ``lightning.py``).

* :func:`koopman_matrix` — the closed-form, detached K of §3: per sequence
  K_b = (Z_bᵀZ_b + εI)⁻¹ Z_bᵀ Z'_b (the push-through form Z_bᵀ(Z_bZ_bᵀ + εI)⁻¹Z'_b when T < H;
  both are the same matrix), averaged over the batch;
* :func:`temporal_infonce` — the multi-positive InfoNCE along time on cosine-normalised z;
* :func:`von_neumann_entropy` — S(ρ) of the trace-normalised latent covariance (float64);
* :func:`rollout` — z_{t+h} = z_t K^h decoded, for the h-step prediction error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

VARIANTS = ("kae", "mi", "mi_s_paper", "mi_s_code")
VARIANT_NAMES = {
    "kae": "KAE (fwd + id)",
    "mi": "+ MI",
    "mi_s_paper": "+ MI + S, paper sign (−β·S)",
    "mi_s_code": "+ MI + S, code sign (+β·S)",
}


@dataclass(frozen=True)
class LossWeights:
    """Per-model loss weights (length M): α for the InfoNCE, and the signed weight on S that is
    *added* to the loss (−β for the paper's sign, +β for the released trainer's, 0 for none)."""

    alpha: Tensor
    entropy: Tensor


def variant_weights(variants: Sequence[str], alpha: float, beta: float) -> LossWeights:
    """α and the signed entropy weight of each variant (§5's four fits)."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; allowed: {', '.join(VARIANTS)}")
    a = [0.0 if v == "kae" else alpha for v in variants]
    s = [{"mi_s_paper": -beta, "mi_s_code": beta}.get(v, 0.0) for v in variants]
    return LossWeights(torch.tensor(a), torch.tensor(s))


ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


class BatchedMLP(nn.Module):
    """M independent MLPs (``activation`` on hidden layers, linear output) evaluated with
    batched matmuls.

    Model m is initialised like ``nn.Linear`` (U(±1/√fan_in) for weights and biases) from its
    own generator seeded with ``seeds[m]``, so two models with one seed start identical.
    """

    def __init__(
        self, widths: Sequence[int], seeds: Sequence[int], activation: str = "tanh"
    ) -> None:
        super().__init__()
        if len(widths) < 2 or min(widths) < 1 or not seeds:
            raise ValueError(f"BatchedMLP needs >= 2 positive widths and seeds, got {widths}")
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; allowed: {', '.join(ACTIVATIONS)}"
            )
        self.act = ACTIVATIONS[activation]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        for fan_in, fan_out in pairwise(widths):
            bound = 1.0 / math.sqrt(fan_in)
            w = torch.stack([_uniform((fan_in, fan_out), bound, g) for g in gens])
            b = torch.stack([_uniform((1, fan_out), bound, g) for g in gens])
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))

    @property
    def n_models(self) -> int:
        """M."""
        return int(self.weights[0].shape[0])

    def forward(self, x: Tensor) -> Tensor:
        """(M, N, in) -> (M, N, out)."""
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = self.act(x)
        return x


def _uniform(shape: tuple[int, int], bound: float, gen: torch.Generator) -> Tensor:
    return (torch.rand(shape, generator=gen) * 2 - 1) * bound


class StackedNets(nn.Module):
    """M independent networks of any kind (the conv nets of the full profile), one per model:
    (M, N, *in) -> (M, N, *out) by running each on its slice."""

    def __init__(self, nets: Sequence[nn.Module]) -> None:
        super().__init__()
        if not nets:
            raise ValueError("StackedNets needs at least one network")
        self.nets = nn.ModuleList(nets)

    @property
    def n_models(self) -> int:
        """M."""
        return len(self.nets)

    def forward(self, x: Tensor) -> Tensor:
        """Run net m on x[m] and stack."""
        if x.shape[0] != len(self.nets):
            raise ValueError(f"expected {len(self.nets)} model slices, got {x.shape[0]}")
        return torch.stack([net(xi) for net, xi in zip(self.nets, x, strict=True)])


class ConvEncoder(nn.Module):
    """§4's cylinder encoder: 5 convs (4 of stride 2) on C×64×64 -> flatten 4096 -> linear H."""

    def __init__(self, channels: int, latent: int) -> None:
        super().__init__()
        widths = [channels, 32, 64, 128, 256]
        layers: list[nn.Module] = []
        for a, b in pairwise(widths):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.GELU()]
        layers += [nn.Conv2d(256, 256, 3, padding=1), nn.GELU(), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(4096, latent)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, 64, 64) -> (N, H)."""
        return self.head(self.features(x))


class ConvDecoder(nn.Module):
    """The mirrored decoder: linear H -> 4096 -> 4 x (bilinear upsampling + conv) -> a 1×1
    refinement to C channels at 64×64."""

    def __init__(self, channels: int, latent: int) -> None:
        super().__init__()
        self.head = nn.Linear(latent, 4096)
        widths = [256, 128, 64, 32, 32]
        layers: list[nn.Module] = []
        for a, b in pairwise(widths):
            layers += [
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(a, b, 3, padding=1),
                nn.GELU(),
            ]
        layers.append(nn.Conv2d(32, channels, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        """(N, H) -> (N, C, 64, 64)."""
        return self.body(self.head(z).view(-1, 256, 4, 4))


def encode(encoder: nn.Module, x: Tensor) -> Tensor:
    """Encode (M, B, L, *obs) frame by frame -> (M, B, L, H)."""
    m, b, length = x.shape[:3]
    z = encoder(x.reshape(m, b * length, *x.shape[3:]))
    return z.reshape(m, b, length, -1)


def decode(decoder: nn.Module, z: Tensor) -> Tensor:
    """Decode (M, B, L, H) -> (M, B, L, *obs)."""
    m, b, length = z.shape[:3]
    x = decoder(z.reshape(m, b * length, z.shape[-1]))
    return x.reshape(m, b, length, *x.shape[2:])


def koopman_matrix(z: Tensor, ridge: float) -> Tensor:
    """Per model, the batch mean of the per-sequence ridge solutions K_b, detached.

    ``z``: (M, B, T + 1, H) latents of each window; Z = z[:, :, :-1], Z' = z[:, :, 1:];
    returns (M, H, H) with z_{t+1} ≈ z_t K (row vectors)."""
    z = z.detach()
    zx, zy = z[:, :, :-1], z[:, :, 1:]
    t, h = zx.shape[-2:]
    if t >= h:
        gram = zx.transpose(-1, -2) @ zx + ridge * torch.eye(h, dtype=z.dtype, device=z.device)
        kb = torch.linalg.solve(gram, zx.transpose(-1, -2) @ zy)
    else:  # push-through identity: (ZᵀZ + εI)⁻¹Zᵀ = Zᵀ(ZZᵀ + εI)⁻¹
        gram = zx @ zx.transpose(-1, -2) + ridge * torch.eye(t, dtype=z.dtype, device=z.device)
        kb = zx.transpose(-1, -2) @ torch.linalg.solve(gram, zy)
    return kb.mean(dim=1)


def temporal_infonce(z: Tensor, k: int, tau: float) -> Tensor:
    """Multi-positive InfoNCE along time, per model: (M, B, T, H) -> (M,).

    Anchors n ∈ [k, T − k); positives z_{n±i} (1 ≤ i ≤ k); negatives every other step of the same
    sequence; similarity cos/τ; loss −log(Σ_pos e^s / (Σ_pos e^s + Σ_neg e^s)), averaged over
    anchors and sequences. Needs T > 2k."""
    t = z.shape[-2]
    if t <= 2 * k:
        raise ValueError(f"temporal InfoNCE needs T > 2k, got T = {t}, k = {k}")
    zn = F.normalize(z, dim=-1)
    anchors = torch.arange(k, t - k, device=z.device)
    sim = zn[:, :, anchors] @ zn.transpose(-1, -2) / tau  # (M, B, A, T)
    offset = (torch.arange(t, device=z.device)[None, :] - anchors[:, None]).abs()  # (A, T)
    pos = (offset >= 1) & (offset <= k)
    other = offset >= 1
    neg_inf = torch.finfo(sim.dtype).min
    lse_pos = torch.logsumexp(sim.masked_fill(~pos, neg_inf), dim=-1)
    lse_all = torch.logsumexp(sim.masked_fill(~other, neg_inf), dim=-1)
    return (lse_all - lse_pos).mean(dim=(1, 2))


def covariance_spectrum(z: Tensor, eps: float = 1e-8) -> Tensor:
    """Eigenvalues p_j of ρ = Σ / tr Σ, Σ the covariance of the centred latents pooled over all
    rows: (M, N, H) -> (M, H) in float64, clamped at ``eps``."""
    z64 = z.to(torch.float64)
    c = z64 - z64.mean(dim=1, keepdim=True)
    cov = c.transpose(-1, -2) @ c / max(1, z.shape[1] - 1)
    tr = torch.diagonal(cov, dim1=-2, dim2=-1).sum(-1).clamp_min(eps)
    rho = cov / tr[:, None, None]
    return torch.linalg.eigvalsh(rho).clamp_min(eps)


def von_neumann_entropy(z: Tensor, eps: float = 1e-8) -> Tensor:
    """S(ρ) = −Σ p_j log p_j per model: (M, N, H) -> (M,) float64."""
    p = covariance_spectrum(z, eps)
    return -(p * p.log()).sum(-1)


def effective_rank(z: Tensor) -> Tensor:
    """exp(S(ρ)) per model: between 1 (one mode) and H (isotropic)."""
    return von_neumann_entropy(z).exp()


def koopman_losses(
    encoder: nn.Module,
    decoder: nn.Module,
    x: Tensor,
    *,
    ridge: float,
    k: int,
    tau: float,
    need_mi: bool,
    need_entropy: bool,
) -> tuple[dict[str, Tensor], Tensor]:
    """The terms of §3's loss per model for windows ``x`` (M, B, T + 1, *obs), and K.

    Returns ({fwd, id, mi, entropy} each (M,), K (M, H, H)). L_fwd = Σ_t MSE(ψ(z_t K), s_{t+1}),
    L_id = Σ_t MSE(ψ(z_t), s_t) over t = 1..T; the InfoNCE and S are only computed when needed
    (zeros otherwise)."""
    z = encode(encoder, x)
    kmat = koopman_matrix(z, ridge)
    zx = z[:, :, :-1]
    obs_axes = tuple(range(3, x.dim()))
    pred = decode(decoder, zx @ kmat[:, None])
    recon = decode(decoder, zx)
    fwd = ((pred - x[:, :, 1:]) ** 2).mean(dim=(1, *obs_axes)).sum(-1)
    ident = ((recon - x[:, :, :-1]) ** 2).mean(dim=(1, *obs_axes)).sum(-1)
    zero = torch.zeros_like(fwd)
    mi = temporal_infonce(zx, k, tau) if need_mi else zero
    ent = von_neumann_entropy(z.reshape(z.shape[0], -1, z.shape[-1])).to(fwd.dtype)
    ent = ent if need_entropy else zero
    return {"fwd": fwd, "id": ident, "mi": mi, "entropy": ent}, kmat


def total_loss(terms: dict[str, Tensor], id_weight: float, w: LossWeights) -> Tensor:
    """Per model: L_fwd + λ·L_id + α·L_MI + (signed β)·S."""
    return (
        terms["fwd"]
        + id_weight * terms["id"]
        + w.alpha * terms["mi"]
        + w.entropy * terms["entropy"]
    )


def clip_per_model(params: Sequence[Tensor], max_norm: float) -> None:
    """``clip_grad_norm_`` applied to each model separately: the parameters carry the model
    axis first, and model m's gradients are scaled by min(1, max_norm / (‖g_m‖ + 1e-6))."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    sq = torch.stack([g.reshape(g.shape[0], -1).pow(2).sum(1) for g in grads]).sum(0)
    scale = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))


@torch.no_grad()
def rollout(
    encoder: nn.Module, decoder: nn.Module, kmat: Tensor, x0: Tensor, horizon: int
) -> Tensor:
    """Decoded predictions ψ(φ(s_0) K^h), h = 1..horizon: (M, N, *obs) -> (M, N, horizon, *obs)."""
    z = encoder(x0)
    preds = []
    for _ in range(horizon):
        z = z @ kmat
        preds.append(decoder(z))
    return torch.stack(preds, dim=2)


def rollout_errors(pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """(NRMSE over all horizons, NRMSE per horizon) of one model's rollout (N, horizon, *obs).

    Both divide an RMSE by the target's RMS spread about its mean over every horizon, so the
    overall NRMSE² is the mean over horizons of the per-horizon NRMSE²."""
    from subspacelab.worlds.dynamics import nrmse

    flat_p = pred.reshape(pred.shape[0], pred.shape[1], -1)
    flat_t = target.reshape(flat_p.shape)
    centred = flat_t - flat_t.reshape(-1, flat_t.shape[-1]).mean(axis=0)
    spread = float(np.sqrt((centred**2).mean()))
    per_h = np.sqrt(((flat_p - flat_t) ** 2).mean(axis=(0, 2))) / spread
    return nrmse(flat_p, flat_t), per_h
