"""Typed schema of the ``molrg_diffusion`` section of params.yaml (values live only there).

molrg_diffusion: Wang et al. 2024, arXiv:2409.02426.
"""

from __future__ import annotations

from dataclasses import dataclass

from subspacelab.api import param


@dataclass
class WorldConfig:
    """The grid of MoLRG worlds: every K x n x d, with N_k = d + offset and N_k = multiple x d
    points per component (one independent world per seed and cell)."""

    ambient: list[int] = param(ge=2, min_len=2)  # n; R2 compares each larger n with the first
    components: list[int] = param(ge=1, min_len=1)  # K
    dims: list[int] = param(ge=1, min_len=2)  # d_k (equal for every component)
    n_offsets: list[int] = param(min_len=1)  # N_k = d + offset
    n_multiples: list[int] = param(ge=2, min_len=1)  # N_k = multiple x d
    subspaces: str = param(choices=("orthogonal", "random"))
    noise: float = param(ge=0)

    def check(self) -> dict[str, str]:
        """A grid that fits the ambient space and has cells on both sides of R1."""
        if min(self.dims) + min(self.n_offsets) < 1:
            return {"n_offsets": f"at least {1 - min(self.dims)} (N_k = d + offset >= 1)"}
        if min(self.n_offsets) >= 0:
            return {"n_offsets": "a negative offset (R1 needs cells with N_k < d)"}
        if sorted(set(self.ambient)) != self.ambient:
            return {"ambient": "increasing, without repeats"}
        if sorted(set(self.dims)) != self.dims:
            return {"dims": "increasing, without repeats"}
        need = max(self.components) * max(self.dims) if self.subspaces == "orthogonal" else 0
        if need > min(self.ambient) or max(self.dims) >= min(self.ambient):
            return {"ambient": f"room for the subspaces: > {max(need, max(self.dims))}"}
        return {}


@dataclass
class DAEConfig:
    """The low-rank parametrised DAE (the MoLRG posterior mean with learnable U_k), trained on
    the VE denoising loss with sigma log-uniform in [sigma_min, sigma_max]."""

    restarts: int = param(ge=1)  # random inits per world and arm, selected by training loss
    steps: int = param(ge=1)  # full-batch Adam steps
    lr: float = param(gt=0)
    draws: int = param(ge=1)  # noise draws per point per step
    sigma_min: float = param(gt=0)
    sigma_max: float = param(gt=0)
    eval_draws: int = param(ge=1)  # draws per point of the selection loss

    def check(self) -> dict[str, str]:
        """A noise range."""
        if self.sigma_min >= self.sigma_max:
            return {"sigma_min": f"below sigma_max ({self.sigma_max})"}
        return {}


@dataclass
class BaselineConfig:
    """Exact K-subspaces: a spectral-clustering start plus random restarts, best objective."""

    restarts: int = param(ge=0)
    iters: int = param(ge=1)


@dataclass
class UNetConfig:
    """Full profile (spec §7): trainMoLRG-style U-Nets on the worlds with n in ``ambient``, each
    world's points as (n / resolution², resolution, resolution) images; ``levels`` resolutions
    from ``width`` channels; ``steps`` full-batch Adam steps at ``lr`` on the EDM-weighted
    denoising loss, σ log-uniform in [sigma_min, sigma_max]; ``samples`` ODE samples per world
    (``sample_steps`` Euler steps) scored on-subspace with relative residual < ``residual``."""

    ambient: list[int] = param(ge=2, min_len=1)
    resolution: int = param(ge=1)
    width: int = param(ge=1)
    levels: int = param(ge=1)
    steps: int = param(ge=1)
    lr: float = param(gt=0)
    sigma_min: float = param(gt=0)
    sigma_max: float = param(gt=0)
    samples: int = param(ge=1)
    sample_steps: int = param(ge=2)
    residual: float = param(gt=0, lt=1)

    def check(self) -> dict[str, str]:
        """Worlds that are images, a resolution the U-Net can halve, a noise range."""
        bad = [n for n in self.ambient if n % self.resolution**2]
        if bad:
            return {"ambient": f"multiples of resolution² = {self.resolution**2} (not {bad})"}
        if self.resolution % 2 ** (self.levels - 1):
            return {"levels": f"resolution ({self.resolution}) divisible by 2^(levels - 1)"}
        if self.sigma_min >= self.sigma_max:
            return {"sigma_min": f"below sigma_max ({self.sigma_max})"}
        return {}


@dataclass
class JacobianConfig:
    """Full profile (spec §7): the numerical rank (``energy`` of Σ s²) of the DAE Jacobian of a
    pretrained CIFAR-10 DDPM (diffusers ``hf_repo`` at commit ``hf_revision``, safetensors
    weights pinned by ``weights_sha256``; downloads under ``cache_dir``) on the first ``images``
    CIFAR-10 test images at each DDPM step in ``timesteps``, ``chunk`` rows per backward."""

    hf_repo: str = param()
    hf_revision: str = param()
    weights_sha256: str = param()
    cache_dir: str = param()
    images: int = param(ge=1)
    timesteps: list[int] = param(ge=0, min_len=1)
    energy: float = param(gt=0, lt=1)
    chunk: int = param(ge=1)

    def unpinned(self) -> dict[str, str]:
        """The hub commit and the weights' SHA-256."""
        out = {}
        if not self.hf_revision:
            out["hf_revision"] = f"commit of {self.hf_repo} that ships {WEIGHTS}"
        if not self.weights_sha256:
            out["weights_sha256"] = f"SHA-256 of {self.hf_repo}'s {WEIGHTS}"
        return out


WEIGHTS = "diffusion_pytorch_model.safetensors"


@dataclass
class MolrgDiffusionConfig:
    """The molrg_diffusion study."""

    seeds: list[int] = param(min_len=1)
    world: WorldConfig = param()
    dae: DAEConfig = param()
    baseline: BaselineConfig = param()
    unet: UNetConfig | None = param()  # full profile only (null in mini)
    jacobian: JacobianConfig | None = param()  # full profile only (null in mini)

    def check(self) -> dict[str, str]:
        """The U-Nets train on worlds of the grid."""
        if self.unet and not set(self.unet.ambient) <= set(self.world.ambient):
            return {"unet": f"ambient within world.ambient ({self.world.ambient})"}
        return {}
