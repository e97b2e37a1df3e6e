"""molrg_diffusion's full profile (Wang et al. 2024, arXiv:2409.02426, spec §7).

Two measurements beside the low-rank DAE grid (which the full profile runs too, larger):

* **U-Nets on MoLRG worlds** (``trainMoLRG``-style, written here, no EDM code): each world's
  N = K·N_k points in R^n are (C, r, r) images, n = C·r²; a small time-conditioned U-Net with
  EDM's preconditioning (Karras et al. 2022, arXiv:2206.00364: c_skip, c_out, c_in, c_noise of
  σ and σ_data) is trained on the VE denoising loss with EDM's weighting, σ log-uniform. Samples
  from its probability-flow ODE (Euler steps, geometric σ grid) give the spec's generalisation
  score: the share of samples on ∪_k span(U*_k) (relative residual < δ) that are not near-copies
  of a training point (nearest / second-nearest training distance > 1/3). The full grid is
  thousands of tiny U-Nets, so the worlds of one image shape are trained and sampled as one
  :class:`StackedUNets` (parameters stacked, grouped convolutions, one Adam over the stacked
  tensors): each U-Net starts from the weights a loop over the worlds gives it and keeps its
  own Adam state, σ_data and noise draws; ``tests/studies/test_molrg_diffusion_full.py``
  checks losses, gradients, Adam steps and samples against the per-model :class:`MoLRGUNet`.
* **Jacobian rank of a pretrained CIFAR-10 DAE**: NVIDIA's EDM checkpoints are pickles and are
  never loaded; the model is a diffusers DDPM-CIFAR10 UNet2DModel (``jacobian.hf_repo`` at the
  pinned commit ``jacobian.hf_revision``) whose ``diffusion_pytorch_model.safetensors`` is
  checked against ``jacobian.weights_sha256`` and read with safetensors only. Its DAE at step t is
  x̂₀ = (x_t − √(1−ᾱ_t) ε̂(x_t, t)) / √ᾱ_t; the numerical rank of ∂x̂₀/∂x_t (the smallest r
  whose top singular values hold ``energy`` of Σ s²) is measured on CIFAR-10 test images
  (the MD5-pinned archive of :func:`subspacelab.data.cifar.fetch_cifar`) at each t.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from subspacelab.api import ModelFileError, sha256_file
from subspacelab.data.cifar import fetch_cifar, load_cifar
from subspacelab.studies.molrg_diffusion.config import WEIGHTS, JacobianConfig, UNetConfig

if TYPE_CHECKING:
    from subspacelab.api import TrainEnv

COPY_RATIO = 1 / 3  # nearest / second-nearest training distance below this: a near-copy


# ---------------------------------------------------------------- the U-Net


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(ch, 8), ch)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the noise embedding added in between, a 1x1 skip."""

    def __init__(self, cin: int, cout: int, emb: int) -> None:
        super().__init__()
        self.n1, self.c1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.e = nn.Linear(emb, cout)
        self.n2, self.c2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        """x (B, cin, h, w), e (B, emb) -> (B, cout, h, w)."""
        h = self.c1(nn.functional.silu(self.n1(x))) + self.e(e)[:, :, None, None]
        return self.skip(x) + self.c2(nn.functional.silu(self.n2(h)))


