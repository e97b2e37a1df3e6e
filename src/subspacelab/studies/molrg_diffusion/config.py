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
class MolrgDiffusionConfig:
    """The molrg_diffusion study."""

    seeds: list[int] = param(min_len=1)
    world: WorldConfig = param()
    dae: DAEConfig = param()
    baseline: BaselineConfig = param()
