"""molrg_diffusion's full profile (Wang et al. 2024, arXiv:2409.02426, spec §7).

Two measurements beside the low-rank DAE grid (which the full profile runs too, larger):

* **U-Nets on MoLRG worlds** (``trainMoLRG``-style, written here, no EDM code): each world's
  N = K·N_k points in R^n are (C, r, r) images, n = C·r²; a small time-conditioned U-Net with
  EDM's preconditioning (Karras et al. 2022, arXiv:2206.00364: c_skip, c_out, c_in, c_noise of
  σ and σ_data) is trained on the VE denoising loss with EDM's weighting, σ log-uniform. Samples
  from its probability-flow ODE (Euler steps, geometric σ grid) give the spec's generalisation
  score: the share of samples on ∪_k span(U*_k) (relative residual < δ) that are not near-copies
  of a training point (nearest / second-nearest training distance > 1/3).
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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
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

    def loss(self) -> Tensor:
        """EDM-weighted VE denoising loss on every training point, σ log-uniform."""
        lo, hi = self.log_sigma
        sigma = torch.exp(lo + (hi - lo) * torch.rand(len(self.x), device=self.x.device))
        noisy = self.x + sigma[:, None] * torch.randn_like(self.x)
        weight = (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2
        return (weight * (self(noisy, sigma) - self.x).square().mean(1)).mean()

    @torch.no_grad()
    def sample(self, count: int, steps: int, gen: torch.Generator) -> Tensor:
        """``count`` samples of the probability-flow ODE dx/dσ = (x − D(x, σ))/σ, Euler steps
        from σ_max down a geometric grid of ``steps`` levels, then one last denoising."""
        lo, hi = self.log_sigma
        grid = torch.exp(torch.linspace(hi, lo, steps)).tolist()
        x = torch.randn(count, self.x.shape[1], generator=gen).to(self.x.device) * grid[0]
        for s, s_next in itertools.pairwise(grid):
            sig = torch.full((count,), s, device=x.device)
            x = x + (s_next - s) * (x - self(x, sig)) / s
        return self(x, torch.full((count,), grid[-1], device=x.device))


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


def unet_scores(
    env: TrainEnv, cfg: UNetConfig, worlds: dict[str, Tensor], keys: list[str], seed: int
) -> dict[str, dict[str, float]]:
    """One U-Net per world ``key`` (``worlds[key + "_x"]`` its points, ``key + "_truth"`` its
    bases), all trained in one joint run; each one's generalisation score on fresh samples."""
    from subspacelab.api import Member, full_batch_loader, train_joint

    sigmas = (cfg.sigma_min, cfg.sigma_max)
    models = [
        MoLRGUNet(worlds[f"{k}_x"], cfg.resolution, cfg.width, cfg.levels, sigmas) for k in keys
    ]
    members = [Member(m, lambda *_b, m=m: m.loss(), cfg.lr, seed=seed) for m in models]
    train_joint(env, members, epochs=1, loader=full_batch_loader(steps=cfg.steps), label="unet")
    out = {}
    for key, model in zip(keys, models, strict=True):
        gen = torch.Generator().manual_seed(seed)
        samples = model.sample(cfg.samples, cfg.sample_steps, gen).double().cpu().numpy()
        truth, train = worlds[f"{key}_truth"].numpy(), worlds[f"{key}_x"].numpy()
        out[key] = generalisation(samples, truth, train, cfg.residual)
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