class UNet(nn.Module):
    """A small U-Net F(x, c_noise) on (channels, r, r): ``levels`` resolutions (width doubling,
    average-pool down, nearest up, skip concatenation), one residual block each way."""

    def __init__(self, channels: int, width: int, levels: int) -> None:
        super().__init__()
        emb = 4 * width
        self.register_buffer("freqs", torch.randn(max(width // 2, 1)))  # Fourier features
        self.embed = nn.Sequential(nn.Linear(2 * max(width // 2, 1), emb), nn.SiLU())
        widths = [width * 2**i for i in range(levels)]
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.down = nn.ModuleList(
            ResBlock(a, b, emb) for a, b in zip([width, *widths], widths, strict=False)
        )
        self.mid = ResBlock(widths[-1], widths[-1], emb)
        self.up = nn.ModuleList(ResBlock(2 * w, w, emb) for w in reversed(widths))
        self.shrink = nn.ModuleList(
            nn.Conv2d(a, b, 1) for a, b in zip(widths[::-1], widths[::-1][1:], strict=False)
        )
        self.out = nn.Sequential(_norm(width), nn.SiLU(), nn.Conv2d(width, channels, 3, padding=1))

    def forward(self, x: Tensor, c_noise: Tensor) -> Tensor:
        """x (B, C, r, r), c_noise (B,) -> (B, C, r, r)."""
        f = c_noise[:, None] * self.freqs[None] * 2 * math.pi
        e = self.embed(torch.cat([f.cos(), f.sin()], dim=1))
        h, skips = self.inp(x), []
        for i, block in enumerate(self.down):
            h = block(h, e)
            skips.append(h)
            if i < len(self.down) - 1:
                h = nn.functional.avg_pool2d(h, 2)
        h = self.mid(h, e)
        for i, block in enumerate(self.up):
            if i > 0:
                h = self.shrink[i - 1](nn.functional.interpolate(h, scale_factor=2.0))
            h = block(torch.cat([h, skips.pop()], dim=1), e)
        return self.out(h)


class MoLRGUNet(nn.Module):
    """One world's denoiser D(x, σ) = c_skip x + c_out F(c_in x, ln σ / 4) (EDM's
    preconditioning) and its training points (a buffer: they follow the model's device)."""

    def __init__(
        self, x: Tensor, resolution: int, width: int, levels: int, sigmas: tuple[float, float]
    ) -> None:
        super().__init__()
        n = x.shape[1]
        if n % resolution**2:
            raise ValueError(f"n = {n} is not channels x {resolution}²")
        self.shape = (n // resolution**2, resolution, resolution)
        self.net = UNet(self.shape[0], width, levels)
        self.register_buffer("x", x.float())
        self.sigma_data = float(x.float().std().clamp_min(1e-3))
        self.log_sigma = (math.log(sigmas[0]), math.log(sigmas[1]))

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        """x (B, n), sigma (B,) -> x̂₀ (B, n)."""
        sd, s = self.sigma_data, sigma[:, None]
        var = s**2 + sd**2
        f = self.net((x / var.sqrt()).view(-1, *self.shape), sigma.log() / 4).flatten(1)
        return sd**2 / var * x + s * sd / var.sqrt() * f

    def loss(self, sigma: Tensor, noise: Tensor) -> Tensor:
        """EDM-weighted VE denoising loss on every training point at noise levels ``sigma``
        (N,) and standard normal ``noise`` (N, n): the per-model reference of
        :meth:`StackedUNets.losses`, which draws them (σ log-uniform)."""
        noisy = self.x + sigma[:, None] * noise
        weight = (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2
        return (weight * (self(noisy, sigma) - self.x).square().mean(1)).mean()

    @torch.no_grad()
    def sample(self, count: int, steps: int, gen: torch.Generator) -> Tensor:
        """``count`` samples of the probability-flow ODE dx/dσ = (x − D(x, σ))/σ, Euler steps
        from σ_max down a geometric grid of ``steps`` levels, then one last denoising (the
        per-model reference of :meth:`StackedUNets.sample`)."""
        lo, hi = self.log_sigma
        grid = torch.exp(torch.linspace(hi, lo, steps)).tolist()
        x = torch.randn(count, self.x.shape[1], generator=gen).to(self.x) * grid[0]
        for s, s_next in itertools.pairwise(grid):
            sig = torch.full((count,), s, device=x.device, dtype=x.dtype)
            x = x + (s_next - s) * (x - self(x, sig)) / s
        return self(x, torch.full((count,), grid[-1], device=x.device, dtype=x.dtype))


# ---------------------------------------------------------------- G U-Nets at once


class _Conv(nn.Module):
    """G Conv2d layers of one shape (stride 1) on ``(B, G·C_in, h, w)``, model g's channels in
    block g, as one grouped convolution; ``weight`` (G, C_out, C_in, k, k), ``bias`` (G, C_out)."""

    def __init__(self, convs: Sequence[nn.Conv2d]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([c.weight.detach() for c in convs]))
        self.bias = nn.Parameter(torch.stack([c.bias.detach() for c in convs]))  # type: ignore[union-attr]
        self.padding = convs[0].padding

    def forward(self, x: Tensor) -> Tensor:
        """(B, G·C_in, h, w) -> (B, G·C_out, h, w)."""
        w = self.weight
        return F.conv2d(
            x, w.flatten(0, 1), self.bias.flatten(), padding=self.padding, groups=len(w)
        )


class _Norm(nn.Module):
    """G GroupNorms of one shape on ``(B, G·C, h, w)``: model g's ``groups`` channel groups are
    groups g·groups … of one GroupNorm over G·groups groups (per sample, so padding rows of a
    batch never mix with real ones)."""

    def __init__(self, norms: Sequence[nn.GroupNorm]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in norms]))
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in norms]))
        self.groups, self.eps = norms[0].num_groups, norms[0].eps

    def forward(self, x: Tensor) -> Tensor:
        """(B, G·C, h, w) -> (B, G·C, h, w)."""
        g = len(self.weight) * self.groups
        return F.group_norm(x, g, self.weight.flatten(), self.bias.flatten(), self.eps)


class _Linear(nn.Module):
    """G Linear layers of one shape on ``(G, B, in)`` as one batched product."""

    def __init__(self, linears: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in linears]))
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in linears]))

    def forward(self, x: Tensor) -> Tensor:
        """(G, B, in) -> (G, B, out)."""
        return torch.baddbmm(self.bias[:, None], x, self.weight.mT)


class _ResBlock(nn.Module):
    """G :class:`ResBlock` s of one shape on ``(B, G·C_in, h, w)`` and embeddings (G, B, emb)."""

    def __init__(self, blocks: Sequence[ResBlock]) -> None:
        super().__init__()
        self.n1, self.c1 = _Norm([b.n1 for b in blocks]), _Conv([b.c1 for b in blocks])
        self.e = _Linear([b.e for b in blocks])
        self.n2, self.c2 = _Norm([b.n2 for b in blocks]), _Conv([b.c2 for b in blocks])
        skips = [b.skip for b in blocks]
        self.skip = _Conv(skips) if isinstance(skips[0], nn.Conv2d) else nn.Identity()  # type: ignore[arg-type]

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        """x (B, G·C_in, h, w), e (G, B, emb) -> (B, G·C_out, h, w)."""
        emb = self.e(e).transpose(0, 1).flatten(1)  # (B, G·C_out)
        h = self.c1(F.silu(self.n1(x))) + emb[:, :, None, None]
        return self.skip(x) + self.c2(F.silu(self.n2(h)))


class _UNet(nn.Module):
    """G :class:`UNet` s of one architecture, their parameters stacked (G leading) under the
    same names as one UNet's, run at once: grouped convolutions and GroupNorms over channel
    blocks, batched products for the noise embedding."""

    def __init__(self, nets: Sequence[UNet]) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.stack([n.freqs for n in nets]))
        self.embed = nn.Sequential(_Linear([n.embed[0] for n in nets]), nn.SiLU())  # type: ignore[list-item]
        self.inp = _Conv([n.inp for n in nets])
        self.down = nn.ModuleList(
            _ResBlock(list(b)) for b in zip(*(n.down for n in nets), strict=True)
        )
        self.mid = _ResBlock([n.mid for n in nets])
        self.up = nn.ModuleList(_ResBlock(list(b)) for b in zip(*(n.up for n in nets), strict=True))
        self.shrink = nn.ModuleList(
            _Conv(list(c)) for c in zip(*(n.shrink for n in nets), strict=True)
        )
        self.out = nn.Sequential(
            _Norm([n.out[0] for n in nets]),
            nn.SiLU(),
            _Conv([n.out[2] for n in nets]),  # type: ignore[list-item]
        )

    def forward(self, x: Tensor, c_noise: Tensor) -> Tensor:
        """x (G, B, C, r, r), c_noise (G, B) -> (G, B, C, r, r): model g on its own batch."""
        g = x.shape[0]
        f = c_noise[..., None] * self.freqs[:, None] * 2 * math.pi
        e = self.embed(torch.cat([f.cos(), f.sin()], dim=2))
        h, skips = self.inp(x.transpose(0, 1).flatten(1, 2)), []
        for i, block in enumerate(self.down):
            h = block(h, e)
            skips.append(h)
            if i < len(self.down) - 1:
                h = F.avg_pool2d(h, 2)
        h = self.mid(h, e)
        for i, block in enumerate(self.up):
            if i > 0:
                h = self.shrink[i - 1](F.interpolate(h, scale_factor=2.0))
            skip = skips.pop()
            both = [h.unflatten(1, (g, -1)), skip.unflatten(1, (g, -1))]  # per-model channels
            h = block(torch.cat(both, dim=2).flatten(1, 2), e)
        return self.out(h).unflatten(1, (g, -1)).transpose(0, 1)


class StackedUNets(nn.Module):
    """G :class:`MoLRGUNet` s of one image shape and noise range trained and sampled at once
    (Wang et al. 2024, arXiv:2409.02426, spec §7; EDM preconditioning, Karras et al. 2022,
    arXiv:2206.00364).

    Each model keeps its own parameters (stacked, G leading: model g's initial values are
    exactly those of ``models[g]``), its own σ_data and its training points, padded to the
    largest N with a mask, so that its loss is the mean over its own points only. Summing the
    G losses mixes no gradients (the models share no parameter), and Adam's update is per
    element, so one Adam over the stacked tensors is G independent Adams. Each step draws
    every model's own σ and noise in one (G, N_max, ·) draw."""

    def __init__(self, models: Sequence[MoLRGUNet]) -> None:
        super().__init__()
        if not models:
            raise ValueError("StackedUNets needs at least one model")
        first = models[0]
        shapes = {k: v.shape for k, v in first.net.state_dict().items()}
        for i, m in enumerate(models):
            if m.shape != first.shape or m.log_sigma != first.log_sigma:
                raise ValueError(
                    f"model {i}: image shape {m.shape} and log σ range {m.log_sigma} differ from "
                    f"model 0's {first.shape} and {first.log_sigma}"
                )
            if {k: v.shape for k, v in m.net.state_dict().items()} != shapes:
                raise ValueError(f"model {i}: its U-Net's architecture differs from model 0's")
        self.shape, self.log_sigma = first.shape, first.log_sigma
        self.net = _UNet([m.net for m in models])
        counts = torch.tensor([len(m.x) for m in models])
        dtype = first.x.dtype
        x = torch.zeros(len(models), int(counts.max()), first.x.shape[1], dtype=dtype)
        for i, m in enumerate(models):
            x[i, : len(m.x)] = m.x
        self.register_buffer("x", x)
        self.register_buffer("mask", (torch.arange(x.shape[1]) < counts[:, None]).to(dtype))
        self.register_buffer("counts", counts.to(dtype))
        sd = torch.tensor([m.sigma_data for m in models], dtype=dtype)
        self.register_buffer("sigma_data", sd)

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        """x (G, B, n), sigma (G, B) -> x̂₀ (G, B, n), model g's D(x[g], σ[g])."""
        sd, s = self.sigma_data[:, None, None], sigma[..., None]
        var = s**2 + sd**2
        inp = (x / var.sqrt()).unflatten(2, self.shape)
        f = self.net(inp, sigma.log() / 4).flatten(2)
        return sd**2 / var * x + s * sd / var.sqrt() * f

    def losses(self, sigma: Tensor | None = None, noise: Tensor | None = None) -> Tensor:
        """Every model's EDM-weighted VE denoising loss (G,), the mean over its own points;
        σ (G, N_max) log-uniform and ``noise`` (G, N_max, n) standard normal unless given."""
        if sigma is None:
            lo, hi = self.log_sigma
            u = torch.rand(self.mask.shape, device=self.x.device, dtype=self.x.dtype)
            sigma = torch.exp(lo + (hi - lo) * u)
        if noise is None:
            noise = torch.randn_like(self.x)
        sd = self.sigma_data[:, None]
        weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
        err = (self(self.x + sigma[..., None] * noise, sigma) - self.x).square().mean(2)
        return (weight * err * self.mask).sum(1) / self.counts

    @torch.no_grad()
    def sample(self, count: int, steps: int, gen: torch.Generator) -> Tensor:
        """``count`` probability-flow ODE samples of every model (G, count, n), as each
        :meth:`MoLRGUNet.sample` with a generator in ``gen``'s state gives them: every model
        starts from the same noise, then Euler steps down the geometric σ grid."""
        lo, hi = self.log_sigma
        grid = torch.exp(torch.linspace(hi, lo, steps)).tolist()
        g, n = self.x.shape[0], self.x.shape[2]
        start = torch.randn(count, n, generator=gen).to(self.x) * grid[0]
        x = start.expand(g, count, n)
        for s, s_next in itertools.pairwise(grid):
            sig = torch.full((g, count), s, device=x.device, dtype=x.dtype)
            x = x + (s_next - s) * (x - self(x, sig)) / s
        return self(x, torch.full((g, count), grid[-1], device=x.device, dtype=x.dtype))


def generalisation(samples: np.ndarray, truth: np.ndarray, train: np.ndarray, delta: float) -> dict:
    """The spec's score of ``samples`` (S, n) against the true bases ``truth`` (K, n, d) and the
    training points ``train`` (N, n): ``on`` (relative residual to the nearest true subspace
    < δ), ``copy`` (nearest / second-nearest training distance < 1/3; with one training point
    every sample is a copy) and ``score`` (on and not a copy), each a share of the samples."""
    proj = np.einsum("knd,sn->skd", truth, samples)
    resid = np.sqrt(np.maximum((samples**2).sum(1)[:, None] - (proj**2).sum(2), 0.0))
    on = resid.min(1) < delta * np.maximum(np.linalg.norm(samples, axis=1), 1e-12)
    dist = np.sort(np.linalg.norm(samples[:, None] - train[None], axis=2), axis=1)
    second = dist[:, 1] if dist.shape[1] > 1 else np.full(len(samples), np.inf)
    copy = dist[:, 0] < COPY_RATIO * second
    return {
        "on": float(on.mean()),
        "copy": float(copy.mean()),
        "score": float((on & ~copy).mean()),
    }


def stack_unets(
    cfg: UNetConfig, worlds: dict[str, Tensor], keys: list[str]
) -> dict[tuple[int, ...], tuple[list[str], StackedUNets]]:
    """One :class:`MoLRGUNet` per world ``key`` (``worlds[key + "_x"]`` its points), built in
    ``keys``' order (each one's initial weights are those a loop over ``keys`` gives), stacked
    per image shape: ``{shape: (its keys, their StackedUNets)}``."""
    sigmas = (cfg.sigma_min, cfg.sigma_max)
    by_shape: dict[tuple[int, ...], list[tuple[str, MoLRGUNet]]] = {}
    for k in keys:
        model = MoLRGUNet(worlds[f"{k}_x"], cfg.resolution, cfg.width, cfg.levels, sigmas)
        by_shape.setdefault(model.shape, []).append((k, model))
    return {
        shape: ([k for k, _ in pairs], StackedUNets([m for _, m in pairs]))
        for shape, pairs in by_shape.items()
    }


def train_unets(
    env: TrainEnv,
    stacks: list[tuple[list[str], StackedUNets]],
    lr: float,
    steps: int,
    seed: int,
) -> None:
    """``steps`` full-batch Adam steps of every stack's U-Nets in one joint run (one member
    per stack, its loss the sum of its models' losses). A NaN/Inf loss stops the run with a
    NonFiniteError that names the worlds whose U-Nets diverged."""
    from subspacelab.api import Member, full_batch_loader, train_joint

    last: list[Tensor | None] = [None] * len(stacks)

    def loss(i: int, stack: StackedUNets) -> Tensor:
        per_model = stack.losses()
        last[i] = per_model.detach()
        return per_model.sum()

    members = [
        Member(stack, lambda *_b, i=i, s=stack: loss(i, s), lr, seed=seed)
        for i, (_, stack) in enumerate(stacks)
    ]
    try:
        train_joint(env, members, epochs=1, loader=full_batch_loader(steps=steps), label="unet")
    except ValueError as err:  # the lab's NonFiniteError among them
        bad = [
            k
            for (keys, _), got in zip(stacks, last, strict=True)
            if got is not None
            for k, ok in zip(keys, torch.isfinite(got).tolist(), strict=True)
            if not ok
        ]
        if not bad:
            raise
        raise type(err)(f"{err}; the U-Nets of worlds {bad} diverged") from err


def unet_scores(
    env: TrainEnv, cfg: UNetConfig, worlds: dict[str, Tensor], keys: list[str], seed: int
) -> dict[str, dict[str, float]]:
    """One U-Net per world ``key`` (``worlds[key + "_x"]`` its points, ``key + "_truth"`` its
    bases), those of one image shape stacked, all trained in one joint run; each one's
    generalisation score on fresh samples (every world's from the same start noise)."""
    stacks = list(stack_unets(cfg, worlds, keys).values())
    train_unets(env, stacks, cfg.lr, cfg.steps, seed)
    out = {}
    for names, stack in stacks:
        gen = torch.Generator().manual_seed(seed)
        stack.to(env.device)  # Lightning may hand the trained module back on the CPU
        samples = stack.sample(cfg.samples, cfg.sample_steps, gen).double().cpu().numpy()
        for key, got in zip(names, samples, strict=True):
            truth, train = worlds[f"{key}_truth"].numpy(), worlds[f"{key}_x"].numpy()
            out[key] = generalisation(got, truth, train, cfg.residual)
    return out


# ---------------------------------------------------------------- the pretrained DAE


def load_safetensors(model: nn.Module, weights: Path, sha256: str) -> nn.Module:
    """``model`` with the state in ``weights`` (a .safetensors file whose SHA-256 must be
    ``sha256``; every key of the model, none extra). Pickled checkpoints are refused."""
    from safetensors.torch import load_file

    if weights.suffix != ".safetensors":
        raise ModelFileError(f"{weights}: only .safetensors checkpoints are loaded (no pickles)")
    if not weights.is_file():
        raise ModelFileError(f"{weights}: no such file")
    got = sha256_file(weights)
    if got != sha256:
        raise ModelFileError(f"{weights}: SHA-256 {got}, pinned {sha256}")
    state = load_file(str(weights))
    mine = model.state_dict()
    missing, extra = sorted(set(mine) - set(state)), sorted(set(state) - set(mine))
    if missing or extra:
        raise ModelFileError(
            f"{weights}: not this model's checkpoint (missing {missing[:3]}, unexpected "
            f"{extra[:3]})"
        )
    bad = [k for k in mine if mine[k].shape != state[k].shape]
    if bad:
        raise ModelFileError(f"{weights}: {bad[0]} has shape {tuple(state[bad[0]].shape)}, "
                             f"the model's is {tuple(mine[bad[0]].shape)}")  # fmt: skip
    model.load_state_dict(state)
    return model.eval()


def ddpm_alphas_cumprod(scheduler_config: Path) -> Tensor:
    """ᾱ_t of a diffusers DDPMScheduler config (linear β from beta_start to beta_end)."""
    cfg = json.loads(scheduler_config.read_text())
    if cfg.get("beta_schedule", "linear") != "linear":
        raise ValueError(f"{scheduler_config}: beta_schedule {cfg['beta_schedule']!r}, not linear")
    try:
        betas = torch.linspace(
            float(cfg["beta_start"]), float(cfg["beta_end"]), int(cfg["num_train_timesteps"]),
            dtype=torch.float64,
        )  # fmt: skip
    except KeyError as err:
        raise ValueError(f"{scheduler_config}: no {err.args[0]}") from None
    return torch.cumprod(1 - betas, 0)


def ddpm_denoiser(
    eps: Callable[[Tensor, Tensor], Tensor], abar: float, t: int
) -> Callable[[Tensor], Tensor]:
    """x_t -> x̂₀ = (x_t − √(1−ᾱ) ε̂(x_t, t)) / √ᾱ for a batch (B, C, H, W)."""

    def den(x: Tensor) -> Tensor:
        steps = torch.full((len(x),), t, device=x.device, dtype=torch.long)
        return (x - math.sqrt(1 - abar) * eps(x, steps)) / math.sqrt(abar)

    return den


def jacobian(f: Callable[[Tensor], Tensor], x: Tensor, chunk: int) -> Tensor:
    """∂f/∂x (n, n) at one input ``x`` (C, H, W), ``chunk`` rows per backward pass (the input
    repeated ``chunk`` times, each copy's output row picked)."""
    n = x.numel()
    rows = []
    for start in range(0, n, chunk):
        idx = torch.arange(start, min(start + chunk, n), device=x.device)
        xs = x.detach().expand(len(idx), *x.shape).clone().requires_grad_(True)
        out = f(xs).flatten(1)
        (grad,) = torch.autograd.grad(out[torch.arange(len(idx)), idx].sum(), xs)
        rows.append(grad.flatten(1))
    return torch.cat(rows)


def numerical_rank(svals: Tensor, energy: float) -> int:
    """The smallest r whose top-r singular values hold ``energy`` of Σ s²."""
    e = svals.double().square()
    share = torch.cumsum(e, 0) / e.sum()
    return int(torch.searchsorted(share, torch.tensor(energy, dtype=share.dtype)).item()) + 1


def diffusers_unet(config: Path) -> nn.Module:
    """The diffusers UNet2DModel a ``config.json`` describes (random weights: load them with
    :func:`load_safetensors`); diffusers is imported here only (the ``full`` extra)."""
    from diffusers import UNet2DModel

    return UNet2DModel.from_config(json.loads(config.read_text()))


def fetch_ddpm(repo: str, revision: str, cache_dir: str) -> dict[str, Path]:
    """config.json, scheduler_config.json and the safetensors weights of the hub model ``repo``
    at commit ``revision``."""
    from huggingface_hub import hf_hub_download

    names = {"config": "config.json", "scheduler": "scheduler_config.json", "weights": WEIGHTS}
    return {
        k: Path(hf_hub_download(repo, v, revision=revision, cache_dir=cache_dir))
        for k, v in names.items()
    }


def jacobian_ranks(
    cfg: JacobianConfig, device: torch.device, progress: Callable[[str], None]
) -> dict[str, dict[str, float | list[float]]]:
    """Per DDPM step t: σ_t = √((1−ᾱ)/ᾱ) and the Jacobian's numerical rank at x_t = √ᾱ x₀ +
    √(1−ᾱ) ε for the first ``cfg.images`` CIFAR-10 test images x₀ in [−1, 1]."""
    files = fetch_ddpm(cfg.hf_repo, cfg.hf_revision, cfg.cache_dir)
    model = load_safetensors(diffusers_unet(files["config"]), files["weights"], cfg.weights_sha256)
    model = model.to(device)
    abar = ddpm_alphas_cumprod(files["scheduler"])
    split = load_cifar(fetch_cifar("cifar10", Path(cfg.cache_dir), progress), "cifar10")
    x0 = torch.from_numpy(split.x_test[: cfg.images]).to(device) * 2 - 1
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)).to(device)

    def eps(x: Tensor, t: Tensor) -> Tensor:
        return model(x, t).sample

    out: dict[str, dict[str, float | list[float]]] = {}
    for t in cfg.timesteps:
        if not 0 <= t < len(abar):
            raise ValueError(f"jacobian.timesteps: {t} outside the schedule's [0, {len(abar)})")
        a = float(abar[t])
        den = ddpm_denoiser(eps, a, t)
        xt = math.sqrt(a) * x0 + math.sqrt(1 - a) * noise
        ranks = [
            float(numerical_rank(torch.linalg.svdvals(jacobian(den, x, cfg.chunk)), cfg.energy))
            for x in xt
        ]
        out[str(t)] = {"sigma": math.sqrt((1 - a) / a), "ranks": ranks}
        progress(f"t={t}: Jacobian rank {np.mean(ranks):.0f} of {x0[0].numel()}")
    return out
